"""The variance_shift checks: the reference passes them all, a correct answer that draws its
random numbers differently passes too, each typical bug fails exactly the checks aimed at it,
and the visible checks work without ``solutions`` (as students run them)."""
import ast
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

import autograder.authoring.checks.variance_shift as module
from autograder.authoring.checks import chapter_checks, make_inputs, run_check
from autograder.authoring.specs.variance_shift import CHAPTER as SPEC
import bugs
from solutions import variance_shift as ref
from solutions.dropout import dropout_forward

CHECKS = chapter_checks("variance_shift")
BUGS = bugs.load("variance_shift").BUGS
FUNCTIONS = ("dropout_variance_shift", "uout_forward", "uout_variance_shift", "simulate_variance_shift",
             "bn_variance_shift")
REFERENCE = {f: getattr(ref, f) for f in FUNCTIONS}
VISIBLE = [c for c in CHECKS.values() if not c.hidden]
HIDDEN = [c for c in CHECKS.values() if c.hidden]
# Checks whose verdict depends on random numbers the student's function draws.
RANDOM = [c for c in VISIBLE if c.function in ("uout_forward", "simulate_variance_shift")]


def grading_seed(check):
    return SPEC.hidden_seeds[check.grade_id] if check.hidden else None


def test_ids_points_and_cells():
    assert len(CHECKS) == len(module.CHECKS), "grade_ids must be unique"
    for c in CHECKS.values():
        assert c.grade_id.startswith(f"variance_shift_{c.function}_"), c.grade_id
        assert c.function in REFERENCE
        assert CHECKS[c.cell_id].hidden is False and CHECKS[c.cell_id].function == c.function
    assert sum(c.points for c in CHECKS.values()) == 80
    assert {p.functions[-1] for p in SPEC.parts} == set(FUNCTIONS)
    for f in FUNCTIONS:
        assert {c.hidden for c in CHECKS.values() if c.function == f} == {False, True}


@pytest.mark.parametrize("check", VISIBLE, ids=lambda c: c.grade_id)
def test_reference_passes_visible(check):
    result = run_check(check, REFERENCE[check.function])
    assert result.passed, result.message
    assert result.points_awarded == check.points


@pytest.mark.parametrize("check", HIDDEN, ids=lambda c: c.grade_id)
def test_reference_passes_hidden_on_many_seeds(check):
    # The grader may pick any seed: the tolerances and Monte Carlo bounds must hold for all.
    for seed in [SPEC.hidden_seeds[check.grade_id], 0, 1, 2, 99, 2**31 - 1]:
        result = run_check(check, REFERENCE[check.function], seed)
        assert result.passed, (seed, result.message)


@pytest.mark.parametrize("check", RANDOM, ids=lambda c: c.grade_id)
def test_random_checks_pass_the_reference_on_other_seeds(check):
    # The student's random draws differ from the reference's; other seeds stand in for them.
    for seed in range(20, 25):
        result = run_check(check, REFERENCE[check.function], seed)
        assert result.passed, (seed, result.message)


def uout_drawn_otherwise(x, beta, training=True, rng=None):
    """A correct Uout that draws its noise differently from the reference."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if not training:
        return np.array(x, dtype=float)
    r = beta * (2.0 * rng.random(np.shape(x)[::-1]).T - 1.0)
    return x * (1.0 + r)


def simulate_drawn_otherwise(noise_fn, mean, var, n, rng=None):
    """A correct estimate that draws x with normal() and runs the training pass first."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    x = rng.normal(mean, np.sqrt(var), size=n)
    train = noise_fn(x, training=True, rng=rng)
    test = noise_fn(x, training=False, rng=rng)
    train, test = (o[0] if isinstance(o, tuple) else o for o in (train, test))
    return float(np.var(test, ddof=1) / np.var(train, ddof=1))


@pytest.mark.parametrize("check", [c for c in CHECKS.values() if c.function in ("uout_forward", "simulate_variance_shift")],
                         ids=lambda c: c.grade_id)
def test_a_correct_answer_with_other_random_draws_passes(check):
    fn = uout_drawn_otherwise if check.function == "uout_forward" else simulate_drawn_otherwise
    result = run_check(check, fn, grading_seed(check))
    assert result.passed, result.message


def test_visible_checks_need_no_solutions(monkeypatch):
    # Students do not have the solutions package: block it and rerun every visible check.
    for name in [m for m in sys.modules if m == "solutions" or m.startswith("solutions.")]:
        monkeypatch.setitem(sys.modules, name, None)
    assert all(run_check(c, REFERENCE[c.function]).passed for c in VISIBLE)
    for c in HIDDEN:
        if c.function == "dropout_variance_shift":
            with pytest.raises(ImportError):
                run_check(c, REFERENCE[c.function], 0)


