"""Graded checks as data, and the runner that applies them to a student's function.

This file is released to students next to each exercise notebook (as
``coursechecks/core.py``), so it depends on numpy only (torch is imported lazily by the
chapter modules that use it as an oracle) and never on ``solutions``.

A :class:`Check` says how its inputs are made from a seeded generator, how the student's
function is called, what the expected outputs are and how they are compared. The runner
:func:`run_check` turns everything a student's code can do (raise, return the wrong type,
return an object that claims to equal anything, return NaN) into a failed :class:`Result`
with a plain-language message. :func:`check` is what a notebook test cell calls.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import importlib
import io
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = [
    "Check",
    "CheckFailure",
    "Result",
    "as_float_array",
    "call_student",
    "array_kinds",
    "check",
    "close",
    "describing",
    "input_note",
    "chapter_checks",
    "get_check",
    "expected_values",
    "gradient_check",
    "judge",
    "make_inputs",
    "numerical_gradient",
    "rel_error",
    "returning",
    "run_check",
    "unpack",
]


class CheckFailure(Exception):
    """A student's output is wrong. ``detail`` may show expected values (visible checks only)."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.message = message
        self.detail = detail


def rel_error(a, b) -> float:
    """Largest elementwise ``|a - b| / max(1e-8, |a| + |b|)`` (the course's gradient-check measure)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare arrays of shapes {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def as_float_array(value, name: str) -> np.ndarray:
    """A float64 copy of a student's output, or :class:`CheckFailure` saying what is wrong.

    Only real floating-point data is accepted: object arrays (e.g. an object whose
    ``__eq__`` always returns True), integers, booleans, complex numbers and NaN/inf are
    refused. The copy is a plain ``ndarray``, so later comparisons never run student code.
    """
    try:
        arr = np.asarray(value)
    except Exception as exc:  # a hostile __array__ or a ragged sequence
        raise CheckFailure(f"{name} could not be read as an array ({type(exc).__name__}: {exc})")
    if not np.issubdtype(arr.dtype, np.floating):
        raise CheckFailure(
            f"{name} must be a floating-point array, got {type(value).__name__} with dtype {arr.dtype}"
        )
    arr = np.array(arr, dtype=np.float64, copy=True, subok=False)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise CheckFailure(f"{name} contains {bad} NaN or infinite value(s)")
    return arr


def _expect_shape(actual: np.ndarray, shape: tuple, name: str) -> None:
    if actual.shape != tuple(shape):
        raise CheckFailure(f"{name} has shape {actual.shape}, expected {tuple(shape)}")


def close(tol: float = 1e-7, atol: float | dict = 0.0) -> Callable[[dict, dict], None]:
    """Compare each named output with the expected array by :func:`rel_error` <= ``tol``.

    An output also passes when ``max|a - b| <= atol`` (for values that should be zero, where
    a relative error means nothing); ``atol`` may be a dict giving it per output name.
    """

    def compare(actual: dict, expected: dict) -> None:
        for name, want in expected.items():
            if name not in actual:
                raise CheckFailure(f"no output named {name!r}")
            got = actual[name]
            want = np.asarray(want, dtype=np.float64)
            _expect_shape(got, want.shape, name)
            if got.size == 0:
                continue
            limit = atol.get(name, 0.0) if isinstance(atol, dict) else atol
            err = rel_error(got, want)
            diff = np.abs(got - want)
            abs_err = float(np.max(diff))
            if err <= tol or (limit > 0 and abs_err <= limit):
                continue
            if limit > 0:
                idx = np.unravel_index(int(np.argmax(diff)), got.shape)
                what = f"off by {abs_err:.2e} (allowed {limit:.0e}; relative error {err:.2e})"
            else:
                idx = np.unravel_index(
                    int(np.argmax(diff / np.maximum(1e-8, np.abs(got) + np.abs(want)))), got.shape
                )
                what = f"relative error {err:.2e} (allowed {tol:.0e})"
            where = f", worst at index {tuple(int(i) for i in idx)}" if got.ndim else ""
            raise CheckFailure(
                f"{name} is wrong: {what}{where}",
                detail=f"got {float(got[idx]):.6g}, expected {float(want[idx]):.6g}",
            )

    return compare


def unpack(result, names: tuple[str, ...], fname: str, keep: tuple[str, ...] | None = None) -> dict:
    """Name the value(s) a student's function returned; refuse a tuple of the wrong length."""
    keep = names if keep is None else keep
    if len(names) == 1:
        values = (result,)
    else:
        if not isinstance(result, (tuple, list)) or len(result) != len(names):
            got = f"a {type(result).__name__}"
            if isinstance(result, (tuple, list)):
                got += f" of length {len(result)}"
            raise CheckFailure(f"{fname} must return a tuple ({', '.join(names)}), got {got}")
        values = tuple(result)
    return {n: v for n, v in zip(names, values) if n in keep}


