"""The batchnorm checks: the reference passes them all, each typical bug fails exactly the
checks aimed at it, and the visible checks work without ``solutions`` (as students run them)."""
import ast
import sys
from pathlib import Path

import numpy as np
import pytest

import autograder.authoring.checks.batchnorm as module
from autograder.authoring.checks import chapter_checks, run_check
from autograder.authoring.specs.batchnorm import CHAPTER as SPEC
import bugs
from solutions import batchnorm as ref

CHECKS = chapter_checks("batchnorm")
BUGS = bugs.load("batchnorm").BUGS
REFERENCE = {f: getattr(ref, f) for f in ("batchnorm_forward", "batchnorm_backward", "identity_affine")}
VISIBLE = [c for c in CHECKS.values() if not c.hidden]
HIDDEN = [c for c in CHECKS.values() if c.hidden]


def grading_seed(check):
    return SPEC.hidden_seeds[check.grade_id] if check.hidden else None


def test_ids_points_and_cells():
    assert len(CHECKS) == len(module.CHECKS), "grade_ids must be unique"
    for c in CHECKS.values():
        assert c.grade_id.startswith(f"batchnorm_{c.function}_"), c.grade_id
        assert c.function in REFERENCE
        assert CHECKS[c.cell_id].hidden is False and CHECKS[c.cell_id].function == c.function
    assert sum(c.points for c in CHECKS.values()) == 80
    # Every graded function has visible and hidden checks.
    for f in REFERENCE:
        assert {c.hidden for c in CHECKS.values() if c.function == f} == {False, True}


@pytest.mark.parametrize("check", VISIBLE, ids=lambda c: c.grade_id)
def test_reference_passes_visible(check):
    result = run_check(check, REFERENCE[check.function])
    assert result.passed, result.message
    assert result.points_awarded == check.points


@pytest.mark.parametrize("check", HIDDEN, ids=lambda c: c.grade_id)
def test_reference_passes_hidden_on_many_seeds(check):
    # The grader may pick any seed: the tolerances must hold for all of them.
    for seed in [SPEC.hidden_seeds[check.grade_id], 0, 1, 2, 99, 2**31 - 1]:
        result = run_check(check, REFERENCE[check.function], seed)
        assert result.passed, (seed, result.message)


def test_visible_checks_need_no_solutions(monkeypatch):
    # Students do not have the solutions package: block it and rerun every visible check.
    for name in [m for m in sys.modules if m == "solutions" or m.startswith("solutions.")]:
        monkeypatch.setitem(sys.modules, name, None)
    assert all(run_check(c, REFERENCE[c.function]).passed for c in VISIBLE)
    with pytest.raises(ImportError):
        run_check(HIDDEN[0], REFERENCE[HIDDEN[0].function], 0)


def test_module_imports_nothing_but_core_and_numpy_at_top_level():
    tree = ast.parse(Path(module.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {(n.module or "") if isinstance(n, ast.ImportFrom) else n.names[0].name for n in top}
    assert names == {"__future__", "numpy", "core"}
    assert all(n.level == 1 for n in top if isinstance(n, ast.ImportFrom) and n.module == "core")


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_bug_fails_exactly_its_checks(bug):
    name, buggy = bugs.function("batchnorm", bug)
    functions = {**REFERENCE, name: buggy}
    failed_cells = set()
    for c in CHECKS.values():
        result = run_check(c, functions[c.function], grading_seed(c))
        if not result.passed:
            failed_cells.add(c.cell_id)
            assert c.function in result.message or result.message.startswith(c.function)
    assert failed_cells == BUGS[bug]["fails"]


def test_failure_messages_name_the_output_and_error():
    _, buggy = bugs.function("batchnorm", "unbiased_variance")
    msg = run_check(CHECKS["batchnorm_batchnorm_forward_torch_2d"], buggy).message
    assert msg.startswith("batchnorm_forward: out is wrong: relative error") and "got" in msg
    msg = run_check(CHECKS["batchnorm_batchnorm_forward_standardizes"], buggy).message
    assert "per-channel variance of out" in msg
    # Hidden checks report the error but no expected value.
    msg = run_check(CHECKS["batchnorm_batchnorm_forward_torch_2d_hidden"], buggy, 3).message
    assert "relative error" in msg and "expected" not in msg


def test_cache_and_shape_problems_are_reported_plainly():
    def no_cache(x, gamma, beta, eps=1e-5):
        return ref.batchnorm_forward(x, gamma, beta, eps)[0]

    def only_out_in_cache(x, gamma, beta, eps=1e-5):
        return ref.batchnorm_forward(x, gamma, beta, eps)[0], {}

    def transposed_grads(dout, cache):
        dx, dgamma, dbeta = ref.batchnorm_backward(dout, cache)
        return dx.T, dgamma, dbeta

    cache_check = CHECKS["batchnorm_batchnorm_forward_cache"]
    assert "must return a pair" in run_check(cache_check, no_cache).message
    assert "no key(s) 'xhat', 'mean', 'var'" in run_check(cache_check, only_out_in_cache).message
    msg = run_check(CHECKS["batchnorm_batchnorm_backward_autograd"], transposed_grads).message
    assert "dx has shape" in msg


def test_backward_checks_use_their_own_cache():
    # A backward pass that only reads the documented keys passes although no student forward
    # pass ran: the cache comes from the check.
    inputs = CHECKS["batchnorm_batchnorm_backward_autograd"].inputs(np.random.default_rng(0))
    assert set(inputs["cache"]) == {"xhat", "gamma", "inv_std", "m", "mean", "var"}
    _, cache = ref.batchnorm_forward(inputs["x"], inputs["gamma"], inputs["beta"], inputs["eps"])
    for key in cache:
        np.testing.assert_allclose(inputs["cache"][key], cache[key], rtol=1e-12, atol=1e-14)


def test_a_backward_pass_reading_an_undocumented_key_is_told_which_keys_it_gets():
    def backward_reading_x(dout, cache):
        return cache["x"] * 0, dout.sum(axis=0), dout.sum(axis=0)

    msg = run_check(CHECKS["batchnorm_batchnorm_backward_autograd"], backward_reading_x).message
    assert msg.startswith("batchnorm_backward: raised KeyError: 'x'; the check passes the cache batchnorm_forward's")
    assert "'xhat', 'gamma', 'inv_std', 'm', 'mean', 'var'" in msg
