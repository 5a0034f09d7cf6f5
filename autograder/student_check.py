"""``autograder check NOTEBOOK``: what a student runs before submitting.

It reads the notebook exactly as the grader will (same size limits, same repairs), runs it
with the visible tests (in the sandbox when bubblewrap is there; it is the student's own code
on their own machine otherwise), and says in plain words whether it passes them and whether
anything in the file would cost points at grading time: a deleted or edited cell, an answer
cell that lost its metadata, a written answer not yet written, a file too large.

Students without a clone run the same check from the chapter's zip, ``python -m coursechecks
NOTEBOOK`` (:mod:`autograder.authoring.checks.selfcheck`): the same reading and repair of the
notebook, the same calls, verdicts and words; only the place where the notebook runs differs.
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from autograder import judge, sandbox, submission
from autograder.authoring.checks import selfcheck
from autograder.coursedir import CourseDir
from autograder.grading import worker
from autograder.grading.prepare import ChapterRun


# What the student is told, worded once for this command and the self-check that ships with
# every notebook (``python -m coursechecks``).
CheckReport = selfcheck.Report


def guess_chapter(path: Path, chapters: list[str]) -> str | None:
    """The chapter from the notebook's graded cells, else from the file name."""
    try:
        text = path.read_text(errors="replace") if path.stat().st_size < 50 * 2**20 else ""
    except OSError:
        text = ""
    counts = {ch: len(re.findall(rf'"grade_id"\s*:\s*"{re.escape(ch)}_', text)) for ch in chapters}
    best = max(counts, key=counts.get, default=None)
    if best and counts[best]:
        return best
    for ch in sorted(chapters, key=len, reverse=True):
        if ch in path.name:
            return ch
    return None


def check_notebook(path: Path, course_dir: Path, chapter: str | None = None,
                   limits: sandbox.Limits | None = None) -> CheckReport:
    limits = limits or sandbox.Limits(wall_seconds=600)
    course = CourseDir(course_dir)
    course.require()
    chapters = course.chapters()
    chapter = chapter or guess_chapter(Path(path), chapters)
    if chapter not in chapters:
        return CheckReport(chapter or "?", False, [
            "This does not look like one of the course's exercise notebooks "
            f"({', '.join(chapters)}); pass --chapter if it is one."])
    template = course.release_notebook(chapter)
    try:
        prepared = submission.prepare(Path(path), template, chapter)
    except submission.Rejected as exc:
        return CheckReport(chapter, False, [exc.message])
    advice = prepared.notes + selfcheck.untouched_answers(prepared, json.loads(template.read_text()))
    report = CheckReport(chapter, True, advice)
    run = ChapterRun(course.root, chapter, None, visible_only=True)
    with tempfile.TemporaryDirectory(prefix="autograder-check-") as work:
        font_cache = sandbox.build_font_cache(Path(work) / "matplotlib")
        job = run.job(Path(path).name, prepared, limits, font_cache)
        result = worker.run(job, sandboxed=not sandbox.probe(), slot=0)
    verdicts = judge.judge_run(run.plan, {gid: i for i, gid in prepared.test_cells()}, result, limits)
    report.status, report.message = verdicts.status, verdicts.message
    for verdict in verdicts.checks:
        (report.passed if verdict.passed else report.failed).append(verdict)
    report.advice += verdicts.notes
    return report
