"""Graded checks as data, and the runner that applies them to a student's function.

This file is released to students next to each exercise notebook (as
``coursechecks/core.py``), so it depends on numpy only (torch is imported lazily by the
chapter modules that use it as an oracle) and never on ``solutions``.

A :class:`Check` says how its inputs are made from a seeded generator, how the student's
function is called, what the expected outputs are and how they are compared. The runner
:func:`run_check` turns everything a student's code can do (raise, return the wrong type,
return an object that claims to equal anything, return NaN, overwrite the caller's arrays)
into a failed :class:`Result` with a plain-language message: an exception is shown at the
student's own line, an array changed in place or returned aliased is named. :func:`check`
is what a notebook test cell calls; its passed line says how the cell's points are earned.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import importlib
import io
import linecache
import os
import site
import sys
import sysconfig
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
    "cell_checks",
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
    "label_source",
    "numerical_gradient",
    "passed_line",
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
    modifies:    arguments the function may change in place and return, because its
                 contract says so (a layer's state, a torch module's buffers). Every other
                 array argument must come back as the caller gave it, and no returned array
                 may share memory with one (see :func:`call_student`).
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
    modifies: tuple[str, ...] = ()

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
    :class:`CheckFailure` that shows the line of the student's code it came from; warnings
    and Python-level stderr output are swallowed so a graded cell stays silent on stderr.
    Every call of ``fn`` is watched (:class:`_Watched`): changing an array argument in place
    or returning one of them fails the check with a message naming that argument, unless
    the check lists it in ``modifies``.
    """
    if not callable(fn):
        raise CheckFailure(f"expected a function, got {type(fn).__name__}")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            raw = check.call(_Watched(fn, check.modifies), copy.deepcopy(inputs))
    except CheckFailure:
        raise
    except NotImplementedError:
        raise CheckFailure("not implemented yet (it raises NotImplementedError)") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 (SystemExit from student code too)
        raise CheckFailure(_raised(exc)) from None
    if not isinstance(raw, dict):
        raise TypeError(f"{check.grade_id}: call() must return a dict of outputs")
    return raw


# ---------------------------------------------------------------- diagnoses of student code

class _Watched:
    """A student's function whose every call is checked for changes to its array arguments.

    Before a call, each numpy array among the arguments (also inside a dict, list or tuple
    argument, e.g. a cache) is copied; after it, an array whose bytes, shape or dtype
    changed was modified in place, and a returned array that shares memory with one is an
    alias of the caller's array. Both become a :class:`CheckFailure` naming the argument by
    the function's own parameter name. Attributes (``__name__``, ``__globals__``) are the
    function's, so a check's ``call`` can treat this as the function itself.
    """

    def __init__(self, fn: Callable, modifies: tuple[str, ...] = ()):
        self.__dict__["_fn"] = fn
        self.__dict__["_modifies"] = frozenset(modifies)

    def __getattr__(self, name: str):
        return getattr(self.__dict__["_fn"], name)

    def __call__(self, *args, **kwargs):
        fn, modifies = self.__dict__["_fn"], self.__dict__["_modifies"]
        watched = [(label, arr, _snapshot(arr)) for label, arr in _array_arguments(fn, args, kwargs)
                   if label.split("[")[0] not in modifies]
        result = fn(*args, **kwargs)
        for label, arr, before in watched:
            if before is not None and _changed(arr, before):
                raise CheckFailure(_modified_message(label))
        for position, value in _returned_arrays(result):
            for label, arr, _ in watched:
                if _shares_memory(value, arr):
                    raise CheckFailure(_alias_message(position, label))
        return result


_NESTING = 2  # arrays inside a dict/list/tuple argument (a cache), and one level deeper


def _parameter_names(fn: Callable, args: tuple, kwargs: dict) -> list[tuple[str, Any]]:
    """(name, value) of each argument, named by the function's signature where possible."""
    import inspect

    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except (TypeError, ValueError):  # no signature, or a call the function will refuse itself
        return [(f"argument {i + 1}", a) for i, a in enumerate(args)] + list(kwargs.items())
    named = []
    for name, value in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            named += [(f"{name}[{i}]", v) for i, v in enumerate(value)]
        elif kind is inspect.Parameter.VAR_KEYWORD:
            named += list(value.items())
        else:
            named.append((name, value))
    return named


def _array_arguments(fn: Callable, args: tuple, kwargs: dict) -> list[tuple[str, np.ndarray]]:
    found: list[tuple[str, np.ndarray]] = []

    def walk(value, label: str, depth: int) -> None:
        if type(value) is np.ndarray:  # noqa: E721 (subclasses may compute on access)
            found.append((label, value))
        elif depth > 0 and type(value) is dict:  # noqa: E721
            for key, item in list(value.items())[:100]:
                walk(item, f"{label}[{key!r}]", depth - 1)
        elif depth > 0 and type(value) in (list, tuple):
            for i, item in enumerate(value[:100]):
                walk(item, f"{label}[{i}]", depth - 1)

    for name, value in _parameter_names(fn, args, kwargs):
        walk(value, name, _NESTING)
    return found


