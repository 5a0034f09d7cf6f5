"""The layernorm checks: the reference passes them all, each typical bug fails exactly the
checks aimed at it, and the visible checks work without ``solutions`` (as students run them)."""
import ast
import sys
from pathlib import Path

import numpy as np
import pytest

import autograder.authoring.checks.layernorm as module
from autograder.authoring.checks import chapter_checks, run_check
from autograder.authoring.specs.layernorm import CHAPTER as SPEC
from autograder.authoring.specs.layernorm import EXPERIMENT_CODE
import bugs
from solutions import layernorm as ref
from solutions.batchnorm import batchnorm_forward

CHECKS = chapter_checks("layernorm")
BUGS = bugs.load("layernorm").BUGS
FUNCTIONS = ("layernorm_forward", "layernorm_backward", "groupnorm_forward", "rmsnorm_forward")
REFERENCE = {f: getattr(ref, f) for f in FUNCTIONS}
VISIBLE = [c for c in CHECKS.values() if not c.hidden]
HIDDEN = [c for c in CHECKS.values() if c.hidden]


def grading_seed(check):
    return SPEC.hidden_seeds[check.grade_id] if check.hidden else None


def test_ids_points_and_cells():
    assert len(CHECKS) == len(module.CHECKS), "grade_ids must be unique"
    for c in CHECKS.values():
        assert c.grade_id.startswith(f"layernorm_{c.function}_"), c.grade_id
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


def test_visible_checks_hold_on_other_seeds():
    # The visible tolerances (standardisation within 1e-4, zero sums within 1e-9) are not
    # tuned to the one seed a visible check uses.
    for c in VISIBLE:
        if "finite_difference" in c.grade_id:
            continue  # the slow ones; their hidden twin runs on many seeds above
        for seed in (101, 202, 303):
            assert run_check(c, REFERENCE[c.function], seed).passed, (c.grade_id, seed)


def test_visible_checks_need_no_solutions(monkeypatch):
    # Students do not have the solutions package: block it and rerun every visible check.
    for name in [m for m in sys.modules if m == "solutions" or m.startswith("solutions.")]:
        monkeypatch.setitem(sys.modules, name, None)
    assert all(run_check(c, REFERENCE[c.function]).passed for c in VISIBLE)
    with pytest.raises(ImportError):
        run_check(CHECKS["layernorm_layernorm_forward_torch_2d_hidden"], REFERENCE["layernorm_forward"], 0)