def returning(*names: str, keep: tuple[str, ...] | None = None) -> Callable[[Callable, dict], dict]:
    """A ``call`` that runs ``fn(**inputs)`` and names the returned value(s).

    ``returning("out")`` expects one value; ``returning("out", "cache", keep=("out",))``
    expects a pair and passes on only ``out``.
    """

    def call(fn: Callable, inputs: dict) -> dict:
        return unpack(fn(**inputs), names, getattr(fn, "__name__", "the function"), keep)

    return call


def _default_call(fn: Callable, inputs: dict) -> dict:
    return {"result": fn(**inputs)}


@dataclass(frozen=True)
class Check:
    """One graded check, written once and used by the notebook and by the grader.

    grade_id:    ``<chapter>_<function>_<check>``; unique across the course.
    function:    name of the student function under test.
    points:      points the check is worth.
    description: one line shown when the check passes.
    inputs:      ``inputs(rng) -> dict`` of keyword arguments, from a seeded Generator.
    expected:    ``expected(inputs) -> dict`` of named arrays. Visible checks use PyTorch or
                 values derived by the check itself; hidden checks may import ``solutions``
                 inside this function (students do not have it).
    call:        ``call(fn, inputs) -> dict`` of named array-like outputs of the student's
                 function (default ``{"result": fn(**inputs)}``).
    derive:      optional ``derive(outputs, inputs) -> dict``: quantities computed from the
                 validated outputs (e.g. per-channel statistics) before comparing.
    compare:     ``compare(actual, expected)`` raising :class:`CheckFailure`.
    hidden:      True if the check runs only when grading.
    seed:        seed of a visible check (a hidden check gets its seed from the grader).
    cell:        grade_id of the notebook test cell that runs the check (default: its own).
    describe:    optional ``describe(inputs) -> str``: the kind of input in plain words (e.g.
                 "a (1, 3, 7, 8) input, 3x2 kernel, stride (2, 1)"), derived from the inputs
                 and shown with a failure, so that a failed hidden check says what it tried
                 without showing its values. Chapters set it with :func:`describing`.
    """

    grade_id: str
    function: str
    points: float
    description: str
    inputs: Callable[[np.random.Generator], dict]
    expected: Callable[[dict], dict]
    call: Callable[[Callable, dict], dict] = _default_call
    derive: Callable[[dict, dict], dict] | None = None
    compare: Callable[[dict, dict], None] = close()
    hidden: bool = False
    seed: int = 0
    cell: str | None = None
    describe: Callable[[dict], str] | None = None

    @property
    def cell_id(self) -> str:
        return self.cell or self.grade_id


@dataclass(frozen=True)
class Result:
    grade_id: str
    passed: bool
    points_awarded: float
    message: str


# Grading a check has three steps, kept apart so that a grader can run the middle one (the
# only one that executes student code) in another process and the others in a trusted one:
# make_inputs + expected_values -> call_student -> judge. run_check chains them.


def make_inputs(check: Check, seed: int | None = None) -> dict:
    """The check's inputs from its own seed (visible checks) or the grader's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return check.inputs(np.random.default_rng(check.seed if seed is None else seed))


def expected_values(check: Check, inputs: dict) -> dict:
    """What the outputs must be (PyTorch, derived values, or the reference for hidden checks)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return check.expected(copy.deepcopy(inputs))


def call_student(check: Check, fn: Callable, inputs: dict) -> dict:
    """Call the student's function on a deep copy of the inputs; return its named outputs.

    Anything the student's code raises (including ``SystemExit``) becomes a
    :class:`CheckFailure`; warnings and Python-level stderr output are swallowed so a graded
    cell stays silent on stderr.
    """
    if not callable(fn):
        raise CheckFailure(f"expected a function, got {type(fn).__name__}")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            raw = check.call(fn, copy.deepcopy(inputs))
    except CheckFailure:
        raise
    except NotImplementedError:
        raise CheckFailure("not implemented yet (it raises NotImplementedError)") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 (SystemExit from student code too)
        raise CheckFailure(f"raised {type(exc).__name__}: {exc}") from None
    if not isinstance(raw, dict):
        raise TypeError(f"{check.grade_id}: call() must return a dict of outputs")
    return raw


def input_note(check: Check, inputs: dict | None) -> str:
    """`` (hidden check on <kind of input>)`` for a hidden check's failure message, or ``""``.

    A visible check's input is in the notebook for the student to see; a hidden one's is
    not, so its failure says what kind of input it was: only what ``check.describe``
    derives from the inputs (shapes, geometry, flags, the kind of values), never the values,
    the seed or the expected outputs."""
    if not check.hidden or check.describe is None or inputs is None:
        return ""
    try:
        words = check.describe(inputs)
    except Exception:  # noqa: BLE001 (a description must never cost a verdict)
        return ""
    return f" (hidden check on {words})" if words else ""


def _failed(check: Check, exc: CheckFailure, inputs: dict | None = None) -> Result:
    message = exc.message
    if exc.detail and not check.hidden:  # expected values of hidden checks stay private
        message += f"; {exc.detail}"
    return Result(check.grade_id, False, 0.0, f"{check.function}{input_note(check, inputs)}: {message}")


