"""Graded parts from release notebooks, manual grades from a real nbgrader gradebook, and
how a submission's points add up."""
import warnings
from pathlib import Path

import nbformat
import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.exc import SAWarning

from autograder.authoring.course import _tools_on_path
from autograder.parts import ManualGrade, Part, chapter_parts, manual_grades, parts_of, score
from autograder.records import GRADED, INVALID, TIMED_OUT, TOO_LARGE, CellScore, SubmissionRecord

EXERCISES = Path(__file__).resolve().parent.parent / "exercises"


def test_batchnorm_parts_follow_the_release_notebook():
    parts = chapter_parts(EXERCISES, "batchnorm")
    assert [p.grade_id for p in parts[:3]] == [
        "batchnorm_batchnorm_forward_torch_2d",
        "batchnorm_batchnorm_forward_torch_4d",
        "batchnorm_batchnorm_forward_standardizes",
    ]
    assert parts[-1] == Part("batchnorm_experiment_sigmoid_depth", 20.0, False)
    assert all(p.autograded for p in parts[:-1])
    assert sum(p.points for p in parts) == 100
    # answer cells and locked setup cells are not graded parts
    assert not {"batchnorm_setup", "batchnorm_batchnorm_forward_answer"} & {p.grade_id for p in parts}


def test_pooling_parts():
    parts = chapter_parts(EXERCISES, "pooling")
    assert len(parts) == 15
    assert parts[0] == Part("pooling_maxpool2d_forward_torch", 7.0, True)
    assert [p.grade_id for p in parts if not p.autograded] == ["pooling_experiment_gradient_maps"]


def test_a_graded_solution_cell_is_graded_by_hand(tmp_path):
    def cell(kind, grade_id, **meta):
        make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        c = make("pass")
        c.metadata["nbgrader"] = {"grade_id": grade_id, "grade": False, "solution": False, **meta}
        return c

    nb = nbformat.v4.new_notebook(cells=[
        cell("code", "ch_answer", solution=True),
        cell("code", "ch_test", grade=True, points=3),
        cell("code", "ch_graded_code_answer", grade=True, solution=True, points=4),
        nbformat.v4.new_markdown_cell("no nbgrader metadata"),
    ])
    folder = tmp_path / "release" / "ch"
    folder.mkdir(parents=True)
    nbformat.write(nb, str(folder / "ch.ipynb"))
    assert chapter_parts(tmp_path, "ch") == [Part("ch_test", 3.0, True), Part("ch_graded_code_answer", 4.0, False)]


def test_a_missing_release_notebook_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no release notebook for chapter 'nope'"):
        chapter_parts(tmp_path, "nope")


def test_an_unreadable_release_notebook_is_a_clear_error(tmp_path):
    folder = tmp_path / "release" / "ch"
    folder.mkdir(parents=True)
    (folder / "ch.ipynb").write_text("{not json")
    with pytest.raises(ValueError, match="could not be read"):
        chapter_parts(tmp_path, "ch")


