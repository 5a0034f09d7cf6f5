"""Turn what a sandbox sent back into verdicts, a status and the autograded notebook's outputs.

Runs in the trusted process. The frames are untrusted bytes: every field is type-checked,
outputs are re-sanitised, check outputs are loaded with ``allow_pickle=False`` and decided by
:func:`autograder.authoring.checks.selfcheck.verdict` (which the students' self-check uses too),
against expected values computed here from the grader's own inputs.
"""
from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field

from autograder import records, transport
from autograder.authoring.checks import core, selfcheck
from autograder.sandbox import Limits, RunResult

ALLOWED_MIME = ("text/plain", "image/png", "image/jpeg", "text/latex", "text/markdown")


@dataclass
class Plan:
    """What one chapter's grading run asks of every submission."""

    chapter: str
    checks: dict[str, list[core.Check]]  # test cell grade_id -> its checks, in order
    seeds: dict[str, int]  # check grade_id -> seed of this run
    inputs: dict[str, dict]  # check grade_id -> inputs (made here, from the seed)
    expected: dict[str, dict] = field(default_factory=dict)  # filled lazily

    def expected_for(self, check: core.Check) -> dict:
        if check.grade_id not in self.expected:
            self.expected[check.grade_id] = core.expected_values(check, self.inputs[check.grade_id])
        return self.expected[check.grade_id]


@dataclass
class Verdicts:
    status: str
    message: str
    checks: list[records.CheckVerdict]
    cells: list[records.CellScore]
    outputs: dict[int, list[dict]]  # notebook cell index -> nbformat outputs
    notes: list[str]


def _clean_outputs(raw) -> list[dict]:
    """Only well-formed, inert outputs survive (the runner's filtering is not trusted)."""
    clean: list[dict] = []
    if not isinstance(raw, list):
        return clean
    for out in raw[:1000]:
        if not isinstance(out, dict):
            continue
        kind = out.get("output_type")
        if kind == "stream" and out.get("name") in ("stdout", "stderr") and isinstance(out.get("text"), str):
            clean.append({"output_type": "stream", "name": out["name"], "text": out["text"]})
        elif kind in ("display_data", "execute_result") and isinstance(out.get("data"), dict):
            data = {k: v for k, v in out["data"].items() if k in ALLOWED_MIME and isinstance(v, str)}
            if data:
                item = {"output_type": kind, "data": data, "metadata": {}}
                if kind == "execute_result":
                    item["execution_count"] = None
                clean.append(item)
        elif kind == "error":
            tb = out.get("traceback")
            tb = [t for t in tb if isinstance(t, str)] if isinstance(tb, list) else []
            clean.append({"output_type": "error", "ename": str(out.get("ename", ""))[:200],
                          "evalue": str(out.get("evalue", ""))[:2000], "traceback": tb[-30:]})
    return clean


def _signal_number(returncode: int | None) -> int | None:
    """The signal that ended the runner: a negative return code when it ran unsandboxed,
    ``128 + signal`` when bubblewrap reports it (it exits with that status)."""
    if returncode is None:
        return None
    if returncode < 0:
        return -returncode
    if 128 < returncode < 128 + signal.NSIG:
        return returncode - 128
    return None


