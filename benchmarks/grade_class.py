"""Grade one synthetic class with plain nbgrader and with the autograder; compare and time.

The class is built in a temporary directory, seeded and deterministic: per chapter, about
40% of the students hand in the reference answers, 30% the reference with one or two
typical bugs from ``tests/bugs/<chapter>.py`` appended to the answer cells they concern, 15%
a stub (the untouched release, or only the first answer cell done) and 15% a broken
notebook (a syntax error in an answer cell, a NameError at the top of a cell or inside a
function, or a function that raises). Nothing loops forever: both graders would only sit out
their time limits.

The same notebooks are then graded twice from scratch, each grader in a fresh copy of
``exercises/`` (``source/``, ``release/``, ``nbgrader_config.py``):

- plain nbgrader: ``nbgrader generate_assignment`` per chapter (not timed: an instructor
  does it once, at release), the notebooks in ``submitted/<student>/<chapter>/``, then one
  ``nbgrader autograde <chapter>`` command per chapter, one after the other, each timed
  with its process start-up;
- the autograder: ``grade.grade`` on ``<student>/<chapter>.ipynb`` with ``--jobs`` sandboxes,
  timed in this process (its imports are already loaded; the start-up a command would add
  is measured separately and shown).

Each grader keeps the environment an instructor would give it, and the report says what it
was. The autograder runs first, so a cold file cache, if any, costs it and not nbgrader.
Every graded cell's automatic score is then read from both gradebooks with
``autograder.authoring.course.scores`` and compared; any disagreement is printed with both verdicts
and makes the exit status non-zero. A profile shows where the autograder's time goes.

Usage: python benchmarks/grade_class.py [--students 60] [--chapters batchnorm pooling]
       [--jobs 2] [--seed 0] [--out FILE] [--keep DIR]
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "tests"))  # the bug catalogue lives with the tests

import nbformat  # noqa: E402

import bugs  # noqa: E402
from autograder import grade, intake, sandbox, submission
from autograder.authoring import course, notebooks  # noqa: E402
from autograder.authoring.checks import core  # noqa: E402
from autograder.gradebook import Gradebook  # noqa: E402
from autograder.grading import judging  # noqa: E402
from autograder.grading.record import Recorder  # noqa: E402
from autograder.store import RecordStore  # noqa: E402

MIX = {"correct": 0.40, "buggy": 0.30, "stub": 0.15, "broken": 0.15}
BREAKS = ("syntax error", "NameError at the top of the cell", "NameError inside the function", "function raises")
NBGRADER_SECONDS_PER_NOTEBOOK = 120  # only a ceiling for a hung nbgrader command


@dataclass
class Submission:
    student: str
    chapter: str
    kind: str  # one of MIX
    detail: str  # which bugs, which break, which stub
    notebook: nbformat.NotebookNode = field(repr=False)


# ---------------------------------------------------------------------------- the class


def _counts(students: int) -> dict[str, int]:
    """Students per kind: MIX's shares by largest remainder, every kind present from 4 on."""
    exact = {kind: students * share for kind, share in MIX.items()}
    counts = {kind: math.floor(x) for kind, x in exact.items()}
    for kind in sorted(exact, key=lambda k: counts[k] - exact[k])[: students - sum(counts.values())]:
        counts[kind] += 1
    if students >= len(MIX):
        for kind in MIX:
            if counts[kind] == 0:
                counts[max(counts, key=counts.get)] -= 1
                counts[kind] = 1
    return counts


def _answer_cells(release_nb) -> list[str]:
    """grade_ids of the code answer cells, in notebook order."""
    return [c.metadata["nbgrader"]["grade_id"] for c in release_nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]


def _graded_functions(chapter: str, reference: dict[str, str], cells: list[str]) -> dict[str, list[str]]:
    """Per answer cell, the graded functions its reference answer defines."""
    graded = {check.function for check in core.chapter_checks(chapter).values()}
    found = {}
    for cell in cells:
        tree = ast.parse(reference[cell])
        found[cell] = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in graded]
    return found


