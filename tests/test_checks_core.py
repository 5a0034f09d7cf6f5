"""The check machinery: verdicts, messages, and robustness against what student code returns."""
import ast
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import autograder.authoring.checks.core as core
from autograder.authoring.checks import (
    Check,
    CheckFailure,
    as_float_array,
    check,
    cell_checks,
    close,
    get_check,
    gradient_check,
    numerical_gradient,
    passed_line,
    rel_error,
    returning,
    run_check,
)
from solutions import gradcheck


def _square_inputs(rng):
    return {"x": rng.normal(size=(3, 4))}


SQUARE = Check(
    "demo_square_values", "square", 2, "squares every element",
    inputs=_square_inputs, expected=lambda inp: {"result": inp["x"] ** 2}, seed=3,
)


def square(x):
    return x**2


def test_correct_function_passes_with_its_points():
    result = run_check(SQUARE, square)
    assert result.passed and result.points_awarded == 2 and result.grade_id == "demo_square_values"


def test_buggy_function_fails_with_a_useful_message():
    result = run_check(SQUARE, lambda x: x**2 * (1 + 1e-3))
    assert not result.passed and result.points_awarded == 0
    assert result.message.startswith("square: result is wrong: relative error 5.00e-04 (allowed 1e-07)")
    assert "worst at index" in result.message and "expected" in result.message


def test_hidden_failure_does_not_show_expected_values():
    hidden = Check("demo_square_hidden", "square", 1, "", _square_inputs,
                   lambda inp: {"result": inp["x"] ** 2}, hidden=True)
    message = run_check(hidden, lambda x: x**3).message
    assert "relative error" in message and "expected" not in message and "got" not in message


@pytest.mark.parametrize("exc", [ValueError("boom"), ZeroDivisionError("boom"), SystemExit("boom")])
def test_student_exceptions_become_failed_results(exc):
    def raising(x):
        raise exc

    result = run_check(SQUARE, raising)
    assert not result.passed and f"raised {type(exc).__name__}: boom" in result.message


def test_not_implemented_is_reported_as_such():
    def stub(x):
        raise NotImplementedError()

    assert "not implemented yet" in run_check(SQUARE, stub).message


class AlwaysEqual:
    def __eq__(self, other):
        return True

    __hash__ = None


@pytest.mark.parametrize(
    "value, words",
    [
        (AlwaysEqual(), "floating-point array"),
        (np.full((3, 4), np.nan), "NaN or infinite"),
        (np.full((3, 4), np.inf), "NaN or infinite"),
        (np.zeros((4, 3)), "shape (4, 3), expected (3, 4)"),
        (np.zeros((3, 4), dtype=int), "floating-point array"),
        (np.zeros((3, 4), dtype=complex), "floating-point array"),
        ([[1.0, 2.0], [3.0]], "could not be read as an array"),
        ("nonsense", "floating-point array"),
        (None, "floating-point array"),
    ],
)
def test_bad_outputs_fail(value, words):
    result = run_check(SQUARE, lambda x: value)
    assert not result.passed and words in result.message, result.message


def test_array_subclass_cannot_fake_equality():
    class Liar(np.ndarray):
        def __eq__(self, other):
            return np.ones(self.shape, bool)

        def __sub__(self, other):
            return np.zeros(self.shape)

    assert not run_check(SQUARE, lambda x: np.zeros_like(x).view(Liar)).passed
    assert type(as_float_array(np.zeros(2).view(Liar), "out")) is np.ndarray


def test_hostile_array_conversion_fails_cleanly():
    class Hostile:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("no")

    assert "could not be read as an array" in run_check(SQUARE, lambda x: Hostile()).message


def test_mutating_an_input_fails_and_names_the_argument():
    def mutating(x):
        result = x**2
        x[...] = 0.0
        return result

    message = run_check(SQUARE, mutating).message
    assert message.startswith("square: it modified the caller's array x in place; leave its arguments unchanged "
                              "and return a new array instead"), message
    # Where the contract allows it, the check declares the argument and the change is fine;
    # derive() still sees the inputs as they were made, not as the student left them.
    allowed = Check("demo_square_values", "square", 2, "", _square_inputs,
                    expected=lambda inp: {"result": inp["x"] ** 2}, modifies=("x",))
    assert run_check(allowed, mutating).passed
    ratio = Check("demo_square_ratio", "square", 1, "", _square_inputs,
                  expected=lambda inp: {"ratio": np.ones_like(inp["x"])},
                  derive=lambda out, inp: {"ratio": out["result"] / inp["x"] ** 2}, modifies=("x",))
    assert run_check(ratio, mutating).passed


