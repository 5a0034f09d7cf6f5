"""The dropout checks: the reference passes them all (on many seeds, since the grader may pick
any), each typical bug fails exactly the checks aimed at it, the visible checks work without
``solutions``, and answers that draw their random numbers differently still pass."""
import ast
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import autograder.authoring.checks.dropout as module
from autograder.authoring.checks import chapter_checks, run_check
from autograder.authoring.specs.dropout import CHAPTER as SPEC
import bugs
from solutions import dropout as ref

CHECKS = chapter_checks("dropout")
BUGS = bugs.load("dropout").BUGS
FUNCTIONS = ("dropout_forward", "dropout_backward", "vanilla_dropout_forward", "gaussian_dropout_forward")
REFERENCE = {f: getattr(ref, f) for f in FUNCTIONS}
VISIBLE = [c for c in CHECKS.values() if not c.hidden]
HIDDEN = [c for c in CHECKS.values() if c.hidden]


def grading_seed(check):
    return SPEC.hidden_seeds[check.grade_id] if check.hidden else None


def test_ids_points_and_cells():
    assert len(CHECKS) == len(module.CHECKS), "grade_ids must be unique"
    for c in CHECKS.values():
        assert c.grade_id.startswith(f"dropout_{c.function}_"), c.grade_id
        assert c.function in REFERENCE
        assert CHECKS[c.cell_id].hidden is False and CHECKS[c.cell_id].function == c.function
    assert sum(c.points for c in CHECKS.values()) == 80
    for f in REFERENCE:
        assert {c.hidden for c in CHECKS.values() if c.function == f} == {False, True}


@pytest.mark.parametrize("check", VISIBLE, ids=lambda c: c.grade_id)
def test_reference_passes_visible(check):
    result = run_check(check, REFERENCE[check.function])
    assert result.passed, result.message
    assert result.points_awarded == check.points


@pytest.mark.parametrize("check", HIDDEN, ids=lambda c: c.grade_id)
def test_reference_passes_hidden_on_many_seeds(check):
    for seed in [SPEC.hidden_seeds[check.grade_id], 0, 1, 2, 99, 2**31 - 1]:
        result = run_check(check, REFERENCE[check.function], seed)
        assert result.passed, (seed, result.message)


def _other_stream(fn):
    """The reference answer drawing from a differently seeded generator, as a correct answer
    that consumes its random numbers in another order would."""

    def wrapped(x, p, training=True, rng=None):
        return fn(x, p, training=training, rng=np.random.default_rng([7, int(rng)]))

    wrapped.__name__ = fn.__name__
    return wrapped


@pytest.mark.parametrize("check", [c for c in CHECKS.values() if c.function != "dropout_backward"],
                         ids=lambda c: c.grade_id)
def test_random_checks_do_not_depend_on_the_random_stream(check):
    result = run_check(check, _other_stream(REFERENCE[check.function]), grading_seed(check))
    assert result.passed, result.message


def test_a_float_or_inverted_mask_is_refused_plainly():
    def float_mask(x, p, training=True, rng=None):
        out, mask = ref.dropout_forward(x, p, training, rng)
        return out, None if mask is None else mask.astype(float)

    def dropped_mask(x, p, training=True, rng=None):
        out, mask = ref.dropout_forward(x, p, training, rng)
        return out, None if mask is None else ~mask

    def eval_mask(x, p, training=True, rng=None):
        return ref.dropout_forward(x, p, True, rng)

    msg = run_check(CHECKS["dropout_dropout_forward_values"], float_mask).message
    assert "mask must be a boolean array (True = kept)" in msg and "float64" in msg
    msg = run_check(CHECKS["dropout_dropout_forward_values"], dropped_mask).message
    assert msg.startswith("dropout_forward: out (compared with x / (1 - p) where your mask is True")
    msg = run_check(CHECKS["dropout_dropout_forward_eval_identity"], eval_mask).message
    assert "in evaluation mode mask must be None" in msg


def test_visible_checks_need_no_solutions(monkeypatch):
    for name in [m for m in sys.modules if m == "solutions" or m.startswith("solutions.")]:
        monkeypatch.setitem(sys.modules, name, None)
    assert all(run_check(c, REFERENCE[c.function]).passed for c in VISIBLE)
    reference_backed = [c for c in HIDDEN if c.grade_id == "dropout_dropout_backward_torch_hidden"]
    with pytest.raises(ImportError):
        run_check(reference_backed[0], REFERENCE["dropout_backward"], 0)


