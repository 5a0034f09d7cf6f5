"""The network checks: the reference passes them all, each typical bug fails exactly the
checks aimed at it (and the training-step checks when it sits in a function the training step
calls), the visible checks work without ``solutions`` (as students run them), and the layers
the notebook provides are the reference's."""
import ast
import inspect
import sys
from pathlib import Path

import numpy as np
import pytest

import autograder.authoring.checks.network as module
import bugs
from autograder.authoring import notebooks
from autograder.authoring.checks import chapter_checks, run_check
from autograder.authoring.specs.network import CHAPTER as SPEC
from solutions import network as ref

CHECKS = chapter_checks("network")
BUGS = bugs.load("network").BUGS
FUNCTIONS = ("softmax_cross_entropy", "network_forward", "network_backward", "sgd_momentum_step", "adam_step",
             "train_step")
VISIBLE = [c for c in CHECKS.values() if not c.hidden]
HIDDEN = [c for c in CHECKS.values() if c.hidden]


def grading_seed(check):
    return SPEC.hidden_seeds[check.grade_id] if check.hidden else None


def notebook_namespace(bug: str | None = None) -> dict:
    """What a notebook holds: the provided cell, the reference answers, and optionally one
    answer replaced by a bug, all in one namespace (so the training step calls the bug)."""
    nb = notebooks.build_notebook(SPEC)
    provided = next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "network_provided")
    ns: dict = {}
    exec(compile(provided, "<provided>", "exec"), ns)  # noqa: S102 (the course's own cell)
    for name in FUNCTIONS:
        exec(inspect.getsource(getattr(ref, name)), ns)  # noqa: S102
    if bug is not None:
        exec(BUGS[bug]["source"], ns)  # noqa: S102
    return ns


@pytest.fixture(scope="module")
def reference_namespace():
    return notebook_namespace()


def test_ids_points_and_cells():
    assert len(CHECKS) == len(module.CHECKS), "grade_ids must be unique"
    for c in CHECKS.values():
        assert c.grade_id.startswith(f"network_{c.function}_"), c.grade_id
        assert c.function in FUNCTIONS
        assert CHECKS[c.cell_id].hidden is False and CHECKS[c.cell_id].function == c.function
    assert sum(c.points for c in CHECKS.values()) == 80
    assert [p.functions[-1] for p in SPEC.parts] == list(FUNCTIONS)
    for f in FUNCTIONS:
        assert {c.hidden for c in CHECKS.values() if c.function == f} == {False, True}


@pytest.mark.parametrize("check", VISIBLE, ids=lambda c: c.grade_id)
def test_reference_passes_visible(check):
    result = run_check(check, getattr(ref, check.function))
    assert result.passed, result.message
    assert result.points_awarded == check.points


@pytest.mark.parametrize("check", HIDDEN, ids=lambda c: c.grade_id)
def test_reference_passes_hidden_on_many_seeds(check):
    for seed in [SPEC.hidden_seeds[check.grade_id], 0, 1, 2, 99, 2**31 - 1]:
        result = run_check(check, getattr(ref, check.function), seed)
        assert result.passed, (seed, result.message)


def test_visible_checks_pass_in_the_notebook_namespace(reference_namespace):
    # The provided cell is what students get: the checks build their networks from its classes.
    for c in CHECKS.values():
        result = run_check(c, reference_namespace[c.function], grading_seed(c))
        assert result.passed, (c.grade_id, result.message)


def test_visible_checks_need_no_solutions(monkeypatch, reference_namespace):
    for name in [m for m in sys.modules if m == "solutions" or m.startswith("solutions.")]:
        monkeypatch.setitem(sys.modules, name, None)
    assert all(run_check(c, reference_namespace[c.function]).passed for c in VISIBLE)
    with pytest.raises(ImportError):
        run_check(HIDDEN[0], reference_namespace[HIDDEN[0].function], 0)