def test_module_imports_only_the_standard_library_numpy_and_core_at_top_level():
    tree = ast.parse(Path(module.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {(n.module or "") if isinstance(n, ast.ImportFrom) else n.names[0].name for n in top}
    assert names == {"__future__", "contextlib", "copy", "functools", "numpy", "core"}
    assert all(n.level == 1 for n in top if isinstance(n, ast.ImportFrom) and n.module == "core")


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_bug_fails_exactly_its_checks(bug):
    # The other functions' checks run the reference, which passes them (tested above).
    name, buggy = bugs.function("variance_shift", bug)
    failed_cells = set()
    for c in (c for c in CHECKS.values() if c.function == name):
        result = run_check(c, buggy, grading_seed(c))
        if not result.passed:
            failed_cells.add(c.cell_id)
            assert result.message.startswith(c.function)
    assert failed_cells == BUGS[bug]["fails"]


def test_failure_messages_are_plain_and_hidden_ones_keep_expected_values_private():
    _, inverted = bugs.function("variance_shift", "dropout_ratio_inverted")
    msg = run_check(CHECKS["variance_shift_dropout_variance_shift_zero_mean"], inverted).message
    assert "Monte Carlo estimate" in msg and "got 3.33333, expected 0.3" in msg
    msg = run_check(CHECKS["variance_shift_dropout_variance_shift_zero_mean_hidden"], inverted, 5).message
    assert "relative error" in msg and "expected" not in msg
    _, fresh = bugs.function("variance_shift", "simulate_fresh_x")
    msg = run_check(CHECKS["variance_shift_simulate_variance_shift_input_draw"], fresh).message
    assert "different x in training and in evaluation mode" in msg
    _, one_sided = bugs.function("variance_shift", "uout_one_sided_noise")
    msg = run_check(CHECKS["variance_shift_uout_forward_uniform_noise"], one_sided).message
    assert "not distributed as U(-beta, beta)" in msg
    _, not_restored = bugs.function("variance_shift", "bn_mode_not_restored")
    msg = run_check(CHECKS["variance_shift_bn_variance_shift_leaves_model_unchanged"], not_restored).message
    assert "module '1' (Dropout) was left with training=True" in msg


def test_noise_layers_that_break_the_protocol_are_reported_plainly():
    def additive(x, beta, training=True, rng=None):
        return x + np.random.default_rng(rng).uniform(-beta, beta, np.shape(x)) if training else x

    def never_evaluates(noise_fn, mean, var, n, rng=None):
        x = np.random.default_rng(rng).normal(mean, np.sqrt(var), n)
        return float(np.var(x) / np.var(noise_fn(x, training=True, rng=rng)))

    msg = run_check(CHECKS["variance_shift_uout_forward_uniform_noise"], additive).message
    assert "must lie in [-beta, beta]" in msg
    msg = run_check(CHECKS["variance_shift_simulate_variance_shift_input_draw"], never_evaluates).message
    assert "never called with training=False" in msg


def test_monte_carlo_expectations_are_close_to_the_exact_ratios():
    # The Monte Carlo values a visible check compares with are within their bound of the
    # exact ratio, and the bound is much tighter than the gap to each bug.
    for gid, exact_fn in [("variance_shift_dropout_variance_shift_zero_mean", ref.dropout_variance_shift),
                          ("variance_shift_dropout_variance_shift_nonzero_mean", ref.dropout_variance_shift),
                          ("variance_shift_uout_variance_shift_zero_mean", ref.uout_variance_shift),
                          ("variance_shift_uout_variance_shift_nonzero_mean", ref.uout_variance_shift)]:
        check = CHECKS[gid]
        inputs = make_inputs(check)
        (estimate, bound), = check.expected(inputs).values()
        arg = inputs.get("p", inputs.get("beta"))
        exact = exact_fn(arg, inputs["mean"], inputs["var"])
        assert np.all(np.abs(estimate - exact) <= bound), gid
        assert np.all(bound < 0.05 * exact), gid


def test_simulation_bound_is_calibrated():
    # The standard error the dropout_noise checks assign to a student's estimate matches the
    # spread of the reference's estimates over seeds (within a factor 1.5 either way).
    inputs = make_inputs(CHECKS["variance_shift_simulate_variance_shift_dropout_noise"])
    _, _, se = module._simulation_error(inputs)
    p, c, v = inputs["noise_fn"].p, inputs["mean"], inputs["var"]
    n = 50_000  # the student part of the error scales as 1/sqrt(n): rescale to save time
    estimates = [ref.simulate_variance_shift(partial(dropout_forward, p=p), c, v, n, s) for s in range(60)]
    spread = np.std(estimates) * np.sqrt(n / inputs["n"])
    assert se / 1.5 < spread < se * 1.5, (spread, se)


def test_bn_checks_shift_variances_both_ways():
    # Running variances too large in some channels and too small in others, so a one-sided
    # metric is wrong; the model comes in training mode, as after training.
    for gid in ("variance_shift_bn_variance_shift_mlp", "variance_shift_bn_variance_shift_cnn"):
        inputs = make_inputs(CHECKS[gid])
        assert inputs["model"].training
        for bn, x in module._bn_inputs(inputs["model"], inputs["batches"]):
            ratio = module._channel_var(x) / bn.running_var
            assert (ratio > 1.3).any() and (ratio < 1 / 1.3).any()


def test_checks_leave_torch_settings_as_they_were():
    threads = torch.get_num_threads()
    state = torch.get_rng_state()
    for gid in ("variance_shift_dropout_variance_shift_zero_mean", "variance_shift_bn_variance_shift_mlp",
                "variance_shift_simulate_variance_shift_dropout_noise"):
        run_check(CHECKS[gid], REFERENCE[CHECKS[gid].function])
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), state)
