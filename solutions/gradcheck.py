"""Gradient-checking tools used by the tests, the book and the exercises.

``rel_error`` is the measure CS231n and the course use: the largest elementwise
``|a - b| / max(1e-8, |a| + |b|)``. ``numerical_gradient`` is a centred finite difference
of ``sum(f(x) * dout)`` with respect to ``x``, i.e. the vector-Jacobian product a backward
pass must return.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def rel_error(a, b) -> float:
    """Largest elementwise relative error between two arrays of the same shape."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare arrays of shapes {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def numerical_gradient(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, dout, h: float = 1e-5) -> np.ndarray:
    """Centred finite-difference estimate of d sum(f(x) * dout) / dx.

    ``x`` is perturbed in place one element at a time and restored afterwards, so ``f``
    may close over it. The loop is over elements by necessity; this is a checker,
    not a solution.
    """
    x = np.asarray(x)
    dout = np.asarray(dout, dtype=np.float64)
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    for _ in it:
        idx = it.multi_index
        old = x[idx]
        x[idx] = old + h
        plus = np.sum(np.asarray(f(x)) * dout)
        x[idx] = old - h
        minus = np.sum(np.asarray(f(x)) * dout)
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * h)
    return grad
