"""Typical student bugs in the variance_shift exercise, as source text and as functions.

Each entry is complete numpy (or torch) code, independent of the reference's helpers, that
redefines one graded function, plus the test cells that must fail because of it; every
other cell must keep its points. The unit tests call the functions directly; the
end-to-end tests append the source to the student's answer cell, where it replaces the
reference definition. Imports stay inside the functions so each source defines one name.
"""
from __future__ import annotations

P = "variance_shift_"
D_, U_, F_, S_, B_ = (P + f + "_" for f in ("dropout_variance_shift", "uout_variance_shift", "uout_forward",
                                              "simulate_variance_shift", "bn_variance_shift"))

_SIMULATE = '''
def simulate_variance_shift(noise_fn, mean, var, n, rng=None):
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    x = {draw}
    test = noise_fn({x_test}, training=False, rng=rng)
    train = noise_fn(x, training=True, rng=rng)
    test = test[0] if isinstance(test, tuple) else test
    train = train[0] if isinstance(train, tuple) else train
    return float({ratio})
'''

_BN = '''
def bn_variance_shift(model, batches):
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    seen = {{id(bn): [] for bn in bns}}
    hooks = [bn.register_forward_pre_hook(lambda mod, args: seen[id(mod)].append(args[0].detach()))
             for bn in bns]
    flags = {{m: m.training for m in model.modules()}}
    {mode}
    with torch.no_grad():
        for b in batches:
            model(b[0] if isinstance(b, (tuple, list)) else b)
    for h in hooks:
        h.remove()
    {restore}
    shifts = []
    for bn in bns:
        x = torch.cat(seen[id(bn)])
        real = x.var(dim=[0] + list(range(2, x.ndim)), correction={correction})
        running = bn.running_var
        shifts.append({metric}.mean().item())
    return shifts
'''
_BN_OK = dict(mode="model.eval()", restore="for m, f in flags.items():\n        m.training = f",
              correction=1, metric="torch.maximum(real / running, running / real)")

_UOUT = '''
def uout_forward(x, beta, training=True, rng=None):
    {rng}
    if not {training}:
        return x.copy()
    return x + x * {noise}
'''
_UOUT_OK = dict(rng="rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)",
                training="training", noise="rng.uniform(-beta, beta, size=x.shape)")

