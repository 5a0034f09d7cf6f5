"""Typical student bugs in the pooling exercise, as source text and as functions.

Each entry is complete numpy code (independent of the reference's helpers) that redefines one
graded function, plus the test cells that must fail because of it; every other cell must
keep its points. In the notebook, min pooling built on max pooling inherits a max-pooling
forward bug, so ``fails`` lists the min cell too where that happens (the unit tests run the
checks in a namespace built like the notebook's, so they see the same thing).
"""
from __future__ import annotations

BUGS = {
    # A running maximum updated on `>=`: a later equal value takes over, so the LAST maximum
    # of a window wins a tie instead of torch's first. Values are right, argmax is not.
    "max_last_tie_wins": dict(
        answer_cell="pooling_maxpool2d_forward_answer",
        fails={"pooling_maxpool2d_forward_ties"},
        source='''
def maxpool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    (kh, kw), (ph, pw) = pair(kernel_size), pair(padding)
    sh, sw = pair(kernel_size if stride is None else stride)
    N, C, H, W = x.shape
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    best = np.full((N, C, Ho, Wo), -np.inf)
    row = np.zeros((N, C, Ho, Wo), dtype=np.int64)
    col = np.zeros((N, C, Ho, Wo), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            cell = xp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw]
            won = cell >= best
            best = np.where(won, cell, best)
            row = np.where(won, (np.arange(Ho) * sh - ph + i)[:, None], row)
            col = np.where(won, (np.arange(Wo) * sw - pw + j)[None, :], col)
    return best, {"argmax": row * W + col, "x_shape": x.shape}
'''),
    # np.pad's default constant is 0: on negative inputs the padding wins the border windows.
    # Min pooling written as -maxpool(-x) inherits it (-x of positive inputs is negative).
    "max_pads_with_zeros": dict(
        answer_cell="pooling_maxpool2d_forward_answer",
        fails={"pooling_maxpool2d_forward_padding", "pooling_minpool2d_forward_torch"},
        source='''
def maxpool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    (kh, kw), (ph, pw) = pair(kernel_size), pair(padding)
    sh, sw = pair(kernel_size if stride is None else stride)
    N, C, H, W = x.shape
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    best = np.full((N, C, Ho, Wo), -np.inf)
    row = np.zeros((N, C, Ho, Wo), dtype=np.int64)
    col = np.zeros((N, C, Ho, Wo), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            cell = xp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw]
            won = cell > best
            best = np.where(won, cell, best)
            row = np.where(won, (np.arange(Ho) * sh - ph + i)[:, None], row)
            col = np.where(won, (np.arange(Wo) * sw - pw + j)[None, :], col)
    return best, {"argmax": row * W + col, "x_shape": x.shape}
'''),
    # Fancy-index assignment writes each cell once: a cell that wins several overlapping
    # windows keeps one of their gradients instead of their sum.
    "max_backward_overwrites": dict(
        answer_cell="pooling_maxpool2d_backward_answer",
        fails={"pooling_maxpool2d_backward_overlap"},
        source='''
def maxpool2d_backward(dout, cache):
    N, C, H, W = cache["x_shape"]
    dx = np.zeros((N * C, H * W))
    planes = np.arange(N * C)[:, None]
    dx[planes, cache["argmax"].reshape(N * C, -1)] = dout.reshape(N * C, -1)
    return dx.reshape(N, C, H, W)
'''),
    # The divisor is always kh * kw, whatever count_include_pad says.
    "avg_divisor_ignores_count_include_pad": dict(
        answer_cell="pooling_avgpool2d_forward_answer",
        fails={"pooling_avgpool2d_forward_count_include_pad"},
        source='''
def avgpool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True, ceil_mode=False):
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    (kh, kw), (ph, pw) = pair(kernel_size), pair(padding)
    sh, sw = pair(kernel_size if stride is None else stride)
    N, C, H, W = x.shape
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    total = np.zeros((N, C, Ho, Wo))
    for i in range(kh):
        for j in range(kw):
            total += xp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw]
    divisor = np.full((Ho, Wo), float(kh * kw))
    geometry = {"kernel": (kh, kw), "stride": (sh, sw), "padding": (ph, pw), "out": (Ho, Wo)}
    return total / divisor, {"divisor": divisor, "x_shape": x.shape, "geometry": geometry}
'''),
    # The backward pass recomputes the divisor as kh * kw instead of using the cached one:
    # right unless count_include_pad=False meets padding.
    "avg_backward_divides_by_window_size": dict(
        answer_cell="pooling_avgpool2d_backward_answer",
        fails={"pooling_avgpool2d_backward_count_include_pad"},
        source='''
def avgpool2d_backward(dout, cache):
    g = cache["geometry"]
    (kh, kw), (sh, sw), (ph, pw) = g["kernel"], g["stride"], g["padding"]
    N, C, H, W = cache["x_shape"]
    Ho, Wo = dout.shape[2:]
    share = dout / (kh * kw)
    dxp = np.zeros((N, C, H + 2 * ph + kh, W + 2 * pw + kw))
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw] += share
    return dxp[:, :, ph:ph + H, pw:pw + W]
'''),
    # `=` instead of `+=` when spreading the shares: with overlapping windows each cell
    # keeps the share of the last window written.
    "avg_backward_overwrites": dict(
        answer_cell="pooling_avgpool2d_backward_answer",
        fails={"pooling_avgpool2d_backward_overlap"},
        source='''
def avgpool2d_backward(dout, cache):
    g = cache["geometry"]
    (kh, kw), (sh, sw), (ph, pw) = g["kernel"], g["stride"], g["padding"]
    N, C, H, W = cache["x_shape"]
    Ho, Wo = dout.shape[2:]
    share = dout / cache["divisor"]
    dxp = np.zeros((N, C, H + 2 * ph + kh, W + 2 * pw + kw))
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw] = share
    return dxp[:, :, ph:ph + H, pw:pw + W]
'''),
    # The minima are right, but the cache keeps the position of each window's MAXIMUM
    # (e.g. max pooling's cache reused), so the backward pass routes to the argmax.
    "min_routes_to_argmax": dict(
        answer_cell="pooling_minpool2d_backward_answer",
        fails={"pooling_minpool2d_forward_torch"},
        source='''
def minpool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    (kh, kw), (ph, pw) = pair(kernel_size), pair(padding)
    sh, sw = pair(kernel_size if stride is None else stride)
    N, C, H, W = x.shape
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    lo = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=np.inf)
    hi = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    low, high = np.full((N, C, Ho, Wo), np.inf), np.full((N, C, Ho, Wo), -np.inf)
    row = np.zeros((N, C, Ho, Wo), dtype=np.int64)
    col = np.zeros((N, C, Ho, Wo), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            window = (slice(None), slice(None), slice(i, i + sh * (Ho - 1) + 1, sh),
                      slice(j, j + sw * (Wo - 1) + 1, sw))
            low = np.minimum(low, lo[window])
            won = hi[window] > high
            high = np.where(won, hi[window], high)
            row = np.where(won, (np.arange(Ho) * sh - ph + i)[:, None], row)
            col = np.where(won, (np.arange(Wo) * sw - pw + j)[None, :], col)
    return low, {"argmax": row * W + col, "x_shape": x.shape}
'''),
    # Min pooling padded with zeros: on positive inputs the padding is every border
    # window's minimum.
    "min_pads_with_zeros": dict(
        answer_cell="pooling_minpool2d_backward_answer",
        fails={"pooling_minpool2d_forward_torch"},
        source='''
def minpool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    (kh, kw), (ph, pw) = pair(kernel_size), pair(padding)
    sh, sw = pair(kernel_size if stride is None else stride)
    N, C, H, W = x.shape
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    best = np.full((N, C, Ho, Wo), np.inf)
    row = np.zeros((N, C, Ho, Wo), dtype=np.int64)
    col = np.zeros((N, C, Ho, Wo), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            cell = xp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw]
            won = cell < best
            best = np.where(won, cell, best)
            row = np.where(won, (np.arange(Ho) * sh - ph + i)[:, None], row)
            col = np.where(won, (np.arange(Wo) * sw - pw + j)[None, :], col)
    return best, {"argmax": row * W + col, "x_shape": x.shape}
'''),
    # The argmax counted in the padded (H + 2p) x (W + 2p) plane, where the loop found it,
    # instead of the input's H x W plane: right without padding; with padding the indices are
    # wrong and many lie beyond H * W, so a backward pass indexing dx with them raises
    # IndexError. The forward part's padding cell names the range; min pooling inherits it.
    "max_argmax_in_padded_plane": dict(
        answer_cell="pooling_maxpool2d_forward_answer",
        fails={"pooling_maxpool2d_forward_padding", "pooling_minpool2d_forward_torch"},
        source='''
def maxpool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    (kh, kw), (ph, pw) = pair(kernel_size), pair(padding)
    sh, sw = pair(kernel_size if stride is None else stride)
    N, C, H, W = x.shape
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    best = np.full((N, C, Ho, Wo), -np.inf)
    row = np.zeros((N, C, Ho, Wo), dtype=np.int64)
    col = np.zeros((N, C, Ho, Wo), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            cell = xp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw]
            won = cell > best
            best = np.where(won, cell, best)
            row = np.where(won, (np.arange(Ho) * sh + i)[:, None], row)
            col = np.where(won, (np.arange(Wo) * sw + j)[None, :], col)
    return best, {"argmax": row * (W + 2 * pw) + col, "x_shape": x.shape}
'''),
}

