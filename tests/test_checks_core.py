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
    close,
    get_check,
    gradient_check,
    numerical_gradient,
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


def test_mutating_the_inputs_changes_nothing():
    def mutating(x):
        result = x**2
        x[...] = 0.0
        return result

    assert run_check(SQUARE, mutating).passed
    # derive() sees the inputs as they were made, not as the student left them.
    ratio = Check("demo_square_ratio", "square", 1, "", _square_inputs,
                  expected=lambda inp: {"ratio": np.ones_like(inp["x"])},
                  derive=lambda out, inp: {"ratio": out["result"] / inp["x"] ** 2})
    assert run_check(ratio, mutating).passed


def test_returning_checks_the_tuple():
    pair = Check("demo_pair_values", "pair", 1, "", _square_inputs,
                 lambda inp: {"a": inp["x"]}, call=returning("a", "b", keep=("a",)))
    assert run_check(pair, lambda x: (x, None)).passed
    assert "must return a tuple (a, b), got a ndarray" in run_check(pair, lambda x: x).message
    assert "got a tuple of length 3" in run_check(pair, lambda x: (x, x, x)).message


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

    assert check("batchnorm_identity_affine_recovers_input_2d", identity_affine) is None
    assert capsys.readouterr().out.startswith("passed batchnorm_identity_affine_recovers_input_2d (5 points):")
    with pytest.raises(AssertionError, match="batchnorm_identity_affine_recovers_input_2d failed. identity_affine:"):
        check("batchnorm_identity_affine_recovers_input_2d", lambda x, eps: (np.ones(4), np.zeros(4)))
    with pytest.raises(KeyError, match="no check named"):
        check("batchnorm_nothing_here", identity_affine)


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
        " lambda inp: {'result': inp['x']})]\n"
    )
    (pkg / "two.py").write_text("CHAPTER = 'something_else'\nCHECKS = []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import coursechecks_demo

    assert coursechecks_demo.get_check("two_words_f_ok").function == "f"
    coursechecks_demo.check("two_words_f_ok", lambda x: x)
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