def _snapshot(arr: np.ndarray):
    """A copy of the array's bytes, shape and dtype (None for object arrays, whose elements
    are references rather than values)."""
    if arr.dtype.hasobject:
        return None
    return arr.shape, arr.dtype, arr.tobytes()


def _changed(arr: np.ndarray, before) -> bool:
    shape, dtype, data = before
    return arr.shape != shape or arr.dtype != dtype or arr.tobytes() != data


def _returned_arrays(result) -> list[tuple[int | None, np.ndarray]]:
    """The arrays a function returned directly (position None) or as items of a returned
    tuple or list (their 1-based position). Arrays inside a returned cache may refer to the
    inputs: a backward pass needs them."""
    if type(result) is np.ndarray:  # noqa: E721
        return [(None, result)]
    if type(result) in (tuple, list):
        return [(i, v) for i, v in enumerate(result[:100], 1) if type(v) is np.ndarray]  # noqa: E721
    return []


def _shares_memory(a: np.ndarray, b: np.ndarray) -> bool:
    if a.size == 0 or b.size == 0 or not np.may_share_memory(a, b):
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=10_000))
    except _TooHard:  # too costly to decide exactly: the bounds overlap, call it shared
        return True


_TooHard = getattr(getattr(np, "exceptions", np), "TooHardError", Exception)


def _modified_message(label: str) -> str:
    a = label if label.isidentifier() else "a"
    return (f"it modified the caller's array {label} in place; leave its arguments unchanged and return a new "
            f"array instead (`{a} = {a} * m` makes a new array, `{a} *= m` and `{a}[...] = v` overwrite the "
            f"caller's)")


def _alias_message(position: int | None, label: str) -> str:
    what = "the array it returned" if position is None else f"the array it returned in position {position}"
    return (f"{what} is the caller's array {label} (or a view of it), so changing one changes the "
            f"other; return a new array instead (e.g. {label.split('[')[0]}.copy() if it must be unchanged)")


_CHECKS_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "")
_SOURCE_LABELS: dict[str, tuple[str, int]] = {}  # code file name -> (how to name it, lines before it)
_GRADER_SOURCES: set[str] = set()  # files of the grader's own code (never the student's line)
_library_dirs: tuple[str, ...] | None = None


def label_source(filename: str, label: str | None, source: str = "") -> None:
    """Name the code compiled from ``filename`` (e.g. ``"cell 7"``) in the locations of
    exceptions; ``None`` marks it as the grader's own code, never shown as the student's.
    ``source`` is the cell as written, so line numbers count the blank lines IPython drops
    from a cell's start. The grader's runner names each notebook cell it runs, and itself,
    this way."""
    if label is None:
        _GRADER_SOURCES.add(os.path.realpath(filename))
    else:
        _SOURCE_LABELS[filename] = (label, _leading_blank_lines(source))


def _leading_blank_lines(source: str) -> int:
    """Lines IPython removes from the start of a cell before compiling it."""
    lines = source.splitlines()
    return next((i for i, line in enumerate(lines) if line.strip()), 0)