def judge(check: Check, raw: dict, inputs: dict, expected: dict) -> Result:
    """Validate the student's outputs (float, finite; see :func:`as_float_array`), derive and
    compare. Runs no student code: the outputs are copied to plain float64 arrays first."""
    try:
        outputs = {name: as_float_array(value, name) for name, value in raw.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            actual = check.derive(outputs, copy.deepcopy(inputs)) if check.derive else outputs
            check.compare(actual, expected)
    except CheckFailure as exc:
        return _failed(check, exc, inputs)
    except Exception as exc:  # an output that makes the comparison itself impossible
        return _failed(check, CheckFailure(f"its output could not be checked ({type(exc).__name__}: {exc})"),
                       inputs)
    return Result(check.grade_id, True, float(check.points), "passed")


def run_check(check: Check, fn: Callable, seed: int | None = None) -> Result:
    """Run one check on a student's function; never raises because of the student's code.

    The expected values are computed first, from inputs the student never sees; the student
    gets a deep copy (mutating it changes nothing). Errors in the check itself propagate.
    """
    inputs = make_inputs(check, seed)
    expected = expected_values(check, inputs)
    try:
        raw = call_student(check, fn, inputs)
    except CheckFailure as exc:
        return _failed(check, exc, inputs)
    return judge(check, raw, inputs, expected)


def describing(checks: list[Check], describe_input: Callable[[str, dict], str]) -> list[Check]:
    """The checks with ``describe`` set to ``describe_input(check.function, inputs)``."""
    return [dataclasses.replace(c, describe=functools.partial(describe_input, c.function)) for c in checks]


def array_kinds(a, name: str = "x") -> set[str]:
    """Kinds of input an array is: its number of dimensions, a batch of one, non-contiguous."""
    a = np.asarray(a) if not isinstance(a, np.ndarray) else a
    kinds = {f"{a.ndim}-D {name}"}
    if a.ndim >= 2 and a.shape[0] == 1:
        kinds.add(f"{name} with a batch of 1")
    if not a.flags.c_contiguous:
        kinds.add(f"non-contiguous {name}")
    return kinds


def chapter_checks(chapter: str) -> dict[str, Check]:
    """All checks of one chapter module (``CHECKS`` in ``<package>.<chapter>``), by grade_id."""
    module = importlib.import_module(f".{chapter}", __package__)
    if getattr(module, "CHAPTER", None) != chapter:
        raise LookupError(f"{module.__name__} is not a chapter module")
    return {c.grade_id: c for c in module.CHECKS}


def get_check(grade_id: str) -> Check:
    """The check with this grade_id; its chapter module is found from the id's prefix."""
    parts = grade_id.split("_")
    for i in range(1, len(parts)):
        chapter = "_".join(parts[:i])
        try:
            checks = chapter_checks(chapter)
        except (ImportError, LookupError):
            continue
        if grade_id in checks:
            return checks[grade_id]
    raise KeyError(f"no check named {grade_id!r}")


def check(grade_id: str, fn: Callable, seed: int | None = None) -> None:
    """Run a check from a notebook test cell: print one line if it passes, else fail the cell.

    Raises ``AssertionError`` with the failure message, which makes nbgrader score the
    cell 0. Returns nothing, so a notebook cell shows only the printed line.
    """
    spec = get_check(grade_id)
    result = run_check(spec, fn, seed)
    if not result.passed:
        raise AssertionError(f"{grade_id} failed. {result.message}")
    points = f"{spec.points:g} point{'s' if spec.points != 1 else ''}"
    print(f"passed {grade_id} ({points}): {spec.description}")


def numerical_gradient(f: Callable[[np.ndarray], Any], x: np.ndarray, dout, h: float = 1e-5) -> np.ndarray:
    """Centred finite-difference estimate of ``d sum(f(x) * dout) / dx``.

    Works on a float64 copy of ``x`` (the caller's array is untouched) perturbed one element
    at a time; a checker, not a solution, so the loop over elements is deliberate.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    dout = np.asarray(dout, dtype=np.float64)
    grad = np.zeros_like(x)
    flat = x.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = float(np.sum(np.asarray(f(x), dtype=np.float64) * dout))
        flat[i] = old - h
        minus = float(np.sum(np.asarray(f(x), dtype=np.float64) * dout))
        flat[i] = old
        grad.reshape(-1)[i] = (plus - minus) / (2 * h)
    return grad


def gradient_check(f: Callable[[np.ndarray], Any], x, dout, analytic, name: str = "dx", tol: float = 1e-7) -> None:
    """Print the relative error between an analytic gradient and finite differences of ``f``.

    ``analytic`` should equal ``d sum(f(x) * dout) / dx``.
    """
    numeric = numerical_gradient(f, x, dout)
    analytic = np.asarray(analytic, dtype=np.float64)
    if analytic.shape != numeric.shape:
        print(f"{name}: shape {analytic.shape}, but the input has shape {numeric.shape}")
        return
    err = rel_error(analytic, numeric)
    verdict = "looks right" if err < tol else "probably wrong"
    print(f"{name}: relative error {err:.2e} ({verdict}; expect below {tol:.0e})")
