"""Diagnoses through the sandboxed grader, end to end: running statistics written in place
are named as such, and an exception shows the student's own line (by its cell in the graded
notebook), in the record, the autograded notebook and the feedback page, for the visible
and the hidden checks alike; a passed cell says how its points are earned.

A small class of the bn_inference chapter (torch is available in its sandbox) is graded once.
"""
from __future__ import annotations

import html
import shutil

import nbformat
import pytest

import bugs
from autograder import grade, records
from autograder.authoring import course
from autograder.authoring.checks import core
from autograder.parts import chapter_parts
from autograder.reports import feedback
from autograder.store import RecordStore
from course_kit import new_course, plain

CHAPTER = "bn_inference"
BUGS = bugs.load(CHAPTER).BUGS
IN_PLACE = BUGS["in_place_running_stats"]
EVAL_ANSWER = "bn_inference_batchnorm_eval_answer"
EVAL_CELLS = {c.cell_id for c in core.chapter_checks(CHAPTER).values() if c.function == "batchnorm_eval"}
# A reshape that works for 2-D inputs only: 4-D inputs raise inside numpy.
RAISING_EVAL = '''
def batchnorm_eval(x, gamma, beta, running_mean, running_var, eps=1e-5):
    scale = gamma / np.sqrt(running_var + eps)
    shift = beta - running_mean * scale
    return x * scale.reshape(1, x.shape[1]) + shift.reshape(1, -1)
'''
RAISING_LINE = "return x * scale.reshape(1, x.shape[1]) + shift.reshape(1, -1)"

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def _notebook(extra: dict[str, str]) -> str:
    release = course.read(course.EXERCISES / "release" / CHAPTER / f"{CHAPTER}.ipynb")
    answers = course.answers(course.read(course.EXERCISES / "source" / CHAPTER / f"{CHAPTER}.ipynb"))
    return nbformat.writes(course.fill_answers(release, {**answers, **{
        cell: answers[cell] + "\n" + source for cell, source in extra.items()}}))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("diagnoses")
    course_dir = root / "course"
    new_course(course_dir, CHAPTER)
    students = {"in_place": {IN_PLACE["answer_cell"]: IN_PLACE["source"]},
                "raises": {EVAL_ANSWER: RAISING_EVAL}}
    for student, extra in students.items():
        path = root / "subs" / student / f"{CHAPTER}.ipynb"
        path.parent.mkdir(parents=True)
        path.write_text(_notebook(extra))
    grade.grade(root / "subs", grade.Options(course_dir, jobs=2))
    with RecordStore(grade.default_url(course_dir)) as store:
        recs = {r.student: r for r in store.records(CHAPTER)}
    parts = chapter_parts(course_dir, CHAPTER)
    pages = {s: html.unescape(feedback.render(r, parts, [])) for s, r in recs.items()}
    autograded = {s: nbformat.read(str(course_dir / "autograded" / s / CHAPTER / f"{CHAPTER}.ipynb"), as_version=4)
                  for s in recs}
    return recs, pages, autograded


def _diagnosis(verdict: records.CheckVerdict) -> str:
    """The message after ``function:``, or after ``function (hidden check on ...):`` for a hidden check."""
    function = verdict.message.split(" ", 1)[0].split(":", 1)[0]
    note = " (hidden check on " if verdict.hidden else ":"
    assert verdict.message.startswith(function + note), verdict.message
    return plain(verdict.message).split(": ", 1)[1]


def _lost(rec: records.SubmissionRecord) -> set[str]:
    return {c.cell for c in rec.cells if c.awarded < c.points}


def test_running_statistics_written_in_place_are_named_in_every_check(graded):
    recs, pages, _ = graded
    rec = recs["in_place"]
    assert rec.status == records.GRADED and _lost(rec) == IN_PLACE["fails"]
    _, fn = bugs.function(CHAPTER, "in_place_running_stats")
    in_notebook = core.run_check(core.get_check("bn_inference_batchnorm_train_step_torch_2d"), fn).message
    assert "it modified the caller's array running_mean in place" in in_notebook
    failed = [v for v in rec.checks if not v.passed]
    assert {v.hidden for v in failed} == {False, True}
    # Hidden checks give the same diagnosis, after a note on their kind of input and nothing else of theirs.
    assert {_diagnosis(v) for v in failed} == {in_notebook.split(": ", 1)[1]}
    assert in_notebook in pages["in_place"]


def test_an_exception_shows_the_students_line_by_its_cell_in_the_graded_notebook(graded):
    recs, pages, autograded = graded
    rec = recs["raises"]
    failed = [v for v in rec.checks if not v.passed]
    assert rec.status == records.GRADED and failed and _lost(rec) == {v.cell for v in failed} <= EVAL_CELLS
    cells = autograded["raises"].cells
    for verdict in failed:
        head, where = verdict.message.split("\n")
        assert _diagnosis(verdict).startswith("raised ValueError: ")
        location, line = where.removeprefix("  at ").split(": ", 1)
        assert line == RAISING_LINE
        cell, number = location.removeprefix("cell ").split(", line ")
        source = cells[int(cell) - 1].source.splitlines()
        assert source[int(number) - 1].strip() == RAISING_LINE  # the cell and line the student sees
        assert verdict.message in pages["raises"]
    assert {v.hidden for v in failed} == {False, True}


def test_passed_cells_of_the_graded_notebook_say_how_their_points_are_earned(graded):
    _, _, autograded = graded
    passed = 0
    for cell in autograded["raises"].cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution") or meta["grade_id"] in EVAL_CELLS:
            continue
        checks = core.cell_checks(meta["grade_id"])
        text = "".join(o.get("text", "") for o in cell.outputs)
        assert text == "".join(core.passed_line(c, checks) + "\n" for c in checks), meta["grade_id"]
        passed += 1
    assert passed == len({c.cell_id for c in core.chapter_checks(CHAPTER).values()}) - len(EVAL_CELLS)