@pytest.fixture(scope="module")
def gradebook_url(tmp_path_factory):
    """A gradebook as nbgrader leaves it after autograding and some manual grading.

    alice: written answer graded (15) with a comment; bob: answer awaiting a grader;
    carol: answer left untouched (nbgrader gives 0 itself); erin: graded (12), then
    re-autograded (nbgrader flags it for review again); dave: no submission.
    """
    from nbgrader.api import Gradebook

    url = f"sqlite:///{tmp_path_factory.mktemp('gradebook') / 'gradebook.db'}"
    with _tools_on_path(), Gradebook(url) as gb:
        gb.add_assignment("ch")
        gb.add_notebook("ch", "ch")
        gb.add_grade_cell("ch_test", "ch", "ch", max_score=10, cell_type="code")
        gb.add_grade_cell("ch_written", "ch", "ch", max_score=20, cell_type="markdown")
        gb.add_solution_cell("ch_answer", "ch", "ch")
        gb.add_solution_cell("ch_written", "ch", "ch")
        for student in ("alice", "bob", "carol", "dave", "erin"):
            gb.add_student(student)
        for student in ("alice", "bob", "carol", "erin"):
            with warnings.catch_warnings():  # nbgrader's own autoflush warning, not ours
                warnings.simplefilter("ignore", SAWarning)
                gb.add_submission("ch", student)
            test = gb.find_grade("ch_test", "ch", "ch", student)
            test.auto_score, test.needs_manual_grade = 10.0, False

        def written(student, auto=None, manual=None, needs=True, comment=None):
            grade = gb.find_grade("ch_written", "ch", "ch", student)
            grade.auto_score, grade.manual_score, grade.needs_manual_grade = auto, manual, needs
            gb.find_comment("ch_written", "ch", "ch", student).manual_comment = comment

        written("alice", manual=15.0, needs=False, comment="Good, but <b>why</b>?")
        written("bob")
        written("carol", auto=0.0, needs=False)
        written("erin", manual=12.0, needs=True)
        gb.db.commit()
    return url


def test_manual_grades_from_the_gradebook(gradebook_url):
    grades = manual_grades(gradebook_url, "ch")
    assert grades == {
        "alice": [ManualGrade("ch_written", 15.0, 20.0, "Good, but <b>why</b>?")],
        "bob": [ManualGrade("ch_written", None, 20.0, None)],
        "carol": [ManualGrade("ch_written", 0.0, 20.0, None)],
        "erin": [ManualGrade("ch_written", 12.0, 20.0, None)],
    }


def test_manual_grades_of_another_chapter_are_empty(gradebook_url):
    assert manual_grades(gradebook_url, "other") == {}


def test_manual_grades_without_a_gradebook_create_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert manual_grades(url, "ch") == {}
    engine = create_engine(url)
    assert inspect(engine).get_table_names() == []
    engine.dispose()


PARTS = [Part("ch_a", 10.0, True), Part("ch_b", 5.0, True), Part("ch_written", 20.0, False)]


def test_score_adds_autograded_and_manual_points():
    record = SubmissionRecord("s", "ch", GRADED, "", cells=[
        CellScore("ch_a", 10, 10, "passed"), CellScore("ch_b", 5, 0, "ch_b failed"),
    ])
    s = score(record, PARTS, [ManualGrade("ch_written", 14.0, 20.0, None)])
    assert s.points == {"ch_a": 10.0, "ch_b": 0.0, "ch_written": 14.0}
    assert (s.autograded, s.manual, s.total, s.max) == (10.0, 14.0, 24.0, 35.0)
    assert s.awaiting == []


def test_score_of_a_submission_that_never_ran_and_awaits_a_grader():
    record = SubmissionRecord("s", "ch", TIMED_OUT, "took too long")
    s = score(record, PARTS, [ManualGrade("other_chapter_written", 9.0, 20.0, None)])
    assert s.points == {"ch_a": 0.0, "ch_b": 0.0, "ch_written": None}
    assert (s.total, s.max) == (0.0, 35.0)
    assert s.awaiting == ["ch_written"]


@pytest.mark.parametrize("status", [INVALID, TOO_LARGE])
def test_an_unreadable_submission_has_no_written_answer_to_wait_for(status):
    # A grade an earlier, readable submission was given does not carry over to this one.
    record = SubmissionRecord("s", "ch", status, "not a notebook")
    s = score(record, PARTS, [ManualGrade("ch_written", 18.0, 20.0, None)])
    assert s.points == {"ch_a": 0.0, "ch_b": 0.0, "ch_written": 0.0}
    assert (s.total, s.awaiting) == (0.0, [])


def test_parts_of_an_unknown_chapter_is_a_clear_error():
    with pytest.raises(ValueError, match="No graded parts are known for chapter 'x'"):
        parts_of({"ch": PARTS}, "x")
