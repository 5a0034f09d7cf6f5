"""Batch normalization between training and inference: running statistics,
eval mode, exact population statistics ("precise BN"), recalibrating a torch
model, and folding BN into the preceding layer.

Conventions (PyTorch's ``nn.BatchNorm1d/2d``):

* ``running = (1 - momentum) * running + momentum * batch_stat`` with
  ``momentum = 0.1``; ``momentum=None`` uses the factor
  ``1 / num_batches_tracked`` (a cumulative average).
* The training output uses the **biased** batch variance; ``running_var`` is
  updated with the **unbiased** one (divide by ``m - 1``, ``m`` values per
  channel).
* Initial state: ``running_mean = 0``, ``running_var = 1``,
  ``num_batches_tracked = 0``.

Numpy functions compute in float64. See book/bn_inference.md.
"""
from __future__ import annotations

import numbers

import numpy as np

from solutions._validate import float_array, positive, vector
from solutions.batchnorm import (
    _channel_shape,
    _reduce_axes,
    batchnorm_forward,
)

__all__ = [
    "batchnorm_train_step",
    "batchnorm_eval",
    "population_statistics",
    "recalibrate_batchnorm",
    "fold_batchnorm",
]


def _momentum(momentum) -> float | None:
    if momentum is None:
        return None
    if (
        isinstance(momentum, bool)
        or not isinstance(momentum, numbers.Real)
        or not 0 <= momentum <= 1
    ):
        raise ValueError(
            f"momentum must be None or a number in [0, 1], got {momentum!r}"
        )
    return float(momentum)


def _running_var(v, size: int) -> np.ndarray:
    arr = vector(v, "running_var", size).astype(np.float64, copy=False)
    if np.any(arr < 0):
        raise ValueError("running_var must be non-negative")
    return arr


def batchnorm_train_step(
    x,
    gamma,
    beta,
    running_mean,
    running_var,
    num_batches_tracked,
    momentum=0.1,
    eps: float = 1e-5,
):
    """One training-mode step of ``nn.BatchNorm1d/2d``: the output and the
    updated running statistics.

    Args:
        x: float array ``(N, D)`` or ``(N, C, *spatial)``.
        gamma, beta, running_mean, running_var: shape ``(C,)``.
        num_batches_tracked: non-negative int, the number of batches seen so
            far.
        momentum: weight of the new batch statistic in ``[0, 1]``, or
            ``None`` for the cumulative average (factor
            ``1 / num_batches_tracked`` after incrementing).
        eps: positive constant added to the variance.

    Returns:
        ``(out, running_mean, running_var, num_batches_tracked)``: ``out`` is
        the output of :func:`batchnorm_forward` (biased
        variance); the running mean and variance are new arrays updated with
        the batch mean and the **unbiased** batch variance;
        ``num_batches_tracked`` is incremented by one. Inputs are not
        mutated.
    """
    out, cache = batchnorm_forward(x, gamma, beta, eps)
    channels, m = cache["mean"].shape[0], cache["m"]
    running_mean = vector(running_mean, "running_mean", channels)
    running_mean = running_mean.astype(np.float64, copy=False)
    running_var = _running_var(running_var, channels)
    if (
        isinstance(num_batches_tracked, bool)
        or not isinstance(num_batches_tracked, numbers.Integral)
        or num_batches_tracked < 0
    ):
        raise ValueError(
            "num_batches_tracked must be a non-negative int, "
            f"got {num_batches_tracked!r}"
        )
    momentum = _momentum(momentum)

    num_batches_tracked = int(num_batches_tracked) + 1
    factor = 1.0 / num_batches_tracked if momentum is None else momentum
    unbiased_var = cache["var"] * (m / (m - 1))
    # Same expression order as ATen's CPU update; new arrays, so the
    # caller's are untouched.
    new_mean = factor * cache["mean"] + (1 - factor) * running_mean
    new_var = factor * unbiased_var + (1 - factor) * running_var
    return out, new_mean, new_var, num_batches_tracked


