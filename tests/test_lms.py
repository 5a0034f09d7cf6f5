"""The LMS gradebook files: Canvas's gradebook CSV and Moodle's grade import CSV, checked
line by line against the formats' documented layouts (see autograder/reports/lms.py)."""
from pathlib import Path

import pytest

from autograder.parts import ManualGrade, chapter_parts
from autograder.records import (
    GRADED, GRADER_ERROR, INVALID, TIMED_OUT, CellScore, SubmissionRecord,
)
from autograder.reports.lms import LmsExportError, write_lms_csv

EXERCISES = Path(__file__).resolve().parent.parent / "exercises"
PARTS = {ch: chapter_parts(EXERCISES, ch) for ch in ("batchnorm", "pooling")}
WRITTEN = {ch: next(p.grade_id for p in parts if not p.autograded) for ch, parts in PARTS.items()}


def record(student: str, chapter: str, lost: float = 0.0, status: str = GRADED) -> SubmissionRecord:
    """A submission that earned every autograded point but ``lost`` (taken from the first part)."""
    if status in (INVALID, GRADER_ERROR):
        return SubmissionRecord(student, chapter, status, "not graded")
    cells = []
    for part in (p for p in PARTS[chapter] if p.autograded):
        awarded = max(0.0, part.points - lost)
        lost -= part.points - awarded
        cells.append(CellScore(part.grade_id, part.points, awarded, "passed" if awarded == part.points else "failed"))
    return SubmissionRecord(student, chapter, status, "graded", cells=cells)


def written(chapter: str, points: float | None) -> ManualGrade:
    return ManualGrade(WRITTEN[chapter], points, 20.0, None)


# Canvas user ids, as intake reads them from a Canvas download (doejane_1001_5551_batchnorm.ipynb).
RECORDS = [
    record("1001", "batchnorm", lost=3), record("1001", "pooling"),   # both graded by hand
    record("1002", "batchnorm", lost=10),                              # written answer awaiting a grader; no pooling
    record("1003", "batchnorm", status=GRADER_ERROR), record("1003", "pooling", lost=7),
    record("1004", "batchnorm", lost=80, status=TIMED_OUT),            # timed out before any check passed
    record("1004", "pooling", status=INVALID),                         # not a notebook: 0
]
MANUAL = {
    "1001": [written("batchnorm", 15.5), written("pooling", 20.0)],
    "1002": [written("batchnorm", None)],
    "1003": [written("pooling", 11.0)],
    "1004": [written("batchnorm", 0.0)],
}


def test_canvas_file_is_canvas_gradebook_csv(tmp_path):
    path, empty = write_lms_csv(tmp_path / "canvas-grades.csv", "canvas", RECORDS, MANUAL, PARTS)
    # Canvas's export and import layout: the five student columns, one column per assignment,
    # the "Points Possible" row second (label indented by four spaces, as Canvas writes it).
    assert path.read_text(encoding="utf-8") == (
        "Student,ID,SIS User ID,SIS Login ID,Section,batchnorm,pooling\n"
        "    Points Possible,,,,,100,100\n"
        ",1001,,,,92.5,100\n"
        ",1002,,,,,\n"
        ",1003,,,,,84\n"
        ",1004,,,,0,0\n"
    )
    assert empty == {"awaiting a grader": 1, "grader error": 1, "no submission": 1}


def test_canvas_sis_login_ids_go_into_their_own_column(tmp_path):
    records = [record("jdoe", "batchnorm")]
    path, _ = write_lms_csv(tmp_path / "c.csv", "canvas", records, {"jdoe": [written("batchnorm", 20.0)]}, PARTS,
                            id_column="sis-login-id")
    assert path.read_text().splitlines()[2] == ",,,jdoe,,100"


def test_canvas_ids_must_be_canvas_user_ids(tmp_path):
    with pytest.raises(LmsExportError, match=r"not numbers \(e.g. 'jdoe'\); .* --lms-id sis-user-id or sis-login-id"):
        write_lms_csv(tmp_path / "c.csv", "canvas", [record("jdoe", "batchnorm")], {}, PARTS)
    assert not (tmp_path / "c.csv").exists()


def test_moodle_file_is_moodle_grade_import_csv(tmp_path):
    path, empty = write_lms_csv(tmp_path / "moodle-grades.csv", "moodle", RECORDS, MANUAL, PARTS)
    # Moodle's CSV grade import: an identifier column the teacher maps to a user field, then a
    # column per grade item; '' is "no grade" to Moodle (grade/import/csv/classes/load_data.php).
    assert path.read_text(encoding="utf-8") == (
        "ID number,batchnorm,pooling\n"
        "1001,92.5,100\n"
        "1002,,\n"
        "1003,,84\n"
        "1004,0,0\n"
    )
    assert empty == {"awaiting a grader": 1, "grader error": 1, "no submission": 1}