def test_module_imports_nothing_but_core_and_numpy_at_top_level():
    tree = ast.parse(Path(module.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {(n.module or "") if isinstance(n, ast.ImportFrom) else n.names[0].name for n in top}
    assert names == {"__future__", "numpy", "core"}
    assert all(n.level == 1 for n in top if isinstance(n, ast.ImportFrom) and n.module == "core")


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_bug_fails_exactly_its_checks(bug):
    name, buggy = bugs.function("layernorm", bug)
    functions = {**REFERENCE, name: buggy}
    failed_cells = set()
    for c in CHECKS.values():
        result = run_check(c, functions[c.function], grading_seed(c))
        if not result.passed:
            failed_cells.add(c.cell_id)
            assert result.message.startswith(c.function)
    assert failed_cells == BUGS[bug]["fails"]


def test_bugs_cover_every_function_and_the_e2e_ones_exist():
    module_bugs = bugs.load("layernorm")
    assert {f"layernorm_{f}_answer" for f in FUNCTIONS} == {b["answer_cell"] for b in BUGS.values()}
    assert len(module_bugs.E2E) >= 2 and set(module_bugs.E2E) <= set(BUGS)


def test_failure_messages_name_the_output_and_error():
    _, buggy = bugs.function("layernorm", "layernorm_unbiased_variance")
    msg = run_check(CHECKS["layernorm_layernorm_forward_torch_2d"], buggy).message
    assert msg.startswith("layernorm_forward: out is wrong: relative error") and "got" in msg
    msg = run_check(CHECKS["layernorm_layernorm_forward_standardizes"], buggy).message
    assert "per-sample variance of out" in msg
    # Hidden checks report the error but no expected value.
    msg = run_check(CHECKS["layernorm_layernorm_forward_torch_2d_hidden"], buggy, 3).message
    assert "relative error" in msg and "expected" not in msg
    _, batch_axis = bugs.function("layernorm", "layernorm_over_batch_axis")
    msg = run_check(CHECKS["layernorm_layernorm_forward_per_sample"], batch_axis).message
    assert "out of each sample alone minus its row of the batch output is wrong" in msg
    _, interleaved = bugs.function("layernorm", "groupnorm_interleaved_channels")
    msg = run_check(CHECKS["layernorm_groupnorm_forward_consecutive_groups"], interleaved).message
    assert "mean of out over each group is wrong" in msg


def test_cache_and_shape_problems_are_reported_plainly():
    def no_cache(x, gamma, beta, normalized_ndim=1, eps=1e-5):
        return ref.layernorm_forward(x, gamma, beta, normalized_ndim, eps)[0]

    def dict_cache(x, gamma, beta, normalized_ndim=1, eps=1e-5):
        out, (xhat, inv_std, g, axes) = ref.layernorm_forward(x, gamma, beta, normalized_ndim, eps)
        return out, {"xhat": xhat, "inv_std": inv_std}

    def flat_inv_std(x, gamma, beta, normalized_ndim=1, eps=1e-5):
        out, (xhat, inv_std, g, axes) = ref.layernorm_forward(x, gamma, beta, normalized_ndim, eps)
        return out, (xhat, inv_std.reshape(inv_std.shape[0]), g, axes)

    def last_axis_only(x, gamma, beta, normalized_ndim=1, eps=1e-5):
        out, (xhat, inv_std, g, axes) = ref.layernorm_forward(x, gamma, beta, normalized_ndim, eps)
        return out, (xhat, inv_std, g, (x.ndim - 1,))

    def negative_axes(x, gamma, beta, normalized_ndim=1, eps=1e-5):
        out, (xhat, inv_std, g, axes) = ref.layernorm_forward(x, gamma, beta, normalized_ndim, eps)
        return out, (xhat, inv_std, g, tuple(a - x.ndim for a in axes))

    def transposed_grads(dout, cache):
        dx, dgamma, dbeta = ref.layernorm_backward(dout, cache)
        return dx.T, dgamma, dbeta

    cache_check = CHECKS["layernorm_layernorm_forward_cache"]
    assert "must return a pair" in run_check(cache_check, no_cache).message
    assert "must be a tuple (xhat, inv_std, gamma, axes), got a dict" in run_check(cache_check, dict_cache).message
    assert "cache[1] (inv_std) has shape (3,), expected (3, 1, 1)" in run_check(cache_check, flat_inv_std).message
    assert "cache[3] (axes) must be the normalized axes (1, 2)" in run_check(cache_check, last_axis_only).message
    assert run_check(cache_check, negative_axes).passed  # (-2, -1) names the same axes
    msg = run_check(CHECKS["layernorm_layernorm_backward_autograd"], transposed_grads).message
    assert "dx has shape" in msg
    msg = run_check(CHECKS["layernorm_layernorm_forward_per_sample"], no_cache).message
    assert "must return a tuple (out, cache)" in msg


def test_backward_checks_use_their_own_cache():
    # A backward pass that only reads the documented tuple passes although no student forward
    # pass ran: the cache comes from the check and equals the reference's.
    for gid in ("layernorm_layernorm_backward_autograd", "layernorm_layernorm_backward_param_grads"):
        inputs = CHECKS[gid].inputs(np.random.default_rng(0))
        forward = {k: inputs[k] for k in ("x", "gamma", "beta", "normalized_ndim", "eps")}
        _, cache = ref.layernorm_forward(**forward)
        assert inputs["cache"][3] == cache[3]
        for mine, theirs in zip(inputs["cache"][:3], cache[:3]):
            assert mine.shape == theirs.shape
            np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-14)


def test_experiment_batch_norm_is_layer_norm_of_the_transpose():
    # The experiment computes training-mode BN with layernorm_forward on swapped axes.
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=(5, 3))
    via_ln = ref.layernorm_forward(x.T, np.ones(5), np.zeros(5))[0].T
    assert np.allclose(via_ln, batchnorm_forward(x, np.ones(3), np.zeros(3))[0], rtol=1e-12, atol=1e-14)
    assert "layernorm_forward(per_feature" in EXPERIMENT_CODE
