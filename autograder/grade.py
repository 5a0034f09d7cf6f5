"""Grade a class: find submissions, run each in its own sandbox in parallel, judge, record.

The parent process is the only trusted one. For every chapter of a run it draws fresh seeds
for every check (visible ones too, so a hard-coded answer to a visible test earns nothing),
makes the inputs and, lazily, the expected values once for the whole class. Sandboxes run in
a thread pool (one slot = one sandbox uid); their results are judged and written by the main
thread alone, so the gradebook has a single writer. A submission whose bytes and grader are
unchanged since its last grading is skipped; grades are set, never added, so a run that is
interrupted and started again neither loses nor double-counts anything.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import random
import re
import secrets
import shutil
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from autograder import fingerprint, intake, judge, records, sandbox, submission, transport
from autograder.checks import core
from autograder.gradebook import Gradebook
from autograder.grading import judging
from autograder.grading.record import Judged, Recorder
from autograder.store import RecordStore, default_url, require_database

PACKAGE = Path(__file__).resolve().parent
_TORCH_IMPORT = re.compile(r"^\s*(import|from)\s+torch\b", re.MULTILINE)


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

    @property
    def url(self) -> str:
        return self.db_url or default_url(self.course_dir)


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


class ChapterRun:
    """Everything shared by the submissions of one chapter in this run."""

    def __init__(self, course_dir: Path, chapter: str, rng_seed: int | None, workdir: Path,
                 visible_only: bool = False):
        self.chapter = chapter
        self.template = course_dir / "release" / chapter / f"{chapter}.ipynb"
        self.checks_dir = course_dir / "release" / chapter / "coursechecks"
        if not self.template.is_file() or not self.checks_dir.is_dir():
            raise FileNotFoundError(f"{chapter} has not been released in {course_dir} (run: autograder release {chapter})")
        self.version = self._version()
        self._settings = (rng_seed, workdir, visible_only)
        self._plan: judge.Plan | None = None

    @property
    def plan(self) -> judge.Plan:
        """Seeds, inputs and the shipped inputs file, made on first use (an unchanged class
        never pays for them)."""
        if self._plan is None:
            self._make_plan(*self._settings)
        return self._plan

    def _make_plan(self, rng_seed: int | None, workdir: Path, visible_only: bool) -> None:
        by_cell: dict[str, list[core.Check]] = {}
        for check in core.chapter_checks(self.chapter).values():
            if not (visible_only and check.hidden):
                by_cell.setdefault(check.cell_id, []).append(check)
        rng = secrets.SystemRandom() if rng_seed is None else random.Random(f"{rng_seed}:{self.chapter}")
        seeds = {c.grade_id: c.seed if visible_only else rng.randrange(1, 2**31) for cs in by_cell.values() for c in cs}
        inputs = {c.grade_id: core.make_inputs(c, seeds[c.grade_id]) for cs in by_cell.values() for c in cs}
        shipped, made_inside = {}, []
        for gid, value in inputs.items():
            try:
                transport.encode(value)
                shipped[gid] = value
            except transport.Unshippable:
                made_inside.append(gid)
        self.inputs_file = workdir / f"{self.chapter}-inputs.npz"
        self.inputs_file.write_bytes(transport.pack(shipped))
        os.chmod(self.inputs_file, 0o644)
        # Numpy-only chapters run without PyTorch: faster to start, and an answer cannot
        # hand the work to torch.
        self.hide_torch = not made_inside and not self._template_imports_torch()
        self._plan = judge.Plan(self.chapter, by_cell, seeds, inputs)

    def _template_imports_torch(self) -> bool:
        nb = json.loads(self.template.read_text())
        return any(
            _TORCH_IMPORT.search("".join(cell.get("source", "")))
            for cell in nb["cells"]
            if cell.get("metadata", {}).get("nbgrader", {}).get("locked") and cell["cell_type"] == "code"
        )

    def _version(self) -> str:
        """Fingerprint of everything that decides a grade except the submission itself."""
        return fingerprint.chapter_fingerprint(self.chapter, [self.template, *self.checks_dir.glob("*.py")])

    def plan_json(self, prepared: submission.Prepared, limits: sandbox.Limits) -> dict:
        plan = self.plan  # also makes inputs_file and hide_torch
        return {
            "chapter": self.chapter,
            "cells": [{"kind": c.kind, "source": c.source if c.kind in ("code", "test") else "",
                       "grade_id": c.grade_id} for c in prepared.cells],
            "checks": {cell: [{"check": c.grade_id, "function": c.function, "seed": plan.seeds[c.grade_id]}
                              for c in checks] for cell, checks in plan.checks.items()},
            "block_torch": self.hide_torch,
            "limits": {"cell_seconds": limits.cell_seconds, "call_seconds": limits.call_seconds,
                       "cell_output_bytes": limits.cell_output_bytes,
                       "total_output_bytes": limits.total_output_bytes},
        }


def _grader_error(exc: Exception) -> str:
    return (f"The grader failed on this submission ({type(exc).__name__}: {exc}); it was not graded. "
            "This is not the student's fault: please report it.")


def require_course(course_dir: Path) -> None:
    """A clear error for a course directory that is missing or has nothing released."""
    if not (Path(course_dir) / "release").is_dir():
        raise FileNotFoundError(
            f"{course_dir} is not a course directory: it has no release/ folder "
            "(pass --course, or run `autograder release` first)")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _timestamp(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f %Z")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Grader:
    def __init__(self, options: Options, progress: Callable[[int, int, str], None] | None = None):
        self.o = options
        self.course = Path(options.course_dir).resolve()
        self.progress = progress or (lambda done, total, text: None)
        if options.sandboxed:
            sandbox.require_sandbox()

    def run(self, submissions: Path) -> Summary:
        started = time.monotonic()
        summary = Summary()
        require_course(self.course)
        require_database(self.o.url)
        chapters = sorted(p.name for p in (self.course / "release").iterdir() if p.is_dir()) \
            if (self.course / "release").is_dir() else []
        if self.o.chapter and self.o.chapter not in chapters:
            raise intake.IntakeError(f"unknown chapter {self.o.chapter!r}; released chapters: {', '.join(chapters)}")
        with tempfile.TemporaryDirectory(prefix="autograder-") as work:
            workdir = Path(work)
            os.chmod(workdir, 0o755)  # the sandbox uid reads job files through bind mounts
            found, summary.skipped = intake.discover(
                Path(submissions), chapters, chapter=self.o.chapter, pattern=self.o.pattern, workdir=workdir / "intake"
            )
            with Gradebook(self.o.url) as gb, RecordStore(self.o.url) as store:
                runs: dict[str, ChapterRun] = {}
                todo = []
                for item in found:
                    if item.chapter not in runs:
                        runs[item.chapter] = ChapterRun(self.course, item.chapter, self.o.seed, workdir)
                    digest = sha256_file(item.path)
                    fingerprint = hashlib.sha256(
                        (digest + runs[item.chapter].version + repr(self.o.limits)).encode()).hexdigest()
                    if not self.o.force and store.fingerprint(item.student, item.chapter) == fingerprint:
                        summary.unchanged.append(item)
                        continue
                    todo.append((item, fingerprint, digest))
                for chapter in sorted({item.chapter for item, _, _ in todo}):
                    gb.register(chapter, self._source_notebook(chapter))
                self._grade_all(todo, runs, workdir, gb, store, summary)
        summary.seconds = time.monotonic() - started
        return summary

    def _source_notebook(self, chapter: str) -> Path:
        path = self.course / "source" / chapter / f"{chapter}.ipynb"
        return path if path.is_file() else self.course / "release" / chapter / f"{chapter}.ipynb"

    def _grade_all(self, todo, runs, workdir: Path, gb: Gradebook, store: RecordStore, summary: Summary) -> None:
        def recorded(record: records.SubmissionRecord) -> None:
            (summary.graded if record.status == records.GRADED else summary.failed).append(record)

        recorder = Recorder(gb, lambda student, chapter: self.course / "autograded" / student / chapter / f"{chapter}.ipynb",
                            batch_size=self.o.batch_size, max_wait=self.o.batch_seconds, on_recorded=recorded)
        try:
            self._run_jobs(todo, runs, workdir, recorder)
        finally:
            recorder.flush()  # what was judged is kept, even when the run is interrupted

    def _run_jobs(self, todo, runs, workdir: Path, recorder: Recorder) -> None:
        jobs = self.o.jobs or os.cpu_count() or 1
        slots: queue.Queue[int] = queue.Queue()
        for slot in range(jobs):
            slots.put(slot)
        total, done = len(todo), 0
        font_cache = sandbox.build_font_cache(workdir / "matplotlib") if todo else None
        self.progress(0, total, "")

        def execute(job_dir: Path, run: ChapterRun) -> sandbox.RunResult:
            slot = slots.get()
            try:
                return sandbox.run_job(job_dir, run.checks_dir, self.o.limits, slot=slot,
                                       hide_torch=run.hide_torch, sandboxed=self.o.sandboxed)
            finally:
                slots.put(slot)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            pending = {}
            for n, (item, fingerprint, digest) in enumerate(todo):
                run = runs[item.chapter]
                job_dir = workdir / "jobs" / f"{n:05d}"
                try:
                    copied = self._copy_submitted(item)
                    prepared = submission.prepare(copied or item.path, run.template, item.chapter,
                                                  self.o.max_notebook_bytes)
                    self._write_job(job_dir, run, prepared, font_cache)
                except Exception as exc:  # noqa: BLE001 (one submission never stops the batch)
                    status, message = ((exc.status, exc.message) if isinstance(exc, submission.Rejected)
                                       else (records.GRADER_ERROR, _grader_error(exc)))
                    record = records.SubmissionRecord(item.student, item.chapter, status, message,
                                                      sha256=digest, graded_at=_now())
                    self._finish(record, None, None, fingerprint, recorder)
                    done += 1
                    self.progress(done, total, f"{item.student}/{item.chapter}: {status}")
                    continue
                future = pool.submit(execute, job_dir, run)
                pending[future] = (item, fingerprint, digest, prepared, run, job_dir)
            while pending:
                finished, _ = wait(pending, timeout=recorder.max_wait, return_when=FIRST_COMPLETED)
                if recorder.due():
                    recorder.flush()
                for future in finished:
                    item, fingerprint, digest, prepared, run, job_dir = pending.pop(future)
                    try:
                        result = future.result()
                        record, nb = self._judge(item, digest, prepared, run, result)
                        self._finish(record, nb, item, fingerprint, recorder)
                    except Exception as exc:  # noqa: BLE001 (one submission never stops the batch)
                        record = records.SubmissionRecord(item.student, item.chapter, records.GRADER_ERROR,
                                                          _grader_error(exc), sha256=digest, graded_at=_now())
                        self._finish(record, None, None, fingerprint, recorder)
                    shutil.rmtree(job_dir, ignore_errors=True)
                    done += 1
                    self.progress(done, total, f"{item.student}/{item.chapter}: {record.status}")

    def _write_job(self, job_dir: Path, run: ChapterRun, prepared: submission.Prepared,
                   font_cache: Path | None) -> None:
        """The sandbox's read-only input: the plan, the shared inputs, matplotlib's font list."""
        job_dir.mkdir(parents=True)
        os.chmod(job_dir, 0o755)
        (job_dir / "plan.json").write_text(json.dumps(run.plan_json(prepared, self.o.limits)))
        os.link(run.inputs_file, job_dir / "inputs.npz")
        if font_cache:
            os.link(font_cache, job_dir / font_cache.name)
        for path in job_dir.iterdir():
            os.chmod(path, 0o644)

    def _copy_submitted(self, item: intake.Found) -> Path | None:
        """nbgrader's ``submitted/<student>/<chapter>/`` copy (not for files over the size cap)."""
        if item.path.stat().st_size > self.o.max_notebook_bytes:
            return None
        dest = self.course / "submitted" / item.student / item.chapter / f"{item.chapter}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if item.path.resolve() != dest.resolve():
            shutil.copyfile(item.path, dest)
        (dest.parent / "timestamp.txt").write_text(_timestamp(item.path))
        return dest

    def _judge(self, item, digest, prepared, run: ChapterRun, result: sandbox.RunResult):
        return judging.judge_submission(item.student, item.chapter, digest, prepared, run.plan, result, self.o.limits)

    def _finish(self, record, nb, item, fingerprint, recorder: Recorder) -> None:
        stamp = self.course / "submitted" / record.student / record.chapter / "timestamp.txt"
        timestamp = stamp.read_text() if nb is not None and stamp.exists() else None
        recorder.add(Judged(record, nb, fingerprint, timestamp))


def grade(submissions: Path, options: Options, progress=None) -> Summary:
    return Grader(options, progress).run(submissions)


def text_progress(stream=sys.stderr) -> Callable[[int, int, str], None]:
    """A one-line progress bar on a terminal; on a log, a line every tenth of the way."""
    state = {"start": time.monotonic(), "last": -1}

    def show(done: int, total: int, text: str) -> None:
        if total == 0:
            return
        elapsed = time.monotonic() - state["start"]
        eta = elapsed / done * (total - done) if done else 0.0
        width = 30
        bar = "#" * (width * done // total) + "." * (width - width * done // total)
        line = f"[{bar}] {done}/{total}  {elapsed:5.0f} s elapsed, ~{eta:.0f} s left  {text}"[:160]
        if stream.isatty():
            stream.write("\r" + line.ljust(160) + ("\n" if done == total else ""))
            stream.flush()
        else:
            tenth = 10 * done // total
            if tenth != state["last"] or done == total:
                state["last"] = tenth
                stream.write(line + "\n")
                stream.flush()

    return show