def test_returning_checks_the_tuple():
    pair = Check("demo_pair_values", "pair", 1, "", _square_inputs,
                 lambda inp: {"a": inp["x"]}, call=returning("a", "b", keep=("a",)))
    assert run_check(pair, lambda x: (x + 0.0, None)).passed
    assert "must return a tuple (a, b), got a ndarray" in run_check(pair, lambda x: x + 0.0).message
    assert "got a tuple of length 3" in run_check(pair, lambda x: (x + 0.0,) * 3).message


def test_absolute_tolerance_for_values_that_should_be_zero():
    compare = close(1e-8, atol={"s": 1e-9})
    compare({"s": np.array([1e-12, -1e-12])}, {"s": np.zeros(2)})
    with pytest.raises(CheckFailure, match=r"s is wrong: off by 1.00e-06 \(allowed 1e-09"):
        compare({"s": np.array([1e-6, 0.0])}, {"s": np.zeros(2)})


def test_warnings_and_stderr_of_student_code_are_captured(capfd):
    def noisy(x):
        print("debug output", file=sys.stderr)
        warnings.warn("careful")
        return x**2

    assert run_check(SQUARE, noisy).passed
    assert capfd.readouterr().err == ""


def test_notebook_check_function(capsys):
    from solutions.batchnorm import identity_affine

    grade_id = "batchnorm_identity_affine_recovers_input_2d"
    assert check(grade_id, identity_affine) is None
    assert capsys.readouterr().out == passed_line(get_check(grade_id), cell_checks(grade_id)) + "\n"
    with pytest.raises(AssertionError, match="batchnorm_identity_affine_recovers_input_2d failed. identity_affine:"):
        check(grade_id, lambda x, eps: (np.ones(4), np.zeros(4)))
    with pytest.raises(KeyError, match="no check named"):
        check("batchnorm_nothing_here", identity_affine)


# --- what a passed line says ---------------------------------------------------------------------


def _demo(grade_id: str, points: float, hidden: bool = False, cell: str | None = None) -> Check:
    return Check(grade_id, "f", points, "out matches torch on a (2, 3) input", _square_inputs,
                 lambda inp: {"result": inp["x"] ** 2}, hidden=hidden, cell=cell)


def test_passed_line_of_a_cell_with_hidden_checks_says_they_are_all_or_nothing():
    visible, hidden = _demo("demo_f_torch", 4), _demo("demo_f_torch_hidden", 3, True, "demo_f_torch")
    assert passed_line(visible, [visible, hidden]) == (
        "passed demo_f_torch: out matches torch on a (2, 3) input\n"
        "  4 of this cell's 7 points are tested here; 3 more come from 1 hidden check at grading time, "
        "on new inputs of the kinds the visible checks use. The 7 points are all-or-nothing: a hidden check that fails costs all of them.")
    # What a hidden check prints when it passes (at grading time): its number, not its name.
    assert passed_line(hidden, [visible, hidden]) == "passed hidden check 1 of 1 (3 of this cell's 7 points)"
    second = _demo("demo_f_torch_hidden_3d", 2, True, "demo_f_torch")
    cell = [visible, hidden, second]
    assert "4 of this cell's 9 points are tested here; 5 more come from 2 hidden checks at grading time" in passed_line(visible, cell)
    assert passed_line(second, cell) == "passed hidden check 2 of 2 (2 of this cell's 9 points)"


def test_passed_line_of_a_cell_without_hidden_checks():
    alone = _demo("demo_f_cache", 5)
    assert passed_line(alone, [alone]) == (
        "passed demo_f_cache: out matches torch on a (2, 3) input\n"
        "  All 5 points of this cell are tested here; at grading time this check runs again on new inputs.")
    one = _demo("demo_f_one", 1)
    assert "The 1 point of this cell is tested here" in passed_line(one, [one])