def test_moodle_by_email_and_formulas_neutralised(tmp_path):
    records = [record("ann@example.org", "batchnorm"), record("=cmd", "batchnorm")]
    manual = {s: [written("batchnorm", 20.0)] for s in ("ann@example.org", "=cmd")}
    path, _ = write_lms_csv(tmp_path / "m.csv", "moodle", records, manual, PARTS, id_column="email")
    assert path.read_text().splitlines() == ["Email address,batchnorm", "'=cmd,100", "ann@example.org,100"]


def test_an_unknown_id_column_is_a_clear_error(tmp_path):
    with pytest.raises(LmsExportError, match="--lms-id 'email' does not exist for canvas; choose one of: id, "):
        write_lms_csv(tmp_path / "c.csv", "canvas", RECORDS, MANUAL, PARTS, id_column="email")


# A Moodle grading worksheet as Moodle writes it (Assignment > Download grading worksheet): its
# Identifier holds the participant id that Moodle's submission download puts in file names.
WORKSHEET_HEADER = ('Identifier,"Full name","Email address",Status,Group,Grade,"Maximum Grade",'
                    '"Grade can be changed","Last modified (submission)","Last modified (grade)","Feedback comments"\n')


def worksheet(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    body = "".join(f'"Participant {pid}","{name}",{email},"Submitted for grading",,,100.00,Yes,,,\n'
                   for pid, name, email in rows)
    path.write_text("\ufeff" + WORKSHEET_HEADER + body, encoding="utf-8")  # Moodle adds a byte-order mark
    return path


def test_moodle_participant_ids_become_emails_through_the_grading_worksheets(tmp_path):
    # Moodle numbers participants per assignment: Jane is 4567 in batchnorm and 5123 in pooling.
    sheets = [worksheet(tmp_path / "bn.csv", [("4567", "Jane Doe", "jane@example.org"),
                                              ("4568", "Li Wei", "li@example.org")]),
              worksheet(tmp_path / "pool.csv", [("5123", "Jane Doe", "jane@example.org")])]
    records = [record("4567", "batchnorm", lost=3), record("4568", "batchnorm"), record("5123", "pooling")]
    manual = {"4567": [written("batchnorm", 20.0)], "4568": [written("batchnorm", None)],
              "5123": [written("pooling", 10.0)]}
    path, empty = write_lms_csv(tmp_path / "m.csv", "moodle", records, manual, PARTS, worksheets=sheets)
    assert path.read_text().splitlines() == [
        "Email address,batchnorm,pooling", "jane@example.org,97,90", "li@example.org,,"]
    assert empty == {"awaiting a grader": 1, "no submission": 1}


def test_a_participant_in_no_worksheet_is_a_clear_error(tmp_path):
    sheet = worksheet(tmp_path / "bn.csv", [("4567", "Jane Doe", "jane@example.org")])
    with pytest.raises(LmsExportError, match=r"1 student id\(s\) are in no roster \(e.g. '4999'\)"):
        write_lms_csv(tmp_path / "m.csv", "moodle", [record("4999", "batchnorm")], {}, PARTS, worksheets=[sheet])


def test_a_worksheet_without_the_identity_column_is_a_clear_error(tmp_path):
    sheet = tmp_path / "bn.csv"
    sheet.write_text('Identifier,"Full name",Grade\n"Participant 1",A,\n')
    with pytest.raises(LmsExportError, match="not a Moodle grading worksheet with the column\\(s\\) 'Email address'"):
        write_lms_csv(tmp_path / "m.csv", "moodle", [record("1", "batchnorm")], {}, PARTS, worksheets=[sheet])
    with pytest.raises(LmsExportError, match="it is for --lms moodle"):
        write_lms_csv(tmp_path / "c.csv", "canvas", [record("1", "batchnorm")], {}, PARTS, worksheets=[sheet])


def test_two_ids_of_one_student_in_one_chapter_are_not_guessed_between(tmp_path):
    sheet = worksheet(tmp_path / "bn.csv", [("1", "Jane Doe", "jane@example.org"), ("2", "Jane Doe", "jane@example.org")])
    with pytest.raises(LmsExportError, match="1 and 2 are both jane@example.org in the roster and both have a batchnorm"):
        write_lms_csv(tmp_path / "m.csv", "moodle", [record("1", "batchnorm"), record("2", "batchnorm")], {}, PARTS,
                      worksheets=[sheet])