def batchnorm_eval(
    x, gamma, beta, running_mean, running_var, eps: float = 1e-5
):
    """Eval-mode batch normalization: a fixed per-channel affine map.

    Args:
        x: float array ``(N, D)`` or ``(N, C, *spatial)``; any batch size,
            including 1.
        gamma, beta, running_mean, running_var: shape ``(C,)``.
        eps: positive constant added to the variance.

    Returns:
        ``gamma * (x - running_mean) / sqrt(running_var + eps) + beta``, of
        the shape of ``x``.
    """
    x = float_array(x, "x", min_ndim=2).astype(np.float64, copy=False)
    channels = x.shape[1]
    gamma = vector(gamma, "gamma", channels)
    beta = vector(beta, "beta", channels)
    running_mean = vector(running_mean, "running_mean", channels)
    running_var = _running_var(running_var, channels)
    eps = positive(eps, "eps")
    shape = _channel_shape(x.ndim, channels)
    scale = gamma / np.sqrt(running_var + eps)
    centred = x - running_mean.reshape(shape)
    return centred * scale.reshape(shape) + beta.reshape(shape)


def population_statistics(batches):
    """Exact per-channel mean and unbiased variance of a whole dataset, in
    one pass.

    Args:
        batches: an iterable (a list, a generator, a data loader) of float
            arrays of shape ``(N_i, C)`` or ``(N_i, C, *spatial)`` with the
            same ``C``; batch sizes and spatial sizes may differ. Empty
            batches contribute nothing.

    Returns:
        ``(mean, var)`` of shape ``(C,)``: the mean and the **unbiased**
        variance of every value of each channel across all batches, as if
        they were concatenated.

    The data are read once and not stored. Unlike the running sum of squares
    (``E[x^2] - E[x]^2``), the result stays accurate when the data sit on a
    large offset (e.g. ``1e8 + N(0, 1)``); the book derives the merge rule.
    """
    count = 0
    mean = m2 = None
    channels = None
    seen = False
    for i, batch in enumerate(batches):
        seen = True
        b = float_array(batch, f"batch {i}", min_ndim=2)
        b = b.astype(np.float64, copy=False)
        if channels is None:
            channels = b.shape[1]
        elif b.shape[1] != channels:
            raise ValueError(
                f"batch {i} has {b.shape[1]} channels on axis 1, "
                f"earlier batches have {channels}"
            )
        n_b = b.size // channels if channels else 0
        if n_b == 0:
            continue
        axes = _reduce_axes(b.ndim)
        mean_b = b.mean(axis=axes)
        centred = b - mean_b.reshape(_channel_shape(b.ndim, channels))
        m2_b = np.square(centred).sum(axis=axes)
        if count == 0:
            count, mean, m2 = n_b, mean_b, m2_b
            continue
        total = count + n_b
        delta = mean_b - mean
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + np.square(delta) * (count * n_b / total)
        count = total
    if not seen:
        raise ValueError("batches is empty: need at least one batch")
    if count < 2:
        raise ValueError(
            "need at least 2 values per channel for an unbiased variance, "
            f"got {count}"
        )
    return mean, m2 / (count - 1)


def _bn_layers(model):
    from torch.nn.modules.batchnorm import _BatchNorm

    return [
        mod
        for mod in model.modules()
        if isinstance(mod, _BatchNorm) and mod.track_running_stats
    ]