@pytest.mark.parametrize("chapter", ["batchnorm", "pooling"])
def test_passed_lines_count_the_points_nbgrader_gives_each_cell(chapter):
    """The numbers in a passed line are the checks' own, and they add up to the points of
    the test cell in the released notebook (what nbgrader awards, all or nothing)."""
    import json

    release = Path(__file__).resolve().parent.parent / "exercises" / "release" / chapter / f"{chapter}.ipynb"
    cells = {c["metadata"]["nbgrader"]["grade_id"]: c["metadata"]["nbgrader"]["points"]
             for c in json.loads(release.read_text())["cells"]
             if c["metadata"].get("nbgrader", {}).get("grade") and c["cell_type"] == "code"}
    for grade_id, points in cells.items():
        cell = cell_checks(grade_id)
        assert cell[0].grade_id == grade_id and not cell[0].hidden
        line = passed_line(cell[0], cell)
        hidden = sum(c.points for c in cell if c.hidden)
        if hidden:
            assert f"{cell[0].points:g} of this cell's {points:g} points" in line and f"{hidden:g} more come" in line
            assert f"The {points:g} points are all-or-nothing" in line
        else:
            assert f"All {points:g} points of this cell are tested here" in line


def test_rel_error_and_numerical_gradient_match_solutions_gradcheck():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    assert rel_error(a, b) == gradcheck.rel_error(a, b)
    assert rel_error(a, a) == 0.0
    x, dout = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    f = lambda v: np.tanh(v) * 2  # noqa: E731
    before = x.copy()
    np.testing.assert_allclose(numerical_gradient(f, x, dout), gradcheck.numerical_gradient(f, x.copy(), dout),
                               rtol=1e-12)
    assert np.array_equal(x, before)


def test_gradient_check_prints_relative_error(capsys):
    rng = np.random.default_rng(1)
    x, dout = rng.normal(size=5), rng.normal(size=5)
    gradient_check(np.sin, x, dout, np.cos(x) * dout, name="dx")
    out = capsys.readouterr().out
    assert out.startswith("dx: relative error") and "looks right" in out
    assert float(out.split()[3]) < 1e-8
    gradient_check(np.sin, x, dout, np.sin(x), name="dx")
    assert "probably wrong" in capsys.readouterr().out
    gradient_check(np.sin, x, dout, np.sin(x[:2]), name="dx")
    assert "dx: shape (2,), but the input has shape (5,)" in capsys.readouterr().out


