"""Batch normalization in training mode: forward, backward and the identity
parameters.

Conventions (PyTorch's, see ``F.batch_norm(training=True)``):

* ``x`` has shape ``(N, D)`` or ``(N, C, *spatial)``; axis 1 holds the
  features/channels.
* Statistics are per channel over every other axis, so each channel sees
  ``m = N * prod(spatial)`` values.
* The output is normalised with the **biased** variance (divide by ``m``).
* ``gamma`` and ``beta`` have shape ``(C,)``; ``eps`` defaults to 1e-5.

Everything is computed in float64. See book/batchnorm.md.
"""
from __future__ import annotations

import numpy as np

from solutions._validate import float_array, positive, same_shape, vector

__all__ = ["batchnorm_forward", "batchnorm_backward", "identity_affine"]


def _reduce_axes(ndim: int) -> tuple[int, ...]:
    """Every axis except the channel axis 1."""
    return (0,) + tuple(range(2, ndim))


def _channel_shape(ndim: int, channels: int) -> tuple[int, ...]:
    """Shape ``(1, C, 1, ..., 1)``: broadcasts a per-channel vector against
    ``x``."""
    return (1, channels) + (1,) * (ndim - 2)


def _training_input(x) -> tuple[np.ndarray, int, int]:
    """Validate a training-mode input; return it as float64 with ``C`` and
    ``m``."""
    x = float_array(x, "x", min_ndim=2).astype(np.float64, copy=False)
    channels = x.shape[1]
    if channels == 0:
        raise ValueError(
            "x must have at least one channel on axis 1, "
            f"got shape {x.shape}"
        )
    m = x.size // channels
    if m < 2:
        # Same refusal as torch: one value has zero variance and xhat would
        # be 0 everywhere.
        raise ValueError(
            "Expected more than 1 value per channel when training: x of "
            f"shape {x.shape} gives m = {m} value(s) per channel "
            "(N times the spatial size)"
        )
    return x, channels, m


def _batch_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and biased variance, broadcastable against ``x``.

    Two passes (mean, then mean squared deviation) rather than
    E[x^2] - E[x]^2, which cancels catastrophically when the mean is large
    compared with the spread.
    """
    axes = _reduce_axes(x.ndim)
    mean = x.mean(axis=axes, keepdims=True)
    var = np.square(x - mean).mean(axis=axes, keepdims=True)
    return mean, var


def batchnorm_forward(x, gamma, beta, eps: float = 1e-5):
    """Training-mode batch normalization.

    Args:
        x: float array of shape ``(N, D)`` or ``(N, C, *spatial)``.
        gamma, beta: scale and shift, shape ``(C,)``.
        eps: positive constant added to the variance.

    Returns:
        ``(out, cache)``: ``out`` has the shape of ``x``,
        ``out = gamma * (x - mean) / sqrt(var + eps) + beta`` with the
        per-channel mean and **biased** variance over the
        ``m = N * prod(spatial)`` values of each channel. ``cache`` is a dict
        for :func:`batchnorm_backward` holding ``xhat``, ``gamma``,
        ``inv_std`` (broadcastable), ``m``, and the batch ``mean`` and biased
        ``var`` (shape ``(C,)``).

    Raises ``ValueError`` when a channel has a single value (``m == 1``),
    like torch.
    """
    x, channels, m = _training_input(x)
    gamma = vector(gamma, "gamma", channels).astype(np.float64, copy=False)
    beta = vector(beta, "beta", channels).astype(np.float64, copy=False)
    eps = positive(eps, "eps")

    mean, var = _batch_statistics(x)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * inv_std
    shape = _channel_shape(x.ndim, channels)
    out = gamma.reshape(shape) * xhat + beta.reshape(shape)
    cache = {
        "xhat": xhat,
        "gamma": gamma,
        "inv_std": inv_std,
        "m": m,
        "mean": mean.reshape(channels),
        "var": var.reshape(channels),
    }
    return out, cache


def batchnorm_backward(dout, cache):
    """Backward pass of :func:`batchnorm_forward` in the compact closed form.

    Args:
        dout: upstream gradient, same shape as the forward input.
        cache: the dict returned by :func:`batchnorm_forward`.

    Returns:
        ``(dx, dgamma, dbeta)``: the gradients of the loss with respect to
        ``x``, ``gamma`` and ``beta``, with shapes ``x.shape``, ``(C,)``,
        ``(C,)``. The derivation (through the batch mean and variance, which
        depend on every input) is in the book.
    """
    needed = {"xhat", "gamma", "inv_std", "m"}
    if not isinstance(cache, dict) or not needed <= cache.keys():
        raise TypeError(
            "cache must be the dict returned by batchnorm_forward"
        )
    xhat = cache["xhat"]
    dout = same_shape(dout, "dout", xhat.shape)
    dout = dout.astype(np.float64, copy=False)
    axes = _reduce_axes(xhat.ndim)
    shape = _channel_shape(xhat.ndim, xhat.shape[1])
    m = cache["m"]

    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    scale = cache["gamma"].reshape(shape) * cache["inv_std"] / m
    dx = scale * (
        m * dout - dbeta.reshape(shape) - xhat * dgamma.reshape(shape)
    )
    return dx, dgamma, dbeta


def identity_affine(x, eps: float = 1e-5):
    """Parameters that make training-mode BN the identity on ``x``.

    Args:
        x: float array of shape ``(N, D)`` or ``(N, C, *spatial)`` (at least
            two values per channel, as for :func:`batchnorm_forward`).
        eps: the same ``eps`` the forward pass will use.

    Returns:
        ``(gamma, beta)`` of shape ``(C,)``: ``gamma = sqrt(var + eps)``
        (biased batch variance) and ``beta = mean``, so
        ``batchnorm_forward(x, gamma, beta, eps)`` returns ``x``. This is why
        BN does not restrict what a layer can represent.
    """
    x, channels, _ = _training_input(x)
    eps = positive(eps, "eps")
    mean, var = _batch_statistics(x)
    return np.sqrt(var + eps).reshape(channels), mean.reshape(channels)
