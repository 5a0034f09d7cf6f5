"""The pooling checks: the reference passes them all, each typical bug fails exactly the
checks aimed at it (run in a namespace built like the notebook's, where min pooling uses the
student's max pooling), the inputs have the property each cell is aimed at, and the visible
checks work without ``solutions`` (as students run them)."""
import ast
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import autograder.authoring.checks.pooling as module
import bugs
from autograder.authoring import course, notebooks
from autograder.authoring.checks import chapter_checks, make_inputs, run_check
from autograder.authoring.specs.pooling import CHAPTER as SPEC
from solutions import pooling as ref

CHECKS = chapter_checks("pooling")
BUGS = bugs.load("pooling").BUGS
FUNCTIONS = ("maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward",
             "minpool2d_forward", "minpool2d_backward")
REFERENCE = {f: getattr(ref, f) for f in FUNCTIONS}
VISIBLE = [c for c in CHECKS.values() if not c.hidden]
HIDDEN = [c for c in CHECKS.values() if c.hidden]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # Hundreds of tiny torch calls: idle worker threads spinning between them cost more CPU
    # than the calls themselves on a busy machine.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def grading_seed(check):
    return SPEC.hidden_seeds[check.grade_id] if check.hidden else None


@lru_cache(maxsize=1)
def _cells():
    """(provided helper source, [(answer grade_id, reference answer source)]) of the notebook."""
    nb = notebooks.build_notebook(SPEC)
    answers = course.answers(nb)
    provided = next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "pooling_provided")
    order = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
             if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]
    return provided, [(gid, answers[gid]) for gid in order]


def notebook_namespace(extra: dict[str, str] | None = None) -> dict:
    """The functions a student's notebook defines: the provided cell, then every answer cell
    with the reference answer and ``extra[answer grade_id]`` appended (as the e2e tests do)."""
    provided, answers = _cells()
    namespace: dict = {}
    exec(provided, namespace)  # noqa: S102 (generated from solutions/)
    for gid, source in answers:
        exec(source + "\n\n" + (extra or {}).get(gid, ""), namespace)  # noqa: S102
    return namespace


def failed_cells(namespace: dict) -> set[str]:
    failed = set()
    for c in CHECKS.values():
        result = run_check(c, namespace[c.function], grading_seed(c))
        if not result.passed:
            failed.add(c.cell_id)
            assert result.message.startswith(c.function), result.message
    return failed


def test_ids_points_and_cells():
    assert len(CHECKS) == len(module.CHECKS), "grade_ids must be unique"
    for c in CHECKS.values():
        assert c.grade_id.startswith(f"pooling_{c.function}_"), c.grade_id
        assert c.function in REFERENCE
        assert CHECKS[c.cell_id].hidden is False and CHECKS[c.cell_id].function == c.function
    assert sum(c.points for c in CHECKS.values()) == 80
    for f in FUNCTIONS:  # every graded function has visible and hidden checks
        assert {c.hidden for c in CHECKS.values() if c.function == f} == {False, True}
    assert len(SPEC.parts) == 5 and sum(e.points for e in SPEC.experiments) == 20


@pytest.mark.parametrize("check", VISIBLE, ids=lambda c: c.grade_id)
def test_reference_passes_visible(check):
    result = run_check(check, REFERENCE[check.function])
    assert result.passed, result.message
    assert result.points_awarded == check.points


def test_reference_passes_hidden_on_many_seeds():
    # The grader may pick any seed: the tolerances must hold for all of them.
    for check in HIDDEN:
        for seed in [SPEC.hidden_seeds[check.grade_id], 0, 1, 99, 2**31 - 1]:
            result = run_check(check, REFERENCE[check.function], seed)
            assert result.passed, (check.grade_id, seed, result.message)


def test_the_notebook_answers_pass_everything():
    assert failed_cells(notebook_namespace()) == set()


def released_package(monkeypatch):
    """``coursechecks`` as a notebook imports it (the released copy of the checks package)."""
    import autograder.authoring.checks as package

    monkeypatch.setitem(sys.modules, "coursechecks", package)
    monkeypatch.setitem(sys.modules, "coursechecks.pooling", module)


def test_self_check_cells_run_and_report_success(capsys, monkeypatch):
    from autograder.authoring.checks import gradient_check

    released_package(monkeypatch)
    namespace = {**notebook_namespace(), "gradient_check": gradient_check}
    for part in SPEC.parts:
        if part.self_check:
            exec(part.self_check, namespace)  # noqa: S102
    printed = capsys.readouterr().out
    assert printed.count("looks right") == 3 and "probably wrong" not in printed
    assert "argmax:\n [[1 1]\n [3 4]]" in printed  # the worked examples print what they promise
    assert "[[1.3333 1.7778]\n [2.6667 3.1111]]" in printed and "[[3. 4.]\n [6. 7.]]" in printed


