"""Grade a class, as a declared sequence of stages, each a module of its own:

    find      (:mod:`.find`)      the submissions, and which changed since their grading
    prepare   (:mod:`.prepare`)   the chapter's plan; each submission's sandbox job, as bytes
    run       (:mod:`.execute`)   the jobs in sandboxes: this machine's pool, or a Dask cluster
    judge     (:mod:`.judging`)   the results against the expected values, in the coordinator
    record    (:mod:`.record`)    gradebook scores and records, many per transaction

The coordinator (this process) is the only trusted one: it alone holds the expected values
and writes the gradebook. A submission whose bytes and grader are unchanged since its last
grading is skipped; grades are set, never added, so a run that is interrupted and started
again neither loses nor double-counts anything.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from autograder import intake, records, sandbox, submission
from autograder.coursedir import CourseDir
from autograder.gradebook import Gradebook
from autograder.grading import find, judging
from autograder.grading.execute import Executor, LocalPool
from autograder.grading.prepare import ChapterRun
from autograder.grading.record import Judged, Recorder
from autograder.store import RecordStore, require_database

Progress = Callable[[int, int, str], None]


@dataclass
class Options:
    course_dir: Path
    db_url: str | None = None
    jobs: int = 0  # 0: one per core
    limits: sandbox.Limits = field(default_factory=sandbox.Limits)
    sandboxed: bool = True
    chapter: str | None = None
    pattern: str | None = None
    max_notebook_bytes: int = submission.MAX_NOTEBOOK_BYTES
    force: bool = False  # regrade unchanged submissions too
    seed: int | None = None  # fixes the run's seeds (to reproduce a run)
    batch_size: int = 100  # submissions recorded per transaction
    batch_seconds: float = 2.0  # longest a judged submission waits to be recorded
    cluster: str | None = None  # a Dask scheduler's address; None: this machine

    @property
    def url(self) -> str:
        return self.db_url or CourseDir(self.course_dir).default_db_url()


@dataclass
class Summary:
    graded: list[records.SubmissionRecord] = field(default_factory=list)
    failed: list[records.SubmissionRecord] = field(default_factory=list)  # status other than graded
    unchanged: list[intake.Found] = field(default_factory=list)
    skipped: list[intake.Skipped] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"graded {len(self.graded)}, not fully graded {len(self.failed)}, "
               f"unchanged since last run {len(self.unchanged)}, skipped files {len(self.skipped)} "
               f"({self.seconds:.1f} s)"]
        for rec in self.failed:
            out.append(f"  {rec.student}/{rec.chapter}: {rec.status}: {rec.message}")
        for skip in self.skipped:
            out.append(f"  skipped {skip.origin}: {skip.reason}")
        return out


def _timestamp(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f %Z")


def make_executor(options: Options) -> Executor:
    """Where the sandboxes run: a Dask cluster when ``options.cluster`` names one, else here."""
    if options.cluster:
        from autograder.grading.dask_cluster import DaskCluster

        return DaskCluster(options.cluster, sandboxed=options.sandboxed)
    if options.sandboxed:
        sandbox.require_sandbox()
    return LocalPool(options.jobs, sandboxed=options.sandboxed)


class Grader:
    def __init__(self, options: Options, progress: Progress | None = None, executor: Executor | None = None):
        self.o = options
        self.course = CourseDir(options.course_dir)
        self.progress = progress or (lambda done, total, text: None)
        # First: a sandbox or a cluster that is not there is an error before anything is touched.
        self.executor = executor or make_executor(options)

    def run(self, submissions: Path) -> Summary:
        try:
            return self._run(submissions)
        finally:
            self.executor.close()

    def _run(self, submissions: Path) -> Summary:
        started = time.monotonic()
        summary = Summary()
        self.course.require()
        require_database(self.o.url)
        chapters = self.course.chapters()
        if self.o.chapter and self.o.chapter not in chapters:
            raise intake.IntakeError(f"unknown chapter {self.o.chapter!r}; released chapters: {', '.join(chapters)}")
        with tempfile.TemporaryDirectory(prefix="autograder-") as work:
            workdir = Path(work)
            os.chmod(workdir, 0o755)  # the sandbox uid reads job files through bind mounts
            found, summary.skipped = intake.discover(                                  # find
                Path(submissions), chapters, chapter=self.o.chapter, pattern=self.o.pattern, workdir=workdir / "intake"
            )
            runs = {ch: ChapterRun(self.course.root, ch, self.o.seed) for ch in sorted({f.chapter for f in found})}
            with Gradebook(self.o.url) as gb, RecordStore(self.o.url) as store:
                todo, summary.unchanged = find.split_changed(
                    found, {ch: run.version for ch, run in runs.items()}, store.fingerprints(),
                    repr(self.o.limits), self.o.force)
                for chapter in sorted({t.found.chapter for t in todo}):
                    gb.register(chapter, self.course.source_notebook(chapter))

                def recorded(record: records.SubmissionRecord) -> None:
                    (summary.graded if record.status == records.GRADED else summary.failed).append(record)

                recorder = Recorder(gb, self.course.autograded, batch_size=self.o.batch_size,
                                    max_wait=self.o.batch_seconds, on_recorded=recorded)
                try:
                    self._grade(todo, runs, workdir, recorder)
                finally:
                    recorder.flush()  # what was judged is kept, even when the run is interrupted
        summary.seconds = time.monotonic() - started
        return summary

    def _grade(self, todo: list[find.ToGrade], runs: dict[str, ChapterRun], workdir: Path,
               recorder: Recorder) -> None:
        total, done = len(todo), 0
        font_cache = sandbox.build_font_cache(workdir / "matplotlib") if todo else None
        self.progress(0, total, "")
        waiting: dict[int, tuple[find.ToGrade, submission.Prepared]] = {}

        def finished(item: find.ToGrade, record: records.SubmissionRecord, nb=None) -> None:
            nonlocal done
            stamp = self.course.submitted(item.found.student, item.found.chapter).parent / "timestamp.txt"
            timestamp = stamp.read_text() if nb is not None and stamp.exists() else None
            recorder.add(Judged(record, nb, item.fingerprint, timestamp))                  # record
            done += 1
            self.progress(done, total, f"{item.name}: {record.status}")

        def failed(item: find.ToGrade, exc: Exception) -> None:
            status, message = ((exc.status, exc.message) if isinstance(exc, submission.Rejected)
                               else (records.GRADER_ERROR, judging.grader_error(exc)))
            finished(item, records.SubmissionRecord(item.found.student, item.found.chapter, status, message,
                                                    sha256=item.sha256, graded_at=judging.now()))

        def jobs() -> Iterator:                                                             # prepare
            for n, item in enumerate(todo):
                run = runs[item.found.chapter]
                try:
                    copied = self._copy_submitted(item.found)
                    prepared = submission.prepare(copied or item.found.path, run.template, item.found.chapter,
                                                  self.o.max_notebook_bytes)
                    job = run.job(item.name, prepared, self.o.limits, font_cache)
                except Exception as exc:  # noqa: BLE001 (one submission never stops the batch)
                    failed(item, exc)
                    continue
                waiting[n] = (item, prepared)
                yield n, job

        idle = lambda: recorder.flush() if recorder.due() else None  # noqa: E731
        for n, outcome in self.executor.run(jobs(), idle, tick=recorder.max_wait):        # run
            item, prepared = waiting.pop(n)
            try:
                if isinstance(outcome, BaseException):
                    raise outcome
                record, nb = judging.judge_submission(                                    # judge
                    item.found.student, item.found.chapter, item.sha256, prepared,
                    runs[item.found.chapter].plan, outcome, self.o.limits)
            except Exception as exc:  # noqa: BLE001 (one submission never stops the batch)
                failed(item, exc)
                continue
            finished(item, record, nb)

    def _copy_submitted(self, item: intake.Found) -> Path | None:
        """nbgrader's ``submitted/<student>/<chapter>/`` copy (not for files over the size cap)."""
        if item.path.stat().st_size > self.o.max_notebook_bytes:
            return None
        dest = self.course.submitted(item.student, item.chapter)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if item.path.resolve() != dest.resolve():
            shutil.copyfile(item.path, dest)
        (dest.parent / "timestamp.txt").write_text(_timestamp(item.path))
        return dest


def grade(submissions: Path, options: Options, progress: Progress | None = None) -> Summary:
    return Grader(options, progress).run(submissions)
