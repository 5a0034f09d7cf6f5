"""Judging what a sandbox sent back: verdicts, status and outputs from synthetic runs, with
frames that are right, wrong, forged or damaged."""
import json
import re
import signal

import numpy as np
import pytest

from autograder import judge, records, transport
from autograder.authoring.checks import core
from autograder.judge import Plan, _clean_outputs, judge_run
from autograder.sandbox import Limits, RunResult
from solutions import batchnorm as reference

FORWARD = "batchnorm_batchnorm_forward_torch_2d"  # test cell: a visible and a hidden check
FORWARD_HIDDEN = FORWARD + "_hidden"
IDENTITY = "batchnorm_identity_affine_recovers_input_2d"
IDENTITY_HIDDEN = IDENTITY + "_hidden"
OTHER = "batchnorm_batchnorm_forward_torch_4d"  # a real check this plan does not ask for
POSITIONS = {FORWARD: 3, IDENTITY: 6}  # where the test cells sit in the notebook
LIMITS = Limits()
FUNCTIONS = {"batchnorm_forward": reference.batchnorm_forward, "identity_affine": reference.identity_affine}


@pytest.fixture(scope="module")
def plan() -> Plan:
    checks = {cell: [core.get_check(cell), core.get_check(cell + "_hidden")] for cell in (FORWARD, IDENTITY)}
    seeds = {c.grade_id: 1000 + i for i, c in enumerate(c for cs in checks.values() for c in cs)}
    inputs = {gid: core.make_inputs(core.get_check(gid), seed) for gid, seed in seeds.items()}
    return Plan("batchnorm", checks, seeds, inputs)


def raw_outputs(plan: Plan, name: str) -> dict[str, np.ndarray]:
    """What the reference solution returns for check ``name`` on the plan's inputs."""
    check = core.get_check(name)
    raw = core.call_student(check, FUNCTIONS[check.function], plan.inputs.get(name) or core.make_inputs(check))
    return {key: core.as_float_array(value, key) for key, value in raw.items()}


def wrong_outputs(plan: Plan, name: str) -> dict[str, np.ndarray]:
    return {key: value * 1.5 + 0.25 for key, value in raw_outputs(plan, name).items()}


def check_frame(name, outputs) -> tuple[str, bytes]:
    return "check", transport.pack({"check": name, "outputs": outputs})


def json_frame(kind: str, body) -> tuple[str, bytes]:
    return kind, json.dumps(body).encode()


def fail_frame(name, message: str, **flags) -> tuple[str, bytes]:
    return json_frame("fail", {"check": name, "message": message, "timed_out": False, "out_of_memory": False,
                               **flags})


DONE = ("done", b"{}")


def all_right(plan: Plan) -> list[tuple[str, bytes]]:
    frames = [json_frame("begin", {"index": 0}),
              json_frame("cell", {"index": 0, "outputs": [{"output_type": "stream", "name": "stdout",
                                                           "text": "hi\n"}], "timed_out": False})]
    for cell, index in POSITIONS.items():
        frames.append(json_frame("begin", {"index": index}))
        frames += [check_frame(name, raw_outputs(plan, name)) for name in (cell, cell + "_hidden")]
    return frames


def run(frames, **kwargs) -> RunResult:
    return RunResult(frames=list(frames), **{"returncode": 0, "seconds": 3.0, **kwargs})


def verdict(verdicts, name) -> records.CheckVerdict:
    return next(v for v in verdicts.checks if v.check == name)


def awarded(verdicts) -> dict[str, float]:
    return {c.cell: c.awarded for c in verdicts.cells}


# --- everything right ------------------------------------------------------------------------


def test_all_checks_passed_is_graded_with_full_points(plan):
    v = judge_run(plan, POSITIONS, run(all_right(plan) + [DONE]), LIMITS)
    assert (v.status, v.message) == (records.GRADED, "Graded.")
    assert [(c.cell, c.points, c.awarded, c.message) for c in v.cells] == [
        (FORWARD, 10.0, 10.0, "passed"), (IDENTITY, 10.0, 10.0, "passed")]
    assert [(c.check, c.cell, c.hidden, c.passed) for c in v.checks] == [
        (FORWARD, FORWARD, False, True), (FORWARD_HIDDEN, FORWARD, True, True),
        (IDENTITY, IDENTITY, False, True), (IDENTITY_HIDDEN, IDENTITY, True, True)]
    assert v.notes == []


