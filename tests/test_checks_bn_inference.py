"""The bn_inference checks: the reference passes them all, each typical bug fails exactly the
checks aimed at it, the visible checks work without ``solutions`` (as students run them), and
the forward pass given to students agrees with the reference."""
import ast
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import autograder.authoring.checks.bn_inference as module
import bugs
from autograder.authoring.checks import chapter_checks, run_check
from autograder.authoring.specs import bn_inference as spec_module
from autograder.authoring.specs.bn_inference import CHAPTER as SPEC
from solutions import batchnorm as bn_ref
from solutions import bn_inference as ref
from solutions.gradcheck import rel_error

CHECKS = chapter_checks("bn_inference")
BUGS = bugs.load("bn_inference").BUGS
FUNCTIONS = ("batchnorm_train_step", "batchnorm_eval", "population_statistics", "recalibrate_batchnorm",
             "fold_batchnorm")
REFERENCE = {f: getattr(ref, f) for f in FUNCTIONS}
VISIBLE = [c for c in CHECKS.values() if not c.hidden]
HIDDEN = [c for c in CHECKS.values() if c.hidden]


def grading_seed(check):
    return SPEC.hidden_seeds[check.grade_id] if check.hidden else None


def test_ids_points_and_cells():
    assert len(CHECKS) == len(module.CHECKS), "grade_ids must be unique"
    for c in CHECKS.values():
        assert c.grade_id.startswith(f"bn_inference_{c.function}_"), c.grade_id
        assert c.function in REFERENCE
        assert CHECKS[c.cell_id].hidden is False and CHECKS[c.cell_id].function == c.function
    assert sum(c.points for c in CHECKS.values()) == 80
    assert {p.functions[-1] for p in SPEC.parts} == set(FUNCTIONS)
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
    # Only the buggy function's checks: the reference passes all the others (tested above).
    name, buggy = bugs.function("bn_inference", bug)
    failed_cells = set()
    for c in [c for c in CHECKS.values() if c.function == name]:
        result = run_check(c, buggy, grading_seed(c))
        if not result.passed:
            failed_cells.add(c.cell_id)
            assert result.message.startswith(c.function)
    assert failed_cells == BUGS[bug]["fails"]


def test_failure_messages_name_the_output_and_the_step():
    _, biased = bugs.function("bn_inference", "biased_running_var")
    msg = run_check(CHECKS["bn_inference_batchnorm_train_step_unbiased_running_var"], biased).message
    assert msg.startswith("batchnorm_train_step: running_var after step 1 is wrong: relative error")
    assert "got" in msg and "expected" in msg
    _, keras = bugs.function("bn_inference", "keras_momentum")
    assert "running_mean after step 1 is wrong" in run_check(CHECKS["bn_inference_batchnorm_train_step_torch_2d"],
                                                            keras).message
    # Hidden checks report the error but no expected value.
    msg = run_check(CHECKS["bn_inference_batchnorm_train_step_torch_2d_hidden"], biased, 3).message
    assert "relative error" in msg and "expected" not in msg
    _, two_passes = bugs.function("bn_inference", "two_passes")
    msg = run_check(CHECKS["bn_inference_population_statistics_one_shot_iterator"], two_passes).message
    assert msg.startswith("population_statistics: var is wrong") and "got 0," in msg


def test_interface_problems_are_reported_plainly():
    def float_counter(x, gamma, beta, rm, rv, nbt, momentum=0.1, eps=1e-5):
        out, rm, rv, nbt = ref.batchnorm_train_step(x, gamma, beta, rm, rv, nbt, momentum, eps)
        return out, rm, rv, float(nbt)

    def three_values(x, gamma, beta, rm, rv, nbt, momentum=0.1, eps=1e-5):
        return ref.batchnorm_train_step(x, gamma, beta, rm, rv, nbt, momentum, eps)[:3]

    def returns_a_copy(model, batches):
        import copy

        return ref.recalibrate_batchnorm(copy.deepcopy(model), batches)

    def transposed_weight(*args, **kwargs):
        weight, bias = ref.fold_batchnorm(*args, **kwargs)
        return weight.T, bias

    step = CHECKS["bn_inference_batchnorm_train_step_torch_2d"]
    assert "num_batches_tracked must be an int, got float" in run_check(step, float_counter).message
    assert "must return a tuple (out, running_mean, running_var, num_batches_tracked)" in \
        run_check(step, three_values).message
    msg = run_check(CHECKS["bn_inference_recalibrate_batchnorm_restores_modes"], returns_a_copy).message
    assert "must return the model it was given" in msg
    assert "weight has shape (6, 4), expected (4, 6)" in \
        run_check(CHECKS["bn_inference_fold_batchnorm_linear"], transposed_weight).message


def test_restore_message_names_the_modules():
    _, buggy = bugs.function("bn_inference", "recalibrate_without_restoring")
    msg = run_check(CHECKS["bn_inference_recalibrate_batchnorm_restores_modes"], buggy).message
    assert "training flag of 'the model', '1'" in msg

    def momentum_not_restored(model, batches):
        momenta = [m.momentum for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        ref.recalibrate_batchnorm(model, batches)
        model[1].momentum = 0.1  # it was None
        assert momenta[0] is None
        return model

    msg = run_check(CHECKS["bn_inference_recalibrate_batchnorm_restores_modes"], momentum_not_restored).message
    assert "momentum of BN layer(s) '1' differs" in msg


def test_checks_leave_the_global_torch_seed_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    for grade_id in ("bn_inference_recalibrate_batchnorm_dropout_off", "bn_inference_recalibrate_batchnorm_restores_modes"):
        assert run_check(CHECKS[grade_id], REFERENCE["recalibrate_batchnorm"]).passed
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("shape, eps", [((6, 4), 1e-5), ((3, 2, 5), 1e-3), ((2, 3, 4, 4), 1e-5)])
def test_provided_forward_agrees_with_the_reference(shape, eps):
    # The notebook gives students a torch-computed batchnorm_forward: it must be the
    # batchnorm exercise's function in everything the train step uses.
    rng = np.random.default_rng(sum(shape))
    x = 3.0 + 2.0 * rng.standard_normal(shape)
    gamma, beta = rng.uniform(0.5, 2.0, shape[1]), rng.standard_normal(shape[1])
    out, cache = spec_module.batchnorm_forward(x, gamma, beta, eps)
    ref_out, ref_cache = bn_ref.batchnorm_forward(x, gamma, beta, eps)
    assert rel_error(out, ref_out) < 1e-12
    assert set(cache) == set(ref_cache) and cache["m"] == ref_cache["m"]
    for key in ("xhat", "inv_std", "mean", "var", "gamma"):
        assert np.shape(cache[key]) == np.shape(ref_cache[key])
        assert rel_error(cache[key], ref_cache[key]) < 1e-12, key
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        spec_module.batchnorm_forward(np.ones((1, 3)), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        spec_module.batchnorm_forward(np.ones((4, 3)), np.ones(2), np.zeros(3))
