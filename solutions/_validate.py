"""Input checks shared by the reference solutions.

Every public function validates its arguments up front so that a student or an instructor
sees one sentence naming the problem instead of a broadcasting error from deep inside numpy.
"""
from __future__ import annotations

import numbers

import numpy as np


def float_array(x, name: str, *, min_ndim: int = 0, ndim: int | None = None) -> np.ndarray:
    """Return ``x`` as a floating-point ndarray, or raise a clear error.

    Integer, boolean, complex and object inputs are refused rather than silently cast:
    normalising integers is nearly always a bug upstream (e.g. an image left as uint8).
    """
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {arr.shape}")
    return arr


def vector(v, name: str, size: int) -> np.ndarray:
    """Return a per-feature parameter (gamma, beta, running stats) of shape ``(size,)``."""
    arr = float_array(v, name)
    if arr.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},) to match the input, got {arr.shape}")
    return arr


def same_shape(a, name: str, shape: tuple) -> np.ndarray:
    """Return ``a`` (e.g. an upstream gradient) after checking it has ``shape``."""
    arr = float_array(a, name)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    return arr


def positive(value, name: str) -> float:
    """Return a strictly positive real number (eps, a variance)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def drop_probability(p) -> float:
    """Return the drop probability ``p`` after checking 0 <= p < 1 (PyTorch's convention)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
        raise ValueError(
            f"p is the probability of dropping a unit and must satisfy 0 <= p < 1, got {p!r}"
        )
    return float(p)


def generator(rng) -> np.random.Generator:
    """Return a numpy Generator from ``None``, a seed or a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, numbers.Integral):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be None, an int seed or a numpy Generator, got {type(rng).__name__}")