def recalibrate_batchnorm(model, batches):
    """Re-estimate every BN layer's running statistics from data, with
    everything else in eval mode.

    "Precise BN" and the variance-shift remedy: each ``_BatchNorm`` layer
    with ``track_running_stats`` has its running statistics reset and its
    momentum set to ``None``; only those layers are put in train mode
    (dropout and every other layer stay in eval mode), and the data are run
    forward under ``torch.no_grad()``. Afterwards each BN layer holds the
    plain mean of its per-batch means and of its per-batch unbiased variances
    (the same estimator as ``torch.optim.swa_utils.update_bn``, which however
    runs the whole model, dropout included, in train mode).

    Args:
        model: a ``torch.nn.Module``.
        batches: an iterable of input tensors, or of ``(input, target, ...)``
            tuples/lists whose first element is the input (like
            ``update_bn``); inputs must already be on the model's device.

    Returns:
        ``model``, updated in place. Every module's ``training`` flag and
        every BN layer's ``momentum`` are restored to what they were. If
        ``batches`` is empty or a forward pass fails, the original running
        statistics are restored before the error is raised.

    Raises:
        TypeError: ``model`` is not a ``torch.nn.Module`` or a batch is not a
            tensor.
        ValueError: the model has no BN layer with running statistics
            (``update_bn`` silently does nothing here; a recalibration that
            cannot happen is reported), or ``batches`` is empty.
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__}"
        )
    bns = _bn_layers(model)
    if not bns:
        raise ValueError(
            "model has no BatchNorm layer with running statistics "
            "to recalibrate"
        )

    training = {mod: mod.training for mod in model.modules()}
    momenta = {bn: bn.momentum for bn in bns}
    saved = {
        bn: (
            bn.running_mean.clone(),
            bn.running_var.clone(),
            bn.num_batches_tracked.clone(),
        )
        for bn in bns
    }
    ok = False
    try:
        model.eval()
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        seen = False
        with torch.no_grad():
            for i, batch in enumerate(batches):
                if isinstance(batch, (tuple, list)):
                    if not batch:
                        kind = type(batch).__name__
                        raise TypeError(f"batch {i} is an empty {kind}")
                    batch = batch[0]
                if not isinstance(batch, torch.Tensor):
                    raise TypeError(
                        f"batch {i} must be a tensor or a tuple/list whose "
                        "first element is a tensor, "
                        f"got {type(batch).__name__}"
                    )
                model(batch)
                seen = True
        if not seen:
            raise ValueError(
                "batches is empty: nothing to estimate the statistics from"
            )
        ok = True
    finally:
        for bn, momentum in momenta.items():
            bn.momentum = momentum
        # Per module: model.train(flag) would overwrite submodules that
        # were in another mode.
        for mod, flag in training.items():
            mod.training = flag
        if not ok:
            with torch.no_grad():
                for bn, (mean, var, count) in saved.items():
                    bn.running_mean.copy_(mean)
                    bn.running_var.copy_(var)
                    bn.num_batches_tracked.copy_(count)
    return model


def fold_batchnorm(
    weight, bias, gamma, beta, running_mean, running_var, eps: float = 1e-5
):
    """Fold an eval-mode BN into the preceding Linear or convolution layer.

    Args:
        weight: float array with output channels first: ``(out, in)`` for
            Linear, ``(out, in, kh, kw)`` for Conv2d (any ``(out, ...)``
            convolution works).
        bias: shape ``(out,)``, or ``None`` for a layer without bias (treated
            as zeros).
        gamma, beta, running_mean, running_var: the BN parameters, shape
            ``(out,)``.
        eps: the BN layer's ``eps``.

    Returns:
        ``(weight, bias)``, float64 arrays of shapes ``weight.shape`` and
        ``(out,)``: the single layer that computes what the layer followed by
        BN in eval mode computes.
    """
    weight = float_array(weight, "weight", min_ndim=2)
    weight = weight.astype(np.float64, copy=False)
    out = weight.shape[0]
    if bias is None:
        bias = np.zeros(out)
    bias = vector(bias, "bias", out)
    gamma = vector(gamma, "gamma", out)
    beta = vector(beta, "beta", out)
    running_mean = vector(running_mean, "running_mean", out)
    running_var = _running_var(running_var, out)
    eps = positive(eps, "eps")
    scale = gamma / np.sqrt(running_var + eps)
    per_row = scale.reshape((out,) + (1,) * (weight.ndim - 1))
    new_weight = weight * per_row
    new_bias = (bias - running_mean) * scale + beta
    return new_weight, new_bias.astype(np.float64, copy=False)
