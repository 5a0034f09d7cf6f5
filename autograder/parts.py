"""The graded parts of a chapter and the manual grades given to them.

Parts come from the trusted release notebook (never from a submission, which a student may
have edited): every nbgrader grade cell, in notebook order. A code test cell is graded by
the autograder; the written answer (a grade cell that is also a solution cell) is graded by
a person in formgrader, so its score is read from nbgrader's gradebook.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat
from sqlalchemy import create_engine, inspect

from autograder.coursedir import CourseDir
from autograder.tools import tools_on_path as _tools_on_path
from autograder.records import INVALID, TOO_LARGE, SubmissionRecord

UNREADABLE = (INVALID, TOO_LARGE)  # statuses of a file that was never run: nothing in it to grade


@dataclass(frozen=True)
class Part:
    grade_id: str  # of the notebook's grade cell
    points: float
    autograded: bool  # a code test cell; False for the manually graded written answer


@dataclass(frozen=True)
class ManualGrade:
    grade_id: str
    score: float | None  # None while the answer awaits a grader
    max_score: float
    comment: str | None  # the grader's comment, if any


def release_notebook(course_dir: Path, chapter: str) -> Path:
    return CourseDir(course_dir).release_notebook(chapter)


def chapter_parts(course_dir: Path, chapter: str) -> list[Part]:
    """The grade cells of ``chapter``'s release notebook, in notebook order."""
    path = release_notebook(course_dir, chapter)
    if not path.is_file():
        raise FileNotFoundError(
            f"There is no release notebook for chapter {chapter!r} at {path}; release the chapter first."
        )
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # noqa: BLE001 (any parse error means the same to the instructor)
        raise ValueError(f"The release notebook {path} could not be read: {exc}") from None
    parts = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade"):
            continue
        autograded = cell.cell_type == "code" and not meta.get("solution")
        parts.append(Part(meta["grade_id"], float(meta.get("points", 0)), autograded))
    return parts


def _is_manual(grade, solution_names: set[str]) -> bool:
    # A written answer is a markdown grade cell; a graded solution cell (code or markdown)
    # and a task cell are graded by hand as well.
    return grade.cell.cell_type == "markdown" or grade.cell.name in solution_names


def _score(grade) -> float | None:
    # A grader's score always counts. Without one, nbgrader flags an answer it could not
    # score itself (anything but an untouched one, which it gives 0) as needing a grader.
    if grade.manual_score is not None:
        return float(grade.score)
    if grade.needs_manual_grade or grade.auto_score is None:
        return None
    return float(grade.score)


def manual_grades(db_url: str, chapter: str) -> dict[str, list[ManualGrade]]:
    """Per student, the manually graded cells of their ``chapter`` submission, by grade_id.
    A database without a gradebook yet gives ``{}``."""
    engine = create_engine(db_url, future=True)
    try:
        has_gradebook = inspect(engine).has_table("submitted_notebook")
    finally:
        engine.dispose()
    if not has_gradebook:  # do not create nbgrader's tables just to read nothing from them
        return {}

    from nbgrader.api import Gradebook, MissingEntry

    result: dict[str, list[ManualGrade]] = {}
    with _tools_on_path(), Gradebook(db_url) as gb:
        for student in gb.students:
            try:
                sub = gb.find_submission_notebook(chapter, chapter, student.id)
            except MissingEntry:
                continue
            solution_names = {cell.name for cell in sub.notebook.solution_cells}
            comments = {c.cell.name: c.manual_comment for c in sub.comments}
            grades = [
                ManualGrade(g.cell.name, _score(g), float(g.max_score), comments.get(g.cell.name))
                for g in sub.grades
                if _is_manual(g, solution_names)
            ]
            result[student.id] = sorted(grades, key=lambda g: g.grade_id)
    return result


def parts_of(parts: dict[str, list[Part]], chapter: str) -> list[Part]:
    """``parts[chapter]``, or an error that says how to get it."""
    try:
        return parts[chapter]
    except KeyError:
        raise ValueError(
            f"No graded parts are known for chapter {chapter!r}; read them with chapter_parts()."
        ) from None


@dataclass(frozen=True)
class Scores:
    """One submission's points per part and in total."""

    points: dict[str, float | None]  # grade_id -> points; None: awaiting a grader
    autograded: float
    manual: float  # of the written answers graded so far
    max: float

    @property
    def total(self) -> float:
        return self.autograded + self.manual

    @property
    def awaiting(self) -> list[str]:
        """The parts still awaiting a grader."""
        return [gid for gid, p in self.points.items() if p is None]


def score(record: SubmissionRecord, parts: list[Part], manual: list[ManualGrade]) -> Scores:
    """Points per part of ``parts`` (the record's chapter): autograded parts from the record
    (0 when a part was never run, e.g. after a time-out), written answers from ``manual``
    (None when there is no grade yet). A submission that could not be read at all (invalid,
    too large) has no written answer to grade either: 0, whatever an earlier, readable
    submission of the same student was given."""
    awarded = {c.cell: c.awarded for c in record.cells}
    graded = {} if record.status in UNREADABLE else {g.grade_id: g.score for g in manual}
    points: dict[str, float | None] = {
        p.grade_id: float(awarded.get(p.grade_id, 0.0)) if p.autograded
        else (0.0 if record.status in UNREADABLE else graded.get(p.grade_id))
        for p in parts
    }
    auto = sum(points[p.grade_id] or 0.0 for p in parts if p.autograded)
    written = sum(points[p.grade_id] or 0.0 for p in parts if not p.autograded)
    return Scores(points, auto, written, sum(p.points for p in parts))
