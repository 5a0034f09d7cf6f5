"""Max, average and min pooling over 2-D windows: forward and backward.

Conventions (PyTorch's ``F.max_pool2d`` / ``F.avg_pool2d``):

* ``x`` has shape ``(N, C, H, W)``; every channel of every example is pooled on its own.
* ``kernel_size``, ``stride`` and ``padding`` are an int or a pair ``(rows, cols)``;
  ``stride=None`` means ``stride = kernel_size``. Padding may be at most half the kernel
  (``padding <= kernel_size // 2``), torch's rule, so every window holds an input cell.
* The output has ``floor((H + 2 * padding - kernel) / stride) + 1`` rows (columns alike).
  ``ceil_mode=True`` rounds up instead, allowing one extra, partial window at the end,
  but only if it starts inside the input or the left padding.
* Max pooling pads with ``-inf``; the **first** maximum in row-major window order wins a
  tie, and the backward pass sends the window's whole gradient to that one cell.
  Average pooling pads with zeros; its divisor counts the padding cells
  (``count_include_pad=True``) but never the ``ceil_mode`` overhang beyond the padding.
* Overlapping windows (stride < kernel) add their gradients, so ``sum(dx) == sum(dout)``.

Everything is computed in float64. See book/pooling.md.
"""
from __future__ import annotations

import numbers

import numpy as np

from solutions._validate import float_array, same_shape

__all__ = [
    "maxpool2d_forward",
    "maxpool2d_backward",
    "avgpool2d_forward",
    "avgpool2d_backward",
    "minpool2d_forward",
    "minpool2d_backward",
]


