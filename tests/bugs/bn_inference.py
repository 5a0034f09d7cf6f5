"""Typical student bugs in the bn_inference exercise, as source text and as functions.

Each entry is complete code (numpy, or torch imported inside the function; independent of
the reference's helpers) that redefines one graded function, plus the test cells that must
fail because of it; every other cell must keep its points. The unit tests call the
functions directly; the end-to-end tests append the source to the student's answer cell,
where it replaces the reference definition.
"""
from __future__ import annotations

_P = "bn_inference_"
TRAIN_STEP_CELLS = {_P + "batchnorm_train_step_" + c for c in ("torch_2d", "torch_4d")}

_STEP_HEAD = '''
def batchnorm_train_step(x, gamma, beta, running_mean, running_var, num_batches_tracked, momentum=0.1,
                         eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    unbiased = x.var(axis=axes, ddof=1)
    out = gamma.reshape(shape) * (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) \\
        + beta.reshape(shape)
    n = num_batches_tracked + 1
'''

BUGS = {
    # The running variance updated with the biased batch variance (divide by m, the one the
    # output uses): too small by (m - 1) / m on average.
    "biased_running_var": dict(
        answer_cell=_P + "batchnorm_train_step_answer",
        fails=TRAIN_STEP_CELLS | {_P + "batchnorm_train_step_momentum_none",
                                  _P + "batchnorm_train_step_unbiased_running_var"},
        source=_STEP_HEAD + '''
    factor = 1.0 / n if momentum is None else momentum
    new_mean = (1 - factor) * running_mean + factor * mean
    new_var = (1 - factor) * running_var + factor * var
    return out, new_mean, new_var, n
'''),
    # Keras' (and CS231n's) convention: momentum weighs the old running value. momentum=None
    # is handled right, and at momentum 0.5 the two conventions agree.
    "keras_momentum": dict(
        answer_cell=_P + "batchnorm_train_step_answer",
        fails=TRAIN_STEP_CELLS,
        source=_STEP_HEAD + '''
    if momentum is None:
        new_mean = (1 - 1 / n) * running_mean + mean / n
        new_var = (1 - 1 / n) * running_var + unbiased / n
    else:
        new_mean = momentum * running_mean + (1 - momentum) * mean
        new_var = momentum * running_var + (1 - momentum) * unbiased
    return out, new_mean, new_var, n
'''),
    # momentum=None treated as the default 0.1 instead of the cumulative average.
    "momentum_none_as_default": dict(
        answer_cell=_P + "batchnorm_train_step_answer",
        fails={_P + "batchnorm_train_step_momentum_none"},
        source=_STEP_HEAD + '''
    factor = 0.1 if momentum is None else momentum
    new_mean = (1 - factor) * running_mean + factor * mean
    new_var = (1 - factor) * running_var + factor * unbiased
    return out, new_mean, new_var, n
'''),
    # The right formula written in place: the caller's running_mean and running_var are
    # overwritten and returned. Every step of a chain then holds the same arrays, so the
    # statistics after step 1 are those after the last step ("relative error 1.00e+00"
    # before the checks named the in-place update). Even a single step fails: the contract
    # is new arrays, inputs untouched.
    "in_place_running_stats": dict(
        answer_cell=_P + "batchnorm_train_step_answer",
        fails=TRAIN_STEP_CELLS | {_P + "batchnorm_train_step_momentum_none",
                                  _P + "batchnorm_train_step_unbiased_running_var"},
        source=_STEP_HEAD + '''
    factor = 1.0 / n if momentum is None else momentum
    running_mean *= 1 - factor
    running_mean += factor * mean
    running_var *= 1 - factor
    running_var += factor * unbiased
    return out, running_mean, running_var, n
'''),
    # Eval mode normalising with the batch's own statistics (training mode by another name).
    "eval_with_batch_statistics": dict(
        answer_cell=_P + "batchnorm_eval_answer",
        fails={_P + "batchnorm_eval_torch_2d", _P + "batchnorm_eval_torch_3d", _P + "batchnorm_eval_batch_of_one"},
        source='''
def batchnorm_eval(x, gamma, beta, running_mean, running_var, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return gamma.reshape(shape) * (x - mean) / np.sqrt(var + eps) + beta.reshape(shape)
'''),
    # E[x^2] - E[x]^2 from running sums: exact on ordinary data, garbage on 1e8 + N(0, 1).
    "naive_sum_of_squares": dict(
        answer_cell=_P + "population_statistics_answer",
        fails={_P + "population_statistics_large_offset"},
        source='''
def population_statistics(batches):
    count, total, total_sq = 0, 0.0, 0.0
    for b in batches:
        axes = (0,) + tuple(range(2, b.ndim))
        count += b.size // b.shape[1]
        total = total + b.sum(axis=axes)
        total_sq = total_sq + np.square(b).sum(axis=axes)
    mean = total / count
    return mean, (total_sq - count * mean**2) / (count - 1)
'''),
    # Two passes over the data (mean first, then squared deviations): exact on a list, but a
    # generator is exhausted after the first pass.
    "two_passes": dict(
        answer_cell=_P + "population_statistics_answer",
        fails={_P + "population_statistics_one_shot_iterator"},
        source='''
def population_statistics(batches):
    count, total = 0, 0.0
    for b in batches:
        count += b.size // b.shape[1]
        total = total + b.sum(axis=(0,) + tuple(range(2, b.ndim)))
    mean = total / count
    m2 = np.zeros_like(mean)
    for b in batches:
        shape = (1, b.shape[1]) + (1,) * (b.ndim - 2)
        m2 = m2 + np.square(b - mean.reshape(shape)).sum(axis=(0,) + tuple(range(2, b.ndim)))
    return mean, m2 / (count - 1)
'''),
    # model.train() for the pass, as update_bn does: dropout is active and shifts the
    # statistics of the BN layers after it. Modes and momenta are restored properly.
    "recalibrate_whole_model_in_train_mode": dict(
        answer_cell=_P + "recalibrate_batchnorm_answer",
        fails={_P + "recalibrate_batchnorm_dropout_off"},
        source='''
def recalibrate_batchnorm(model, batches):
    import torch

    bns = [m for m in model.modules()
           if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    training = {m: m.training for m in model.modules()}
    momenta = {bn: bn.momentum for bn in bns}
    model.train()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    with torch.no_grad():
        for batch in batches:
            model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    for bn in bns:
        bn.momentum = momenta[bn]
    for m, flag in training.items():
        m.training = flag
    return model
'''),
    # The right statistics, but the BN layers are left in train mode with momentum=None.
    "recalibrate_without_restoring": dict(
        answer_cell=_P + "recalibrate_batchnorm_answer",
        fails={_P + "recalibrate_batchnorm_restores_modes"},
        source='''
def recalibrate_batchnorm(model, batches):
    import torch

    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            m.reset_running_stats()
            m.momentum = None
            m.train()
    with torch.no_grad():
        for batch in batches:
            model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    return model
'''),
    # The folded bias keeps only BN's shift and drops the layer's own bias (scaled).
    "fold_without_layer_bias": dict(
        answer_cell=_P + "fold_batchnorm_answer",
        fails={_P + "fold_batchnorm_linear", _P + "fold_batchnorm_conv"},
        source='''
def fold_batchnorm(weight, bias, gamma, beta, running_mean, running_var, eps=1e-5):
    scale = gamma / np.sqrt(running_var + eps)
    new_weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    return new_weight, beta - running_mean * scale
'''),
}


# Submissions graded end to end by real nbgrader (kernel starts are the cost, so a few).
# The first also has every visible test cell replaced by `pass`; the last must make the
# release command refuse.
E2E = ("keras_momentum", "recalibrate_whole_model_in_train_mode", "biased_running_var")