def test_module_imports_nothing_but_core_math_and_numpy_at_top_level():
    tree = ast.parse(Path(module.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {(n.module or "") if isinstance(n, ast.ImportFrom) else n.names[0].name for n in top}
    assert names == {"__future__", "math", "numpy", "core"}
    assert all(n.level == 1 for n in top if isinstance(n, ast.ImportFrom) and n.module == "core")


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_bug_fails_exactly_its_checks(bug):
    name, buggy = bugs.function("dropout", bug)
    functions = {**REFERENCE, name: buggy}
    failed_cells = set()
    for c in CHECKS.values():
        result = run_check(c, functions[c.function], grading_seed(c))
        if not result.passed:
            failed_cells.add(c.cell_id)
            assert result.message.startswith(c.function)
    assert failed_cells == BUGS[bug]["fails"]


def _off_by_and_allowed(message):
    off, allowed = re.search(r"off by ([0-9.e+-]+) \(allowed ([0-9.e+-]+);", message).groups()
    return float(off), float(allowed)


def test_bugs_fail_by_a_wide_margin():
    """The Monte Carlo tolerances are a few standard errors; the bugs miss by far more."""
    _, no_rescale = bugs.function("dropout", "no_rescale")
    msg = run_check(CHECKS["dropout_dropout_forward_moments"], no_rescale).message
    assert "mean of out / x over the draws is wrong" in msg
    off, allowed = _off_by_and_allowed(msg)
    assert off == pytest.approx(0.3, abs=0.02) and off > 10 * allowed  # E[out / x] = 0.7, not 1
    _, std_bug = bugs.function("dropout", "gaussian_std_instead_of_variance")
    msg = run_check(CHECKS["dropout_gaussian_dropout_forward_moments"], std_bug).message
    assert "variance of out / x over the draws is wrong" in msg
    off, allowed = _off_by_and_allowed(msg)
    ratio = 0.75 / 0.25  # p / (1 - p) at the visible check's p = 0.75: the bug's variance is its square
    assert off == pytest.approx(ratio**2 - ratio, rel=0.05) and off > 10 * allowed
    _, bernoulli = bugs.function("dropout", "gaussian_with_bernoulli_noise")
    off, allowed = _off_by_and_allowed(run_check(CHECKS["dropout_gaussian_dropout_forward_normal"], bernoulli).message)
    assert off == pytest.approx(0.8 - 0.6827, abs=0.01) and off > 10 * allowed
    # At p = 0.5 the standard deviation and the variance coincide: no check may rely on it.
    assert all(c.inputs(np.random.default_rng(0))["p"] != 0.5
               for c in CHECKS.values() if c.function == "gaussian_dropout_forward")


def test_failure_messages_name_the_output_and_error():
    _, buggy = bugs.function("dropout", "rescale_at_test_time")
    msg = run_check(CHECKS["dropout_dropout_forward_eval_identity"], buggy).message
    assert msg.startswith("dropout_forward: out is wrong: relative error") and "got" in msg
    _, buggy = bugs.function("dropout", "p_as_keep_probability")
    msg = run_check(CHECKS["dropout_dropout_forward_keep_fraction"], buggy).message
    assert "share of nonzero entries of out is wrong" in msg and "expected 0.7" in msg
    # Hidden checks report the error but no expected value.
    msg = run_check(CHECKS["dropout_dropout_forward_keep_fraction_hidden"], buggy, 3).message
    assert "off by" in msg and "expected" not in msg
    _, buggy = bugs.function("dropout", "backward_without_eval_mode")
    msg = run_check(CHECKS["dropout_dropout_backward_eval"], buggy).message
    assert msg.startswith("dropout_backward: raised TypeError")


def test_backward_check_uses_pytorchs_own_mask():
    inputs = CHECKS["dropout_dropout_backward_torch"].inputs(np.random.default_rng(0))
    mask, p = inputs["mask"], inputs["p"]
    assert mask.dtype == np.bool_ and 0 < mask.mean() < 1
    expected = CHECKS["dropout_dropout_backward_torch"].expected(inputs)["dx"]
    np.testing.assert_array_equal(expected == 0, ~mask)
    np.testing.assert_allclose(expected[mask], inputs["dout"][mask] / (1 - p), rtol=1e-15)