def test_test_cells_show_a_line_per_passed_check_and_code_cells_their_outputs(plan):
    v = judge_run(plan, POSITIONS, run(all_right(plan) + [DONE]), LIMITS)
    assert v.outputs[0] == [{"output_type": "stream", "name": "stdout", "text": "hi\n"}]
    (out,) = v.outputs[POSITIONS[FORWARD]]
    assert out["output_type"] == "stream"
    # The notebook's own passed line (core.passed_line), then the hidden check by number only.
    assert out["text"].splitlines() == [
        f"passed {FORWARD}: out matches F.batch_norm(training=True) on a (8, 5) input",
        "  5 of this cell's 10 points are tested here; 5 more come from 1 hidden check at grading time, on new "
        "inputs of the kinds the visible checks use. The 10 points are all-or-nothing: a hidden check that fails costs all of them.",
        "passed hidden check 1 of 1 (5 of this cell's 10 points)",
    ]
    assert "another 2-D input" not in out["text"]  # a hidden check's description stays private


def test_a_failed_check_scores_its_cell_zero_and_shows_an_error(plan):
    frames = all_right(plan)[:-2] + [check_frame(IDENTITY, wrong_outputs(plan, IDENTITY)),
                                      check_frame(IDENTITY_HIDDEN, raw_outputs(plan, IDENTITY_HIDDEN)), DONE]
    v = judge_run(plan, POSITIONS, run(frames), LIMITS)
    assert v.status == records.GRADED
    assert awarded(v) == {FORWARD: 10.0, IDENTITY: 0.0}
    assert verdict(v, IDENTITY_HIDDEN).passed  # judged on its own
    (error,) = v.outputs[POSITIONS[IDENTITY]]
    assert error["output_type"] == "error" and error["ename"] == "AssertionError"
    assert error["evalue"].startswith(f"{IDENTITY} failed. identity_affine: ")