def _signal_name(returncode: int | None) -> str:
    number = _signal_number(returncode)
    if number is None:
        return f"exit code {returncode}"
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def judge_run(plan: Plan, cell_positions: dict[str, int], run: RunResult, limits: Limits) -> Verdicts:
    """Verdicts for every check of the plan from one sandbox run."""
    outputs: dict[int, list[dict]] = {}
    sent: dict[str, object] = {}  # check -> outputs dict, or failure message (str)
    timed_out = out_of_memory = done = False
    last_begin = None
    known = {c.grade_id for checks in plan.checks.values() for c in checks}
    notes: list[str] = []
    for kind, payload in run.frames:
        try:
            if kind == "check":
                body = transport.unpack(payload, limits.frame_bytes)
                name = body.get("check") if isinstance(body, dict) else None
                if isinstance(name, str) and name in known and name not in sent and isinstance(body.get("outputs"), dict):
                    sent[name] = body["outputs"]
                continue
            body = json.loads(payload)
            if not isinstance(body, dict):
                continue
            if kind == "begin" and isinstance(body.get("index"), int):
                last_begin = body["index"]
            elif kind == "cell" and isinstance(body.get("index"), int):
                outputs[body["index"]] = _clean_outputs(body.get("outputs"))
                timed_out |= body.get("timed_out") is True
                out_of_memory |= body.get("out_of_memory") is True
            elif kind == "fail":
                name = body.get("check")
                if isinstance(name, str) and name in known and name not in sent:
                    sent[name] = str(body.get("message", "failed"))[:2000]
                timed_out |= body.get("timed_out") is True
                out_of_memory |= body.get("out_of_memory") is True
            elif kind == "done":
                done = True
        except (transport.BadPayload, ValueError, UnicodeDecodeError):
            continue  # a forged or damaged frame earns nothing; the checks it claimed stay unanswered

    status, message = _status(run, done, timed_out, last_begin, limits)
    if out_of_memory:
        notes.append(f"Some code ran out of memory (the limit is {limits.memory_bytes / 2**30:g} GiB).")

    verdicts, cells = [], []
    for cell, checks in plan.checks.items():
        first_failure = ""
        for check in checks:
            passed, text = selfcheck.verdict(check, sent.get(check.grade_id), plan.inputs[check.grade_id],
                                             lambda c=check: plan.expected_for(c), status)
            verdicts.append(records.CheckVerdict(check.grade_id, cell, check.description, check.hidden, passed, text))
            if not passed and not first_failure:
                first_failure = text
        points = float(sum(c.points for c in checks))
        # All or nothing, as nbgrader scores a test cell that raises; the passed line a
        # notebook prints (core.passed_line) tells the student so.
        cells.append(records.CellScore(cell, points, 0.0 if first_failure else points, first_failure or "passed"))
        index = cell_positions.get(cell)
        if index is not None:
            outputs[index] = _test_cell_outputs(cell, checks, verdicts)
    return Verdicts(status, message, verdicts, cells, outputs, notes)


def _test_cell_outputs(cell: str, checks: list[core.Check], verdicts: list[records.CheckVerdict]) -> list[dict]:
    """What the test cell would have shown: the line each passed check prints in a notebook
    (:func:`core.passed_line`: what it proves, how the cell's points are earned), or the
    failure as an error (which is how nbgrader scores the cell 0)."""
    mine = {v.check: v for v in verdicts if v.cell == cell}
    lines = []
    for check in checks:
        verdict = mine[check.grade_id]
        if not verdict.passed:
            return ([{"output_type": "stream", "name": "stdout", "text": "".join(lines)}] if lines else []) + [
                {"output_type": "error", "ename": "AssertionError",
                 "evalue": f"{check.grade_id} failed. {verdict.message}", "traceback": []}
            ]
        # The cell's checks as the notebook has them: a run without the hidden checks (the
        # self-check) must still describe the cell the grader scores.
        lines.append(core.passed_line(check, core.cell_checks(check.grade_id)) + "\n")
    return [{"output_type": "stream", "name": "stdout", "text": "".join(lines)}] if lines else []


def _status(run: RunResult, done: bool, timed_out: bool, last_begin, limits: Limits) -> tuple[str, str]:
    where = f" (while running cell {last_begin})" if last_begin is not None else ""
    if run.stream_error:
        if "limit" in run.stream_error or "more than" in run.stream_error:
            return records.TOO_LARGE, f"The notebook produced too much output for the grader: {run.stream_error}."
        return records.KERNEL_DIED, f"The notebook's process damaged the grader's result stream{where}: {run.stream_error}."
    if run.wall_timeout:
        return records.TIMED_OUT, (f"The notebook did not finish within {limits.wall_seconds:g} s{where} and was "
                                   "stopped; tests after that point score 0.")
    if not done:
        killed_by = _signal_number(run.returncode)
        if killed_by in (signal.SIGXCPU, signal.SIGKILL) and run.seconds >= limits.cpu_seconds * 0.9:
            return records.TIMED_OUT, f"The notebook used more than {limits.cpu_seconds} s of CPU time{where}."
        return records.KERNEL_DIED, (f"The notebook's process ended unexpectedly{where} ({_signal_name(run.returncode)}), "
                                     "e.g. through os._exit or a crash; tests after that point score 0.")
    if timed_out:
        return records.TIMED_OUT, (f"Some code ran longer than the limit (a cell {limits.cell_seconds:g} s, a tested "
                                   f"function {limits.call_seconds:g} s) and was stopped; the rest was graded.")
    return records.GRADED, "Graded."
