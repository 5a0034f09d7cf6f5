"""How many notebooks per second one coordinator judges and records, and so how many sandbox
slots it keeps busy.

The sandbox results of a few real submissions of the ``batchnorm`` chapter (the reference, a
typical bug, the untouched release, a half-done notebook) are recorded once, by running them
in the real sandbox. A class of ``--students`` submissions (default 10,000) is then replayed
through the coordinator's own stages, without sandboxes: read and repair the submission
(prepare), judge the recorded result against the expected values, record it (gradebook scores
and records, in batches). That is everything a coordinator does per notebook besides waiting.
It is measured for a SQLite gradebook and a throwaway PostgreSQL server, each from empty.

Slots kept busy = notebooks/s x mean sandbox seconds per notebook: a cluster with more
sandbox slots than that waits for its coordinator. On a shared machine the wall-clock rate
depends on what else runs, so the rate per CPU second the coordinator used (what it does with
a core of its own; database servers' own CPU not included) is printed as well.

Usage: python benchmarks/coordinator.py [--students 10000] [--batch 100]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "tests"))  # the bug catalogue and the PostgreSQL helper live with the tests

import nbformat  # noqa: E402

import bugs  # noqa: E402
import pgserver  # noqa: E402
from autograder import records, sandbox, submission
from autograder.authoring import course  # noqa: E402
from autograder.gradebook import Gradebook  # noqa: E402
from autograder.grading import judging, worker  # noqa: E402
from autograder.grading.prepare import ChapterRun  # noqa: E402
from autograder.grading.record import Judged, Recorder  # noqa: E402
from autograder.store import RecordStore  # noqa: E402

CHAPTER = "batchnorm"
EXERCISES = REPO / "exercises"


def kinds() -> dict[str, str]:
    release = course.read(EXERCISES / "release" / CHAPTER / f"{CHAPTER}.ipynb")
    answers = course.answers(course.read(EXERCISES / "source" / CHAPTER / f"{CHAPTER}.ipynb"))
    bug = bugs.load(CHAPTER).BUGS["unbiased_variance"]
    first = next(iter(answers))
    return {
        "reference": nbformat.writes(course.fill_answers(release, answers)),
        "bug": nbformat.writes(course.fill_answers(
            release, {**answers, bug["answer_cell"]: answers[bug["answer_cell"]] + "\n" + bug["source"]})),
        "untouched": nbformat.writes(release),
        "half": nbformat.writes(course.fill_answers(release, {first: answers[first]})),
    }


def record_results(course_dir: Path, work: Path, run: ChapterRun) -> dict[str, tuple[Path, object]]:
    """Each kind's submission file and its sandbox result, from a real sandbox run."""
    limits = sandbox.Limits()
    font = sandbox.build_font_cache(work / "matplotlib")
    recorded = {}
    for kind, text in kinds().items():
        path = work / "kinds" / f"{kind}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        prepared = submission.prepare(path, run.template, CHAPTER)
        result = worker.run(run.job(kind, prepared, limits, font), sandboxed=not sandbox.probe(), slot=0)
        recorded[kind] = (path, result)
    return recorded


def replay(url: str, course_dir: Path, run: ChapterRun, recorded: dict, students: int, batch: int,
           out: Path) -> float:
    """Notebooks per second through prepare, judge and record."""
    limits = sandbox.Limits()
    names = sorted(recorded)
    with RecordStore(url), Gradebook(url) as gb:
        gb.register(CHAPTER, course_dir / "source" / CHAPTER / f"{CHAPTER}.ipynb")
        recorder = Recorder(gb, lambda s, c: out / s / c / f"{c}.ipynb", batch_size=batch, max_wait=3600)
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(students):
            path, result = recorded[names[i % len(names)]]
            prepared = submission.prepare(path, run.template, CHAPTER)
            record, nb = judging.judge_submission(f"s{i:06d}", CHAPTER, "0" * 64, prepared, run.plan, result, limits)
            recorder.add(Judged(record, nb, f"fp{i}", "2025-03-01 12:00:00.000000 UTC"))
        recorder.flush()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    with RecordStore(url) as store:
        stored = list(store.records(CHAPTER))
    assert len(stored) == students, (len(stored), students)
    assert all(r.status == records.GRADED for r in stored)
    return students / seconds, students / cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="coordinator-") as tmp:
        work = Path(tmp)
        course_dir = work / "course"
        for part in ("source", "release"):
            shutil.copytree(EXERCISES / part / CHAPTER, course_dir / part / CHAPTER, ignore=course.COPY_IGNORE)
        run = ChapterRun(course_dir, CHAPTER, 0)
        recorded = record_results(course_dir, work, run)
        sandbox_seconds = statistics.mean(r.seconds for _, r in recorded.values())
        print(f"recorded sandbox results: {', '.join(f'{k} {r.seconds:.2f} s' for k, (_, r) in recorded.items())}"
              f" (mean {sandbox_seconds:.2f} s per notebook)")
        targets = [("SQLite", lambda: f"sqlite:///{work / 'gradebook.db'}", None)]
        folder = pgserver.postgres_bin()
        if folder and not args.skip_postgres:
            targets.append(("PostgreSQL", None, folder))
        for label, make_url, pg in targets:
            if pg is None:
                rate, cpu_rate = replay(make_url(), course_dir, run, recorded, args.students, args.batch, work / "out-sqlite")
            else:
                with pgserver.postgres_server(pg, fsync=True) as new_database:
                    rate, cpu_rate = replay(new_database(), course_dir, run, recorded, args.students, args.batch, work / "out-pg")
            print(f"{label:<10} {args.students} notebooks: {rate:6.1f} notebooks/s through prepare, judge and record "
                  f"({cpu_rate:.1f} per CPU second of the coordinator) -> one coordinator keeps "
                  f"{rate * sandbox_seconds:.0f} sandbox slots busy ({cpu_rate * sandbox_seconds:.0f} on a core of its own)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