def test_core_depends_on_numpy_and_the_standard_library_only():
    for path in (Path(core.__file__), Path(core.__file__).with_name("__init__.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] in sys.stdlib_module_names | {"numpy"} for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] in sys.stdlib_module_names | {"numpy"} | {"__future__"}


def test_released_copy_finds_chapters_with_underscores(tmp_path, monkeypatch):
    # As released: a package with another name, found by relative imports only.
    pkg = tmp_path / "coursechecks_demo"
    pkg.mkdir()
    checks_dir = Path(core.__file__).parent
    shutil.copy(checks_dir / "__init__.py", pkg)
    shutil.copy(checks_dir / "core.py", pkg)
    (pkg / "two_words.py").write_text(
        "import numpy as np\nfrom .core import Check\nCHAPTER = 'two_words'\n"
        "CHECKS = [Check('two_words_f_ok', 'f', 1, 'd', lambda rng: {'x': np.ones(2)},"
        " lambda inp: {'result': inp['x']}),\n"
        "          Check('two_words_f_indexed', 'f', 1, 'd', lambda rng: {'x': np.ones(2)},"
        " lambda inp: {'result': inp['x']}, call=lambda fn, inp: {'result': fn(**inp)['no']})]\n"
    )
    (pkg / "two.py").write_text("CHAPTER = 'something_else'\nCHECKS = []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import coursechecks_demo

    assert coursechecks_demo.get_check("two_words_f_ok").function == "f"
    coursechecks_demo.check("two_words_f_ok", lambda x: x + 0.0)
    # An error of the checker's own code (here the chapter module's) is not the student's line.
    with pytest.raises(AssertionError) as failed:
        coursechecks_demo.check("two_words_f_indexed", lambda x: x + 0.0)
    assert str(failed.value).endswith("f: raised IndexError: only integers, slices (`:`), ellipsis (`...`), "
                                      "numpy.newaxis (`None`) and integer or boolean arrays are valid indices")
    with pytest.raises(KeyError):
        get_check("two_words_f_ok")


def test_steps_can_run_apart_with_outputs_passed_as_plain_arrays(tmp_path):
    # How a grader runs student code elsewhere: only arrays cross over (.npz, no pickle).
    from autograder.authoring.checks import call_student, expected_values, judge, make_inputs

    for fn, passed in ((square, True), (lambda x: x**3, False)):
        inputs = make_inputs(SQUARE, seed=11)
        expected = expected_values(SQUARE, inputs)
        np.savez(tmp_path / "out.npz", **call_student(SQUARE, fn, inputs))
        with np.load(tmp_path / "out.npz", allow_pickle=False) as data:
            raw = {k: data[k] for k in data.files}
        result = judge(SQUARE, raw, inputs, expected)
        assert result.passed is passed
        assert result == run_check(SQUARE, fn, seed=11)
    with pytest.raises(CheckFailure, match="raised ValueError"):
        call_student(SQUARE, lambda x: int("x"), make_inputs(SQUARE))


# --- diagnoses: arguments changed in place or returned, and the student's line -------------------


def _pair_check(expected=lambda inp: {"result": inp["a"] + inp["b"]}, **kwargs) -> Check:
    """A check that calls ``fn(a, b)`` positionally, as chained checks do."""
    def inputs(rng):
        return {"a": rng.normal(size=4), "b": rng.normal(size=4)}

    return Check("demo_add_values", "add", 1, "", inputs, expected,
                 call=lambda fn, inp: {"result": fn(inp["a"], inp["b"])}, **kwargs)


def test_a_changed_argument_is_named_by_the_functions_own_parameter():
    def add(first, second):
        second += first
        return second + 0.0

    message = run_check(_pair_check(), add).message
    assert message.startswith("add: it modified the caller's array second in place; leave its arguments unchanged "
                              "and return a new array instead (`second = second * m` makes a new array, "
                              "`second *= m` and `second[...] = v` overwrite the caller's)"), message


def test_an_array_changed_inside_a_dict_argument_is_named_with_its_key():
    def inputs(rng):
        return {"dout": rng.normal(size=3), "cache": {"x": rng.normal(size=3), "eps": 1e-5}}

    backward = Check("demo_backward_values", "backward", 1, "", inputs, lambda inp: {"dx": inp["dout"]},
                     call=returning("dx"))

    def scaling_the_cache(dout, cache):
        cache["x"] *= 2
        return dout.copy()

    message = run_check(backward, scaling_the_cache).message
    assert message.startswith("backward: it modified the caller's array cache['x'] in place;"), message
    assert "`a = a * m` makes a new array" in message
    assert run_check(backward, lambda dout, cache: dout.copy()).passed


@pytest.mark.parametrize("fn, name", [(lambda a, b: b, "b"), (lambda a, b: b[::-1], "b"),
                                      (lambda a, b: np.asarray(a), "a")])
def test_a_returned_argument_is_an_alias_and_named(fn, name):
    message = run_check(_pair_check(expected=lambda inp: {"result": inp["b"]}), fn).message
    assert message == (f"add: the array it returned is the caller's array {name} (or a view of it), so changing "
                       f"one changes the other; return a new array instead (e.g. {name}.copy() if it must be "
                       f"unchanged)")


def test_aliases_among_returned_values_are_found_by_position_and_caches_may_hold_inputs():
    pair = Check("demo_pair_values", "pair", 1, "", _square_inputs,
                 lambda inp: {"out": inp["x"] ** 2}, call=returning("out", "cache", keep=("out",)))
    assert run_check(pair, lambda x: (x**2, {"x": x})).passed  # a backward pass needs the input
    message = run_check(pair, lambda x: (x**2, x)).message
    assert message.startswith("pair: the array it returned in position 2 is the caller's array x"), message


def test_arguments_the_contract_lets_change_are_not_diagnosed():
    def add_in_place(a, b):
        b += a
        return b

    assert run_check(_pair_check(expected=lambda inp: {"result": inp["a"] + inp["b"]}, modifies=("b",)),
                     add_in_place).passed
    assert "caller's array b in place" in run_check(_pair_check(), add_in_place).message


def test_running_statistics_written_in_place_are_named_not_reported_as_a_wrong_value():
    """The case that was reported as "relative error 1.00e+00" with a correct formula: the
    steps of the check's chain returned the same arrays, so the statistics after step 1
    were those after the last step. The message now names the argument, in a hidden check too."""
    import dataclasses

    import bugs

    _, in_place = bugs.function("bn_inference", "in_place_running_stats")
    visible = get_check("bn_inference_batchnorm_train_step_torch_2d")
    hidden = get_check("bn_inference_batchnorm_train_step_torch_2d_hidden")
    message = run_check(visible, in_place).message
    assert message == ("batchnorm_train_step: it modified the caller's array running_mean in place; leave its "
                       "arguments unchanged and return a new array instead (`running_mean = running_mean * m` "
                       "makes a new array, `running_mean *= m` and `running_mean[...] = v` overwrite the caller's)")
    # The hidden check gives the same diagnosis, after the kind of input it used (no seed,
    # value or expected value in it).
    function, diagnosis = message.split(": ", 1)
    hidden_message = run_check(hidden, in_place, seed=12345).message
    assert hidden_message.startswith(f"{function} (hidden check on ")
    assert hidden_message.endswith(f"): {diagnosis}")
    # Without the diagnosis (as if the contract allowed it), the same code showed only the symptom.
    unwatched = dataclasses.replace(visible, modifies=("running_mean", "running_var"))
    symptom = run_check(unwatched, in_place).message
    assert symptom.startswith("batchnorm_train_step: running_mean after step 1 is wrong: relative error 1.00e+00")


STUDENT_FILE = '''import numpy as np


def flatten(x):
    rows = x.shape[0]
    return np.reshape(x, (rows, 7))
'''


def test_an_exception_shows_the_students_line_not_numpys_or_the_checkers(tmp_path, monkeypatch):
    (tmp_path / "student_code.py").write_text(STUDENT_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import student_code

    message = run_check(SQUARE, student_code.flatten).message
    first, where = message.split("\n")
    assert first.startswith("square: raised ValueError: cannot reshape array of size 12 into shape (3,7)")
    assert where == "  at student_code.py, line 6: return np.reshape(x, (rows, 7))"
    hidden = Check("demo_square_hidden", "square", 1, "", _square_inputs, lambda inp: {"result": inp["x"] ** 2},
                   hidden=True)
    assert run_check(hidden, student_code.flatten, seed=4).message == message


def test_an_exception_in_a_notebook_cell_is_shown_as_ipython_names_the_cell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_cell("x = 1")
        # IPython drops the blank lines a cell starts with; the line number counts them, as
        # the student sees the cell.
        shell.run_cell("\n\nimport numpy as np\n\ndef square(x):\n    y = x @ np.ones((5, 5))\n    return y",
                       store_history=True)
        count = shell.execution_count - 1
        message = run_check(SQUARE, shell.user_ns["square"]).message
    finally:
        InteractiveShell.clear_instance()
    assert message.startswith("square: raised ValueError: matmul: Input operand 1 has a mismatch")
    assert message.endswith(f"\n  at Cell In[{count}], line 6: y = x @ np.ones((5, 5))")


def test_a_labelled_source_is_named_by_its_label():
    # The grader's runner labels each notebook cell it runs ("cell 8": its place in the notebook).
    filename = "<demo-cell-for-label>"
    linecache_lines = "def square(x):\n    return x.missing\n"
    import linecache

    linecache.cache[filename] = (len(linecache_lines), None, linecache_lines.splitlines(True), filename)
    namespace: dict = {}
    exec(compile(linecache_lines, filename, "exec"), namespace)  # noqa: S102 (test fixture)
    core.label_source(filename, "cell 8", source="\n  \n" + linecache_lines)  # as written in the notebook
    try:
        message = run_check(SQUARE, namespace["square"]).message
    finally:
        core._SOURCE_LABELS.pop(filename)
        linecache.cache.pop(filename)
    assert message == ("square: raised AttributeError: 'numpy.ndarray' object has no attribute 'missing'\n"
                       "  at cell 8, line 4: return x.missing")
