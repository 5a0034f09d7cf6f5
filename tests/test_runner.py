"""The runner that executes a rebuilt notebook: output caps, and one real run (without the
sandbox) of a small job whose frames are checked one by one."""
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autograder import runner, sandbox, transport
from autograder.authoring.checks import core
from autograder.authoring.checks.selfcheck import BlockTorch
from autograder.runner import CappedStream, Outputs

REPO = Path(__file__).resolve().parent.parent
CHECKS = REPO / "exercises" / "release" / "batchnorm" / "coursechecks"

# --- Outputs and CappedStream ----------------------------------------------------------------


def test_stream_writes_to_one_name_merge_and_names_alternate():
    out = Outputs(cell_cap=1000, total_cap=1000)
    out.start()
    for name, text in [("stdout", "a"), ("stdout", "b"), ("stderr", "c"), ("stdout", "d")]:
        out.stream(name, text)
    assert out.finish() == [
        {"output_type": "stream", "name": "stdout", "text": "ab"},
        {"output_type": "stream", "name": "stderr", "text": "c"},
        {"output_type": "stream", "name": "stdout", "text": "d"},
    ]


def test_cell_cap_truncates_and_says_how_much_was_dropped():
    out = Outputs(cell_cap=10, total_cap=1000)
    out.start()
    out.stream("stdout", "0123456789ABC")
    out.stream("stderr", "more")
    items = out.finish()
    assert items[0] == {"output_type": "stream", "name": "stdout", "text": "0123456789"}
    assert items[-1]["text"] == "\n[output truncated: 7 more bytes were not kept]\n"
    assert len(items) == 2


def test_each_cell_starts_with_a_fresh_cell_cap():
    out = Outputs(cell_cap=5, total_cap=1000)
    out.start()
    out.stream("stdout", "x" * 9)
    out.finish()
    out.start()
    out.stream("stdout", "yyy")
    assert out.finish() == [{"output_type": "stream", "name": "stdout", "text": "yyy"}]


def test_total_cap_spans_cells():
    out = Outputs(cell_cap=8, total_cap=12)
    texts = []
    for _ in range(3):
        out.start()
        out.stream("stdout", "z" * 8)
        texts.append(out.finish())
    assert texts[0] == [{"output_type": "stream", "name": "stdout", "text": "z" * 8}]
    assert texts[1][0]["text"] == "z" * 4 and "4 more bytes" in texts[1][-1]["text"]
    assert texts[2] == [{"output_type": "stream", "name": "stdout",
                         "text": "\n[output truncated: 8 more bytes were not kept]\n"}]


def test_rich_output_keeps_only_inert_formats():
    out = Outputs(cell_cap=1000, total_cap=1000)
    out.start()
    out.rich("display_data", {"text/html": "<script>x</script>", "application/javascript": "x()",
                              "text/plain": "plain", "image/png": "iVBOR"}, {"isolated": True})
    out.rich("execute_result", {"text/plain": "42"}, {})
    out.rich("display_data", {"text/html": "<b>only html</b>"}, {})
    items = out.finish()
    assert items[0] == {"output_type": "display_data", "data": {"text/plain": "plain", "image/png": "iVBOR"},
                        "metadata": {}}
    assert items[1] == {"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {},
                        "execution_count": None}
    assert len(items) == 2  # the HTML-only output left nothing to show (and is not counted as dropped)


def test_rich_output_that_does_not_fit_is_dropped_whole():
    out = Outputs(cell_cap=10, total_cap=1000)
    out.start()
    out.rich("display_data", {"image/png": "A" * 11}, {})
    out.rich("display_data", {"text/plain": "fits"}, {})
    assert out.finish() == [
        {"output_type": "display_data", "data": {"text/plain": "fits"}, "metadata": {}},
        {"output_type": "stream", "name": "stdout", "text": "\n[output truncated: 11 more bytes were not kept]\n"},
    ]


def test_error_is_kept_even_when_the_cell_is_full_but_trimmed():
    out = Outputs(cell_cap=5, total_cap=1000)
    out.start()
    out.stream("stdout", "x" * 5)
    out.error("E" * 500, "v" * 5000, [f"line {i}" for i in range(100)])
    error = out.finish()[1]
    assert error["output_type"] == "error"
    assert len(error["ename"]) == 200 and len(error["evalue"]) == 2000
    assert error["traceback"] == [f"line {i}" for i in range(70, 100)]


