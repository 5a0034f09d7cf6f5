"""Every chapter through the sandboxed grader: the reference answers score every
automatically graded point, and a stub scores none (the torch chapters included, whose
inputs are made inside the sandbox)."""
from __future__ import annotations

import shutil

import nbformat
import pytest

from autograder import grade, records, sandbox
from autograder.authoring import course, notebooks
from autograder.store import RecordStore, default_url

CHAPTERS = notebooks.chapters()
# Skipped only where bubblewrap is not installed; where it is, a sandbox that cannot start fails.
pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("chapters")
    course_dir = root / "course"
    course_dir.mkdir()
    shutil.copy(course.EXERCISES / "nbgrader_config.py", course_dir)
    for kind in ("source", "release"):
        shutil.copytree(course.EXERCISES / kind, course_dir / kind)
    for chapter in CHAPTERS:
        src = course.read(course.EXERCISES / "source" / chapter / f"{chapter}.ipynb")
        rel = course.read(course.EXERCISES / "release" / chapter / f"{chapter}.ipynb")
        for student, nb in (("reference", course.fill_answers(rel, course.answers(src))), ("stub", rel)):
            path = root / "subs" / student / f"{chapter}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(path))
    summary = grade.grade(root / "subs", grade.Options(course_dir, jobs=2))
    with RecordStore(default_url(course_dir)) as store:
        recs = {(r.student, r.chapter): r for r in store.records()}
    return course_dir, summary, recs


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_reference_scores_every_point(graded, chapter):
    course_dir, _, recs = graded
    rec = recs[("reference", chapter)]
    assert rec.status == records.GRADED, rec.message
    assert rec.auto_score == rec.auto_max == 80, [c.message for c in rec.cells if c.awarded < c.points]
    assert all(v.passed for v in rec.checks)
    gradebook = course.scores(course_dir, chapter)["reference"]
    assert course.autograded_total(gradebook) == (80, 80)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_stub_scores_nothing(graded, chapter):
    course_dir, _, recs = graded
    rec = recs[("stub", chapter)]
    assert rec.status == records.GRADED
    assert rec.auto_score == 0
    assert all("NotImplementedError" in c.message for c in rec.cells)
    assert course.autograded_total(course.scores(course_dir, chapter)["stub"]) == (0, 80)


def test_summary_counts_every_submission(graded):
    _, summary, _ = graded
    assert len(summary.graded) == 2 * len(CHAPTERS)
    assert not summary.failed and not summary.skipped