def _broken(kind: str, cell_source: str, function: str) -> str:
    """The reference answer of one cell, broken the way ``kind`` says."""
    if kind == "syntax error":  # the whole cell fails to compile: none of it is defined
        return cell_source + "\n\nfor row in range(3)\n    print(row)\n"
    if kind == "NameError at the top of the cell":  # a leftover from a deleted cell stops it early
        return "print(x_debug.shape)\n\n" + cell_source
    if kind == "NameError inside the function":  # defined, fails when called
        return cell_source + f"\n\ndef {function}(*args, **kwargs):\n    return _{function}_v2(*args, **kwargs)\n"
    if kind == "function raises":
        return cell_source + (f"\n\ndef {function}(*args, **kwargs):\n"
                              "    return np.ones((2, 3)) @ np.ones((2, 3))  # shapes do not line up\n")
    raise ValueError(f"unknown kind of break {kind!r}")


def make_class(chapters: list[str], students: int, seed: int) -> list[Submission]:
    """The submissions of ``students`` students for every chapter, the same for the same seed."""
    names = [f"s{i:03d}" for i in range(1, students + 1)]
    made = []
    for chapter in chapters:
        rng = random.Random(f"{seed}:{chapter}")
        source = course.read(course.EXERCISES / "source" / chapter / f"{chapter}.ipynb")
        released = course.read(course.EXERCISES / "release" / chapter / f"{chapter}.ipynb")
        reference = course.answers(source)
        cells = _answer_cells(released)
        functions = _graded_functions(chapter, reference, cells)
        catalogue = bugs.load(chapter).BUGS
        kinds = [kind for kind, n in _counts(students).items() for _ in range(n)]
        rng.shuffle(kinds)
        for student, kind in zip(names, kinds):
            filled = dict(reference)
            if kind == "correct":
                detail = "reference answers"
            elif kind == "buggy":
                first = rng.choice(sorted(catalogue))
                chosen = [first]
                others = sorted(b for b in catalogue if catalogue[b]["answer_cell"] != catalogue[first]["answer_cell"])
                if others and rng.random() < 0.5:
                    chosen.append(rng.choice(others))
                for bug in chosen:
                    cell = catalogue[bug]["answer_cell"]
                    filled[cell] = filled[cell] + "\n\n" + catalogue[bug]["source"]
                detail = "bugs: " + ", ".join(chosen)
            elif kind == "stub":
                if rng.random() < 0.5:
                    filled, detail = {}, "untouched release"
                else:
                    filled, detail = {cells[0]: reference[cells[0]]}, f"only {cells[0]} done"
            else:
                how = rng.choice(BREAKS)
                cell = rng.choice([c for c in cells if functions[c]])
                function = rng.choice(functions[cell])
                filled[cell] = _broken(how, reference[cell], function)
                detail = f"{how} in {cell} ({function})"
            made.append(Submission(student, chapter, kind, detail, course.fill_answers(released, filled)))
    return made


def _course_copy(dest: Path, chapters: list[str]) -> Path:
    """A fresh course directory: the config and the chapters' ``source/`` and ``release/``."""
    dest.mkdir(parents=True)
    shutil.copy(course.EXERCISES / "nbgrader_config.py", dest / "nbgrader_config.py")
    for chapter in chapters:
        for kind in ("source", "release"):
            shutil.copytree(course.EXERCISES / kind / chapter, dest / kind / chapter, ignore=course.COPY_IGNORE)
    return dest


# ---------------------------------------------------------------------------- the graders


def grade_with_nbgrader(course_dir: Path, subs: list[Submission], chapters: list[str]) -> dict:
    """Plain nbgrader, as an instructor runs it; seconds of each ``autograde`` command."""
    started = time.perf_counter()
    for chapter in chapters:
        course.generate(course_dir, chapter)
    setup = time.perf_counter() - started
    for sub in subs:
        course.submit(course_dir, sub.student, sub.chapter, sub.notebook)
    per_chapter = {}
    for chapter in chapters:
        count = sum(s.chapter == chapter for s in subs)
        started = time.perf_counter()
        course.run_nbgrader(course_dir, "autograde", chapter,
                            timeout=60 + NBGRADER_SECONDS_PER_NOTEBOOK * count)
        per_chapter[chapter] = round(time.perf_counter() - started, 2)
    return {"seconds": round(sum(per_chapter.values()), 2), "per_chapter": per_chapter,
            "generate_seconds": round(setup, 2)}