def test_visible_checks_need_no_solutions(monkeypatch):
    # Students do not have the solutions package: block it and rerun every visible check
    # on functions defined as in the notebook.
    namespace = notebook_namespace()
    for name in [m for m in sys.modules if m == "solutions" or m.startswith("solutions.")]:
        monkeypatch.setitem(sys.modules, name, None)
    assert all(run_check(c, namespace[c.function]).passed for c in VISIBLE)
    with pytest.raises(ImportError):
        run_check(HIDDEN[0], namespace[HIDDEN[0].function], 0)


def test_module_imports_nothing_but_core_and_numpy_at_top_level():
    tree = ast.parse(Path(module.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {(n.module or "") if isinstance(n, ast.ImportFrom) else n.names[0].name for n in top}
    assert names == {"__future__", "numpy", "core"}
    assert all(n.level == 1 for n in top if isinstance(n, ast.ImportFrom) and n.module == "core")


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_bug_fails_exactly_its_checks(bug):
    spec = BUGS[bug]
    name, _ = bugs.function("pooling", bug)  # one self-contained function, in its own part's cell
    (part,) = [p for p in SPEC.parts if f"pooling_{p.functions[-1]}_answer" == spec["answer_cell"]]
    assert name in part.functions
    assert failed_cells(notebook_namespace({spec["answer_cell"]: spec["source"]})) == spec["fails"]


def test_bugs_fail_on_other_seeds_too():
    # A bug's failure must not hinge on the grading seed.
    for bug, spec in BUGS.items():
        _, buggy = bugs.function("pooling", bug)
        for gid in spec["fails"]:
            for c in [c for c in CHECKS.values() if c.cell_id == gid and c.function == buggy.__name__]:
                for seed in (0, 1, 2):
                    assert not run_check(c, buggy, seed).passed, (bug, c.grade_id, seed)


def test_mask_backward_sending_gradient_to_every_tie_is_caught():
    # A forward pass that also caches x and out, and a backward pass that re-derives the
    # winners with `x == max`: right without ties, wrong with them. The backward checks keep
    # the keys the student's own forward pass stores, so only the ties cell fails.
    namespace = notebook_namespace({"pooling_maxpool2d_backward_answer": bugs.load("pooling").MASK_BACKWARD})
    failed = {c.cell_id for c in CHECKS.values()
              if c.function == "maxpool2d_backward" and not run_check(c, namespace[c.function], grading_seed(c)).passed}
    assert failed == {"pooling_maxpool2d_backward_ties"}


def test_backward_checks_survive_an_unfinished_forward_pass():
    # The untouched forward stub raises; the backward checks then use PyTorch's cache alone.
    namespace = notebook_namespace()
    exec("def maxpool2d_forward(*args, **kwargs):\n    raise NotImplementedError()\n", namespace)  # noqa: S102
    for c in CHECKS.values():
        if c.function == "maxpool2d_backward":
            assert run_check(c, namespace[c.function], grading_seed(c)).passed


def test_inputs_have_the_property_each_cell_is_aimed_at():
    for seed in (None, 0, 1, 7):
        for c in CHECKS.values():
            inputs = make_inputs(c, seed)
            x = inputs["x"]
            k = np.array(np.broadcast_to(inputs["kernel_size"], 2))
            s = k if inputs["stride"] is None else np.array(np.broadcast_to(inputs["stride"], 2))
            if "ties" in c.cell_id:
                assert set(np.unique(x)) <= {0.0, 1.0, 2.0}
            else:  # no ties, and finite-difference steps never move an argmax
                assert np.diff(np.sort(x.ravel())).min() > 0.09
            if c.cell_id.endswith("_overlap"):
                assert (s < k).any(), c.grade_id
            elif c.function.endswith("backward"):
                assert (s >= k).all(), c.grade_id  # overwriting bugs fail the overlap cells only
            if c.function == "maxpool2d_backward" and c.cell_id.endswith("_overlap"):
                # Overlapping windows that share a winner: where overwriting loses gradient.
                _, cache = ref.maxpool2d_forward(x, inputs["kernel_size"], inputs["stride"], inputs["padding"])
                winners = cache["argmax"].reshape(x.shape[0] * x.shape[1], -1)
                assert all(len(np.unique(w)) < w.size for w in winners)
            if c.cell_id == "pooling_maxpool2d_forward_padding":
                assert np.all(x < 0) and inputs["padding"] != 0  # zero padding would win
            if c.function == "minpool2d_forward":
                assert np.all(x > 0) and inputs["padding"] != 0  # zero padding would win
            if "count_include_pad" in c.cell_id:
                assert inputs["count_include_pad"] is False and inputs["padding"] != 0


def test_failure_messages_name_the_output_and_error():
    _, last = bugs.function("pooling", "max_last_tie_wins")
    msg = run_check(CHECKS["pooling_maxpool2d_forward_ties"], last).message
    assert msg.startswith("maxpool2d_forward: cache['argmax'] is wrong in") and "first maximum" in msg
    assert "got" in msg and "expected" in msg
    msg = run_check(CHECKS["pooling_maxpool2d_forward_ties_hidden"], last, 6013).message
    assert "is wrong in" in msg and "got" not in msg  # hidden: no expected values
    _, zeros = bugs.function("pooling", "max_pads_with_zeros")
    msg = run_check(CHECKS["pooling_maxpool2d_forward_padding"], zeros).message
    assert msg.startswith("maxpool2d_forward: out is wrong: relative error")
    _, divisor = bugs.function("pooling", "avg_divisor_ignores_count_include_pad")
    msg = run_check(CHECKS["pooling_avgpool2d_forward_count_include_pad"], divisor).message
    assert msg.startswith("avgpool2d_forward: out is wrong: relative error")


def test_cache_problems_are_reported_plainly():
    def no_cache(x, kernel_size, stride=None, padding=0, ceil_mode=False):
        return ref.maxpool2d_forward(x, kernel_size, stride, padding)[0]

    def float_argmax(x, kernel_size, stride=None, padding=0, ceil_mode=False):
        out, cache = ref.maxpool2d_forward(x, kernel_size, stride, padding)
        return out, {**cache, "argmax": cache["argmax"].astype(float)}

    def window_offsets(x, kernel_size, stride=None, padding=0, ceil_mode=False):
        out, cache = ref.maxpool2d_forward(x, kernel_size, stride, padding)
        return out, {**cache, "argmax": cache["argmax"] % 2}

    check = CHECKS["pooling_maxpool2d_forward_torch"]
    assert "must return a tuple (out, cache)" in run_check(check, no_cache).message
    assert "must be an integer array" in run_check(check, float_argmax).message
    assert "cache['argmax'] is wrong" in run_check(check, window_offsets).message


def test_backward_cache_matches_the_reference_cache():
    # The cache a backward check builds with PyTorch is the one the reference forward makes.
    for gid, kind in (("pooling_maxpool2d_backward_overlap_hidden", "max"),
                      ("pooling_avgpool2d_backward_count_include_pad_hidden", "avg"),
                      ("pooling_avgpool2d_backward_overlap_hidden", "avg"),
                      ("pooling_minpool2d_backward_autograd_hidden", "min")):
        inputs = make_inputs(CHECKS[gid], 0)
        args = {k: v for k, v in inputs.items() if k not in ("dout", "cache")}
        _, cache = getattr(ref, f"{kind}pool2d_forward")(**args)
        assert set(inputs["cache"]) == set(cache)
        for key, value in cache.items():
            if key == "geometry":
                assert inputs["cache"][key] == value
            else:
                np.testing.assert_array_equal(inputs["cache"][key], value)


def test_experiment_runs_and_the_model_answer_quotes_its_numbers(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    namespace = notebook_namespace()
    exec(SPEC.experiments[0].code, namespace)  # noqa: S102
    plt.close("all")
    maps = namespace["maps"]
    max2, avg2, max3, avg3 = (maps[k] for k in ("max 2x2, stride 2", "avg 2x2, stride 2", "max 3x3, stride 1",
                                                "avg 3x3, stride 1 (x 9)"))
    mask = maps["mask x == max, 2x2"]
    facts = {
        "16 of the 64 pixels": (max2 != 0).sum() == 16 and max2.sum() == 16,
        "the other 48 receive 0": (max2 == 0).sum() == 48,
        "every pixel 1/4": np.all(avg2 == 0.25) and avg2.sum() == 16,
        "Its sum is 34": mask.sum() == 34,
        "wins 6 of them": max3.max() == 6 and max3[1, 3] == 6,
        "49 of the 64 pixels receive nothing": (max3 == 0).sum() == 49 and max3.sum() == 36,
        "36 x 9 = 324": np.isclose(avg3.sum(), 324) and np.isclose(avg3.min(), 1) and np.isclose(avg3.max(), 9),
    }
    answer = " ".join(SPEC.experiments[0].model_answer.split())
    for phrase, holds in facts.items():
        assert phrase in answer and holds, phrase
    # The digit in the notebook is the one from scikit-learn's data set.
    from sklearn.datasets import load_digits

    np.testing.assert_array_equal(namespace["digit"][0, 0], load_digits().images[5])


@pytest.mark.parametrize("pair", sorted(bugs.load("pooling").CROSS_PART))
def test_a_forward_bug_is_reported_in_the_forward_part(pair):
    # A right backward pass that reads an extra key of a wrong forward pass's cache: the
    # forward cells fail on their own, and every backward failure names the forward pass
    # instead of showing only the backward's exception.
    spec = bugs.load("pooling").CROSS_PART[pair]
    namespace = notebook_namespace({"pooling_maxpool2d_forward_answer": spec["forward"],
                                    "pooling_maxpool2d_backward_answer": spec["backward"]})
    assert failed_cells(namespace) == spec["fails"]
    for c in CHECKS.values():
        result = run_check(c, namespace[c.function], grading_seed(c))
        if result.passed or not c.function.endswith("backward"):
            continue
        kind = c.function[:3]
        assert f"of your {kind}pool2d_forward, whose output on this input is wrong (out has shape" in result.message
        assert result.message.endswith(f"fix {kind}pool2d_forward first"), result.message
    # The same backward pass with a right forward pass passes everything.
    assert failed_cells(notebook_namespace({"pooling_maxpool2d_backward_answer": spec["backward"]})) == set()


def test_an_argmax_out_of_range_is_named_in_the_forward_part():
    _, buggy = bugs.function("pooling", "max_argmax_in_padded_plane")
    msg = run_check(CHECKS["pooling_maxpool2d_forward_padding"], buggy).message
    assert msg.startswith("maxpool2d_forward: cache['argmax'] holds ") and "outside 0..55" in msg
    assert "unpadded 7 x 8 plane" in msg and "the backward pass reads this cache" in msg
    hidden = run_check(CHECKS["pooling_maxpool2d_forward_padding_hidden"], buggy, grading_seed(
        CHECKS["pooling_maxpool2d_forward_padding_hidden"])).message
    assert hidden.startswith("maxpool2d_forward (hidden check on a (1, 3, 6, 9) input, 2x3 kernel, stride 2, "
                             "padding 1, overlapping windows (stride < kernel), all-negative values): "
                             "cache['argmax'] holds 23 index(es) outside 0..53")
    assert "got" not in hidden and "expected" not in hidden


def test_the_gradient_check_cell_names_a_wrong_forward_cache(monkeypatch):
    # The issue's case: with the forward pass's argmax in the padded plane, Part 2's own
    # gradient check used to stop with an IndexError inside the backward pass.
    released_package(monkeypatch)
    from autograder.authoring.checks import gradient_check

    namespace = {**notebook_namespace({"pooling_maxpool2d_forward_answer":
                                       bugs.load("pooling").BUGS["max_argmax_in_padded_plane"]["source"]}),
                 "gradient_check": gradient_check}
    (part,) = [p for p in SPEC.parts if p.functions == ("maxpool2d_backward",)]
    without_check = "\n".join(line for line in part.self_check.splitlines() if "check_forward_output" not in line)
    with pytest.raises((IndexError, ValueError)):  # raised deep inside the (right) backward pass
        exec(without_check, dict(namespace))  # noqa: S102
    with pytest.raises(AssertionError, match=r"maxpool2d_backward cannot use the output of your maxpool2d_forward "
                                             r"on this input: cache\['argmax'\] holds .* outside 0\.\.35 .* "
                                             r"Fix maxpool2d_forward first"):
        exec(part.self_check, dict(namespace))  # noqa: S102


def test_check_forward_output_accepts_the_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 7, 6))
    for kind in ("max", "avg", "min"):
        for geometry in ((3, 2, 1), ((3, 2), (2, 1), (1, 1)), (2, None, 0)):
            module.check_forward_output(kind, x, getattr(ref, f"{kind}pool2d_forward")(x, *geometry), *geometry)
    with pytest.raises(AssertionError, match=r"cache\['x_shape'\] is \(2, 3, 9, 8\), but x has shape \(2, 3, 7, 6\)"):
        out, cache = ref.maxpool2d_forward(x, 3, 1, 1)
        module.check_forward_output("max", x, (out, {**cache, "x_shape": (2, 3, 9, 8)}), 3, 1, 1)
    with pytest.raises(AssertionError, match=r"cache\['divisor'\] has shape \(5,\), expected \(4, 3\)"):
        out, cache = ref.avgpool2d_forward(x, 3, 2, 1)
        module.check_forward_output("avg", x, (out, {**cache, "divisor": np.ones(5)}), 3, 2, 1)
