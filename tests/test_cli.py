"""The command line: exit codes, what it prints and the files it writes."""
import contextlib
import csv
import hashlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.cli import main
from course_kit import new_course, reference, release, run_cli

REPO = Path(__file__).resolve().parent.parent
EXERCISES = REPO / "exercises"
CHAPTER = "batchnorm"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A batchnorm course graded through ``autograder grade`` for two students."""
    root = tmp_path_factory.mktemp("cli")
    course_dir = root / "course"
    new_course(course_dir, CHAPTER)
    subs = root / "submissions"
    for student, nb in (("ann", reference(CHAPTER)), ("bob", release(CHAPTER))):
        (subs / student).mkdir(parents=True)
        nbformat.write(nb, str(subs / student / f"{CHAPTER}.ipynb"))
    code, out, err = run_cli("grade", subs, "--course", course_dir, "--jobs", 2, "--quiet")
    return {"root": root, "course": course_dir, "subs": subs, "code": code, "out": out, "err": err}


def test_grade_prints_a_summary_and_exits_0(graded):
    assert graded["code"] == 0, graded["err"]
    assert graded["out"].splitlines()[0].startswith(
        "graded 2, not fully graded 0, unchanged since last run 0, skipped files 0 (")
    assert (graded["course"] / "autograded" / "ann" / CHAPTER / f"{CHAPTER}.ipynb").is_file()
    assert (graded["course"] / "gradebook.db").is_file()


def test_grade_again_finds_nothing_changed(graded):
    code, out, _ = run_cli("grade", graded["subs"], "--course", graded["course"], "--quiet")
    assert code == 0 and "graded 0," in out and "unchanged since last run 2" in out


def test_feedback_writes_a_page_per_submission(graded):
    code, out, err = run_cli("feedback", "--course", graded["course"])
    assert code == 0, err
    pages = sorted((graded["course"] / "feedback").rglob("*.html"))
    assert pages == [graded["course"] / "feedback" / s / CHAPTER / f"{CHAPTER}.html" for s in ("ann", "bob")]
    assert out.startswith("wrote 2 feedback file(s) under ")


def test_export_writes_grades_csv_and_the_report(graded):
    out_dir = graded["root"] / "exported"
    code, out, err = run_cli("export", "--course", graded["course"], "--out", out_dir)
    assert code == 0, err
    assert (out_dir / "report.html").is_file()
    with open(out_dir / "grades.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(row["student"], row["chapter"], float(row["autograded"])) for row in rows] == [
        ("ann", CHAPTER, 80.0), ("bob", CHAPTER, 0.0)]
    assert f"wrote {out_dir / 'grades.csv'} and {out_dir / 'report.html'}" in out


def test_export_defaults_to_the_course_directory(graded):
    code, _, err = run_cli("export", "--course", graded["course"])
    assert code == 0, err
    assert (graded["course"] / "grades.csv").is_file() and (graded["course"] / "report.html").is_file()


def test_export_lms_writes_the_lms_file_beside_grades_csv(graded):
    out_dir = graded["root"] / "lms"
    code, out, err = run_cli("export", "--course", graded["course"], "--out", out_dir, "--lms", "canvas",
                             "--lms-id", "sis-login-id")
    assert code == 0, err
    # ann's written answer awaits a grader; bob left his as handed out, which nbgrader scores 0.
    assert (out_dir / "canvas-grades.csv").read_text().splitlines() == [
        f"Student,ID,SIS User ID,SIS Login ID,Section,{CHAPTER}", "    Points Possible,,,,,100", ",,,ann,,", ",,,bob,,0"]
    assert out.splitlines()[1:] == [f"wrote {out_dir / 'canvas-grades.csv'} for canvas",
                                    "left empty (no grade yet, not 0): 1 awaiting a grader"]
    code, out, err = run_cli("export", "--course", graded["course"], "--out", out_dir, "--lms", "moodle",
                             "--lms-id", "username")
    assert code == 0, err
    assert (out_dir / "moodle-grades.csv").read_text().splitlines() == [f"Username,{CHAPTER}", "ann,", "bob,0"]


def test_export_lms_refuses_ids_the_lms_cannot_match(graded, tmp_path):
    code, out, err = run_cli("export", "--course", graded["course"], "--out", tmp_path, "--lms", "canvas")
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("error: Canvas's ID column holds Canvas user ids (numbers), but 2 student id(s)")
    assert list(tmp_path.iterdir()) == []  # nothing half written
    code, _, err = run_cli("export", "--course", graded["course"], "--out", tmp_path, "--lms-id", "email")
    assert code == 2 and err == "error: --lms-id and --roster need --lms canvas or --lms moodle\n"


def test_export_lms_moodle_reads_the_grading_worksheets(graded, tmp_path):
    sheet = tmp_path / "worksheet.csv"
    sheet.write_text('Identifier,"Full name","Email address",Grade\n"Participant 7","Jane Doe",jane@example.org,\n')
    code, out, err = run_cli("export", "--course", graded["course"], "--out", tmp_path, "--lms", "moodle",
                             "--roster", sheet)
    assert code == 2 and out == ""
    assert err.startswith("error: 2 student id(s) are in no roster (e.g. 'ann')")


def test_grade_on_a_missing_folder_is_a_clear_error(graded):
    missing = graded["root"] / "no such folder"
    code, out, err = run_cli("grade", missing, "--course", graded["course"], "--quiet")
    assert code == 2 and out == ""
    assert err.strip() == f"error: {missing} does not exist"


def test_grade_of_an_unknown_chapter_is_a_clear_error(graded):
    code, _, err = run_cli("grade", graded["subs"], "--course", graded["course"], "--chapter", "nochapter")
    assert code == 2 and err.startswith("error: unknown chapter 'nochapter'")


def test_unsafe_no_sandbox_warns(graded, tmp_path):
    (tmp_path / "empty").mkdir()
    code, out, err = run_cli("grade", tmp_path / "empty", "--course", graded["course"], "--quiet",
                             "--unsafe-no-sandbox")
    assert code == 0 and out.startswith("graded 0,")
    assert "warning: grading WITHOUT a sandbox" in err


def test_grade_with_a_missing_course_is_a_clear_error(tmp_path):
    (tmp_path / "subs").mkdir()
    code, _, err = run_cli("grade", tmp_path / "subs", "--course", tmp_path / "nope", "--quiet")
    assert code == 2 and "nope" in err and "Traceback" not in err


@pytest.mark.parametrize("verb", ["grade", "feedback", "export"])
@pytest.mark.parametrize("url, says", [
    ("gradebook.db", "'gradebook.db' is not a database URL; write it as sqlite:////"),
    ("sqlite:////no/such/folder/gradebook.db", "cannot open the gradebook database sqlite:////no/such/folder/gradebook.db: "),
    ("postgresql://ta:s3cret@127.0.0.1:1/course", "cannot open the gradebook database postgresql://ta:***@127.0.0.1:1/course: "),
    ("oracle+nosuchdriver://x/y", "oracle+nosuchdriver://x/y: 'oracle+nosuchdriver' is not a database or driver SQLAlchemy knows"),
])
def test_a_gradebook_url_that_cannot_be_opened_is_a_clear_error(graded, verb, url, says):
    before = (graded["course"] / "gradebook.db").read_bytes()
    args = [graded["subs"], "--quiet"] if verb == "grade" else []
    code, out, err = run_cli(verb, *args, "--course", graded["course"], "--db", url)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {says}") and "Traceback" not in err
    assert "s3cret" not in err
    assert (graded["course"] / "gradebook.db").read_bytes() == before


def test_grade_feedback_and_export_work_on_a_postgresql_gradebook(graded, postgres_server, tmp_path):
    url, course_dir = postgres_server(), tmp_path / "course"
    shutil.copytree(graded["course"], course_dir, ignore=shutil.ignore_patterns("gradebook.db"))
    code, out, err = run_cli("grade", graded["subs"], "--course", course_dir, "--db", url, "--quiet")
    assert code == 0 and out.startswith("graded 2,"), err  # a new database: nothing is unchanged
    assert run_cli("feedback", "--course", course_dir, "--db", url)[0] == 0
    assert (course_dir / "feedback" / "ann" / CHAPTER / f"{CHAPTER}.html").is_file()
    code, _, err = run_cli("export", "--course", course_dir, "--db", url)
    assert code == 0, err
    assert not (course_dir / "gradebook.db").exists()
    with open(course_dir / "grades.csv", newline="") as fh:
        rows = {row["student"]: row for row in csv.DictReader(fh)}
    assert sorted(rows) == ["ann", "bob"]
    assert float(rows["ann"]["autograded"]) == 80 and float(rows["bob"]["autograded"]) == 0


def test_check_the_reference_exits_0(tmp_path):
    path = tmp_path / f"{CHAPTER}.ipynb"
    nbformat.write(reference(CHAPTER), str(path))
    code, out, _ = run_cli("check", path, "--course", EXERCISES)
    assert code == 0
    assert "Visible tests: 11 of 11 passed." in out and "will be graded as it is" in out


def test_check_the_release_exits_1(tmp_path):
    path = tmp_path / f"{CHAPTER}.ipynb"
    nbformat.write(release(CHAPTER), str(path))
    code, out, _ = run_cli("check", path, "--course", EXERCISES)
    assert code == 1
    assert "Visible tests: 0 of 11 passed." in out and "FAILED batchnorm_batchnorm_forward_torch_2d" in out


def test_check_malformed_json_exits_2(tmp_path):
    path = tmp_path / f"{CHAPTER}.ipynb"
    path.write_text('{"cells": [')
    code, out, _ = run_cli("check", path, "--course", EXERCISES)
    assert code == 2 and "cannot be graded" in out


def test_check_a_missing_notebook_exits_2(tmp_path):
    code, out, err = run_cli("check", tmp_path / "gone.ipynb", "--course", EXERCISES)
    assert code == 2 and out == "" and err.strip() == f"error: {tmp_path / 'gone.ipynb'} does not exist"


def test_check_with_a_missing_course_is_a_clear_error(tmp_path):
    path = tmp_path / f"{CHAPTER}.ipynb"
    nbformat.write(release(CHAPTER), str(path))
    code, _, err = run_cli("check", path, "--course", tmp_path / "nope")
    assert code == 2 and "nope" in err


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def test_a_copied_course_is_graded_where_the_instructor_stands(graded, tmp_path, monkeypatch):
    """Without --course, the course is the current directory (it holds nbgrader_config.py):
    grading inside a copy writes the copy's gradebook, never the original's nor the clone's."""
    copy = tmp_path / "copy"
    shutil.copytree(graded["course"], copy, ignore=shutil.ignore_patterns("gradebook.db", "autograded", "feedback"))
    original, clone = _digest(graded["course"] / "gradebook.db"), _digest(EXERCISES / "gradebook.db")
    monkeypatch.chdir(copy)
    code, out, err = run_cli("grade", graded["subs"], "--quiet", "--jobs", 2)
    assert code == 0, err
    assert out.startswith("graded 2,")
    assert (copy / "gradebook.db").is_file() and (copy / "autograded" / "ann" / CHAPTER / f"{CHAPTER}.ipynb").is_file()
    code, _, err = run_cli("export")
    assert code == 0, err
    with open(copy / "grades.csv", newline="") as fh:
        assert [(r["student"], float(r["autograded"])) for r in csv.DictReader(fh)] == [("ann", 80.0), ("bob", 0.0)]
    assert _digest(graded["course"] / "gradebook.db") == original
    assert _digest(EXERCISES / "gradebook.db") == clone  # the package's own exercises/ is not the default


@pytest.mark.parametrize("verb", [["grade", "subs"], ["feedback"], ["export"], ["release"], ["check", "x.ipynb"]])
def test_outside_a_course_every_verb_is_a_one_line_error(tmp_path, monkeypatch, verb):
    (tmp_path / "sub").mkdir()
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")  # a parent's config does not count
    monkeypatch.chdir(tmp_path / "sub")
    code, out, err = run_cli(*verb)
    assert code == 2 and out == ""
    assert err == (f"error: {tmp_path / 'sub'} is not a course directory (it has no nbgrader_config.py): "
                   "run autograder in the course directory or pass --course DIR\n")


def test_a_verb_is_required():
    with pytest.raises(SystemExit) as info, contextlib.redirect_stderr(io.StringIO()):
        main([])
    assert info.value.code == 2


def test_python_m_autograder_help_lists_the_verbs():
    proc = subprocess.run([sys.executable, "-m", "autograder", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""
    for verb in ("release", "grade", "feedback", "export", "check"):
        assert verb in proc.stdout
    assert proc.stdout.startswith("usage: autograder ")
