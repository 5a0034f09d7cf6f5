"""Graded checks of the ``pooling`` exercise: max, average and min pooling, forward and backward.

Released to students as ``coursechecks/pooling.py``. Visible checks compare with PyTorch
(``F.max_pool2d(..., return_indices=True)``, ``F.avg_pool2d`` and their autograd, min
pooling as ``-F.max_pool2d(-x)``, all in float64) or with centred finite differences of
PyTorch's forward. Hidden checks import the reference from ``solutions`` inside
``expected``; students do not have it, and their grading seeds come from the grader.

Inputs never use ``ceil_mode=True`` or NaN: the exercise does not ask for them. Each test
cell aims at one kind of bug:

* ``*_ties``: integer-valued inputs with many tied maxima; torch's rule is that the first
  maximum in row-major window order wins and gets the whole gradient.
* ``*_padding``: max pooling of negative inputs, where a zero padding would win; the
  argmax is an index into the unpadded ``H x W`` plane.
* ``*_overlap``: stride < kernel, where a cell that wins (or lies in) several windows must
  receive the sum of their gradients, not the last one written.
* ``*_count_include_pad``: average pooling whose divisor is the number of real cells.
* other cells: random inputs without ties, no padding, or finite differences.

The backward checks build the cache themselves, with PyTorch, from the keys the forward
docstrings document (``argmax`` and ``x_shape``; ``divisor``, ``x_shape`` and ``geometry``).
If the student's forward pass of the same name (looked up where the backward pass was
defined, i.e. the notebook) runs on the same input, the keys it stores are kept and only the
documented ones are replaced by the correct values. So a bug in the forward pass costs
forward points only, while a backward pass that ignores the argmax and re-derives the
winners from values it cached (a mask ``x == max`` that sends the gradient to every tied
maximum) is still caught.
"""
from __future__ import annotations

import numpy as np

from .core import Check, CheckFailure, array_kinds, close, describing, numerical_gradient, unpack

CHAPTER = "pooling"
TOL = 1e-8  # float64 against float64: correct code lands near 1e-15, the bugs above 1e-2
# Pooling is piecewise linear and the inputs keep every value 0.1 from its neighbours, so
# centred differences are exact up to round-off (about 1e-11); allow either bound.
FD_TOL, FD_ATOL = 1e-6, 1e-7


def _torch():
    import torch
    import torch.nn.functional as F

    return torch, F


def _t(a, grad: bool = False):
    torch, _ = _torch()
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


# ---------------------------------------------------------------- inputs
def _distinct(shape, rng, sign: float = 0.0) -> np.ndarray:
    """Values at least 0.1 apart, so no window has a tie and a finite-difference step never
    moves an argmax. ``sign`` < 0 makes them all negative, > 0 all positive, 0 mixed."""
    n = int(np.prod(shape))
    v = rng.permutation(n) * 0.1 + rng.uniform(0.0, 0.01, n)
    if sign < 0:
        v = -v - 0.5
    elif sign > 0:
        v = v + 0.5
    else:
        v = v - 0.05 * n
    return v.reshape(shape)


def _ties(shape, rng) -> np.ndarray:
    """Small integer levels (0, 1, 2), like the flat background and saturated strokes of an
    image: most windows hold a tied maximum."""
    return rng.integers(0, 3, shape).astype(np.float64)


def _inputs(shape, kernel_size, stride=None, padding=0, values=_distinct, count_include_pad=None,
            dout: bool = False, **value_kw):
    """``inputs(rng)``: x (and, for backward checks, an upstream gradient) plus the geometry."""

    def make(rng: np.random.Generator) -> dict:
        inputs = {"x": values(shape, rng, **value_kw), "kernel_size": kernel_size, "stride": stride,
                  "padding": padding}
        if count_include_pad is not None:
            inputs["count_include_pad"] = count_include_pad
        if dout:
            out_shape = _torch_out_shape(inputs)
            inputs["dout"] = rng.standard_normal(out_shape)
        return inputs

    return make


def _geometry_args(inputs: dict) -> dict:
    k = inputs["kernel_size"]
    return {"kernel_size": k, "stride": k if inputs["stride"] is None else inputs["stride"],
            "padding": inputs["padding"]}


def _forward_args(inputs: dict) -> dict:
    return {k: v for k, v in inputs.items() if k not in ("dout", "cache")}


