"""``autograder check``: what a student learns about a notebook before submitting it."""
from pathlib import Path

import nbformat
import pytest

import bugs
from autograder import records
from autograder.authoring import course, notebooks
from autograder.authoring.checks import core
from autograder.sandbox import Limits
from autograder.student_check import CheckReport, check_notebook, guess_chapter

REPO = Path(__file__).resolve().parent.parent
EXERCISES = REPO / "exercises"
CHAPTER = "batchnorm"
CHAPTERS = notebooks.chapters()
VISIBLE = sorted(c.grade_id for c in core.chapter_checks(CHAPTER).values() if not c.hidden)
BUG = bugs.load(CHAPTER).BUGS["batch_axis_only"]
DELETED = "batchnorm_identity_affine_recovers_input_4d"
FORWARD_ANSWER = "batchnorm_batchnorm_forward_answer"
WRITTEN = "batchnorm_experiment_sigmoid_depth"


def release() -> nbformat.NotebookNode:
    return course.read(EXERCISES / "release" / CHAPTER / f"{CHAPTER}.ipynb")


def answers() -> dict[str, str]:
    return course.answers(course.read(EXERCISES / "source" / CHAPTER / f"{CHAPTER}.ipynb"))


def write(path: Path, nb: nbformat.NotebookNode) -> Path:
    nbformat.write(nb, str(path))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> CheckReport:
    path = write(tmp_path_factory.mktemp("reference") / "my work.ipynb", course.fill_answers(release(), answers()))
    return check_notebook(path, EXERCISES)


@pytest.fixture(scope="module")
def untouched(tmp_path_factory) -> CheckReport:
    return check_notebook(write(tmp_path_factory.mktemp("release") / f"{CHAPTER}.ipynb", release()), EXERCISES)


@pytest.fixture(scope="module")
def edited(tmp_path_factory) -> CheckReport:
    """The reference with a bug, a deleted test cell, a slow free cell and the written answer
    left as handed out."""
    filled = answers()
    filled[BUG["answer_cell"]] += "\n" + BUG["source"]
    del filled[WRITTEN]
    nb = course.fill_answers(release(), filled)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != DELETED]
    nb.cells.append(nbformat.v4.new_code_cell("import time\ntime.sleep(30)"))
    path = write(tmp_path_factory.mktemp("edited") / "submission.ipynb", nb)
    return check_notebook(path, EXERCISES, limits=Limits(wall_seconds=120, cell_seconds=1))


def test_the_reference_passes_every_visible_test(reference):
    assert reference.gradable and reference.chapter == CHAPTER
    assert sorted(v.check for v in reference.passed) == VISIBLE and reference.failed == []
    assert reference.status == records.GRADED and reference.advice == []
    assert reference.exit_code == 0
    text = reference.text()
    assert f"Visible tests: {len(VISIBLE)} of {len(VISIBLE)} passed." in text
    assert text.endswith("The notebook is intact: it will be graded as it is.")


def test_hidden_tests_are_not_run(reference, untouched):
    for report in (reference, untouched):
        assert not any(v.hidden for v in report.passed + report.failed)
        assert "hidden" not in report.text().replace("(Hidden tests run at grading time on other inputs.)", "")


def test_the_untouched_release_fails_and_says_what_is_left_to_do(untouched):
    assert untouched.gradable and untouched.exit_code == 1
    assert sorted(v.check for v in untouched.failed) == VISIBLE and untouched.passed == []
    assert all("not implemented yet" in v.message for v in untouched.failed)
    assert f"The answer cell {FORWARD_ANSWER} is still as it was handed out." in untouched.advice
    assert f"The written answer {WRITTEN} is still as it was handed out." in untouched.advice
    text = untouched.text()
    assert f"Visible tests: 0 of {len(VISIBLE)} passed." in text
    assert f"  FAILED {VISIBLE[0]}: " in text and "Before you submit:" in text


def test_an_edited_notebook_gets_its_failures_and_repairs_reported(edited):
    assert edited.gradable and edited.exit_code == 1
    assert {v.check for v in edited.failed} == (BUG["fails"] - {DELETED}) & set(VISIBLE)
    assert DELETED in {v.check for v in edited.passed}  # restored from the release and run
    assert any(DELETED in a and "restored" in a for a in edited.advice)
    assert f"The written answer {WRITTEN} is still as it was handed out." in edited.advice
    assert not any(FORWARD_ANSWER in a for a in edited.advice)


def test_a_run_that_did_not_complete_normally_is_reported(edited):
    assert edited.status == records.TIMED_OUT
    assert "The run did not complete normally (timed out)" in edited.text()


def test_malformed_json_cannot_be_graded(tmp_path):
    path = tmp_path / f"{CHAPTER}.ipynb"
    path.write_text('{"cells": [{"cell_type": "code", "source": "x = 1"')
    report = check_notebook(path, EXERCISES)
    assert not report.gradable and report.exit_code == 2
    assert report.text().startswith(f"Checking your {CHAPTER} notebook.\nIt cannot be graded as it is:\n  - ")
    assert "JSON" in report.text()


def test_a_notebook_of_no_exercise_cannot_be_graded(tmp_path):
    report = check_notebook(write(tmp_path / "holiday.ipynb", nbformat.v4.new_notebook()), EXERCISES)
    assert not report.gradable and report.exit_code == 2 and report.chapter == "?"
    assert "pass --chapter" in report.advice[0]


def test_a_file_over_the_size_limit_cannot_be_graded(tmp_path):
    path = tmp_path / f"{CHAPTER}.ipynb"
    with open(path, "wb") as fh:
        fh.truncate(21 * 2**20)
    report = check_notebook(path, EXERCISES)
    assert not report.gradable and report.exit_code == 2
    assert "the limit is 20 MB" in report.advice[0]


def test_guess_chapter_from_the_graded_cells_before_the_file_name(tmp_path):
    path = write(tmp_path / "layernorm homework.ipynb", release())
    assert guess_chapter(path, CHAPTERS) == CHAPTER


@pytest.mark.parametrize("name, chapter", [
    ("my-bn_inference-copy.ipynb", "bn_inference"),
    ("pooling (1).ipynb", "pooling"),
    ("notes.ipynb", None),
])
def test_guess_chapter_from_the_file_name(tmp_path, name, chapter):
    path = write(tmp_path / name, nbformat.v4.new_notebook())
    assert guess_chapter(path, CHAPTERS) == chapter


def test_guess_chapter_of_a_missing_file_is_none(tmp_path):
    assert guess_chapter(tmp_path / "nothing.ipynb", CHAPTERS) is None
