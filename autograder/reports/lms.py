"""The class's grades as a file the course's LMS imports: one row per student, one column per
assignment (chapter), the chapter's total (autograded plus written answer) in each cell.

Canvas: its gradebook CSV, in the columns Canvas's own gradebook export writes and its import
reads back: ``Student, ID, SIS User ID, SIS Login ID, Section``, then one column per
assignment, and a second row ``    Points Possible`` (label indented by four spaces, as in
Canvas's exports) with each assignment's maximum. Canvas matches a row to a student by one of
the id columns, so only that one is filled; a column whose header is not an assignment of the
course creates that assignment on import. Canvas's importer (canvas-lms,
app/models/gradebook_importer.rb) is the reference: its header check wants ``Student`` then
``ID`` then ``SIS User ID``, ``SIS Login ID`` (and ``Section``); a row whose first cell contains
"Points Possible" sets the assignments' points; a student is found by ``ID`` (the Canvas user
id), else by SIS user id, else by SIS login id, else by name; a column by the id in ``Title
(123)``, else by its exact title, else it becomes a new assignment; a blank or ``-`` cell is "no
score" (``no_score?``). Guides: Canvas Instructor Guide, "How do I import grades in the
Gradebook?"
(https://community.canvaslms.com/t5/Instructor-Guide/How-do-I-import-grades-in-the-Gradebook/ta-p/807);
Ohio State's guide to it (https://teaching.resources.osu.edu/toolsets/carmencanvas/guides/
calculating-final-grades/import-csv-file-carmen-grades: Student Name, Student ID or SIS User
ID, then SIS Login ID, Section, then the assignment columns; new columns create assignments;
an uploaded score overwrites the one in Canvas).

Moodle: the gradebook's "Import: CSV file" (grade/import/csv). The first column identifies the
user; at import the teacher maps it ("Map from" this column, "Map to" one of Moodle's user
fields: ``userid``, ``username``, ``useridnumber``, ``useremail``, grade/import/csv/classes/
load_data.php ``map_user_data_with_value``) and maps each chapter column to a grade item (or a
new one). A row whose user Moodle cannot find aborts the whole import. The number in a Moodle
assignment download's file names (``Jane Doe_4567_assignsubmission_file_x.ipynb``) is not one
of those fields: it is a participant id from ``assign_user_mapping``, one per (assignment,
user) (mod/assign/locallib.php ``get_uniqueid_for_user_static``), so the same student has
another one in every chapter and the gradebook import cannot map it. Students graded for
Moodle are therefore best named by a user field (student folders named by ID number).

What a cell holds, and why (the same rule for both LMSs):

- a total (e.g. ``87``) when the chapter was graded, its written answer included. A notebook
  that timed out or crashed has a grade too: the points its checks earned before it stopped,
  plus the written answer once graded. A file that could not be read at all (``invalid
  notebook``, ``too large``) has nothing to grade, by the grader or by hand: 0.
- **empty** when there is no grade to give yet: the student submitted nothing for the chapter,
  the grader failed on the submission (status ``grader error``: our fault, to be regraded), or
  the written answer awaits a grader in formgrader. Empty is "not graded" to both LMSs: Moodle
  reads ``''`` (and ``-``) as "no grade" (``update_grade_item``), which its aggregation
  leaves out by default; Canvas shows an ungraded cell, left out of the current score and
  counted as 0 only in the final score ("Gradebook Action Menu", VCU:
  https://ts.vcu.edu/askit/teaching-and-learning/canvas/faculty/grading-faculty/gradebook-action-menu-faculty/).
  A 0 would publish a grade the student may not have earned (a grader fault, an answer not
  yet read); a missing submission is the LMS's missing-work policy to decide (late days,
  excused students), not the grader's. An empty cell is still a value to import: it clears a
  grade typed into the LMS by hand, so leave out (delete) a column the LMS should keep.
  The partial total of a submission awaiting a grader is in ``grades.csv``.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from autograder.parts import ManualGrade, Part, parts_of, score
from autograder.records import GRADER_ERROR, SubmissionRecord
from autograder.reports.feedback import fmt, write_atomic

CANVAS_FIXED = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
POINTS_POSSIBLE = "    Points Possible"
# Which Canvas column the autograder's student ids go into. ``id`` is the Canvas user id, which
# is what intake reads from a Canvas submissions download (``doejane_12345_678901_x.ipynb``).
CANVAS_ID_COLUMNS = {"id": "ID", "sis-user-id": "SIS User ID", "sis-login-id": "SIS Login ID"}
# The header of Moodle's identifier column, named after the user field it is mapped to.
MOODLE_ID_COLUMNS = {"idnumber": "ID number", "email": "Email address", "username": "Username",
                     "userid": "User ID"}
LMS_ID_DEFAULT = {"canvas": "id", "moodle": "idnumber"}
# A spreadsheet would run a text cell starting like this as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class LmsExportError(ValueError):
    """The grades cannot be written for this LMS as asked (the message says what to change)."""


@dataclass(frozen=True)
class Cell:
    """One student's grade for one chapter: ``points`` or, when there is none, ``why``."""

    points: float | None
    why: str = ""  # "no submission", "grader error", "awaiting a grader"