class Profile:
    """Wall seconds spent in chosen functions of the grader while it runs (thread-safe)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.sandbox: list[dict] = []  # per notebook: sandbox seconds and seconds inside code cells
        self._lock = threading.Lock()

    def _add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
            self.calls[name] = self.calls.get(name, 0) + 1

    @contextlib.contextmanager
    def watching(self, targets: dict[str, tuple[object, str]]):
        """Time every call of ``owner.attribute`` for each ``name: (owner, attribute)``."""
        originals = []
        try:
            for name, (owner, attribute) in targets.items():
                original = getattr(owner, attribute)
                originals.append((owner, attribute, original))
                setattr(owner, attribute, self._timed(name, original))
            yield self
        finally:
            for owner, attribute, original in reversed(originals):
                setattr(owner, attribute, original)

    def _timed(self, name: str, fn):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                result = fn(*args, **kwargs)
            finally:
                self._add(name, time.perf_counter() - started)
            if isinstance(result, sandbox.RunResult):
                self.sandbox.append({"seconds": result.seconds, "cells": _cell_seconds(result)})
            return result

        return timed


def _cell_seconds(result: sandbox.RunResult) -> float:
    """Seconds the runner reports for the notebook's code cells (test cells not included)."""
    total = 0.0
    for kind, payload in result.frames:
        if kind == "cell":
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                body = json.loads(payload)
                if isinstance(body, dict) and isinstance(body.get("seconds"), (int, float)):
                    total += body["seconds"]
    return total


def grade_with_autograder(course_dir: Path, submissions_dir: Path, jobs: int, seed: int) -> dict:
    """``grade.grade`` on the class, timed, with a profile of where the time went."""
    profile = Profile()
    targets = {
        "sandbox.require_sandbox (probe)": (sandbox, "require_sandbox"),
        "open gradebook (also inside the store)": (Gradebook, "__init__"),
        "open record store": (RecordStore, "__init__"),
        "intake.discover": (intake, "discover"),
        "sandbox.run_job (threads)": (sandbox, "run_job"),
        "submission.prepare": (submission, "prepare"),
        "ChapterRun (plan, inputs)": (grade.ChapterRun, "__init__"),
        "gradebook.register": (Gradebook, "register"),
        "judge (incl. expected values)": (judging, "judge_submission"),
        "record: autograded notebook, queue": (Recorder, "add"),
        "record: gradebook and store, per batch": (Recorder, "_write"),
    }
    with profile.watching(targets):
        started = time.perf_counter()
        summary = grade.grade(submissions_dir, grade.Options(course_dir, jobs=jobs, seed=seed))
        seconds = time.perf_counter() - started
    records = summary.graded + summary.failed
    runs = profile.sandbox
    mean = (lambda xs: round(sum(xs) / len(xs), 3) if xs else 0.0)
    return {
        "seconds": round(seconds, 2),
        "graded": len(summary.graded),
        "not_fully_graded": [f"{r.student}/{r.chapter}: {r.status}: {r.message}" for r in summary.failed],
        "skipped": [f"{s.origin}: {s.reason}" for s in summary.skipped],
        "profile": {
            "seconds": {name: round(s, 2) for name, s in profile.seconds.items()},
            "calls": dict(profile.calls),
            "sandbox_mean_seconds": mean([r["seconds"] for r in runs]),
            "sandbox_mean_cell_seconds": mean([r["cells"] for r in runs]),
            "sandbox_max_seconds": round(max((r["seconds"] for r in runs), default=0.0), 3),
            "record_mean_duration_s": mean([r.duration_s for r in records]),
        },
    }


def startup_seconds() -> float:
    """A command's start-up before grading: Python, the imports, the sandbox probe."""
    code = "import autograder.grade, nbgrader.api; from autograder import sandbox; sandbox.probe()"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    return round(time.perf_counter() - started, 2)


# ---------------------------------------------------------------------------- comparison


def compare(plain_dir: Path, ours_dir: Path, subs: list[Submission], chapters: list[str]) -> tuple[int, list[dict]]:
    """(graded cells compared, disagreements) between the two gradebooks' automatic scores."""
    kinds = {(s.student, s.chapter): f"{s.kind}: {s.detail}" for s in subs}
    compared, disagreements = 0, []
    for chapter in chapters:
        theirs, ours = course.scores(plain_dir, chapter), course.scores(ours_dir, chapter)
        students = sorted({s.student for s in subs if s.chapter == chapter} | set(theirs) | set(ours))
        for student in students:
            a, b = theirs.get(student, {}), ours.get(student, {})
            for cell in sorted(set(a) | set(b)):
                compared += 1
                x, y = a.get(cell), b.get(cell)
                if x is None or y is None or (x.auto_score, x.max_score) != (y.auto_score, y.max_score):
                    disagreements.append({
                        "chapter": chapter, "student": student, "cell": cell,
                        "submission": kinds.get((student, chapter), "?"),
                        "nbgrader": _verdict(x), "ours": _verdict(y),
                    })
    return compared, disagreements