# ---------------------------------------------------------------- PyTorch oracles
def _torch_max(x, inputs: dict, sign: float = 1.0):
    """``sign * max_pool2d(sign * x)`` and the winners' flat indices (sign -1: min pooling)."""
    _, F = _torch()
    out, idx = F.max_pool2d(sign * x, return_indices=True, **_geometry_args(inputs))
    return sign * out, idx


def _torch_avg(x, inputs: dict):
    _, F = _torch()
    return F.avg_pool2d(x, count_include_pad=inputs.get("count_include_pad", True), **_geometry_args(inputs))


def _torch_out_shape(inputs: dict) -> tuple[int, ...]:
    return tuple(_torch_avg(_t(inputs["x"]), {**inputs, "count_include_pad": True}).shape)


def _expect_forward(kind: str):
    def expect(inputs: dict) -> dict:
        x = _t(inputs["x"])
        x_shape = np.array(np.shape(inputs["x"]), dtype=np.float64)
        if kind == "avg":
            return {"out": _torch_avg(x, inputs).numpy(), "cache['x_shape']": x_shape}
        out, idx = _torch_max(x, inputs, -1.0 if kind == "min" else 1.0)
        return {"out": out.numpy(), "cache['x_shape']": x_shape, "cache['argmax']": idx.numpy()}

    return expect


def _torch_forward_fn(kind: str, inputs: dict):
    if kind == "avg":
        return lambda v: _torch_avg(_t(v), inputs).numpy()
    return lambda v: _torch_max(_t(v), inputs, -1.0 if kind == "min" else 1.0)[0].numpy()


def _expect_finite_differences(kind: str):
    def expect(inputs: dict) -> dict:
        return {"dx": numerical_gradient(_torch_forward_fn(kind, inputs), inputs["x"], inputs["dout"])}

    return expect


def _expect_autograd(kind: str):
    def expect(inputs: dict) -> dict:
        x = _t(inputs["x"], grad=True)
        out = _torch_avg(x, inputs) if kind == "avg" else _torch_max(x, inputs, -1.0 if kind == "min" else 1.0)[0]
        out.backward(_t(inputs["dout"]))
        return {"dx": x.grad.numpy()}

    return expect


def _torch_cache(kind: str, inputs: dict) -> dict:
    """The cache the forward docstrings document, computed with PyTorch."""
    torch, F = _torch()
    x = _t(inputs["x"])
    if kind != "avg":
        _, idx = _torch_max(x, inputs, -1.0 if kind == "min" else 1.0)
        return {"argmax": idx.numpy(), "x_shape": tuple(x.shape)}
    geo = _geometry_args(inputs)
    ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=torch.float64)
    real = F.avg_pool2d(ones, divisor_override=1, **geo)[0, 0].numpy()  # input cells per window
    if inputs.get("count_include_pad", True):
        # avg of ones = real cells / divisor; divisors are whole numbers.
        divisor = np.rint(real / F.avg_pool2d(ones, count_include_pad=True, **geo)[0, 0].numpy())
    else:
        divisor = real
    geometry = {"kernel": _pair(geo["kernel_size"]), "stride": _pair(geo["stride"]),
                "padding": _pair(geo["padding"]), "out": tuple(int(n) for n in real.shape)}
    return {"divisor": divisor, "x_shape": tuple(x.shape), "geometry": geometry}


# ---------------------------------------------------------------- reference (hidden checks)
def _expect_reference_forward(kind: str):
    def reference_forward(inputs: dict) -> dict:
        from solutions import pooling

        out, cache = getattr(pooling, f"{kind}pool2d_forward")(**_forward_args(inputs))
        expected = {"out": out, "cache['x_shape']": np.array(cache["x_shape"], dtype=np.float64)}
        return expected if kind == "avg" else {**expected, "cache['argmax']": cache["argmax"]}

    return reference_forward


def _expect_reference_backward(kind: str):
    def reference_backward(inputs: dict) -> dict:
        from solutions import pooling

        _, cache = getattr(pooling, f"{kind}pool2d_forward")(**_forward_args(inputs))
        return {"dx": getattr(pooling, f"{kind}pool2d_backward")(inputs["dout"], cache)}

    return reference_backward


# ---------------------------------------------------------------- calling the student's code
DOCUMENTED = {"max": ("argmax", "x_shape"), "min": ("argmax", "x_shape"), "avg": ("divisor", "x_shape", "geometry")}


