"""Dropout: inverted (what frameworks do), vanilla (the original paper's rule) and Gaussian.

Convention (PyTorch): ``p`` is the probability of **dropping** a unit; each unit is kept
with probability ``q = 1 - p``. Srivastava et al. (2014) and Li et al. (2019) write ``p``
for the retain probability instead. See book/dropout.md.
"""
from __future__ import annotations

import numpy as np

from solutions._validate import drop_probability, float_array, generator


def _training_flag(training) -> bool:
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be True or False, got {training!r}")
    return bool(training)


def _inputs(x, p, training, rng):
    """Validate the arguments shared by the forward functions, all up front."""
    x = float_array(x, "x").astype(np.float64, copy=False)
    return x, drop_probability(p), _training_flag(training), generator(rng)


def _keep_mask(shape, p: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean keep-mask of ``shape`` drawn from ``rng``: each entry is True (kept) with
    probability ``1 - p``, independently; ``p = 0`` keeps every entry."""
    # random() lies in [0, 1), so p = 0 keeps everything and the keep rate is exactly 1 - p.
    return rng.random(shape) >= p


def dropout_forward(x, p, training=True, rng=None):
    """Inverted dropout, the behaviour of ``nn.Dropout(p)``.

    In training each element is kept with probability ``1 - p`` and the
    survivors are divided by ``1 - p``, so ``E[out] = x`` and nothing needs
    to change at test time; in evaluation the input passes through unchanged.

    Parameters
    ----------
    x : float array of any shape.
    p : drop probability, 0 <= p < 1. ``p = 0`` returns ``x`` exactly.
    training : bool.
    rng : None, an int seed or a ``numpy.random.Generator``.

    Returns
    -------
    out : float64 array of the shape of ``x``: ``x * mask / (1 - p)`` in
        training, a copy of ``x`` in evaluation.
    mask : boolean keep-mask of the shape of ``x`` (True = kept) in
        training, ``None`` in evaluation; pass it to
        :func:`dropout_backward`.
    """
    x, p, training, rng = _inputs(x, p, training, rng)
    if not training:
        return x.copy(), None
    mask = _keep_mask(x.shape, p, rng)
    return x * mask / (1.0 - p), mask


def dropout_backward(dout, mask, p):
    """Backward pass of :func:`dropout_forward`: the gradient of
    ``sum(out * dout)`` with respect to ``x``, for the mask that the forward
    pass drew.

    Parameters
    ----------
    dout : float array, the upstream gradient, of the shape of the output.
    mask : the boolean keep-mask returned by :func:`dropout_forward`, or
        ``None`` (the forward pass ran in evaluation mode, which is the
        identity: ``dx = dout``).
    p : the drop probability used in the forward pass.

    Returns
    -------
    dx : float64 array of the shape of ``dout``.
    """
    dout = float_array(dout, "dout").astype(np.float64, copy=False)
    p = drop_probability(p)
    if mask is None:
        return dout.copy()
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise TypeError("mask must be the boolean keep-mask from the "
                        f"forward pass, got dtype {mask.dtype}")
    if mask.shape != dout.shape:
        raise ValueError(f"mask must have the shape of dout {dout.shape}, "
                         f"got {mask.shape}")
    return dout * mask / (1.0 - p)


def vanilla_dropout_forward(x, p, training=True, rng=None):
    """Dropout as in Srivastava et al. (2014): no rescaling in training,
    scale at test time.

    In training each element is kept with probability ``q = 1 - p`` and left
    unscaled, so ``E[out] = q * x``; at test time every unit is present and
    the output is multiplied by ``q`` to match that expectation (the paper
    scales the outgoing weights by ``q``). Forgetting the test-time factor
    makes test activations ``1 / q`` times too large.

    Parameters
    ----------
    x : float array of any shape.
    p : drop probability, 0 <= p < 1.
    training : bool.
    rng : None, an int seed or a ``numpy.random.Generator``.

    Returns
    -------
    out : float64 array, ``x * mask`` in training and ``x * (1 - p)`` in
        evaluation.
    mask : boolean keep-mask in training, ``None`` in evaluation.
    """
    x, p, training, rng = _inputs(x, p, training, rng)
    if not training:
        return x * (1.0 - p), None
    mask = _keep_mask(x.shape, p, rng)
    return x * mask, mask


def gaussian_dropout_forward(x, p, training=True, rng=None):
    """Gaussian dropout: multiplicative noise with the mean and variance of
    inverted dropout.

    In training ``out = x * noise`` with ``noise ~ N(1, p / (1 - p))``, the
    variance of the inverted-dropout multiplier ``mask / (1 - p)``
    (Srivastava et al. 2014, section 10; Keras ``GaussianDropout(rate=p)``);
    at test time the identity.

    Parameters
    ----------
    x : float array of any shape.
    p : drop probability, 0 <= p < 1, which sets the noise variance.
    training : bool.
    rng : None, an int seed or a ``numpy.random.Generator``.

    Returns
    -------
    out : float64 array of the shape of ``x``.
    noise : the multiplier of the shape of ``x`` in training
        (``dx = dout * noise``), ``None`` in evaluation.
    """
    x, p, training, rng = _inputs(x, p, training, rng)
    if not training:
        return x.copy(), None
    noise = 1.0 + np.sqrt(p / (1.0 - p)) * rng.standard_normal(x.shape)
    return x * noise, noise