def test_visible_failures_show_expected_values_and_hidden_ones_do_not(plan):
    frames = all_right(plan)[:3] + [check_frame(FORWARD, wrong_outputs(plan, FORWARD)),
                                    check_frame(FORWARD_HIDDEN, wrong_outputs(plan, FORWARD_HIDDEN)),
                                    *all_right(plan)[5:], DONE]
    v = judge_run(plan, POSITIONS, run(frames), LIMITS)
    visible, hidden = verdict(v, FORWARD), verdict(v, FORWARD_HIDDEN)
    assert not visible.passed and not hidden.passed
    assert "relative error" in visible.message and "expected" in visible.message
    assert "relative error" in hidden.message and "expected" not in hidden.message and "got" not in hidden.message
    expected = plan.expected_for(core.get_check(FORWARD_HIDDEN))["out"]
    shown = {float(x) for x in re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", hidden.message)}
    assert not any(np.isclose(expected, x, rtol=1e-5, atol=0).any() for x in shown)

    only_hidden = all_right(plan)[:4] + [check_frame(FORWARD_HIDDEN, wrong_outputs(plan, FORWARD_HIDDEN)),
                                         *all_right(plan)[5:], DONE]
    v = judge_run(plan, POSITIONS, run(only_hidden), LIMITS)
    passed_line, error = v.outputs[POSITIONS[FORWARD]]
    assert passed_line["text"] == core.passed_line(core.get_check(FORWARD), core.cell_checks(FORWARD)) + "\n"
    # A hidden check's failure says what kind of input it used (shapes, eps), never its values.
    assert error["evalue"].startswith(f"{FORWARD_HIDDEN} failed. batchnorm_forward (hidden check on a 2-D (13, 7) "
                                      "input (N, D), eps 0.001): out is wrong")
    assert "expected" not in error["evalue"]


def test_an_exception_in_a_hidden_check_says_what_kind_of_input_it_was(plan):
    frames = all_right(plan)[:4] + [fail_frame(FORWARD_HIDDEN, "raised IndexError: index 9 is out of bounds"),
                                    *all_right(plan)[5:], DONE]
    hidden = verdict(judge_run(plan, POSITIONS, run(frames), LIMITS), FORWARD_HIDDEN)
    assert hidden.message == ("batchnorm_forward (hidden check on a 2-D (13, 7) input (N, D), eps 0.001): "
                              "raised IndexError: index 9 is out of bounds")


def test_a_failure_reported_by_the_runner_is_prefixed_with_the_function_and_capped(plan):
    frames = all_right(plan)[:3] + [fail_frame(FORWARD, "raised ValueError: " + "x" * 5000),
                                    *all_right(plan)[4:], DONE]
    v = judge_run(plan, POSITIONS, run(frames), LIMITS)
    message = verdict(v, FORWARD).message
    assert message.startswith("batchnorm_forward: raised ValueError: xxx") and len(message) == 2000 + len("batchnorm_forward: ")
    assert awarded(v)[FORWARD] == 0.0


def test_a_cell_is_all_or_nothing_as_its_passed_line_says(plan):
    """The visible check passed and printed that the cell is all-or-nothing; its hidden
    check failed, and the cell scores 0, as the line said."""
    frames = all_right(plan)[:4] + [check_frame(FORWARD_HIDDEN, wrong_outputs(plan, FORWARD_HIDDEN)),
                                    *all_right(plan)[5:], DONE]
    v = judge_run(plan, POSITIONS, run(frames), LIMITS)
    assert verdict(v, FORWARD).passed and not verdict(v, FORWARD_HIDDEN).passed
    assert awarded(v) == {FORWARD: 0.0, IDENTITY: 10.0}
    line = v.outputs[POSITIONS[FORWARD]][0]["text"]
    assert "The 10 points are all-or-nothing: a hidden check that fails costs all of them." in line


def test_a_run_without_hidden_checks_still_describes_the_whole_cell():
    # The self-check runs the visible checks only; the passed line still counts the hidden points.
    checks = {FORWARD: [core.get_check(FORWARD)]}
    inputs = {FORWARD: core.make_inputs(core.get_check(FORWARD), 7)}
    visible_only = Plan("batchnorm", checks, {FORWARD: 7}, inputs)
    outputs = {"out": core.as_float_array(reference.batchnorm_forward(**inputs[FORWARD])[0], "out")}
    v = judge_run(visible_only, {FORWARD: 3}, run([check_frame(FORWARD, outputs), DONE]), LIMITS)
    assert "5 of this cell's 10 points are tested here; 5 more come from 1 hidden check" in v.outputs[3][0]["text"]


def _forward_in_place(x, gamma, beta, eps=1e-5):
    x -= x.mean(axis=0)
    x /= np.sqrt(x.var(axis=0) + eps)
    return gamma * x + beta, {}


def test_a_diagnosis_made_in_the_sandbox_is_the_verdict_for_visible_and_hidden_checks(plan):
    """The runner sends call_student's message as plain text; the verdict is the message a
    notebook shows, the same for the hidden check (no seed, input or expected value)."""
    frames = all_right(plan)[:3]
    for name in (FORWARD, FORWARD_HIDDEN):
        with pytest.raises(core.CheckFailure) as failure:
            core.call_student(core.get_check(name), _forward_in_place, plan.inputs[name])
        frames.append(fail_frame(name, failure.value.message))
    v = judge_run(plan, POSITIONS, run(frames + all_right(plan)[5:] + [DONE]), LIMITS)
    in_notebook = core.run_check(core.get_check(FORWARD), _forward_in_place).message
    assert in_notebook.startswith("batchnorm_forward: it modified the caller's array x in place;")
    assert verdict(v, FORWARD).message == in_notebook
    # The hidden check: the same diagnosis, after the kind of input it used.
    diagnosis = in_notebook.split(": ", 1)[1]
    assert verdict(v, FORWARD_HIDDEN).message == (
        f"batchnorm_forward{core.input_note(core.get_check(FORWARD_HIDDEN), plan.inputs[FORWARD_HIDDEN])}: {diagnosis}")
    assert awarded(v)[FORWARD] == 0.0
    assert v.outputs[POSITIONS[FORWARD]][-1]["evalue"] == f"{FORWARD} failed. {in_notebook}"


def test_nan_outputs_fail_with_a_plain_message(plan):
    bad = {"out": np.full_like(raw_outputs(plan, FORWARD)["out"], np.nan)}
    frames = all_right(plan)[:3] + [check_frame(FORWARD, bad), *all_right(plan)[4:], DONE]
    assert "NaN" in verdict(judge_run(plan, POSITIONS, run(frames), LIMITS), FORWARD).message


# --- forged and damaged frames ----------------------------------------------------------------


def test_checks_the_plan_does_not_ask_for_earn_nothing(plan):
    frames = [check_frame(OTHER, {"out": np.zeros(3)}), check_frame("no_such_check", {}), DONE]
    v = judge_run(plan, POSITIONS, run(frames), LIMITS)
    assert awarded(v) == {FORWARD: 0.0, IDENTITY: 0.0}
    assert {c.check for c in v.checks} == {FORWARD, FORWARD_HIDDEN, IDENTITY, IDENTITY_HIDDEN}
    assert verdict(v, FORWARD).message.startswith("batchnorm_forward: no valid result")


def test_only_the_first_answer_for_a_check_counts(plan):
    right, wrong = raw_outputs(plan, FORWARD), wrong_outputs(plan, FORWARD)
    base = all_right(plan)
    first_right = base[:3] + [check_frame(FORWARD, right), check_frame(FORWARD, wrong),
                              fail_frame(FORWARD, "forged failure"), *base[4:], DONE]
    assert verdict(judge_run(plan, POSITIONS, run(first_right), LIMITS), FORWARD).passed
    first_wrong = base[:3] + [check_frame(FORWARD, wrong), check_frame(FORWARD, right), *base[4:], DONE]
    assert not verdict(judge_run(plan, POSITIONS, run(first_wrong), LIMITS), FORWARD).passed
    fail_first = base[:3] + [fail_frame(FORWARD, "timed out"), check_frame(FORWARD, right), *base[4:], DONE]
    v = judge_run(plan, POSITIONS, run(fail_first), LIMITS)
    assert verdict(v, FORWARD).message == "batchnorm_forward: timed out"


@pytest.mark.parametrize("payload", [
    pytest.param(b"garbage", id="not an npz"),
    pytest.param(transport.pack([FORWARD, {"out": np.zeros(3)}]), id="body not a dict"),
    pytest.param(transport.pack({"check": FORWARD, "outputs": [1.0, 2.0]}), id="outputs not a dict"),
    pytest.param(transport.pack({"outputs": {"out": np.zeros(3)}}), id="no check name"),
])
def test_malformed_check_frames_earn_nothing(plan, payload):
    frames = all_right(plan)[:3] + [("check", payload), *all_right(plan)[4:], DONE]
    v = judge_run(plan, POSITIONS, run(frames), LIMITS)
    assert awarded(v) == {FORWARD: 0.0, IDENTITY: 10.0}
    assert "no valid result" in verdict(v, FORWARD).message


def test_a_pickled_object_array_in_a_check_frame_earns_nothing(plan):
    import io

    buf = io.BytesIO()
    skeleton = {"d": [["check", {"v": FORWARD}], ["outputs", {"d": [["out", {"a": "a0"}]]}]]}
    np.savez(buf, **{transport.SKELETON: np.frombuffer(json.dumps(skeleton).encode(), np.uint8)},
             a0=np.array([object()], dtype=object))
    frames = all_right(plan)[:3] + [("check", buf.getvalue()), *all_right(plan)[4:], DONE]
    assert not verdict(judge_run(plan, POSITIONS, run(frames), LIMITS), FORWARD).passed


def test_a_check_frame_over_the_frame_limit_earns_nothing(plan):
    frames = all_right(plan) + [DONE]
    sizes = {name: len(p) for kind, p in frames if kind == "check" for name in [transport.unpack(p, 2**20)["check"]]}
    biggest = max(sizes, key=sizes.get)
    limit = sizes[biggest] - 1
    assert sorted(sizes.values())[-2] <= limit  # only one frame is over the limit
    v = judge_run(plan, POSITIONS, run(frames), Limits(frame_bytes=limit))
    assert [c.check for c in v.checks if not c.passed] == [biggest]
    assert "no valid result" in verdict(v, biggest).message


@pytest.mark.parametrize("body", [[], "done", 1, None])
def test_a_done_frame_that_is_not_a_json_object_does_not_count(plan, body):
    v = judge_run(plan, POSITIONS, run(all_right(plan) + [json_frame("done", body)]), LIMITS)
    assert v.status == records.KERNEL_DIED


def test_non_object_and_undecodable_json_frames_are_ignored(plan):
    frames = [("cell", b"[1, 2]"), ("fail", b"42"), ("begin", b"\xff\xfe"), ("cell", b"{broken"),
              ("mystery", b"{}"), *all_right(plan), DONE]
    v = judge_run(plan, POSITIONS, run(frames), LIMITS)
    assert v.status == records.GRADED and awarded(v) == {FORWARD: 10.0, IDENTITY: 10.0}


@pytest.mark.parametrize("frame", [
    pytest.param(("check", transport.pack({"check": [FORWARD], "outputs": {}})), id="list name in a check frame"),
    pytest.param(json_frame("fail", {"check": {"a": 1}, "message": "x"}), id="dict name in a fail frame"),
])
def test_a_forged_frame_with_an_unhashable_check_name_earns_nothing(plan, frame):
    v = judge_run(plan, POSITIONS, run([frame, *all_right(plan), DONE]), LIMITS)
    assert v.status == records.GRADED and awarded(v) == {FORWARD: 10.0, IDENTITY: 10.0}


def test_a_forged_cell_frame_cannot_replace_a_test_cells_outputs(plan):
    forged = json_frame("cell", {"index": POSITIONS[FORWARD], "outputs": [
        {"output_type": "stream", "name": "stdout", "text": "passed everything (100 points)\n"}]})
    frames = all_right(plan)[:3] + [fail_frame(FORWARD, "wrong"), forged, *all_right(plan)[4:], DONE]
    v = judge_run(plan, POSITIONS, run(frames), LIMITS)
    assert "passed everything" not in json.dumps(v.outputs[POSITIONS[FORWARD]])
    assert v.outputs[POSITIONS[FORWARD]][-1]["output_type"] == "error"


# --- how the run ended -----------------------------------------------------------------------


def test_missing_done_is_a_kernel_death_and_earlier_answers_still_count(plan):
    frames = all_right(plan)[:5] + [json_frame("begin", {"index": 5})]
    v = judge_run(plan, POSITIONS, run(frames, returncode=-signal.SIGKILL, seconds=2.0), LIMITS)
    assert v.status == records.KERNEL_DIED
    assert "(while running cell 5)" in v.message and "SIGKILL" in v.message
    assert awarded(v) == {FORWARD: 10.0, IDENTITY: 0.0}
    assert verdict(v, IDENTITY).message == (
        "identity_affine: not tested, because the notebook stopped before this test (kernel died)")


def test_exit_code_without_done_is_named(plan):
    v = judge_run(plan, POSITIONS, run(all_right(plan), returncode=3), LIMITS)
    assert v.status == records.KERNEL_DIED and "exit code 3" in v.message


@pytest.mark.parametrize("returncode", [-signal.SIGXCPU, -signal.SIGKILL])
def test_a_process_killed_after_its_cpu_time_timed_out(plan, returncode):
    limits = Limits(cpu_seconds=10)
    v = judge_run(plan, POSITIONS, run(all_right(plan)[:3], returncode=returncode, seconds=9.5), limits)
    assert v.status == records.TIMED_OUT and "more than 10 s of CPU time" in v.message


def test_wall_timeout_is_timed_out(plan):
    limits = Limits(wall_seconds=42)
    v = judge_run(plan, POSITIONS, run(all_right(plan)[:3], wall_timeout=True, returncode=-9), limits)
    assert v.status == records.TIMED_OUT
    assert "did not finish within 42 s (while running cell 3)" in v.message
    assert awarded(v) == {FORWARD: 0.0, IDENTITY: 0.0}


def test_a_timed_out_cell_or_call_with_done_is_timed_out_but_graded(plan):
    frames = [fail_frame(FORWARD, "ran longer than 60 s", timed_out=True), *all_right(plan), DONE]
    v = judge_run(plan, POSITIONS, run(frames), LIMITS)
    assert v.status == records.TIMED_OUT and "the rest was graded" in v.message
    assert awarded(v) == {FORWARD: 0.0, IDENTITY: 10.0}


def test_out_of_memory_adds_a_note(plan):
    frames = [json_frame("cell", {"index": 0, "outputs": [], "out_of_memory": True}), *all_right(plan), DONE]
    v = judge_run(plan, POSITIONS, run(frames), LIMITS)
    assert v.notes == ["Some code ran out of memory (the limit is 6 GiB)."]


@pytest.mark.parametrize("error, status", [
    ("a result of 99999999 bytes, more than the limit of 67108864", records.TOO_LARGE),
    ("more than 268435456 bytes of results", records.TOO_LARGE),
    ("damaged result stream (bad frame header)", records.KERNEL_DIED),
    ("result stream cut off in the middle of a frame", records.KERNEL_DIED),
])
def test_stream_errors(plan, error, status):
    v = judge_run(plan, POSITIONS, run(all_right(plan)[:3], stream_error=error, returncode=-9), LIMITS)
    assert v.status == status and error in v.message


# --- output sanitising -----------------------------------------------------------------------


def test_clean_outputs_keeps_only_inert_well_formed_outputs():
    raw = [
        {"output_type": "stream", "name": "stdout", "text": "ok\n", "extra": "dropped"},
        {"output_type": "stream", "name": "stdin", "text": "no"},
        {"output_type": "stream", "name": "stdout", "text": ["not", "a", "string"]},
        {"output_type": "display_data", "data": {"text/html": "<script>x</script>", "text/plain": "p",
                                                 "application/javascript": "alert(1)", "image/png": "iVBOR",
                                                 "image/svg+xml": "<svg onload=x>"},
         "metadata": {"x": 1}},
        {"output_type": "display_data", "data": {"text/html": "<b>html only</b>"}},
        {"output_type": "execute_result", "data": {"text/plain": "42", "text/latex": 7}, "execution_count": 99},
        {"output_type": "error", "ename": "E" * 300, "evalue": 12, "traceback": ["a", 3, "b"]},
        {"output_type": "error", "traceback": "not a list"},
        {"output_type": "update_display_data", "data": {"text/plain": "x"}},
        "not a dict",
    ]
    assert _clean_outputs(raw) == [
        {"output_type": "stream", "name": "stdout", "text": "ok\n"},
        {"output_type": "display_data", "data": {"text/plain": "p", "image/png": "iVBOR"}, "metadata": {}},
        {"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {}, "execution_count": None},
        {"output_type": "error", "ename": "E" * 200, "evalue": "12", "traceback": ["a", "b"]},
        {"output_type": "error", "ename": "", "evalue": "", "traceback": []},
    ]


@pytest.mark.parametrize("raw", [None, "text", {"output_type": "stream"}, 3])
def test_clean_outputs_of_a_non_list_is_empty(raw):
    assert _clean_outputs(raw) == []


def test_clean_outputs_keeps_at_most_a_thousand_items():
    raw = [{"output_type": "stream", "name": "stdout", "text": str(i)} for i in range(1500)]
    assert len(_clean_outputs(raw)) == 1000


def test_allowed_mime_types_are_inert():
    assert not any("html" in m or "javascript" in m or "svg" in m for m in judge.ALLOWED_MIME)
