"""Stage 4, judge: what a sandbox sent back becomes a record and the autograded notebook.

Runs in the trusted coordinator only: the expected values come from ``solutions/`` through
the chapter's plan, which never leaves this process.
"""
from __future__ import annotations

from datetime import datetime, timezone

import nbformat

from autograder import judge, records, submission
from autograder.sandbox import Limits, RunResult


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def judge_submission(student: str, chapter: str, sha256: str, prepared: submission.Prepared,
                     plan: judge.Plan, result: RunResult,
                     limits: Limits) -> tuple[records.SubmissionRecord, nbformat.NotebookNode]:
    positions = {gid: index for index, gid in prepared.test_cells()}
    verdicts = judge.judge_run(plan, positions, result, limits)
    nb = submission.to_notebook(prepared, verdicts.outputs)
    record = records.SubmissionRecord(
        student=student, chapter=chapter, status=verdicts.status, message=verdicts.message,
        sha256=sha256, cells=verdicts.cells, checks=verdicts.checks,
        notes=list(prepared.notes) + verdicts.notes, seeds=dict(plan.seeds), graded_at=now(),
        duration_s=round(result.seconds, 3),  # in the sandbox, not waiting for a slot
    )
    return record, nb


def grader_error(exc: Exception) -> str:
    return (f"The grader failed on this submission ({type(exc).__name__}: {exc}); it was not graded. "
            "This is not the student's fault: please report it.")