def _verdict(score: course.CellScore | None) -> str:
    if score is None:
        return "missing"
    if score.auto_score is None:
        return f"manual, of {score.max_score:g}"
    return f"{score.auto_score:g} of {score.max_score:g}"


def _totals(course_dir: Path, chapters: list[str]) -> dict[tuple[str, str], float]:
    out = {}
    for chapter in chapters:
        for student, cells in course.scores(course_dir, chapter).items():
            out[student, chapter] = course.autograded_total(cells)[0]
    return out


# ---------------------------------------------------------------------------- the run


def machine() -> dict:
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "nbgrader": _version("nbgrader"),
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def environments() -> dict:
    """What each grader's code runs with, as far as thread counts go."""
    threads = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    inherited = {k: os.environ.get(k, "unset") for k in threads}
    sandboxed = {k: v for k, v in sandbox._environment("/job/work").items() if k in threads}
    return {
        "nbgrader": "this process's environment, inherited by its kernels: "
                    + ", ".join(f"{k}={v}" for k, v in inherited.items()),
        "ours": "each notebook in a bubblewrap sandbox with a cleared environment: "
                + ", ".join(f"{k}={v}" for k, v in sandboxed.items()),
    }


def benchmark(students: int, chapters: list[str], jobs: int, seed: int, workdir: Path) -> dict:
    """Build the class in ``workdir``, grade it both ways, compare; the results as plain data."""
    load_before = os.getloadavg()
    subs = make_class(chapters, students, seed)
    submissions_dir = workdir / "submissions"
    for sub in subs:
        path = submissions_dir / sub.student / f"{sub.chapter}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(sub.notebook, str(path))

    ours_dir = _course_copy(workdir / "ours", chapters)
    plain_dir = _course_copy(workdir / "nbgrader", chapters)
    ours = grade_with_autograder(ours_dir, submissions_dir, jobs, seed)
    load_between = os.getloadavg()
    plain = grade_with_nbgrader(plain_dir, subs, chapters)
    load_after = os.getloadavg()
    compared, disagreements = compare(plain_dir, ours_dir, subs, chapters)

    n = len(subs)
    for result in (plain, ours):
        result["notebooks"] = n
        result["per_minute"] = round(60 * n / result["seconds"], 2) if result["seconds"] else 0.0
    theirs_total, ours_total = _totals(plain_dir, chapters), _totals(ours_dir, chapters)
    return {
        "class": {"students": students, "chapters": chapters, "notebooks": n, "seed": seed,
                  "kinds": {kind: sum(s.kind == kind for s in subs) for kind in MIX}},
        "machine": machine(),
        "load_average": {"before": load_before, "between": load_between, "after": load_after},
        "environment": environments(),
        "jobs": jobs,
        "nbgrader": plain,
        "ours": ours,
        "ours_startup_seconds": startup_seconds(),
        "speed_ratio": round(ours["per_minute"] / plain["per_minute"], 2) if plain["per_minute"] else None,
        "cells_compared": compared,
        "disagreements": disagreements,
        "submissions": [
            {"student": s.student, "chapter": s.chapter, "kind": s.kind, "detail": s.detail,
             "nbgrader_score": theirs_total.get((s.student, s.chapter)),
             "ours_score": ours_total.get((s.student, s.chapter))}
            for s in subs
        ],
    }