# Outside BUGS because they span two answer cells: a forward pass with a bug, and a backward
# pass that is right in itself but reads an extra key the forward pass cached (not one of the
# documented ones, which the backward checks replace by correct values). The forward part's
# cells must fail; the backward cells fail only where the forward's output is wrong, and their
# message must name the forward pass (not just the backward's exception).
CROSS_PART = {
    # The output size computed without the padding (H - k) // s + 1, while the input is padded:
    # too few windows. The backward pass reshapes dout to the cached out_shape: ValueError.
    "output_size_without_padding": dict(
        forward='''
def maxpool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    (kh, kw), (ph, pw) = pair(kernel_size), pair(padding)
    sh, sw = pair(kernel_size if stride is None else stride)
    N, C, H, W = x.shape
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    best = np.full((N, C, Ho, Wo), -np.inf)
    row = np.zeros((N, C, Ho, Wo), dtype=np.int64)
    col = np.zeros((N, C, Ho, Wo), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            cell = xp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw]
            won = cell > best
            best = np.where(won, cell, best)
            row = np.where(won, (np.arange(Ho) * sh - ph + i)[:, None], row)
            col = np.where(won, (np.arange(Wo) * sw - pw + j)[None, :], col)
    return best, {"argmax": row * W + col, "x_shape": x.shape, "out_shape": best.shape}
''',
        backward='''
def maxpool2d_backward(dout, cache):
    N, C, H, W = cache["x_shape"]
    dx = np.zeros((N * C, H * W))
    planes = np.arange(N * C)[:, None]
    np.add.at(dx, (planes, cache["argmax"].reshape(N * C, -1)), dout.reshape(cache.get("out_shape", dout.shape)).reshape(N * C, -1))
    return dx.reshape(N, C, H, W)
''',
        # The forward cells with padding; the backward cells whose checks pad (visible overlap;
        # the hidden checks of finite_difference and ties); min pooling uses max pooling.
        fails={"pooling_maxpool2d_forward_padding", "pooling_maxpool2d_backward_overlap",
               "pooling_maxpool2d_backward_finite_difference", "pooling_maxpool2d_backward_ties",
               "pooling_minpool2d_forward_torch", "pooling_minpool2d_backward_autograd"},
    ),
}

