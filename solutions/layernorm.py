"""Layer normalization and its relatives: group, instance and RMS norm.

Where batch norm computes statistics per feature over the batch, layer norm
computes them per sample over the features, so training and inference do
the same computation and no running statistics are needed (Ba, Kiros &
Hinton 2016). Group norm (Wu & He 2018) sits in between: per sample, over
groups of channels. RMSNorm (Zhang & Sennrich 2019) drops the re-centering
and divides by the root mean square only. The backward passes of group
norm and RMSNorm take the forward's inputs and recompute what they need.

Conventions follow PyTorch: ``F.layer_norm`` normalises over the trailing
``normalized_shape`` axes with the biased variance and eps = 1e-5;
``nn.RMSNorm`` takes ``eps`` inside the square root. Any floating-point
input is computed and returned in float64. Lines stay within 77 columns,
the width of a code block in the book, which prints these functions. See
book/layernorm.md.
"""
from __future__ import annotations

import numbers

import numpy as np

from solutions._validate import float_array, positive, same_shape, vector


def _count(value, name: str) -> int:
    """Return a positive integer (an axis count, a number of groups); bools
    are refused."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
            or value < 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def layernorm_forward(x, gamma, beta, normalized_ndim=1, eps=1e-5):
    """Layer normalization over the last ``normalized_ndim`` axes of ``x``.

    Parameters
    ----------
    x : float array of shape (*leading, *normalized_shape)
        ``normalized_shape = x.shape[-normalized_ndim:]``; every index into
        the leading axes (a sample, or a sample and time step) is normalised
        on its own.
    gamma, beta : float arrays of shape ``normalized_shape``
        Elementwise scale and shift.
    normalized_ndim : int, 1 <= normalized_ndim <= x.ndim
    eps : float > 0, added to the biased variance.

    Returns
    -------
    out : array of the shape of ``x``,
        ``gamma * (x - mu) / sqrt(var + eps) + beta`` with mu and var
        (biased) computed over the normalized axes, exactly
        ``F.layer_norm(x, normalized_shape, gamma, beta, eps)``.
    cache : tuple ``(xhat, inv_std, gamma, axes)`` for
        :func:`layernorm_backward`: ``xhat = (x - mu) / sqrt(var + eps)``
        (the shape of ``x``), ``inv_std = 1 / sqrt(var + eps)`` with the
        normalized axes kept as size 1 (shape ``(*leading, 1, ..., 1)``, so
        it broadcasts against ``x``), ``gamma`` as float64, and ``axes`` the
        tuple of normalized axes ``(x.ndim - normalized_ndim, ...,
        x.ndim - 1)``.
    """
    x = float_array(x, "x", min_ndim=1).astype(np.float64, copy=False)
    normalized_ndim = _count(normalized_ndim, "normalized_ndim")
    if normalized_ndim > x.ndim:
        raise ValueError(
            f"normalized_ndim must be at most x.ndim = {x.ndim}, "
            f"got {normalized_ndim}"
        )
    shape = x.shape[x.ndim - normalized_ndim:]
    if 0 in shape:
        raise ValueError(
            f"the normalized axes of x must not be empty, got shape {shape}"
        )
    gamma = same_shape(gamma, "gamma", shape).astype(np.float64, copy=False)
    beta = same_shape(beta, "beta", shape).astype(np.float64, copy=False)
    eps = positive(eps, "eps")

    axes = tuple(range(x.ndim - normalized_ndim, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    xc = x - mu
    # The biased variance, as in F.layer_norm.
    var = np.mean(xc * xc, axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = xc * inv_std
    out = gamma * xhat + beta
    return out, (xhat, inv_std, gamma, axes)


def layernorm_backward(dout, cache):
    """Backward pass of :func:`layernorm_forward`.

    Parameters
    ----------
    dout : float array of the shape of the forward output.
    cache : the tuple ``(xhat, inv_std, gamma, axes)`` returned by
        :func:`layernorm_forward`.

    Returns
    -------
    dx, dgamma, dbeta : the gradients of ``sum(out * dout)`` with respect to
        ``x`` (shape of ``x``), ``gamma`` and ``beta`` (shape
        ``normalized_shape``). The mean and variance of each sample depend on
        all of that sample's values; the derivation is in the book.
    """
    xhat, inv_std, gamma, axes = cache
    dout = same_shape(dout, "dout", xhat.shape)
    dout = dout.astype(np.float64, copy=False)
    leading = tuple(range(xhat.ndim - len(axes)))
    dbeta = dout.sum(axis=leading)
    dgamma = (dout * xhat).sum(axis=leading)
    dxhat = dout * gamma
    dx = inv_std * (
        dxhat
        - dxhat.mean(axis=axes, keepdims=True)
        - xhat * np.mean(dxhat * xhat, axis=axes, keepdims=True)
    )
    return dx, dgamma, dbeta


def groupnorm_forward(x, num_groups, gamma, beta, eps=1e-5):
    """Group normalization, exactly
    ``F.group_norm(x, num_groups, gamma, beta, eps)``.

    Parameters
    ----------
    x : float array of shape (N, C, *spatial)
        The C channels are split into ``num_groups`` consecutive groups of
        C / num_groups channels; each (sample, group) pair is normalised over
        its channels and all spatial positions with the biased variance. One
        group is layer norm over (C, *spatial); C groups is instance norm.
    num_groups : int dividing C.
    gamma, beta : float arrays of shape (C,), per-channel scale and shift.
    eps : float > 0.

    Returns
    -------
    out : array of the shape of ``x``.
    """
    x = float_array(x, "x", min_ndim=2).astype(np.float64, copy=False)
    num_groups = _count(num_groups, "num_groups")
    n, c = x.shape[:2]
    if c % num_groups:
        raise ValueError(
            f"the number of channels C = {c} must be divisible by "
            f"num_groups = {num_groups}"
        )
    spatial = int(np.prod(x.shape[2:], dtype=np.int64))
    group_size = (c // num_groups) * spatial
    if group_size == 0:
        raise ValueError(
            "each group must contain at least one value, "
            f"got x of shape {x.shape}"
        )
    gamma = vector(gamma, "gamma", c).astype(np.float64, copy=False)
    beta = vector(beta, "beta", c).astype(np.float64, copy=False)
    eps = positive(eps, "eps")

    # A group's channels are consecutive: a reshape puts each on a row.
    xg = x.reshape(n, num_groups, group_size)
    xc = xg - xg.mean(axis=2, keepdims=True)
    var = np.mean(xc * xc, axis=2, keepdims=True)
    xhat = (xc / np.sqrt(var + eps)).reshape(x.shape)
    param_shape = (1, c) + (1,) * (x.ndim - 2)
    return gamma.reshape(param_shape) * xhat + beta.reshape(param_shape)


def groupnorm_backward(dout, x, num_groups, gamma, eps=1e-5):
    """Backward pass of :func:`groupnorm_forward`, from the forward's inputs.

    Parameters
    ----------
    dout : float array of the shape of ``x``, the gradient of the loss with
        respect to the forward output.
    x, num_groups, gamma, eps : the inputs of the forward pass, checked as
        it checks them. ``beta`` does not enter the gradients.

    Returns
    -------
    dx, dgamma, dbeta : the gradients of ``sum(out * dout)`` with respect to
        ``x`` (shape of ``x``), ``gamma`` and ``beta`` (shape ``(C,)``).
        Within each (sample, group) it is layer norm's backward pass, with
        ``s`` the group's inverse standard deviation and ``g`` the gradient
        with respect to ``xhat``, both recomputed from ``x``; ``gamma`` and
        ``beta`` are per channel, so their gradients sum over the samples
        and the spatial positions.
    """
    x = float_array(x, "x", min_ndim=2).astype(np.float64, copy=False)
    num_groups = _count(num_groups, "num_groups")
    n, c = x.shape[:2]
    if c % num_groups:
        raise ValueError(
            f"the number of channels C = {c} must be divisible by "
            f"num_groups = {num_groups}"
        )
    spatial = int(np.prod(x.shape[2:], dtype=np.int64))
    group_size = (c // num_groups) * spatial
    if group_size == 0:
        raise ValueError(
            "each group must contain at least one value, "
            f"got x of shape {x.shape}"
        )
    gamma = vector(gamma, "gamma", c).astype(np.float64, copy=False)
    eps = positive(eps, "eps")
    dout = same_shape(dout, "dout", x.shape)
    dout = dout.astype(np.float64, copy=False)

    # One row per (sample, group), as in the forward pass.
    xg = x.reshape(n, num_groups, group_size)
    xc = xg - xg.mean(axis=2, keepdims=True)
    s = 1.0 / np.sqrt(np.mean(xc * xc, axis=2, keepdims=True) + eps)
    xhat = xc * s
    not_channel = (0,) + tuple(range(2, x.ndim))
    dbeta = dout.sum(axis=not_channel)
    dgamma = (dout * xhat.reshape(x.shape)).sum(axis=not_channel)
    param_shape = (1, c) + (1,) * (x.ndim - 2)
    g = (dout * gamma.reshape(param_shape)).reshape(xg.shape)
    dx = s * (
        g
        - g.mean(axis=2, keepdims=True)
        - xhat * np.mean(g * xhat, axis=2, keepdims=True)
    )
    return dx.reshape(x.shape), dgamma, dbeta


def rmsnorm_forward(x, weight, eps=1e-6):
    """RMS normalization over the last axis, exactly
    ``nn.RMSNorm(x.shape[-1:], eps=eps)``.

    ``out = weight * x / sqrt(mean(x ** 2) + eps)``, the mean taken over the
    last axis of each row. There is no re-centering and no shift, so RMSNorm
    equals layer norm (without affine, same eps) only on rows whose mean is
    zero.

    Parameters
    ----------
    x : float array of shape (..., D).
    weight : float array of shape (D,).
    eps : float > 0 (PyTorch's default, eps=None, uses the dtype's machine
        epsilon instead).

    Returns
    -------
    out : array of the shape of ``x``.
    """
    x = float_array(x, "x", min_ndim=1).astype(np.float64, copy=False)
    if x.shape[-1] == 0:
        raise ValueError(
            f"the last axis of x must not be empty, got shape {x.shape}"
        )
    weight = vector(weight, "weight", x.shape[-1])
    weight = weight.astype(np.float64, copy=False)
    eps = positive(eps, "eps")
    rms = np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return weight * (x / rms)


def rmsnorm_backward(dout, x, weight, eps=1e-6):
    """Backward pass of :func:`rmsnorm_forward`, from the forward's inputs.

    Parameters
    ----------
    dout : float array of the shape of ``x``, the gradient of the loss with
        respect to the forward output.
    x, weight, eps : the inputs of the forward pass, checked as it checks
        them.

    Returns
    -------
    dx, dweight : the gradients of ``sum(out * dout)`` with respect to ``x``
        (shape of ``x``) and ``weight`` (shape ``(D,)``). With
        ``s = 1 / sqrt(mean(x ** 2) + eps)`` and ``xhat = x * s`` recomputed
        from ``x`` and ``g = weight * dout``,
        ``dx = s * (g - xhat * mean(g * xhat))`` over the last axis: layer
        norm's backward pass without the ``- mean(g)`` term, since nothing
        was subtracted.
    """
    x = float_array(x, "x", min_ndim=1).astype(np.float64, copy=False)
    if x.shape[-1] == 0:
        raise ValueError(
            f"the last axis of x must not be empty, got shape {x.shape}"
        )
    weight = vector(weight, "weight", x.shape[-1])
    weight = weight.astype(np.float64, copy=False)
    eps = positive(eps, "eps")
    dout = same_shape(dout, "dout", x.shape)
    dout = dout.astype(np.float64, copy=False)

    s = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    xhat = x * s
    dweight = (dout * xhat).reshape(-1, x.shape[-1]).sum(axis=0)
    g = dout * weight
    dx = s * (g - xhat * np.mean(g * xhat, axis=-1, keepdims=True))
    return dx, dweight