def _libraries() -> tuple[str, ...]:
    """Folders of the Python installation and installed packages: not the student's code."""
    global _library_dirs
    if _library_dirs is None:
        dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
        paths = sysconfig.get_paths()
        dirs.update(paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib"))
        with contextlib.suppress(Exception):
            dirs.update(site.getsitepackages())
            dirs.add(site.getusersitepackages())
        _library_dirs = tuple(os.path.join(os.path.realpath(d), "") for d in dirs if d)
    return _library_dirs


def _is_student_code(filename: str) -> bool:
    if filename in _SOURCE_LABELS:
        return True
    if filename.startswith("<"):
        return not filename.startswith("<frozen")
    path = os.path.realpath(filename)
    return not path.startswith(_CHECKS_DIR) and not path.startswith(_libraries()) and path not in _GRADER_SOURCES


def _source_label(filename: str) -> tuple[str, int]:
    """How the student knows the code of ``filename`` (a cell the grader ran, a notebook cell
    as IPython names it, a file), and the blank lines its cell had before the code."""
    if filename in _SOURCE_LABELS:
        return _SOURCE_LABELS[filename]
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    with contextlib.suppress(Exception):
        ip = get_ipython()
        number = ip.compile._filename_map[filename]
        raw = ""
        with contextlib.suppress(Exception):
            raw = ip.history_manager.input_hist_raw[number]
        return f"Cell In[{number}]", _leading_blank_lines(raw)
    return (filename if filename.startswith("<") else os.path.basename(filename)), 0


def _student_line(exc: BaseException) -> str:
    """Where in the student's code ``exc`` was raised: ``Cell In[7], line 3: out = x @ w``
    (the deepest frame of the traceback that is the student's own code, not the checker's,
    numpy's or Python's), or "" if none of the frames is."""
    tb, where = exc.__traceback__, None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if _is_student_code(filename):
            where = (filename, tb.tb_lineno)
        tb = tb.tb_next
    if where is None:
        return ""
    filename, lineno = where
    text = linecache.getline(filename, lineno).strip()
    label, skipped = _source_label(filename)
    location = f"{label}, line {lineno + skipped}"
    return f"{location}: {text[:200]}" if text else location


def _raised(exc: BaseException) -> str:
    """``raised ValueError: ...``, with the line of the student's code it came from."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 (a hostile __str__)
        text = "(its message could not be read)"
    if len(text) > 500:
        text = text[:500] + " ..."
    message = f"raised {type(exc).__name__}: {text}" if text else f"raised {type(exc).__name__}"
    where = _student_line(exc)
    return f"{message}\n  at {where}" if where else message



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


def _chapter_of(grade_id: str) -> dict[str, Check]:
    """The checks of the chapter that holds ``grade_id``; its module is found from the prefix."""
    parts = grade_id.split("_")
    for i in range(1, len(parts)):
        chapter = "_".join(parts[:i])
        try:
            checks = chapter_checks(chapter)
        except (ImportError, LookupError):
            continue
        if grade_id in checks:
            return checks
    raise KeyError(f"no check named {grade_id!r}")


def get_check(grade_id: str) -> Check:
    """The check with this grade_id; its chapter module is found from the id's prefix."""
    return _chapter_of(grade_id)[grade_id]


def cell_checks(grade_id: str) -> list[Check]:
    """The checks of the test cell that runs check ``grade_id``: the visible one first."""
    cell = get_check(grade_id).cell_id
    return sorted((c for c in _chapter_of(grade_id).values() if c.cell_id == cell), key=lambda c: c.hidden)


def _points(p: float) -> str:
    return f"{p:g} point{'' if p == 1 else 's'}"


def passed_line(check: Check, cell: list[Check]) -> str:
    """What a test cell prints when ``check`` (one of ``cell``, the checks of its test cell)
    passes: what it proves and how the cell's points are earned at grading time.

    A cell scores all its points or none: the grader gives them only if every check of the
    cell passes (:func:`autograder.judge.judge_run`, as nbgrader does for a test cell that
    raises), and every check, the visible one included, runs again on new inputs. So a
    passed visible check is a share of the points, not points kept. The numbers are the
    checks' own. A hidden check is named by its number only (its name or description
    could hint at its inputs).
    """
    total = sum(c.points for c in cell)
    hidden = [c for c in cell if c.hidden]
    if check.hidden:
        n = next(i for i, c in enumerate(hidden, 1) if c.grade_id == check.grade_id)
        return f"passed hidden check {n} of {len(hidden)} ({check.points:g} of this cell's {_points(total)})"
    head = f"passed {check.grade_id}: {check.description}"
    if not hidden:
        every = "The 1 point of this cell is" if total == 1 else f"All {_points(total)} of this cell are"
        return f"{head}\n  {every} tested here; at grading time this check runs again on new inputs."
    rest = total - check.points
    checks = f"{len(hidden)} hidden check{'s' if len(hidden) > 1 else ''}"
    verb = "is" if check.points == 1 else "are"
    # "of the kinds the visible checks use": tests/test_check_coverage.py holds every hidden
    # check to kinds of input that a visible check of the same function exercises.
    return (f"{head}\n  {check.points:g} of this cell's {_points(total)} {verb} tested here; "
            f"{rest:g} more come from {checks} at grading time, on new inputs of the kinds the "
            f"visible checks use. The {_points(total)} are all-or-nothing: a hidden check that "
            f"fails costs all of them.")


def check(grade_id: str, fn: Callable, seed: int | None = None) -> None:
    """Run a check from a notebook test cell: print what it proved if it passes (see
    :func:`passed_line`), else fail the cell.

    Raises ``AssertionError`` with the failure message, which makes nbgrader score the
    cell 0. Returns nothing, so a notebook cell shows only the printed line.
    """
    spec = get_check(grade_id)
    result = run_check(spec, fn, seed)
    if not result.passed:
        raise AssertionError(f"{grade_id} failed. {result.message}")
    print(passed_line(spec, cell_checks(grade_id)))


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