def report(result: dict) -> list[str]:
    """The result as the lines printed on the terminal."""
    c, m, load = result["class"], result["machine"], result["load_average"]
    kinds = ", ".join(f"{kind} {n}" for kind, n in c["kinds"].items())
    lines = [
        f"class: {c['students']} students x {len(c['chapters'])} chapters ({', '.join(c['chapters'])}) "
        f"= {c['notebooks']} notebooks ({kinds}), seed {c['seed']}",
        f"machine: {m['cores']} cores ({m['cores_usable']} usable), {m['processor']}, {m['platform']}, "
        f"Python {m['python']}, nbgrader {m['nbgrader']}",
        "load average (1, 5, 15 min): " + "; ".join(
            f"{when} {' '.join(f'{x:.2f}' for x in load[when])}" for when in ("before", "between", "after")),
        f"environment, nbgrader: {result['environment']['nbgrader']}",
        f"environment, ours:     {result['environment']['ours']}",
        "",
    ]
    header = f"{'grader':<28}{'notebooks':>10}{'wall s':>10}{'notebooks/min':>15}"
    lines += [header, "-" * len(header)]
    plain, ours = result["nbgrader"], result["ours"]
    lines.append(f"{'plain nbgrader (sequential)':<28}{plain['notebooks']:>10}{plain['seconds']:>10.1f}"
                 f"{plain['per_minute']:>15.1f}")
    lines.append(f"{'ours (jobs=' + str(result['jobs']) + ')':<28}{ours['notebooks']:>10}{ours['seconds']:>10.1f}"
                 f"{ours['per_minute']:>15.1f}")
    lines.append(f"speed ratio (notebooks/min, ours / nbgrader): {result['speed_ratio']}x")
    lines.append(f"  nbgrader per chapter: " + ", ".join(f"{k} {v:.1f} s" for k, v in plain["per_chapter"].items())
                 + f" (generate_assignment, not counted: {plain['generate_seconds']:.1f} s)")
    lines.append(f"  ours as a command would add a start-up of about {result['ours_startup_seconds']:.1f} s")
    p = ours["profile"]
    lines.append(f"  ours, profile: sandbox {p['sandbox_mean_seconds']:.2f} s per notebook on average "
                 f"(max {p['sandbox_max_seconds']:.2f}), of which code cells {p['sandbox_mean_cell_seconds']:.2f} s; "
                 f"record.duration_s {p['record_mean_duration_s']:.2f} s on average (it includes the wait "
                 "for a free sandbox)")
    for name, seconds in p["seconds"].items():
        calls = p["calls"][name]
        lines.append(f"    {name:<38}{seconds:>8.2f} s in {calls:>4} calls, {seconds / calls:6.3f} s each")
    for line in ours["not_fully_graded"] + ours["skipped"]:
        lines.append(f"  ours: {line}")
    lines.append("")
    agree = result["cells_compared"] - len(result["disagreements"])
    lines.append(f"agreement: {agree} of {result['cells_compared']} graded cells have the same score in both gradebooks")
    for d in result["disagreements"]:
        lines.append(f"  DISAGREE {d['chapter']}/{d['student']} {d['cell']}: nbgrader {d['nbgrader']}, "
                     f"ours {d['ours']} ({d['submission']})")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    known = sorted(set(notebooks.chapters()) & set(bugs.chapters()))
    parser.add_argument("--students", type=int, default=60, help="students in the class (default 60)")
    parser.add_argument("--chapters", nargs="+", default=["batchnorm", "pooling"], choices=known, metavar="CHAPTER",
                        help=f"chapters to hand in (default batchnorm pooling; any of {', '.join(known)})")
    parser.add_argument("--jobs", type=int, default=2, help="parallel sandboxes for the autograder (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the class and of the grader's checks (default 0)")
    parser.add_argument("--out", type=Path, help="write the results as JSON to this file")
    parser.add_argument("--keep", type=Path, help="build the class in this new directory and keep it")
    args = parser.parse_args(argv)
    if args.students < 1:
        parser.error("--students must be at least 1")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.keep and args.keep.exists():
        parser.error(f"--keep {args.keep}: the directory exists already; name a new one")
    reason = sandbox.probe()
    if reason:
        print(f"cannot benchmark the autograder here: {reason}", file=sys.stderr)
        return 2
    chapters = list(dict.fromkeys(args.chapters))

    with contextlib.ExitStack() as stack:
        if args.keep:
            workdir = args.keep
            workdir.mkdir(parents=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="grade-class-")))
        try:
            result = benchmark(args.students, chapters, args.jobs, args.seed, workdir)
        except course.NbgraderError as exc:
            print(f"plain nbgrader failed, so there is nothing to compare with: {exc}", file=sys.stderr)
            return 2
    print("\n".join(report(result)))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 1 if result["disagreements"] else 0


if __name__ == "__main__":
    sys.exit(main())
