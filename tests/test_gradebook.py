"""Scores written into nbgrader's gradebook the way ``nbgrader autograde`` writes them."""
import json
from pathlib import Path

import nbformat
import pytest

from autograder import submission
from autograder.authoring.course import _tools_on_path
from autograder.gradebook import Gradebook

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "exercises" / "source" / "batchnorm" / "batchnorm.ipynb"
RELEASE = REPO / "exercises" / "release" / "batchnorm" / "batchnorm.ipynb"
TORCH_2D = "batchnorm_batchnorm_forward_torch_2d"
TORCH_4D = "batchnorm_batchnorm_forward_torch_4d"
STANDARDIZES = "batchnorm_batchnorm_forward_standardizes"
WRITTEN = "batchnorm_experiment_sigmoid_depth"
PASSED = [{"output_type": "stream", "name": "stdout", "text": "passed\n"}]
FAILED = [{"output_type": "error", "ename": "AssertionError", "evalue": "failed", "traceback": []}]
STDERR = [{"output_type": "stream", "name": "stderr", "text": "a warning\n"}]


def graded_cells() -> dict[str, float]:
    nb = json.loads(SOURCE.read_text())
    return {c["metadata"]["nbgrader"]["grade_id"]: c["metadata"]["nbgrader"]["points"]
            for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade")}


def autograded(tmp_path: Path, written: str | None, outputs: dict[str, list]) -> nbformat.NotebookNode:
    """The release notebook rebuilt as the grader does, with the written answer replaced
    (unless None) and the given outputs on test cells (every other test cell passes)."""
    nb = json.loads(RELEASE.read_text())
    if written is not None:
        for cell in nb["cells"]:
            if cell["metadata"].get("nbgrader", {}).get("grade_id") == WRITTEN:
                cell["source"] = written
    path = tmp_path / "submitted.ipynb"
    path.write_text(json.dumps(nb))
    prepared = submission.prepare(path, RELEASE, "batchnorm")
    by_index = {index: outputs.get(gid, PASSED) for index, gid in prepared.test_cells()}
    return submission.to_notebook(prepared, by_index)


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    """A gradebook with batchnorm registered (twice: registering again changes nothing)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('gradebook') / 'gradebook.db'}"
    with Gradebook(url) as gb:
        gb.register("batchnorm", SOURCE)
        gb.register("batchnorm", SOURCE)
    return url


def nbgrader_book(url: str):
    from nbgrader.api import Gradebook as NbgraderGradebook

    with _tools_on_path():
        return NbgraderGradebook(url)


def save(url: str, tmp_path: Path, student: str, written: str | None, outputs: dict[str, list],
         timestamp: str | None = "2025-03-01 12:00:00.000000 UTC") -> None:
    with Gradebook(url) as gb:
        gb.save("batchnorm", student, autograded(tmp_path, written, outputs), timestamp)


def test_register_creates_the_assignment_with_every_graded_cell(url):
    with nbgrader_book(url) as gb:
        (assignment,) = gb.assignments
        (notebook,) = assignment.notebooks
        assert (assignment.name, notebook.name) == ("batchnorm", "batchnorm")
        cells = {c.name: c.max_score for c in notebook.grade_cells}
        assert cells == graded_cells()
        assert assignment.max_score == 100
        assert gb.find_grade_cell(WRITTEN, "batchnorm", "batchnorm").cell_type == "markdown"


def test_passed_failed_and_stderr_test_cells_score_like_nbgrader(url, tmp_path):
    save(url, tmp_path, "ann", "My answer.", {TORCH_4D: FAILED, STANDARDIZES: STDERR})
    with nbgrader_book(url) as gb:
        def score(gid):
            return gb.find_grade(gid, "batchnorm", "batchnorm", "ann").auto_score

        assert score(TORCH_2D) == 10
        assert score(TORCH_4D) == 0  # an error output
        assert score(STANDARDIZES) == 0  # any stderr output zeroes a test cell
        sub = gb.find_submission_notebook("batchnorm", "batchnorm", "ann")
        assert sub.code_score == sum(graded_cells().values()) - graded_cells()[WRITTEN] - 20


def test_a_written_answer_awaits_a_grader(url, tmp_path):
    save(url, tmp_path, "bea", "Spread collapses with depth; BN keeps it.", {})
    with nbgrader_book(url) as gb:
        grade = gb.find_grade(WRITTEN, "batchnorm", "batchnorm", "bea")
        assert grade.auto_score is None and grade.needs_manual_grade


def test_an_untouched_written_answer_scores_zero_with_no_response(url, tmp_path):
    save(url, tmp_path, "cal", None, {})
    with nbgrader_book(url) as gb:
        grade = gb.find_grade(WRITTEN, "batchnorm", "batchnorm", "cal")
        assert grade.auto_score == 0 and not grade.needs_manual_grade
        assert gb.find_comment(WRITTEN, "batchnorm", "batchnorm", "cal").auto_comment == "No response."


def test_the_submission_timestamp_is_recorded(url, tmp_path):
    save(url, tmp_path, "dan", "x", {}, timestamp="2025-03-02 08:30:00.000000 UTC")
    with nbgrader_book(url) as gb:
        sub = gb.find_submission("batchnorm", "dan")
        assert sub.timestamp.strftime("%Y-%m-%d %H:%M") == "2025-03-02 08:30"


def test_saving_again_replaces_scores_and_keeps_manual_grades(url, tmp_path):
    save(url, tmp_path, "eve", "First answer.", {TORCH_2D: FAILED})
    with nbgrader_book(url) as gb:
        written = gb.find_grade(WRITTEN, "batchnorm", "batchnorm", "eve")
        written.manual_score = 17.0
        gb.find_comment(WRITTEN, "batchnorm", "batchnorm", "eve").manual_comment = "Good."
        gb.db.commit()
    save(url, tmp_path, "eve", "First answer.", {})
    with nbgrader_book(url) as gb:
        assert gb.find_grade(TORCH_2D, "batchnorm", "batchnorm", "eve").auto_score == 10
        written = gb.find_grade(WRITTEN, "batchnorm", "batchnorm", "eve")
        assert written.manual_score == 17.0 and written.score == 17.0
        assert gb.find_comment(WRITTEN, "batchnorm", "batchnorm", "eve").manual_comment == "Good."
        assert [s.student.id for s in gb.assignment_submissions("batchnorm")].count("eve") == 1
