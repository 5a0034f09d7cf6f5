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
another one in every chapter and the gradebook import cannot map it. Moodle's own grading
worksheet of each assignment (Assignment > View all submissions > Download grading worksheet)
lists the same number as ``Participant 4567`` in its ``Identifier`` column beside the user's
``Email address`` (and other identity fields): given those worksheets (``--roster``), each
participant id becomes the user's email (or ``--lms-id`` field), and one student's chapters
join in one row.

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
import re
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
    records: Iterable[SubmissionRecord], manual: dict[str, list[ManualGrade]], parts: dict[str, list[Part]],
    roster: dict[str, str] | None = None,
) -> tuple[list[str], list[str], dict[tuple[str, str], Cell]]:
    """(students, chapters, cell per (student, chapter)), students and chapters sorted.
    ``roster`` maps the autograder's student ids to the ids the LMS knows; then a row is one
    LMS id, and a student id the roster does not know is an error."""
    records = list(records)
    lms_id = _apply(roster, records)
    students = sorted({lms_id[r.student] for r in records})
    chapters = sorted({r.chapter for r in records})
    cells = {(s, ch): Cell(None, "no submission") for s in students for ch in chapters}
    seen: dict[tuple[str, str], str] = {}
    for r in records:
        key = (lms_id[r.student], r.chapter)
        if key in seen:
            raise LmsExportError(f"{seen[key]} and {r.student} are both {key[0]} in the roster and both have a "
                                 f"{r.chapter} submission; which one counts is not for the export to guess")
        seen[key] = r.student
        if r.status == GRADER_ERROR:
            cells[key] = Cell(None, "grader error")
            continue
        s = score(r, parts_of(parts, r.chapter), manual.get(r.student, []))
        cells[key] = Cell(None, "awaiting a grader") if s.awaiting else Cell(s.total)
    return students, chapters, cells


def _apply(roster: dict[str, str] | None, records: list[SubmissionRecord]) -> dict[str, str]:
    students = sorted({r.student for r in records})
    if roster is None:
        return {s: s for s in students}
    unknown = [s for s in students if s not in roster]
    if unknown:
        raise LmsExportError(f"{len(unknown)} student id(s) are in no roster (e.g. {unknown[0]!r}); the LMS would "
                             "refuse the file: add the missing grading worksheet")
    return {s: roster[s] for s in students}


MOODLE_IDENTIFIER = re.compile(r"\D*?(\d+)\s*")  # "Participant 4567", in any language


def moodle_roster(worksheets: Iterable[Path], field: str = "email") -> dict[str, str]:
    """Participant id -> the user's ``field`` (a :data:`MOODLE_ID_COLUMNS` key), read from
    Moodle grading worksheets (CSV, as Moodle writes them: ``Identifier`` then identity
    columns). Participant ids are unique across assignments, so the worksheets of every
    chapter merge into one map."""
    column = MOODLE_ID_COLUMNS[field]
    roster: dict[str, str] = {}
    for path in worksheets:
        try:
            with open(path, newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.DictReader(fh))
                header = rows[0].keys() if rows else []
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise LmsExportError(f"cannot read the grading worksheet {path}: {exc}") from None
        missing = [c for c in ("Identifier", column) if c not in header]
        if missing:
            raise LmsExportError(f"{path} is not a Moodle grading worksheet with the column(s) "
                                 f"{', '.join(repr(c) for c in missing)} (download it with the user's {column} shown)")
        for row in rows:
            m = MOODLE_IDENTIFIER.fullmatch(row["Identifier"] or "")
            value = (row[column] or "").strip()
            if m and value:
                roster[m.group(1)] = value
    return roster


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
    worksheets: list[Path] | None = None,
) -> tuple[Path, dict[str, int]]:
    """Write the LMS file; returns its path and how many cells were left empty, by reason.
    ``worksheets`` (Moodle only): grading worksheets that map participant ids to ``id_column``
    (default: the email address)."""
    if worksheets and lms != "moodle":
        raise LmsExportError("--roster reads Moodle grading worksheets; it is for --lms moodle")
    id_column = id_column or ("email" if worksheets else LMS_ID_DEFAULT[lms])
    known = CANVAS_ID_COLUMNS if lms == "canvas" else MOODLE_ID_COLUMNS
    if id_column not in known:
        raise LmsExportError(f"--lms-id {id_column!r} does not exist for {lms}; choose one of: {', '.join(known)}")
    roster = moodle_roster(worksheets, id_column) if worksheets else None
    students, chapters, cells = table(records, manual, parts, roster)
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