BUGS = {
    # Var_train / Var_test instead of Var_test / Var_train: 1/q instead of q at c = 0.
    "dropout_ratio_inverted": dict(
        answer_cell=D_ + "answer",
        fails={D_ + "zero_mean", D_ + "nonzero_mean"},
        source='''
def dropout_variance_shift(p, mean=0.0, var=1.0):
    q = 1.0 - np.asarray(p, dtype=float)
    return ((mean**2 + var) / q - mean**2) / var
'''),
    # The paper's p (the retain ratio) read as PyTorch's p: q = p.
    "dropout_p_as_retain": dict(
        answer_cell=D_ + "answer",
        fails={D_ + "zero_mean", D_ + "nonzero_mean"},
        source='''
def dropout_variance_shift(p, mean=0.0, var=1.0):
    q = np.asarray(p, dtype=float)
    return var / ((mean**2 + var) / q - mean**2)
'''),
    # The neuron's mean ignored: Var_train = v / q, so the ratio is q for every mean.
    "dropout_mean_term_dropped": dict(
        answer_cell=D_ + "answer",
        fails={D_ + "nonzero_mean"},
        source='''
def dropout_variance_shift(p, mean=0.0, var=1.0):
    q = 1.0 - np.asarray(p, dtype=float)
    return var / (var / q)
'''),
    # E[X^2] taken for the variance: the - c^2 is missing.
    "dropout_second_moment": dict(
        answer_cell=D_ + "answer",
        fails={D_ + "nonzero_mean"},
        source='''
def dropout_variance_shift(p, mean=0.0, var=1.0):
    q = 1.0 - np.asarray(p, dtype=float)
    return var / ((mean**2 + var) / q)
'''),
    # Noise drawn in [0, beta] instead of [-beta, beta].
    "uout_one_sided_noise": dict(
        answer_cell=F_ + "answer",
        fails={F_ + "uniform_noise"},
        source=_UOUT.format(**{**_UOUT_OK, "noise": "rng.uniform(0.0, beta, size=x.shape)"})),
    # The noise stays on at test time.
    "uout_noise_in_eval": dict(
        answer_cell=F_ + "answer",
        fails={F_ + "eval_identity"},
        source=_UOUT.format(**{**_UOUT_OK, "training": "True"})),
    # numpy's global random state instead of the generator made from rng.
    "uout_ignores_rng": dict(
        answer_cell=F_ + "answer",
        fails={F_ + "reproducible"},
        source=_UOUT.format(**{**_UOUT_OK, "rng": "pass", "noise": "np.random.uniform(-beta, beta, size=x.shape)"})),
    # The variance of U(-beta, beta) taken as beta^2 / 12 (that of U(0, beta) or of width beta).
    "uout_twelfth": dict(
        answer_cell=U_ + "answer",
        fails={U_ + "zero_mean", U_ + "nonzero_mean"},
        source='''
def uout_variance_shift(beta, mean=0.0, var=1.0):
    s2 = np.asarray(beta, dtype=float) ** 2 / 12.0
    return var / (var + s2 * (mean**2 + var))
'''),
    # The neuron's mean ignored: 3 / (3 + beta^2) for every mean.
    "uout_mean_term_dropped": dict(
        answer_cell=U_ + "answer",
        fails={U_ + "nonzero_mean"},
        source='''
def uout_variance_shift(beta, mean=0.0, var=1.0):
    s2 = np.asarray(beta, dtype=float) ** 2 / 3.0
    return var / (var + s2 * var)
'''),
    # A fresh sample for the test pass: the ratio picks up the sampling error of two samples.
    "simulate_fresh_x": dict(
        answer_cell=S_ + "answer",
        fails={S_ + "exact_ratio", S_ + "input_draw"},
        source=_SIMULATE.format(draw="mean + np.sqrt(var) * rng.standard_normal(n)",
                                x_test="mean + np.sqrt(var) * rng.standard_normal(n)",
                                ratio="np.var(test) / np.var(train)")),
    # Var_train / Var_test.
    "simulate_train_over_test": dict(
        answer_cell=S_ + "answer",
        fails={S_ + "exact_ratio", S_ + "dropout_noise"},
        source=_SIMULATE.format(draw="mean + np.sqrt(var) * rng.standard_normal(n)", x_test="x",
                                ratio="np.var(train) / np.var(test)")),
    # numpy's normal() takes the standard deviation: passing var draws x with variance var^2.
    "simulate_std_is_var": dict(
        answer_cell=S_ + "answer",
        fails={S_ + "input_draw", S_ + "dropout_noise"},
        source=_SIMULATE.format(draw="rng.normal(mean, var, size=n)", x_test="x",
                                ratio="np.var(test) / np.var(train)")),
    # Measured without switching to eval mode: dropout stays on, BN normalises with batch
    # statistics and overwrites its running statistics while being measured.
    "bn_train_mode": dict(
        answer_cell=B_ + "answer",
        fails={B_ + "mlp", B_ + "cnn", B_ + "leaves_model_unchanged"},
        source=_BN.format(**{**_BN_OK, "mode": "pass"})),
    # Only real_var / running_var: below 1 wherever BN's running variance is too large.
    "bn_one_sided": dict(
        answer_cell=B_ + "answer",
        fails={B_ + "mlp", B_ + "cnn"},
        source=_BN.format(**{**_BN_OK, "metric": "(real / running)"})),
    # The biased variance of the inputs (divide by the count, not count - 1).
    "bn_biased_variance": dict(
        answer_cell=B_ + "answer",
        fails={B_ + "mlp", B_ + "cnn"},
        source=_BN.format(**{**_BN_OK, "correction": 0})),
    # model.train() at the end: a module that was in eval mode comes back in training mode.
    "bn_mode_not_restored": dict(
        answer_cell=B_ + "answer",
        fails={B_ + "leaves_model_unchanged"},
        source=_BN.format(**{**_BN_OK, "restore": "model.train()"})),
}

# Submissions graded end to end by real nbgrader (kernel starts are the cost, so a few).
# The first also has every visible test cell replaced by `pass`; the last must make the
# release command refuse.
E2E = ("simulate_fresh_x", "dropout_mean_term_dropped", "bn_one_sided")
