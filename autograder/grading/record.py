"""Stage 5, record: the judged submissions go into the gradebook in batches.

One transaction writes many notebooks: nbgrader's scores and comments and the autograder's
record rows together, so a submission is in the database completely (scores, record and the
fingerprint that lets a re-run skip it) or not at all. A batch is written when it is full or
when its oldest submission has waited ``max_wait`` seconds, so a coordinator killed mid-run
loses at most that much work, which the next run grades again. Grades are set, never added:
recording a submission twice leaves one row and the same scores.

The autograded notebook files are written before the transaction that records them: a file
whose record was lost is simply rewritten by the next run.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat

from autograder import records
from autograder.gradebook import Gradebook
from autograder.store import put_rows

log = logging.getLogger("autograder")


@dataclass
class Judged:
    """A submission ready to record: its record, the autograded notebook (None when it was not
    run, e.g. an invalid file) and the fingerprint a re-run compares with."""

    record: records.SubmissionRecord
    notebook: nbformat.NotebookNode | None
    fingerprint: str
    timestamp: str | None = None  # the submission time nbgrader keeps


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _ipynb(nb: nbformat.NotebookNode) -> bytes:
    """The notebook as ``.ipynb`` text. The grader built it from a validated release, so it
    is written without nbformat's validation pass (which cost more than judging)."""
    return (json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


class Recorder:
    """Collects judged submissions and writes them ``batch_size`` at a time; ``on_recorded``
    hears of each one once it is committed."""

    def __init__(self, gradebook: Gradebook, autograded: Callable[[str, str], Path], *,
                 batch_size: int = 100, max_wait: float = 2.0,
                 on_recorded: Callable[[records.SubmissionRecord], None] = lambda record: None):
        self.gb = gradebook
        self.autograded = autograded  # (student, chapter) -> the autograded notebook's path
        self.batch_size, self.max_wait = batch_size, max_wait
        self.on_recorded = on_recorded
        self.pending: list[Judged] = []
        self._oldest = 0.0

    def add(self, item: Judged) -> None:
        if item.notebook is not None:
            path = self.autograded(item.record.student, item.record.chapter)
            write_atomic(path, _ipynb(item.notebook))
            if item.timestamp:
                (path.parent / "timestamp.txt").write_text(item.timestamp)
        if not self.pending:
            self._oldest = time.monotonic()
        self.pending.append(item)
        if len(self.pending) >= self.batch_size or time.monotonic() - self._oldest >= self.max_wait:
            self.flush()

    def due(self) -> bool:
        """Whether the pending batch has waited long enough to be written now."""
        return bool(self.pending) and time.monotonic() - self._oldest >= self.max_wait

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        try:
            self._write(batch)
        except Exception:  # noqa: BLE001 (find the one that fails; the others are recorded)
            log.exception("recording a batch of %d failed; recording them one at a time", len(batch))
            for item in batch:
                try:
                    self._write([item])
                except Exception as exc:  # noqa: BLE001
                    failed = records.SubmissionRecord(
                        item.record.student, item.record.chapter, records.GRADER_ERROR,
                        f"The grader could not record this submission ({type(exc).__name__}: {exc}); "
                        "the next run grades it again.", sha256=item.record.sha256,
                        graded_at=item.record.graded_at)
                    self._write([Judged(failed, None, "")])
                    item = Judged(failed, None, "")
                self.on_recorded(item.record)
            return
        for item in batch:
            self.on_recorded(item.record)

    def _write(self, batch: list[Judged]) -> None:
        with self.gb.transaction() as db:
            self.gb.save_many([(j.record.chapter, j.record.student, j.notebook, j.timestamp)
                               for j in batch if j.notebook is not None])
            # A grader error keeps no fingerprint: the next run grades the submission again.
            put_rows(db, [(j.record, "" if j.record.status == records.GRADER_ERROR else j.fingerprint)
                          for j in batch])