def test_capped_stream_is_a_writable_text_stream_into_outputs():
    out = Outputs(cell_cap=1000, total_cap=1000)
    out.start()
    stream = CappedStream(out, "stderr")
    assert stream.writable()
    print("hello", 3, file=stream)
    assert stream.write("x") == 1
    stream.flush()
    assert out.finish() == [{"output_type": "stream", "name": "stderr", "text": "hello 3\nx"}]


def test_capped_stream_only_counts_once_the_cell_is_full_and_recovers_next_cell():
    out = Outputs(cell_cap=5, total_cap=1000)
    stream = CappedStream(out, "stdout")
    out.start()
    stream.write("abcdefgh")
    for _ in range(100):
        assert stream.write("xyz") == 3
    assert out.finish() == [
        {"output_type": "stream", "name": "stdout", "text": "abcde"},
        {"output_type": "stream", "name": "stdout", "text": "\n[output truncated: 303 more bytes were not kept]\n"},
    ]
    out.start()
    stream.write("new")
    assert out.finish() == [{"output_type": "stream", "name": "stdout", "text": "new"}]


@pytest.mark.parametrize("name", ["torch", "torch.nn.functional", "torchvision", "functorch.dim"])
def test_block_torch_refuses_torch_with_a_plain_message(name):
    with pytest.raises(ImportError, match=r"not available while grading this chapter: its exercises are written in numpy"):
        BlockTorch().find_spec(name, None)


@pytest.mark.parametrize("name", ["numpy", "torchish", "matplotlib.pyplot"])
def test_block_torch_lets_other_modules_through(name):
    assert BlockTorch().find_spec(name, None) is None


# --- one real run ------------------------------------------------------------------------------

ANSWERS = '''
import sys
import time
import numpy as np

def batchnorm_forward(x, gamma, beta, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    xhat = (x - mean) / np.sqrt(var + eps)
    return gamma.reshape(shape) * xhat + beta.reshape(shape), {}

def identity_affine(x, eps=1e-5):
    time.sleep(30)

def batchnorm_backward(dout, cache):
    raise ValueError("boom")

def forward_in_place(x, gamma, beta, eps=1e-5):
    x -= x.mean(axis=0)
    return x, {}

print("defined")
print("a warning", file=sys.stderr)
'''
FORWARD = "batchnorm_batchnorm_forward_torch_2d"
FORWARD_HIDDEN = "batchnorm_batchnorm_forward_torch_2d_hidden"
IDENTITY = "batchnorm_identity_affine_recovers_input_2d"
BACKWARD = "batchnorm_batchnorm_backward_autograd"
CACHE = "batchnorm_batchnorm_forward_cache"
IN_PLACE = "batchnorm_batchnorm_forward_torch_4d"
SHIPPED_SEED, HIDDEN_SEED = 5, 77
CELL_CAP = 60_000

CELLS = [
    ("code", ANSWERS, "answers"),  # 0
    ("test", "", FORWARD),  # 1
    ("test", "", IDENTITY),  # 2
    ("test", "", BACKWARD),  # 3
    ("test", "", CACHE),  # 4
    ("code", "%timeit -n1 -r1 sum(range(10))", None),  # 5
    ("code", "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2])\nplt.show()", None),  # 6
    ("code", "1 / 0", None),  # 7
    ("code", "import time\ntime.sleep(30)", None),  # 8
    ("code", "print('after')\n6 * 7", None),  # 9
    ("markdown", "", None),  # 10
    ("code", "from IPython.display import HTML, display\ndisplay(HTML('<script>alert(1)</script>'))", None),  # 11
    ("code", "import torch", None),  # 12
    ("code", f"print('x' * {CELL_CAP + 10_000})", None),  # 13
    ("code", "import os\nos.system('echo from a child process')\n!echo from a shell escape", None),  # 14
    ("test", "", IN_PLACE),  # 15
]


