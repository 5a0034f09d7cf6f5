"""``autograder check NOTEBOOK``: what a student runs before submitting.

It reads the notebook exactly as the grader will (same size limits, same repairs), runs it
with the visible tests (in the sandbox when bubblewrap is there; it is the student's own code
on their own machine otherwise), and says in plain words whether it passes them and whether
anything in the file would cost points at grading time: a deleted or edited cell, an answer
cell that lost its metadata, a written answer not yet written, a file too large.
"""
from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from autograder import judge, records, sandbox, submission
from autograder.coursedir import CourseDir
from autograder.grading import worker
from autograder.grading.prepare import ChapterRun


@dataclass
class CheckReport:
    chapter: str
    gradable: bool
    advice: list[str] = field(default_factory=list)
    passed: list[records.CheckVerdict] = field(default_factory=list)
    failed: list[records.CheckVerdict] = field(default_factory=list)
    status: str = records.GRADED
    message: str = ""

    @property
    def exit_code(self) -> int:
        """0: gradable and every visible test passes; 1: a visible test fails; 2: not gradable."""
        if not self.gradable:
            return 2
        return 1 if self.failed or self.status != records.GRADED else 0

    def text(self) -> str:
        lines = [f"Checking your {self.chapter} notebook."]
        if not self.gradable:
            lines.append("It cannot be graded as it is:")
            lines += [f"  - {a}" for a in self.advice]
            return "\n".join(lines)
        total = len(self.passed) + len(self.failed)
        lines.append(f"Visible tests: {len(self.passed)} of {total} passed."
                     + (" (Hidden tests run at grading time on other inputs.)" if total else ""))
        for verdict in self.failed:
            lines.append(f"  FAILED {verdict.check}: {verdict.message}")
        if self.status != records.GRADED:
            lines.append(f"The run did not complete normally ({self.status}): {self.message}")
        if self.advice:
            lines.append("Before you submit:")
            lines += [f"  - {a}" for a in self.advice]
        else:
            lines.append("The notebook is intact: it will be graded as it is.")
        return "\n".join(lines)


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


def _advice(prepared: submission.Prepared, template: Path) -> list[str]:
    advice = list(prepared.notes)
    nb = json.loads(template.read_text())
    stubs = {
        c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"])
        for c in nb["cells"]
        if c.get("metadata", {}).get("nbgrader", {}).get("solution")
    }
    for cell in prepared.cells:
        if cell.grade_id in stubs and cell.source.strip() == stubs[cell.grade_id].strip():
            kind = "written answer" if cell.kind == "markdown" else "answer cell"
            advice.append(f"The {kind} {cell.grade_id} is still as it was handed out.")
    return advice


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
    report = CheckReport(chapter, True, _advice(prepared, template))
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
