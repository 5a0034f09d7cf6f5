"""Written answers graded by hand, end to end: autograde a class, give the written answer a
score with nbgrader's own API (what formgrader's grade handler does), and find that score in
``grades.csv``, the LMS file, the feedback page and the class report; then regrade and find it
still there. The autograder and formgrader share one database: the autograder sets a grade's
``auto_score`` only, formgrader its ``manual_score``, and a regrade never writes the latter."""
import csv
import re
from pathlib import Path

import nbformat
import pytest

from autograder.tools import tools_on_path
from course_kit import new_course, reference, release, run_cli

CHAPTER = "batchnorm"

WRITTEN = "batchnorm_experiment_sigmoid_depth"


def formgrader_gives(url: str, student: str, score: float | None, comment: str | None = None) -> None:
    """What formgrader's API handlers do when a grader types a score and a comment: set the
    grade's manual score and the needs-grading flag, the comment's manual comment, commit."""
    from nbgrader.api import Gradebook

    with tools_on_path(), Gradebook(url) as gb:
        grade = gb.find_grade(WRITTEN, CHAPTER, CHAPTER, student)
        grade.manual_score = score
        grade.needs_manual_grade = grade.manual_score is None and grade.auto_score is None
        if comment is not None:
            gb.find_comment(WRITTEN, CHAPTER, CHAPTER, student).manual_comment = comment
        gb.db.commit()


def manual_score(url: str, student: str) -> tuple[float | None, bool]:
    """The grader's score and whether formgrader lists the answer as needing a grader."""
    from nbgrader.api import Gradebook

    with tools_on_path(), Gradebook(url) as gb:
        grade = gb.find_grade(WRITTEN, CHAPTER, CHAPTER, student)
        return grade.manual_score, grade.needs_manual_grade


def rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return {r["student"]: r for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def course_dir(tmp_path_factory):
    """Students 101 (the reference answers, written answer included) and 102 (the release
    as handed out: its written answer untouched, which nbgrader scores 0 itself)."""
    root = tmp_path_factory.mktemp("manual")
    course_dir = root / "course"
    new_course(course_dir, CHAPTER)
    subs = root / "submissions"
    for student, nb in (("101", reference(CHAPTER)), ("102", release(CHAPTER))):
        (subs / student).mkdir(parents=True)
        nbformat.write(nb, str(subs / student / f"{CHAPTER}.ipynb"))
    code, _, err = run_cli("grade", subs, "--course", course_dir, "--jobs", 2, "--quiet")
    assert code == 0, err
    return course_dir


def export(course_dir: Path) -> Path:
    out = course_dir / "out"
    code, stdout, err = run_cli("export", "--course", course_dir, "--out", out, "--lms", "canvas")
    assert code == 0, err
    code, _, err = run_cli("feedback", "--course", course_dir)
    assert code == 0, err
    return out


def test_manual_grade_reaches_every_output_and_survives_regrades(course_dir):
    url = f"sqlite:///{course_dir / 'gradebook.db'}"
    out = export(course_dir)
    assert rows(out / "grades.csv")["101"][WRITTEN] == ""  # awaiting a grader
    assert (out / "canvas-grades.csv").read_text().splitlines()[2:] == [",101,,,,", ",102,,,,0"]
    assert "1 written answer still awaiting a grader" in (out / "report.html").read_text()

    formgrader_gives(url, "101", 17.0, "Names the saturation; misses the depth.")
    assert manual_score(url, "101") == (17.0, False)
    out = export(course_dir)
    graded = rows(out / "grades.csv")["101"]
    assert (graded[WRITTEN], graded["autograded"], graded["manual"], graded["total"]) == ("17", "80", "17", "97")
    assert (out / "canvas-grades.csv").read_text().splitlines()[2:] == [",101,,,,97", ",102,,,,0"]
    page = (course_dir / "feedback" / "101" / CHAPTER / f"{CHAPTER}.html").read_text()
    assert "Total: <strong>97 / 100</strong> (autograded 80 / 80, written 17 / 20)" in page
    assert re.search(rf"<code>{WRITTEN}</code>.*?17 / 20.*?Names the saturation; misses the depth\.", page, re.S)
    report = (out / "report.html").read_text()
    assert "total score mean 48.5, median 48.5 (out of 100)." in report and "awaiting" not in report

    # A regrade of the unchanged submission: skipped, then forced. Neither touches the score.
    subs = course_dir.parent / "submissions"
    for extra in ((), ("--force",)):
        code, stdout, err = run_cli("grade", subs, "--course", course_dir, "--quiet", *extra)
        assert code == 0, err
        assert ("graded 2," if extra else "unchanged since last run 2") in stdout
        # Recorded again, nbgrader's SaveAutoGrades rule flags a hand-graded answer for review.
        assert manual_score(url, "101") == (17.0, bool(extra))
        assert rows(export(course_dir) / "grades.csv")["101"]["total"] == "97"

    # A changed resubmission is graded again; the grader's score stays (nbgrader flags it for review).
    nb = reference(CHAPTER)
    nb.cells.append(nbformat.v4.new_markdown_cell("A note added after grading."))
    nbformat.write(nb, str(subs / "101" / f"{CHAPTER}.ipynb"))
    code, stdout, err = run_cli("grade", subs, "--course", course_dir, "--quiet")
    assert code == 0 and stdout.startswith("graded 1,"), err
    assert manual_score(url, "101") == (17.0, True)
    assert rows(export(course_dir) / "grades.csv")["101"]["total"] == "97"