def table(
    records: Iterable[SubmissionRecord], manual: dict[str, list[ManualGrade]], parts: dict[str, list[Part]]
) -> tuple[list[str], list[str], dict[tuple[str, str], Cell]]:
    """(students, chapters, cell per (student, chapter)), students and chapters sorted."""
    records = list(records)
    students = sorted({r.student for r in records})
    chapters = sorted({r.chapter for r in records})
    cells = {(s, ch): Cell(None, "no submission") for s in students for ch in chapters}
    for r in records:
        if r.status == GRADER_ERROR:
            cells[r.student, r.chapter] = Cell(None, "grader error")
            continue
        s = score(r, parts_of(parts, r.chapter), manual.get(r.student, []))
        cells[r.student, r.chapter] = Cell(None, "awaiting a grader") if s.awaiting else Cell(s.total)
    return students, chapters, cells


def _text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def _value(cell: Cell) -> str:
    return "" if cell.points is None else fmt(cell.points)


def canvas_csv(students: list[str], chapters: list[str], cells: dict[tuple[str, str], Cell],
               maximum: dict[str, float], id_column: str = "id") -> str:
    """Canvas's gradebook CSV (see the module docstring)."""
    column = CANVAS_ID_COLUMNS[id_column]
    if column == "ID":
        bad = [s for s in students if not s.isdigit()]
        if bad:
            raise LmsExportError(
                f"Canvas's ID column holds Canvas user ids (numbers), but {len(bad)} student id(s) are not "
                f"numbers (e.g. {bad[0]!r}); if they are SIS ids or logins, pass --lms-id sis-user-id or sis-login-id")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*CANVAS_FIXED, *chapters])
    writer.writerow([POINTS_POSSIBLE, "", "", "", "", *(fmt(maximum[ch]) for ch in chapters)])
    where = CANVAS_FIXED.index(column)
    for student in students:
        fixed = ["", "", "", "", ""]
        fixed[where] = _text(student)
        writer.writerow([*fixed, *(_value(cells[student, ch]) for ch in chapters)])
    return buf.getvalue()


def moodle_csv(students: list[str], chapters: list[str], cells: dict[tuple[str, str], Cell],
               id_column: str = "idnumber") -> str:
    """Moodle's grade import CSV (see the module docstring)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([MOODLE_ID_COLUMNS[id_column], *chapters])
    for student in students:
        writer.writerow([_text(student), *(_value(cells[student, ch]) for ch in chapters)])
    return buf.getvalue()


def write_lms_csv(
    path: Path,
    lms: str,
    records: Iterable[SubmissionRecord],
    manual: dict[str, list[ManualGrade]],
    parts: dict[str, list[Part]],
    id_column: str | None = None,
) -> tuple[Path, dict[str, int]]:
    """Write the LMS file; returns its path and how many cells were left empty, by reason."""
    id_column = id_column or LMS_ID_DEFAULT[lms]
    known = CANVAS_ID_COLUMNS if lms == "canvas" else MOODLE_ID_COLUMNS
    if id_column not in known:
        raise LmsExportError(f"--lms-id {id_column!r} does not exist for {lms}; choose one of: {', '.join(known)}")
    students, chapters, cells = table(records, manual, parts)
    if lms == "canvas":
        maximum = {ch: sum(p.points for p in parts_of(parts, ch)) for ch in chapters}
        text = canvas_csv(students, chapters, cells, maximum, id_column)
    else:
        text = moodle_csv(students, chapters, cells, id_column)
    empty: dict[str, int] = {}
    for cell in cells.values():
        if cell.points is None:
            empty[cell.why] = empty.get(cell.why, 0) + 1
    return write_atomic(Path(path), text.encode("utf-8")), empty