def test_module_imports_nothing_but_core_and_numpy_at_top_level():
    tree = ast.parse(Path(module.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {(n.module or "") if isinstance(n, ast.ImportFrom) else n.names[0].name for n in top}
    assert names == {"__future__", "numpy", "core"}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_bug_fails_exactly_its_checks(bug):
    ns = notebook_namespace(bug)
    failed_cells = set()
    for c in CHECKS.values():
        result = run_check(c, ns[c.function], grading_seed(c))
        if not result.passed:
            failed_cells.add(c.cell_id)
            assert result.message.startswith(c.function)
    assert failed_cells == BUGS[bug]["fails"]


def test_failure_messages_name_the_output():
    ns = notebook_namespace("forward_runs_layers_twice")
    msg = run_check(CHECKS["network_network_forward_train_mlp"], ns["network_forward"]).message
    assert msg.startswith("network_forward: num_batches_tracked of layer 1 is wrong") or \
        msg.startswith("network_forward: running_mean of layer 1 is wrong"), msg
    assert "expected" in msg
    ns = notebook_namespace("adam_no_bias_correction")
    msg = run_check(CHECKS["network_adam_step_torch"], ns["adam_step"]).message
    assert msg.startswith("adam_step: param after step 1 is wrong"), msg
    hidden = run_check(CHECKS["network_adam_step_torch_hidden"], ns["adam_step"], 3).message
    assert "relative error" in hidden and "expected" not in hidden


def test_interface_problems_are_reported_plainly(reference_namespace):
    ns = dict(reference_namespace)  # wrappers defined in the notebook's namespace, as a student's
    exec("""
def grads_without_empty_dicts(layers, dout, caches):
    dx, grads = network_backward(layers, dout, caches)
    return dx, [g for g in grads if g]


def no_caches(layers, x, training):
    return network_forward(layers, x, training)[0]
""", ns)  # noqa: S102
    msg = run_check(CHECKS["network_network_backward_torch_mlp"], ns["grads_without_empty_dicts"]).message
    assert "grads must be a list with one dict per layer (8 layers)" in msg
    msg = run_check(CHECKS["network_network_forward_train_mlp"], ns["no_caches"]).message
    assert "must return a tuple (out, caches)" in msg
    # A function defined where the provided layers are not (e.g. before running that cell).
    lonely: dict = {"np": np}
    exec(inspect.getsource(ref.network_forward), lonely)  # noqa: S102
    msg = run_check(CHECKS["network_network_forward_train_mlp"], lonely["network_forward"]).message
    assert "run the read-only cell with the provided layers first" in msg


def test_provided_cell_holds_the_reference_layers(reference_namespace):
    # The same network built from the provided classes and from solutions.layers computes
    # the same thing: the notebook's layers are the course's, not a copy that drifted.
    from solutions import layers as L

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 2, 6, 6))
    for make in (lambda m: [m.Conv2d(2, 3, 3, padding=1, rng=1), m.BatchNorm(3), m.ReLU(), m.MaxPool2d(2),
                            m.AvgPool2d(3), m.Flatten(), m.LayerNorm(3), m.Dropout(0.2, rng=2), m.Affine(3, 4, rng=3)],):
        ours = make(type("ns", (), reference_namespace))
        theirs = make(L)
        for training in (True, False):
            a, _ = ref.network_forward(ours, x, training)
            b, _ = ref.network_forward(theirs, x, training)
            assert np.array_equal(a, b)


def test_redefining_the_provided_layers_earns_nothing():
    # The checks build networks from the classes beside the student's function, but every
    # expected value comes from torch or the reference: a batch norm replaced by the identity
    # (whose running statistics never move) fails every check of a network that has one.
    ns = notebook_namespace()
    exec("""
class BatchNorm(Layer):
    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        super().__init__()
        self.params = {"weight": np.ones(num_features), "bias": np.zeros(num_features)}
        self.state = {"running_mean": np.zeros(num_features), "running_var": np.ones(num_features),
                      "num_batches_tracked": 0}

    def forward(self, x, training):
        return x, None

    def backward(self, dout, cache):
        return dout, {"weight": np.zeros_like(self.params["weight"]), "bias": np.zeros_like(self.params["bias"])}
""", ns)  # noqa: S102
    for c in CHECKS.values():
        if c.function in ("network_forward", "network_backward", "train_step"):
            result = run_check(c, ns[c.function], grading_seed(c))
            assert not result.passed and result.points_awarded == 0, c.grade_id


@pytest.mark.parametrize("bug", sorted(b for b, spec in BUGS.items()
                                       if spec["answer_cell"] != "network_train_step_answer"
                                       and spec["fails"] & {"network_train_step_torch_mlp", "network_train_step_torch_cnn"}))
def test_a_training_step_failure_names_the_earlier_part_it_comes_from(bug):
    # train_step composes the earlier answers: when one of them is wrong, the training step's
    # cells fail too, and their message says which earlier function to fix first.
    ns = notebook_namespace(bug)
    culprit = BUGS[bug]["answer_cell"][len("network_"):-len("_answer")]
    for c in CHECKS.values():
        if c.function == "train_step":
            result = run_check(c, ns["train_step"], grading_seed(c))
            assert not result.passed
            assert f"train_step builds on your {culprit}," in result.message, result.message
            assert f"fix {culprit} first (its own checks above say more)" in result.message


@pytest.mark.parametrize("bug", ["train_step_eval_mode", "train_step_forgets_velocities"])
def test_a_training_step_bug_of_its_own_blames_no_earlier_part(bug):
    ns = notebook_namespace(bug)
    for c in CHECKS.values():
        if c.function == "train_step":
            result = run_check(c, ns["train_step"], grading_seed(c))
            assert not result.passed and "builds on your" not in result.message