# Outside BUGS because it spans two answer cells: a forward pass that also caches x and out,
# and a backward pass that ignores the argmax and re-derives the winners with a mask
# `x == max`, sending each window's gradient to every tied maximum.
MASK_BACKWARD = '''
def maxpool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    (kh, kw), (ph, pw) = pair(kernel_size), pair(padding)
    sh, sw = pair(kernel_size if stride is None else stride)
    N, C, H, W = x.shape
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    best = np.full((N, C, Ho, Wo), -np.inf)
    row = np.zeros((N, C, Ho, Wo), dtype=np.int64)
    col = np.zeros((N, C, Ho, Wo), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            cell = xp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw]
            won = cell > best
            best = np.where(won, cell, best)
            row = np.where(won, (np.arange(Ho) * sh - ph + i)[:, None], row)
            col = np.where(won, (np.arange(Wo) * sw - pw + j)[None, :], col)
    geometry = {"kernel": (kh, kw), "stride": (sh, sw), "padding": (ph, pw)}
    return best, {"argmax": row * W + col, "x_shape": x.shape, "x": x, "out": best, "g": geometry}


def maxpool2d_backward(dout, cache):
    x, out, g = cache["x"], cache["out"], cache["g"]
    (kh, kw), (sh, sw), (ph, pw) = g["kernel"], g["stride"], g["padding"]
    N, C, H, W = x.shape
    Ho, Wo = out.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    dxp = np.zeros_like(xp)
    for i in range(kh):
        for j in range(kw):
            window = (slice(None), slice(None), slice(i, i + sh * (Ho - 1) + 1, sh),
                      slice(j, j + sw * (Wo - 1) + 1, sw))
            dxp[window] += (xp[window] == out) * dout
    return dxp[:, :, ph:ph + H, pw:pw + W]
'''

# Submissions graded end to end by real nbgrader (kernel starts are the cost, so a few).
# The first also has every visible test cell replaced by `pass`; the last must make the
# release command refuse.
E2E = ("max_backward_overwrites", "avg_divisor_ignores_count_include_pad", "min_routes_to_argmax",
       "max_last_tie_wins")