def _out_hw(inputs: dict) -> tuple[int, int]:
    (kh, kw), (sh, sw), (ph, pw) = _geometry_of(inputs)
    H, W = np.shape(inputs["x"])[2:]
    return (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1


def _cache_problem(kind: str, inputs: dict, cache) -> str:
    """What is wrong with a forward pass's cache for the backward pass to use, or "": the
    documented keys, their shapes and (for the argmax) the range of the indices."""
    if not isinstance(cache, dict):
        return f"the cache must be a dict, got {type(cache).__name__}"
    missing = [k for k in DOCUMENTED[kind] if k not in cache]
    if missing:
        return f"the cache has no key(s) {', '.join(map(repr, missing))} (got {sorted(map(str, cache))})"
    x_shape = np.shape(inputs["x"])
    try:
        if tuple(int(n) for n in cache["x_shape"]) != x_shape:
            return f"cache['x_shape'] is {tuple(cache['x_shape'])}, but x has shape {x_shape}"
    except (TypeError, ValueError):
        return f"cache['x_shape'] must be x.shape, got {cache['x_shape']!r}"
    out_shape = x_shape[:2] + _out_hw(inputs)
    H, W = x_shape[2:]
    if kind in ("max", "min"):
        argmax = np.asarray(cache["argmax"])
        if not np.issubdtype(argmax.dtype, np.integer):
            return f"cache['argmax'] must be an integer array (flat indices), got dtype {argmax.dtype}"
        if argmax.shape != out_shape:
            return f"cache['argmax'] has shape {argmax.shape}, expected {out_shape} (one index per window)"
        bad = (argmax < 0) | (argmax >= H * W)
        if bad.any():
            return (f"cache['argmax'] holds {int(bad.sum())} index(es) outside 0..{H * W - 1} (e.g. {int(argmax[bad][0])}): "
                    f"each must be row * W + col in the unpadded {H} x {W} plane, not in the padded one")
    else:
        try:
            divisor = np.asarray(cache["divisor"], dtype=np.float64)
            fits = np.broadcast_shapes(divisor.shape, out_shape[2:]) == out_shape[2:]
        except (TypeError, ValueError):
            fits = False
        if not fits:
            return (f"cache['divisor'] has shape {np.shape(cache['divisor'])}, expected {out_shape[2:]} "
                    "(one divisor per window position)")
        if not np.all(divisor > 0):
            return "cache['divisor'] holds values that are not positive"
    return ""


def forward_output_problem(kind: str, inputs: dict, result) -> str:
    """What is wrong with what ``<kind>pool2d_forward(**inputs)`` returned, for the backward
    pass to use it: a pair, ``out``'s shape, then the cache (see :func:`_cache_problem`)."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return f"it must return a pair (out, cache), got a {type(result).__name__}"
    out_shape = np.shape(inputs["x"])[:2] + _out_hw(inputs)
    if np.shape(result[0]) != out_shape:
        return f"out has shape {np.shape(result[0])}, expected {out_shape}"
    return _cache_problem(kind, inputs, result[1])


def check_forward_output(kind: str, x, result, kernel_size, stride=None, padding=0, count_include_pad=None) -> None:
    """For a notebook's own gradient check: stop with a message naming the forward pass if
    its output ``result = (out, cache)`` cannot be what the backward pass needs, instead of
    an ``IndexError`` deep inside the backward pass."""
    inputs = {"x": np.asarray(x), "kernel_size": kernel_size, "stride": stride, "padding": padding}
    problem = forward_output_problem(kind, inputs, result)
    if problem:
        raise AssertionError(f"{kind}pool2d_backward cannot use the output of your {kind}pool2d_forward on this input: "
                             f"{problem}. Fix {kind}pool2d_forward first (its own checks above say more).")


def _forward_call(kind: str):
    name = f"{kind}pool2d_forward"

    def call(fn, inputs: dict) -> dict:
        returned = unpack(fn(**inputs), ("out", "cache"), name)
        out, cache = returned["out"], returned["cache"]
        keys = DOCUMENTED[kind]
        if not isinstance(cache, dict) or any(k not in cache for k in keys):
            raise CheckFailure(f"the cache must be a dict with the key(s) {', '.join(map(repr, keys))}, got "
                               f"{type(cache).__name__}" + (f" with keys {sorted(map(str, cache))}" if isinstance(cache, dict) else ""))
        try:
            x_shape = np.array([int(n) for n in cache["x_shape"]], dtype=np.float64)
        except (TypeError, ValueError):
            raise CheckFailure(f"cache['x_shape'] must be x.shape, got {cache['x_shape']!r}") from None
        # The backward pass reads these entries: a wrong one is this part's failure, not the next's.
        outputs = {"out": out, "cache['x_shape']": x_shape}
        if kind == "avg":
            outputs["shape of cache['divisor']"] = np.array(np.shape(cache["divisor"]), dtype=np.float64)
            return outputs
        argmax = np.asarray(cache["argmax"])
        if not np.issubdtype(argmax.dtype, np.integer):
            raise CheckFailure(f"cache['argmax'] must be an integer array (flat indices), got dtype {argmax.dtype}")
        return {**outputs, "cache['argmax']": argmax.astype(np.float64)}

    return call


def _own_forward(fn, kind: str, inputs: dict) -> tuple[dict, str]:
    """The cache of the student's forward pass on the same input ({} if there is none) and
    what is wrong with that forward pass's output ("" if nothing is)."""
    forward = getattr(fn, "__globals__", {}).get(f"{kind}pool2d_forward")
    if not callable(forward):
        return {}, ""
    try:
        result = forward(**_forward_args(inputs))
    except Exception:  # noqa: BLE001 (an unfinished forward pass must not cost backward points)
        return {}, ""
    cache = result[1] if isinstance(result, (tuple, list)) and len(result) == 2 else None
    try:
        problem = forward_output_problem(kind, _forward_args(inputs), result)
    except Exception:  # noqa: BLE001
        problem = ""
    return (dict(cache) if isinstance(cache, dict) else {}), problem


def _backward_call(kind: str):
    name = f"{kind}pool2d_backward"

    def call(fn, inputs: dict) -> dict:
        own, problem = _own_forward(fn, kind, inputs)
        extra = sorted(str(k) for k in own if k not in inputs["cache"])
        cache = {**own, **inputs["cache"]}
        # The documented keys are the correct ones; only the other keys the student's forward
        # pass stored can carry its bugs here. If they do, say where the problem comes from.
        blame = (f"it used the cache key(s) {', '.join(map(repr, extra))} of your {kind}pool2d_forward, whose "
                 f"output on this input is wrong ({problem}): fix {kind}pool2d_forward first") if extra and problem else ""
        try:
            named = unpack(fn(inputs["dout"], cache), ("dx",), name)
        except (CheckFailure, NotImplementedError):
            raise
        except Exception as exc:  # noqa: BLE001
            if blame:
                raise CheckFailure(f"raised {type(exc).__name__}: {exc}; {blame}") from None
            raise
        if blame and np.shape(named["dx"]) != np.shape(inputs["x"]):
            raise CheckFailure(f"dx has shape {np.shape(named['dx'])}, expected {np.shape(inputs['x'])}; {blame}")
        return named

    return call


def _backward_inputs(kind: str, *args, **kwargs):
    make_forward = _inputs(*args, dout=True, **kwargs)

    def make(rng: np.random.Generator) -> dict:
        inputs = make_forward(rng)
        inputs["cache"] = _torch_cache(kind, inputs)
        return inputs

    return make


# ---------------------------------------------------------------- comparisons
def _compare_forward(actual: dict, expected: dict) -> None:
    """``out`` to ``TOL``; then the cache the backward pass reads: ``x_shape``, the divisor's
    shape, and ``argmax`` exactly (it names one cell per window), its range first."""
    close(TOL)({"out": actual["out"]}, {"out": expected["out"]})
    follow = "; the backward pass reads this cache, so fix it here"
    x_shape = tuple(int(n) for n in expected["cache['x_shape']"])
    got_shape = actual["cache['x_shape']"]
    if got_shape.shape != (4,) or tuple(int(n) for n in got_shape) != x_shape:
        raise CheckFailure(f"cache['x_shape'] is {tuple(int(n) for n in got_shape.ravel())}, but x has shape {x_shape}"
                           + follow)
    out_hw = tuple(np.shape(expected["out"])[2:])
    if "shape of cache['divisor']" in actual:
        div = tuple(int(n) for n in actual["shape of cache['divisor']"])
        try:
            fits = np.broadcast_shapes(div, out_hw) == out_hw
        except ValueError:
            fits = False
        if not fits:
            raise CheckFailure(f"cache['divisor'] has shape {div}, expected {out_hw} (one divisor per window "
                               f"position){follow}")
    key = "cache['argmax']"
    if key not in expected:
        return
    got, want = actual[key], np.asarray(expected[key], dtype=np.float64)
    if got.shape != want.shape:
        raise CheckFailure(f"{key} has shape {got.shape}, expected {want.shape}{follow}")
    H, W = x_shape[2:]
    outside = (got < 0) | (got >= H * W)
    if outside.any():
        raise CheckFailure(f"{key} holds {int(outside.sum())} index(es) outside 0..{H * W - 1} (e.g. {got[outside][0]:.0f}): "
                           f"each must be row * W + col in the unpadded {H} x {W} plane, not in the padded one{follow}")
    wrong = got != want
    if wrong.any():
        idx = tuple(int(i) for i in np.argwhere(wrong)[0])
        raise CheckFailure(
            f"{key} is wrong in {int(wrong.sum())} of {wrong.size} windows, first at index {idx} "
            "(it must be the flat index row * W + col of the window's first maximum in "
            "row-major order, in the unpadded H x W plane)",
            detail=f"got {got[idx]:.0f}, expected {want[idx]:.0f}",
        )


# ---------------------------------------------------------------- the checks
_id = lambda function, name: f"{CHAPTER}_{function}_{name}"  # noqa: E731
MF, MB = "maxpool2d_forward", "maxpool2d_backward"
AF, AB = "avgpool2d_forward", "avgpool2d_backward"
NF, NB = "minpool2d_forward", "minpool2d_backward"


def _fwd(kind, function, name, points, description, inputs, *, hidden=False, seed=0, cell=None):
    expected = _expect_reference_forward(kind) if hidden else _expect_forward(kind)
    return Check(_id(function, name), function, points, description, inputs=inputs, expected=expected,
                 call=_forward_call(kind), compare=_compare_forward, hidden=hidden, seed=seed,
                 cell=_id(function, cell) if cell else None)


def _bwd(kind, function, name, points, description, inputs, *, oracle="autograd", hidden=False, seed=0,
         cell=None):
    if hidden:
        expected, compare = _expect_reference_backward(kind), close(TOL)
    elif oracle == "fd":
        expected, compare = _expect_finite_differences(kind), close(FD_TOL, atol=FD_ATOL)
    else:
        expected, compare = _expect_autograd(kind), close(TOL)
    return Check(_id(function, name), function, points, description, inputs=inputs, expected=expected,
                 call=_backward_call(kind), compare=compare, hidden=hidden, seed=seed,
                 cell=_id(function, cell) if cell else None)


CHECKS = [
    # maxpool2d_forward: 20 points
    _fwd("max", MF, "torch", 4,
         "out and argmax match F.max_pool2d on (1, 3, 7, 8), a 2x3 kernel, stride (1, 2) (overlapping), no ties",
         _inputs((1, 3, 7, 8), (2, 3), (1, 2)), seed=1),
    _fwd("max", MF, "torch_hidden", 3, "out and argmax on a rectangular, overlapping kernel",
         _inputs((2, 2, 9, 7), (3, 2), (2, 1)), hidden=True, cell="torch"),
    _fwd("max", MF, "padding", 4,
         "out and argmax match F.max_pool2d with padding (1, 1) on negative inputs (padding never wins)",
         _inputs((2, 2, 7, 8), (3, 3), (2, 2), (1, 1), sign=-1.0), seed=2),
    _fwd("max", MF, "padding_hidden", 3, "padding on another geometry, negative inputs",
         _inputs((1, 3, 6, 9), (2, 3), (2, 2), (1, 1), sign=-1.0), hidden=True, cell="padding"),
    _fwd("max", MF, "ties", 3, "argmax is the first maximum in row-major order on inputs with many ties",
         _inputs((2, 2, 6, 6), 3, 1, values=_ties), seed=3),
    _fwd("max", MF, "ties_hidden", 3, "the first maximum wins ties with a rectangular, overlapping kernel",
         _inputs((1, 3, 7, 8), (3, 2), (2, 1), values=_ties), hidden=True, cell="ties"),
    # maxpool2d_backward: 20 points
    _bwd("max", MB, "finite_difference", 4,
         "dx matches centred finite differences of F.max_pool2d on (2, 2, 6, 6), 2x2 windows",
         _backward_inputs("max", (2, 2, 6, 6), 2), oracle="fd", seed=4),
    _bwd("max", MB, "finite_difference_hidden", 3, "dx with padding, 3x3 windows, stride 3",
         _backward_inputs("max", (1, 3, 7, 7), 3, 3, 1), hidden=True, cell="finite_difference"),
    _bwd("max", MB, "overlap", 4,
         "dx matches autograd with overlapping 2x3 windows, stride (1, 2), padding (1, 1) (shared winners add up)",
         _backward_inputs("max", (1, 2, 7, 8), (2, 3), (1, 2), (1, 1)), seed=5),
    _bwd("max", MB, "overlap_hidden", 3, "overlapping rectangular windows with padding",
         _backward_inputs("max", (2, 1, 8, 9), (3, 2), (2, 1), (1, 1)), hidden=True, cell="overlap"),
    _bwd("max", MB, "ties", 3,
         "with tied maxima each window's gradient goes to one cell, its first maximum (autograd, 2x2, stride 2)",
         _backward_inputs("max", (2, 2, 6, 6), 2, 2, values=_ties), seed=6),
    _bwd("max", MB, "ties_hidden", 3, "ties with padding, 3x3 windows, stride 3",
         _backward_inputs("max", (1, 2, 7, 8), 3, 3, 1, values=_ties), hidden=True, cell="ties"),
    # avgpool2d_forward: 15 points
    _fwd("avg", AF, "torch", 3, "out matches F.avg_pool2d on (1, 3, 7, 6), a 2x3 kernel, stride (1, 2)",
         _inputs((1, 3, 7, 6), (2, 3), (1, 2)), seed=7),
    _fwd("avg", AF, "torch_hidden", 2, "out on overlapping rectangular windows",
         _inputs((2, 2, 7, 9), (3, 2), (2, 1)), hidden=True, cell="torch"),
    _fwd("avg", AF, "padding", 3, "out matches F.avg_pool2d with padding (1, 1), count_include_pad=True",
         _inputs((2, 2, 7, 7), (3, 3), (2, 2), (1, 1), count_include_pad=True), seed=8),
    _fwd("avg", AF, "padding_hidden", 2, "padding counted in the divisor on another geometry",
         _inputs((1, 3, 6, 8), (2, 3), (1, 2), (1, 1), count_include_pad=True), hidden=True, cell="padding"),
    _fwd("avg", AF, "count_include_pad", 3,
         "out matches F.avg_pool2d with padding 1, count_include_pad=False (divide by the real cells)",
         _inputs((2, 2, 7, 7), 3, 2, 1, count_include_pad=False), seed=9),
    _fwd("avg", AF, "count_include_pad_hidden", 2, "count_include_pad=False on another geometry",
         _inputs((1, 3, 6, 8), (2, 3), (1, 2), (1, 1), count_include_pad=False), hidden=True,
         cell="count_include_pad"),
    # avgpool2d_backward: 15 points
    _bwd("avg", AB, "finite_difference", 3,
         "dx matches centred finite differences of F.avg_pool2d on (2, 2, 6, 6), 2x2 windows",
         _backward_inputs("avg", (2, 2, 6, 6), 2), oracle="fd", seed=10),
    _bwd("avg", AB, "finite_difference_hidden", 2, "dx with padding counted, 3x3 windows, stride 3",
         _backward_inputs("avg", (1, 2, 7, 7), 3, 3, 1, count_include_pad=True), hidden=True,
         cell="finite_difference"),
    _bwd("avg", AB, "overlap", 3,
         "dx matches autograd with overlapping 2x3 windows, stride (1, 2), padding (1, 1) counted (shares add up)",
         _backward_inputs("avg", (1, 2, 7, 8), (2, 3), (1, 2), (1, 1), count_include_pad=True), seed=11),
    _bwd("avg", AB, "overlap_hidden", 2, "overlapping rectangular windows with padding counted",
         _backward_inputs("avg", (2, 1, 8, 9), (3, 2), (2, 1), (1, 1), count_include_pad=True), hidden=True,
         cell="overlap"),
    _bwd("avg", AB, "count_include_pad", 3,
         "dx matches autograd with padding 1, count_include_pad=False (each window's own divisor)",
         _backward_inputs("avg", (2, 2, 7, 8), 3, 3, 1, count_include_pad=False), seed=12),
    _bwd("avg", AB, "count_include_pad_hidden", 2, "count_include_pad=False on another geometry",
         _backward_inputs("avg", (1, 3, 6, 7), (2, 3), (2, 3), (1, 1), count_include_pad=False), hidden=True,
         cell="count_include_pad"),
    # minpool2d_forward and minpool2d_backward: 10 points
    _fwd("min", NF, "torch", 3,
         "out and argmin match -F.max_pool2d(-x), 3x2 kernel, stride (2, 1), padding (1, 0), positive inputs",
         _inputs((1, 2, 7, 8), (3, 2), (2, 1), (1, 0), sign=1.0), seed=13),
    _fwd("min", NF, "torch_hidden", 2, "out and argmin on a rectangular kernel with padding",
         _inputs((1, 3, 6, 9), (2, 3), (2, 2), (1, 1), sign=1.0), hidden=True, cell="torch"),
    _bwd("min", NB, "autograd", 3,
         "dx matches autograd of -F.max_pool2d(-x) on (1, 2, 7, 8), 3x3 windows, stride 3, padding 1",
         _backward_inputs("min", (1, 2, 7, 8), 3, 3, 1), seed=14),
    _bwd("min", NB, "autograd_hidden", 2, "dx with padding, 3x3 windows, stride 3",
         _backward_inputs("min", (1, 3, 7, 7), 3, 3, 1), hidden=True, cell="autograd"),
]


# ---------------------------------------------------------------- kinds of input
def _geometry_of(inputs: dict) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    k = _pair(inputs["kernel_size"])
    s = k if inputs.get("stride") is None else _pair(inputs["stride"])
    return k, s, _pair(inputs.get("padding", 0))


def input_kinds(function: str, inputs: dict) -> set[str]:
    """The kinds of input a check of ``function`` uses, read off its inputs (forward and
    backward checks alike: a backward check's cache comes from the same arguments)."""
    x = inputs["x"]
    (kh, kw), (sh, sw), (ph, pw) = _geometry_of(inputs)
    kinds = array_kinds(x)
    kinds.add("rectangular kernel" if kh != kw else "square kernel")
    kinds.add("kernel_size given as a pair" if isinstance(inputs["kernel_size"], (tuple, list))
              else "kernel_size given as an int")
    if inputs.get("stride") is None:
        kinds.add("default stride (the kernel size)")
    else:
        kinds.add("stride given as a pair" if isinstance(inputs["stride"], (tuple, list))
                  else "stride given as an int")
    if sh != sw:
        kinds.add("different strides along the two axes")
    if sh < kh or sw < kw:
        kinds.add("overlapping windows (stride < kernel)")
    if (sh, sw) != (kh, kw) and sh >= kh and sw >= kw:
        kinds.add("stride larger than the kernel")
    kinds.add("padding" if ph or pw else "no padding")
    if isinstance(inputs.get("padding"), (tuple, list)):
        kinds.add("padding given as a pair")
    H, W = x.shape[2:]
    if (H + 2 * ph - kh) % sh or (W + 2 * pw - kw) % sw:
        kinds.add("rows or columns that no window reaches")
    if "count_include_pad" in inputs:
        kinds.add(f"count_include_pad={inputs['count_include_pad']}")
    if np.array_equal(x, np.round(x)) and np.unique(x).size < x.size:
        kinds.add("tied values")
    elif np.all(x < 0):
        kinds.add("all-negative values")
    elif np.all(x > 0):
        kinds.add("all-positive values")
    return kinds


def describe_input(function: str, inputs: dict) -> str:
    """The input in plain words, e.g. "a (1, 3, 7, 8) input, 3x2 kernel, stride (2, 1), no
    padding, tied values" (shapes and geometry only, never values)."""
    (kh, kw), (sh, sw), (ph, pw) = _geometry_of(inputs)
    words = [f"a {tuple(inputs['x'].shape)} input", f"{kh}x{kw} kernel",
             f"stride {sh}" if sh == sw else f"stride ({sh}, {sw})",
             "no padding" if not (ph or pw) else (f"padding {ph}" if ph == pw else f"padding ({ph}, {pw})")]
    if "count_include_pad" in inputs:
        words.append(f"count_include_pad={inputs['count_include_pad']}")
    kinds = input_kinds(function, inputs)
    words += [k for k in ("overlapping windows (stride < kernel)", "rows or columns that no window reaches",
                          "tied values", "all-negative values", "all-positive values") if k in kinds]
    return ", ".join(words)


CHECKS = describing(CHECKS, describe_input)