def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    """Return an int or a pair of ints as a ``(rows, cols)`` tuple, each >= ``minimum``."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum for v in pair
    ):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _output_size(size: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """Number of windows along one axis, with torch's ``ceil_mode`` rule."""
    n = (size + 2 * p - k + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (n - 1) * s >= size + p:
        n -= 1  # the last window would start in the right padding: drop it
    return n


def _geometry(x, kernel_size, stride, padding, ceil_mode) -> dict:
    """Validate the arguments shared by every pooling forward; return the window layout."""
    x = float_array(x, "x", ndim=4).astype(np.float64, copy=False)
    k = _pair(kernel_size, "kernel_size", 1)
    s = k if stride is None else _pair(stride, "stride", 1)
    p = _pair(padding, "padding", 0)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be a bool, got {ceil_mode!r}")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"padding {p} must be at most half of kernel_size {k}")
    size = x.shape[2:]
    out = tuple(_output_size(size[a], k[a], s[a], p[a], ceil_mode) for a in range(2))
    if min(out) < 1:
        raise ValueError(
            f"kernel_size {k} is larger than the padded input {size[0] + 2 * p[0]}x"
            f"{size[1] + 2 * p[1]} (input shape {x.shape}, padding {p})"
        )
    return {"x": x, "kernel": k, "stride": s, "padding": p, "out": out}


def _axis_cells(g: dict, a: int, n_in: int) -> list[tuple[int, slice, slice]]:
    """Where each kernel position ``i`` along axis ``a`` lands, for every window at once.

    Returns ``(i, out_slice, in_slice)`` for ``i = 0 .. k-1``: the windows ``o`` in
    ``out_slice`` are those whose cell ``i`` sits inside the input, at the coordinates
    ``o * stride - padding + i`` given by ``in_slice``. Cells in the padding or the
    ``ceil_mode`` overhang are simply left out, so no padded copy of ``x`` is ever made.
    """
    k, s, p, n_out = g["kernel"][a], g["stride"][a], g["padding"][a], g["out"][a]
    cells = []
    for i in range(k):
        lo = max(0, -(-(p - i) // s))  # first window with o * s - p + i >= 0
        hi = min(n_out, (n_in - 1 + p - i) // s + 1)  # past the last with it < n_in
        if hi > lo:
            cells.append((i, slice(lo, hi), slice(lo * s - p + i, (hi - 1) * s - p + i + 1, s)))
    return cells


def _window_cells(g: dict, size: tuple[int, int]):
    """Yield ``(offset, out_index, in_index)`` for each in-bounds kernel cell ``(i, j)``.

    ``offset = i * kw + j`` numbers the cells in row-major window order;
    ``x[in_index]`` holds that cell's value for the windows ``out[out_index]``.
    """
    kw = g["kernel"][1]
    for i, out_rows, in_rows in _axis_cells(g, 0, size[0]):
        for j, out_cols, in_cols in _axis_cells(g, 1, size[1]):
            yield i * kw + j, (..., out_rows, out_cols), (..., in_rows, in_cols)


def _window_starts(g: dict, a: int) -> np.ndarray:
    """Input coordinate of the first (possibly padding) cell of each window along axis ``a``."""
    return np.arange(g["out"][a]) * g["stride"][a] - g["padding"][a]


def maxpool2d_forward(x, kernel_size, stride=None, padding=0,
                      ceil_mode=False):
    """Max pooling that remembers where each maximum came from.

    Args:
        x: float array of shape ``(N, C, H, W)``.
        kernel_size, stride, padding: int or ``(rows, cols)``;
            ``stride=None`` means ``kernel_size``;
            ``padding <= kernel_size // 2``.
        ceil_mode: round the output size up (torch's rule, see the module
            docstring).

    Returns:
        ``(out, cache)``: ``out`` of shape ``(N, C, Ho, Wo)`` holds each
        window's maximum; ``cache["argmax"]`` (same shape, int) is its flat
        index ``row * W + col`` in the ``H x W`` input plane, exactly what
        ``F.max_pool2d(..., return_indices=True)`` returns, and
        ``cache["x_shape"]`` is ``x.shape``. Padding cells (``-inf``) never
        win. Ties go to the first maximum in row-major window order; a NaN
        counts as the maximum, and with several NaNs the last one wins
        (torch's rule: keep a value if ``val > max or isnan(val)``).
    """
    g = _geometry(x, kernel_size, stride, padding, ceil_mode)
    x = g["x"]
    (kh, kw), W = g["kernel"], x.shape[3]
    rows0, cols0 = _window_starts(g, 0), _window_starts(g, 1)
    out_shape = x.shape[:2] + g["out"]

    # torch's scan, run for all windows at once: start at the first in-bounds
    # cell with max = -inf, and move to a later cell only if it is strictly
    # larger (or NaN), so the first maximum wins a tie; padding cells are
    # never visited.
    first_cell = (np.maximum(-rows0, 0)[:, None] * kw
                  + np.maximum(-cols0, 0)[None, :])
    best = np.full(out_shape, -np.inf)
    # uint8 for kernels up to 16x16: faster
    offset_type = np.min_scalar_type(kh * kw - 1).type
    offset = np.empty(out_shape, dtype=offset_type)
    offset[...] = first_cell
    won = np.empty(out_shape, dtype=bool)
    buffer = np.empty(out_shape)
    track_nan = bool(np.isnan(x).any())
    for k, out_idx, in_idx in _window_cells(g, x.shape[2:]):
        top, won_here, cell = best[out_idx], won[out_idx], buffer[out_idx]
        # One strided read; the passes below run on contiguous rows.
        np.copyto(cell, x[in_idx])
        np.greater(cell, top, out=won_here)
        if track_nan:
            won_here |= np.isnan(cell)
        np.maximum(top, cell, out=top)  # NaN propagates, as in torch
        # Offsets arrive in increasing order, so max(offset, k * won) sets
        # offset = k exactly where this cell won: a branch-free (and much
        # faster) np.where.
        np.maximum(offset[out_idx], won_here * offset_type(k),
                   out=offset[out_idx])

    # Window offset -> flat index into the H x W input plane, through a
    # kh*kw lookup table.
    cell_delta = np.arange(kh)[:, None] * W + np.arange(kw)[None, :]
    window_start = rows0[:, None] * W + cols0[None, :]
    argmax = window_start + cell_delta.ravel()[offset]
    return best, {"argmax": argmax, "x_shape": x.shape}


def maxpool2d_backward(dout, cache):
    """Backward pass of :func:`maxpool2d_forward` (and of min pooling).

    Args:
        dout: upstream gradient of shape ``(N, C, Ho, Wo)``.
        cache: the dict returned by :func:`maxpool2d_forward`.

    Returns:
        ``dx`` of shape ``(N, C, H, W)``: each window's whole ``dout`` goes
        to its argmax cell and nothing to the other cells; a cell that wins
        several overlapping windows receives the sum of their gradients, so
        ``dx.sum() == dout.sum()``.
    """
    if (not isinstance(cache, dict)
            or not {"argmax", "x_shape"} <= cache.keys()):
        raise TypeError("cache must be the dict returned by "
                        "maxpool2d_forward")
    argmax, (N, C, H, W) = cache["argmax"], cache["x_shape"]
    dout = same_shape(dout, "dout", argmax.shape)
    dout = dout.astype(np.float64, copy=False)
    # Give every (example, channel) plane its own block of H*W bins; bincount
    # then adds the gradients of windows sharing an argmax (far faster than
    # np.add.at).
    plane_start = (np.arange(N * C) * (H * W)).reshape(N, C, 1, 1)
    dx = np.bincount((argmax + plane_start).ravel(), weights=dout.ravel(),
                     minlength=N * C * H * W)
    return dx.reshape(N, C, H, W)


def avgpool2d_forward(x, kernel_size, stride=None, padding=0,
                      count_include_pad=True, ceil_mode=False):
    """Average pooling.

    Args:
        x: float array of shape ``(N, C, H, W)``.
        kernel_size, stride, padding: int or ``(rows, cols)``;
            ``stride=None`` means ``kernel_size``;
            ``padding <= kernel_size // 2``; padding cells hold zeros.
        count_include_pad: divide by the window size including padding
            cells (torch's default) or, if False, by the number of input
            cells in the window.
        ceil_mode: round the output size up (torch's rule, see the module
            docstring).

    Returns:
        ``(out, cache)``: ``out`` of shape ``(N, C, Ho, Wo)`` is each
        window's sum divided by ``cache["divisor"]`` (shape ``(Ho, Wo)``).
        With ``count_include_pad=True`` the divisor counts the cells inside
        the padded input, so a ``ceil_mode`` window that runs past the right
        padding is divided by fewer than ``kh * kw`` cells. The cache also
        holds ``x_shape`` (``x.shape``) and ``geometry``: the dict
        ``_geometry`` returns, without ``x`` (``kernel``, ``stride``,
        ``padding`` as pairs, ``out``).
    """
    g = _geometry(x, kernel_size, stride, padding, ceil_mode)
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError("count_include_pad must be a bool, "
                        f"got {count_include_pad!r}")
    x = g["x"]
    (N, C, H, W), (Ho, Wo) = x.shape, g["out"]
    # The window sum is separable: add the kh rows of each window, then the
    # kw columns of those row sums (rows first keeps the strided column
    # slices on the smaller array).
    row_sums = np.zeros((N, C, Ho, W))
    for _, out_rows, in_rows in _axis_cells(g, 0, H):
        # Padding rows add zero, so they are skipped.
        row_sums[:, :, out_rows] += x[:, :, in_rows]
    total = np.zeros((N, C, Ho, Wo))
    for _, out_cols, in_cols in _axis_cells(g, 1, W):
        total[..., out_cols] += row_sums[..., in_cols]

    counts = []
    for a in range(2):
        size, pad = x.shape[2 + a], g["padding"][a]
        start = _window_starts(g, a)
        stop = np.minimum(start + g["kernel"][a], size + pad)
        if not count_include_pad:
            start, stop = np.maximum(start, 0), np.minimum(stop, size)
        counts.append(stop - start)
    divisor = np.outer(counts[0], counts[1]).astype(np.float64)

    geometry = {k: v for k, v in g.items() if k != "x"}
    cache = {"divisor": divisor, "x_shape": x.shape, "geometry": geometry}
    return total / divisor, cache


def avgpool2d_backward(dout, cache):
    """Backward pass of :func:`avgpool2d_forward`.

    Args:
        dout: upstream gradient of shape ``(N, C, Ho, Wo)``.
        cache: the dict returned by :func:`avgpool2d_forward`.

    Returns:
        ``dx`` of shape ``(N, C, H, W)``: every cell of a window receives
        ``dout / divisor`` for that window; overlapping windows add up.
        Shares sent to padding cells are dropped, so
        ``dx.sum() == dout.sum()`` only when no window touches the padding
        (or with ``count_include_pad=False``).
    """
    if (not isinstance(cache, dict)
            or not {"divisor", "x_shape", "geometry"} <= cache.keys()):
        raise TypeError("cache must be the dict returned by "
                        "avgpool2d_forward")
    g, (N, C, H, W) = cache["geometry"], cache["x_shape"]
    dout = same_shape(dout, "dout", (N, C) + g["out"])
    share = dout.astype(np.float64, copy=False) / cache["divisor"]
    # Transpose of the forward's two passes: spread each share over the
    # window's kw columns, then over its kh rows; overlapping windows add up.
    col_spread = np.zeros((N, C, g["out"][0], W))
    for _, out_cols, in_cols in _axis_cells(g, 1, W):
        col_spread[..., in_cols] += share[..., out_cols]
    dx = np.zeros((N, C, H, W))
    for _, out_rows, in_rows in _axis_cells(g, 0, H):
        dx[:, :, in_rows] += col_spread[:, :, out_rows]
    return dx


def minpool2d_forward(x, kernel_size, stride=None, padding=0,
                      ceil_mode=False):
    """Min pooling: each window's minimum; the first minimum in row-major
    order wins a tie.

    Args and Returns as :func:`maxpool2d_forward`; ``cache["argmax"]`` holds
    the flat input-plane index of each window's (first) minimum. Padding
    never wins.
    """
    negated = -float_array(x, "x", ndim=4)
    out, cache = maxpool2d_forward(negated, kernel_size, stride=stride,
                                   padding=padding, ceil_mode=ceil_mode)
    return -out, cache


def minpool2d_backward(dout, cache):
    """Backward pass of :func:`minpool2d_forward`: each window's gradient
    goes to its argmin.

    Args and Returns as :func:`maxpool2d_backward`, with the cached (first)
    minimum of each window in place of its maximum; overlapping windows add
    up.
    """
    return maxpool2d_backward(dout, cache)
