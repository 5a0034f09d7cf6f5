"""Typical student bugs in the batchnorm exercise, as source text and as functions.

Each entry is complete numpy code (independent of the reference's helpers) that redefines one
graded function, plus the test cells that must fail because of it; every other cell must
keep its points. The unit tests call the functions directly; the end-to-end tests append the
source to the student's answer cell, where it replaces the reference definition.
"""
from __future__ import annotations

import numpy as np

BUGS = {
    # Normalising with the unbiased variance (divide by m - 1): the output is off by a factor
    # sqrt((m - 1) / m) and the cached variance is too large.
    "unbiased_variance": dict(
        answer_cell="batchnorm_batchnorm_forward_answer",
        fails={"batchnorm_batchnorm_forward_torch_2d", "batchnorm_batchnorm_forward_torch_4d",
               "batchnorm_batchnorm_forward_standardizes", "batchnorm_batchnorm_forward_cache"},
        source='''
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, ddof=1, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * inv_std
    out = gamma.reshape(shape) * xhat + beta.reshape(shape)
    cache = {"xhat": xhat, "gamma": gamma, "inv_std": inv_std, "m": x.size // x.shape[1],
             "mean": mean.reshape(-1), "var": var.reshape(-1)}
    return out, cache
'''),
    # Statistics over the batch axis only: right for (N, D), wrong for images, where every
    # pixel position gets its own statistics instead of one per channel.
    "batch_axis_only": dict(
        answer_cell="batchnorm_batchnorm_forward_answer",
        fails={"batchnorm_batchnorm_forward_torch_4d", "batchnorm_batchnorm_forward_cache"},
        source='''
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=0, keepdims=True)
    var = x.var(axis=0, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * inv_std
    out = gamma.reshape(shape) * xhat + beta.reshape(shape)
    cache = {"xhat": xhat, "gamma": gamma, "inv_std": inv_std, "m": x.shape[0],
             "mean": mean.reshape(-1), "var": var.reshape(-1)}
    return out, cache
'''),
    # The backward pass without the mean term (- sum(dout)): dgamma and dbeta stay right.
    "backward_without_mean_term": dict(
        answer_cell="batchnorm_batchnorm_backward_answer",
        fails={"batchnorm_batchnorm_backward_finite_difference", "batchnorm_batchnorm_backward_autograd",
               "batchnorm_batchnorm_backward_dx_sums_to_zero"},
        source='''
def batchnorm_backward(dout, cache):
    xhat, m = cache["xhat"], cache["m"]
    axes = (0,) + tuple(range(2, xhat.ndim))
    shape = (1, xhat.shape[1]) + (1,) * (xhat.ndim - 2)
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    scale = cache["gamma"].reshape(shape) * cache["inv_std"] / m
    dx = scale * (m * dout - xhat * dgamma.reshape(shape))
    return dx, dgamma, dbeta
'''),
    # Forgetting eps in identity_affine: gamma = std instead of sqrt(var + eps).
    "identity_without_eps": dict(
        answer_cell="batchnorm_identity_affine_answer",
        fails={"batchnorm_identity_affine_recovers_input_2d", "batchnorm_identity_affine_recovers_input_4d",
               "batchnorm_identity_affine_recovers_input_3d"},
        source='''
def identity_affine(x, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    return x.std(axis=axes), x.mean(axis=axes)
'''),
}


# Submissions graded end to end by real nbgrader (kernel starts are the cost, so a few).
# The first also has every visible test cell replaced by `pass`; the last must make the
# release command refuse.
E2E = ("batch_axis_only", "unbiased_variance", "backward_without_mean_term")