def forward(x, gamma, beta, eps=1e-5):
    namespace: dict = {}
    exec(ANSWERS.replace('print("a warning", file=sys.stderr)', ""), namespace)  # noqa: S102 (test fixture)
    return namespace["batchnorm_forward"](x, gamma, beta, eps)[0]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Frames of one runner process on the job above, started as the sandbox starts it but
    without bubblewrap."""
    root = tmp_path_factory.mktemp("runner")
    job, work = root / "job", root / "work"
    job.mkdir()
    shutil.copytree(CHECKS, work / "coursechecks")
    plan = {
        "chapter": "batchnorm",
        "cells": [{"kind": kind, "source": source, "grade_id": gid} for kind, source, gid in CELLS],
        "checks": {
            # the shipped inputs win over the seed; the hidden check's inputs are made inside
            FORWARD: [{"check": FORWARD, "function": "batchnorm_forward", "seed": 999},
                      {"check": FORWARD_HIDDEN, "function": "batchnorm_forward", "seed": HIDDEN_SEED}],
            IDENTITY: [{"check": IDENTITY, "function": "identity_affine", "seed": 1}],
            BACKWARD: [{"check": BACKWARD, "function": "batchnorm_backward", "seed": 2}],
            CACHE: [{"check": CACHE, "function": "no_such_function", "seed": 3}],
            IN_PLACE: [{"check": IN_PLACE, "function": "forward_in_place", "seed": 4}],
        },
        "block_torch": True,
        "limits": {"cell_seconds": 4.0, "call_seconds": 1.0, "cell_output_bytes": CELL_CAP,
                   "total_output_bytes": 4 * CELL_CAP},
    }
    (job / "plan.json").write_text(json.dumps(plan))
    shipped = {name: core.make_inputs(core.get_check(name), SHIPPED_SEED) for name in (FORWARD, IDENTITY, BACKWARD, CACHE, IN_PLACE)}
    (job / "inputs.npz").write_bytes(transport.pack(shipped))
    proc = subprocess.run([sys.executable, "-I", str(Path(runner.__file__)), str(job)], cwd=work,
                          env=sandbox._environment(str(work)), capture_output=True, timeout=120)
    got = list(transport.read_frames(io.BytesIO(proc.stdout), 2**28, 2**26))
    return proc, got


def cell_frames(frames) -> dict[int, dict]:
    return {body["index"]: body for body in (json.loads(p) for k, p in frames[1] if k == "cell")}


def check_frames(frames) -> dict[str, dict]:
    bodies = [transport.unpack(p, 2**26) for k, p in frames[1] if k == "check"]
    return {b["check"]: b["outputs"] for b in bodies}


def fail_frames(frames) -> dict[str, dict]:
    bodies = [json.loads(p) for k, p in frames[1] if k == "fail"]
    return {b.pop("check"): b for b in bodies}


def test_runner_exits_cleanly_and_ends_with_done(frames):
    proc, got = frames
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert got[-1] == ("done", b"{}")


def test_frames_come_in_notebook_order(frames):
    kinds = []
    for kind, payload in frames[1]:
        body = transport.unpack(payload, 2**26) if kind == "check" else json.loads(payload)
        kinds.append(f"{kind} {body.get('index', body.get('check', ''))}".strip())
    expected = ["begin 0", "cell 0", "begin 1", f"check {FORWARD}", f"check {FORWARD_HIDDEN}",
                "begin 2", f"fail {IDENTITY}", "begin 3", f"fail {BACKWARD}", "begin 4", f"fail {CACHE}"]
    for index in range(5, len(CELLS) - 1):
        expected += [f"begin {index}"] + ([] if CELLS[index][0] == "markdown" else [f"cell {index}"])
    expected += [f"begin {len(CELLS) - 1}", f"fail {IN_PLACE}"]
    assert kinds == expected + ["done"]


def test_a_code_cell_reports_its_stdout_and_stderr(frames):
    assert cell_frames(frames)[0]["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "defined\n"},
        {"output_type": "stream", "name": "stderr", "text": "a warning\n"},
    ]


def test_check_outputs_are_the_raw_outputs_on_shipped_inputs(frames):
    outputs = check_frames(frames)[FORWARD]
    inputs = core.make_inputs(core.get_check(FORWARD), SHIPPED_SEED)
    assert set(outputs) == {"out"}  # the cache is not kept by this check
    assert outputs["out"].dtype == np.float64
    np.testing.assert_array_equal(outputs["out"], forward(**inputs))


def test_inputs_not_shipped_are_made_inside_from_the_seed(frames):
    outputs = check_frames(frames)[FORWARD_HIDDEN]
    inputs = core.make_inputs(core.get_check(FORWARD_HIDDEN), HIDDEN_SEED)
    np.testing.assert_array_equal(outputs["out"], forward(**inputs))


def answer_line(text: str) -> int:
    return ANSWERS.splitlines().index(text) + 1


def test_a_slow_tested_function_is_stopped_and_reported_as_timed_out(frames):
    fail = fail_frames(frames)[IDENTITY]
    assert fail["timed_out"] is True and fail["out_of_memory"] is False
    assert "identity_affine ran longer than 1 s" in fail["message"]
    # where the student's code was when it was stopped: cell 1 of the notebook
    assert fail["message"].endswith(f"\n  at cell 1, line {answer_line('    time.sleep(30)')}: time.sleep(30)")


def test_a_raising_tested_function_is_a_failure_with_its_message_and_line(frames):
    fail = fail_frames(frames)[BACKWARD]
    line = answer_line('    raise ValueError("boom")')
    assert fail == {"message": f'raised ValueError: boom\n  at cell 1, line {line}: raise ValueError("boom")',
                    "timed_out": False, "out_of_memory": False}


def test_a_function_that_changes_its_argument_in_place_is_told_so(frames):
    fail = fail_frames(frames)[IN_PLACE]
    assert fail["message"].startswith("it modified the caller's array x in place; leave its arguments unchanged")
    assert fail["timed_out"] is False


def test_an_undefined_function_is_a_failure(frames):
    assert fail_frames(frames)[CACHE]["message"] == "no_such_function is not defined"


def test_magics_work(frames):
    (out,) = cell_frames(frames)[5]["outputs"]
    assert out["output_type"] == "stream" and "per loop" in out["text"]


def test_a_matplotlib_figure_is_shown_as_png(frames):
    (out,) = cell_frames(frames)[6]["outputs"]
    assert out["output_type"] == "display_data"
    assert set(out["data"]) == {"image/png", "text/plain"}
    assert out["data"]["image/png"].startswith("iVBORw0KGgo")  # base64 of the PNG signature


def test_an_error_becomes_an_error_output(frames):
    cell = cell_frames(frames)[7]
    (out,) = cell["outputs"]
    assert (out["output_type"], out["ename"], out["evalue"]) == ("error", "ZeroDivisionError", "division by zero")
    assert cell["timed_out"] is False


def test_a_slow_cell_is_stopped_and_the_next_cell_runs(frames):
    cells = cell_frames(frames)
    assert cells[8]["timed_out"] is True
    assert cells[8]["seconds"] < 8
    assert cells[8]["outputs"][-1]["ename"] == "TimeLimit"
    assert cells[9]["timed_out"] is False
    assert cells[9]["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "after\n"},
        {"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {}, "execution_count": None},
    ]


def test_html_from_student_code_is_not_kept(frames):
    outputs = cell_frames(frames)[11]["outputs"]
    assert outputs and all("text/html" not in out.get("data", {}) for out in outputs)
    assert "<script>" not in json.dumps(outputs)


def test_torch_is_blocked_when_the_plan_says_so(frames):
    (out,) = cell_frames(frames)[12]["outputs"]
    assert out["output_type"] == "error" and "not available while grading this chapter" in out["evalue"]


def test_a_flood_of_output_is_capped_per_cell(frames):
    kept, note = cell_frames(frames)[13]["outputs"]
    assert kept["text"] == "x" * CELL_CAP
    assert note["text"] == "\n[output truncated: 10001 more bytes were not kept]\n"


def test_child_processes_writing_to_stdout_do_not_damage_the_frames(frames):
    # os.system's child inherits fd 1, which is /dev/null; a shell escape's output is captured.
    # The frames were read without damage (reading them above would have raised).
    cell = cell_frames(frames)[14]
    assert cell["timed_out"] is False
    assert cell["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "from a shell escape\r\n"}]
