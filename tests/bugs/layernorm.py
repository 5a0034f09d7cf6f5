"""Typical student bugs in the layernorm exercise, as source text and as functions.

Each entry is complete numpy code (independent of the reference's helpers) that redefines one
graded function, plus the test cells that must fail because of it; every other cell must
keep its points. The unit tests call the functions directly; the end-to-end tests append the
source to the student's answer cell, where it replaces the reference definition.
"""
from __future__ import annotations

LN = "layernorm_layernorm_forward_"
LB = "layernorm_layernorm_backward_"
GN = "layernorm_groupnorm_forward_"
RN = "layernorm_rmsnorm_forward_"

BUGS = {
    # Batch norm by mistake: each feature normalised over the batch axis. Every sample's
    # output then depends on the rest of the batch, and a batch of one gives beta.
    "layernorm_over_batch_axis": dict(
        answer_cell="layernorm_layernorm_forward_answer",
        fails={LN + "torch_2d", LN + "torch_nd", LN + "standardizes", LN + "per_sample", LN + "cache"},
        source='''
def layernorm_forward(x, gamma, beta, normalized_ndim=1, eps=1e-5):
    axes = tuple(range(x.ndim - normalized_ndim, x.ndim))
    mu = x.mean(axis=0, keepdims=True)
    var = x.var(axis=0, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (x - mu) * inv_std
    return gamma * xhat + beta, (xhat, inv_std, gamma, axes)
'''),
    # Normalising with the unbiased variance (divide by m - 1): off by sqrt((m - 1) / m).
    "layernorm_unbiased_variance": dict(
        answer_cell="layernorm_layernorm_forward_answer",
        fails={LN + "torch_2d", LN + "torch_nd", LN + "standardizes", LN + "cache"},
        source='''
def layernorm_forward(x, gamma, beta, normalized_ndim=1, eps=1e-5):
    axes = tuple(range(x.ndim - normalized_ndim, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, ddof=1, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (x - mu) * inv_std
    return gamma * xhat + beta, (xhat, inv_std, gamma, axes)
'''),
    # Statistics over the last axis only, whatever normalized_ndim says: right for the usual
    # (N, D) case, wrong as soon as more than one axis is normalised.
    "layernorm_last_axis_only": dict(
        answer_cell="layernorm_layernorm_forward_answer",
        fails={LN + "torch_nd", LN + "cache"},
        source='''
def layernorm_forward(x, gamma, beta, normalized_ndim=1, eps=1e-5):
    axes = tuple(range(x.ndim - normalized_ndim, x.ndim))
    mu = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (x - mu) * inv_std
    return gamma * xhat + beta, (xhat, inv_std, gamma, axes)
'''),
    # The backward pass without the mean term (- mean(dxhat)): dx no longer sums to zero.
    "backward_without_mean_term": dict(
        answer_cell="layernorm_layernorm_backward_answer",
        fails={LB + "finite_difference", LB + "autograd", LB + "dx_sums_to_zero"},
        source='''
def layernorm_backward(dout, cache):
    xhat, inv_std, gamma, axes = cache
    leading = tuple(range(xhat.ndim - len(axes)))
    dbeta = dout.sum(axis=leading)
    dgamma = (dout * xhat).sum(axis=leading)
    dxhat = dout * gamma
    dx = inv_std * (dxhat - xhat * np.mean(dxhat * xhat, axis=axes, keepdims=True))
    return dx, dgamma, dbeta
'''),
    # The backward pass without the variance term (- xhat * mean(dxhat * xhat)): it still
    # sums to zero per sample, so only the gradient comparisons catch it.
    "backward_without_variance_term": dict(
        answer_cell="layernorm_layernorm_backward_answer",
        fails={LB + "finite_difference", LB + "autograd"},
        source='''
def layernorm_backward(dout, cache):
    xhat, inv_std, gamma, axes = cache
    leading = tuple(range(xhat.ndim - len(axes)))
    dbeta = dout.sum(axis=leading)
    dgamma = (dout * xhat).sum(axis=leading)
    dxhat = dout * gamma
    dx = inv_std * (dxhat - dxhat.mean(axis=axes, keepdims=True))
    return dx, dgamma, dbeta
'''),
    # dgamma and dbeta summed over the first axis only: right for (N, D), wrong shape as soon
    # as there are two leading axes (a batch of sequences).
    "param_grads_over_first_axis": dict(
        answer_cell="layernorm_layernorm_backward_answer",
        fails={LB + "param_grads"},
        source='''
def layernorm_backward(dout, cache):
    xhat, inv_std, gamma, axes = cache
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    dx = inv_std * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                    - xhat * np.mean(dxhat * xhat, axis=axes, keepdims=True))
    return dx, dgamma, dbeta
'''),
    # Groups made of interleaved channels (c, c + G, c + 2G, ...) instead of consecutive ones:
    # right with one group and with C groups, wrong in between.
    "groupnorm_interleaved_channels": dict(
        answer_cell="layernorm_groupnorm_forward_answer",
        fails={GN + "torch", GN + "consecutive_groups"},
        source='''
def groupnorm_forward(x, num_groups, gamma, beta, eps=1e-5):
    n, c = x.shape[:2]
    xg = x.reshape((n, c // num_groups, num_groups) + x.shape[2:])
    axes = (1,) + tuple(range(3, xg.ndim))
    mu = xg.mean(axis=axes, keepdims=True)
    var = xg.var(axis=axes, keepdims=True)
    xhat = ((xg - mu) / np.sqrt(var + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return gamma.reshape(shape) * xhat + beta.reshape(shape)
'''),
    # Every channel normalised on its own (instance norm), whatever num_groups says.
    "groupnorm_ignores_groups": dict(
        answer_cell="layernorm_groupnorm_forward_answer",
        fails={GN + "torch", GN + "one_group"},
        source='''
def groupnorm_forward(x, num_groups, gamma, beta, eps=1e-5):
    axes = tuple(range(2, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    return gamma.reshape(shape) * xhat + beta.reshape(shape)
'''),
    # RMSNorm that subtracts the row mean first: that is layer norm without beta.
    "rmsnorm_subtracts_mean": dict(
        answer_cell="layernorm_rmsnorm_forward_answer",
        fails={RN + "torch", RN + "rescales_rows"},
        source='''
def rmsnorm_forward(x, weight, eps=1e-6):
    xc = x - x.mean(axis=-1, keepdims=True)
    return weight * xc / np.sqrt(np.mean(xc ** 2, axis=-1, keepdims=True) + eps)
'''),
    # eps added to the RMS instead of to the mean square: harmless for large rows, wrong as
    # soon as the mean square is comparable with eps.
    "rmsnorm_eps_outside_sqrt": dict(
        answer_cell="layernorm_rmsnorm_forward_answer",
        fails={RN + "torch", RN + "eps"},
        source='''
def rmsnorm_forward(x, weight, eps=1e-6):
    return weight * x / (np.sqrt(np.mean(x ** 2, axis=-1, keepdims=True)) + eps)
'''),
}


# Submissions graded end to end by real nbgrader (kernel starts are the cost, so a few).
# The first also has every visible test cell replaced by `pass`; the last must make the
# release command refuse.
E2E = ("layernorm_over_batch_axis", "groupnorm_interleaved_channels", "backward_without_mean_term")
