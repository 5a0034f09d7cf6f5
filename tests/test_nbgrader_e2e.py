"""End to end with real nbgrader: generate_assignment, validate, autograde, the gradebook.

The course comes from the session's ``release`` run (the reference is already autograded
there); the other submissions are graded by one more ``nbgrader autograde`` run while
``nbgrader validate`` checks the source and the released notebook in a second thread.
Kernel starts are the cost, so each submission proves more than one thing.
"""
from concurrent.futures import ThreadPoolExecutor

import pytest

from autograder import course, release
from batchnorm_bugs import BUGS

CHAPTER = "batchnorm"
E2E_BUGS = ("unbiased_variance", "batch_axis_only", "backward_without_mean_term")
EDITED_TESTS = "batch_axis_only"  # this submission also replaces every test cell by `pass`
TAMPERED_CORE = b"\n\ndef check(*args, **kwargs):\n    return None\n"


def with_bug(answers, bug):
    cell = BUGS[bug]["answer_cell"]
    return {**answers, cell: answers[cell] + "\n\n" + BUGS[bug]["source"]}


@pytest.fixture(scope="module")
def graded(released_course):
    _, root, _ = released_course
    source = course.read(root / "source" / CHAPTER / f"{CHAPTER}.ipynb")
    released = course.read(root / "release" / CHAPTER / f"{CHAPTER}.ipynb")
    answers = course.answers(source)

    for bug in E2E_BUGS:
        nb = course.fill_answers(released, with_bug(answers, bug))
        if bug == EDITED_TESTS:
            for cell in nb.cells:
                meta = cell.metadata.get("nbgrader", {})
                if meta.get("grade") and not meta.get("solution"):
                    cell.source = "pass"
        course.submit(root, bug, CHAPTER, nb)
    # The released notebook as it was handed out, next to a helper that lets every check pass.
    core = (root / "release" / CHAPTER / "coursechecks" / "core.py").read_bytes()
    course.submit(root, "untouched", CHAPTER, released, extra_files={"coursechecks/core.py": core + TAMPERED_CORE})

    def validate():
        return (course.run_nbgrader(root, "validate", f"source/{CHAPTER}/{CHAPTER}.ipynb"),
                course.run_nbgrader(root, "validate", "--invert", f"release/{CHAPTER}/{CHAPTER}.ipynb"))

    with ThreadPoolExecutor(1) as pool:
        validation = pool.submit(validate)
        course.autograde(root, CHAPTER, force=False)  # the reference is graded already
        return root, course.scores(root, CHAPTER), validation.result()


lost_cells = course.lost_cells


def test_reference_scores_every_autograded_point(graded):
    _, scores, _ = graded
    cells = scores["reference"]
    assert course.autograded_total(cells) == (80, 80)
    assert lost_cells(cells) == set()
    # The written answer waits for a human.
    manual = [c for c in cells.values() if c.auto_score is None]
    assert sum(c.max_score for c in manual) == 20


def test_untouched_release_scores_zero_and_its_helper_is_replaced(graded):
    root, scores, _ = graded
    assert course.autograded_total(scores["untouched"]) == (0, 80)
    # The student's rewritten coursechecks/core.py was overwritten by the course's copy.
    graded_core = root / "autograded" / "untouched" / CHAPTER / "coursechecks" / "core.py"
    assert graded_core.read_bytes() == (root / "source" / CHAPTER / "coursechecks" / "core.py").read_bytes()


@pytest.mark.parametrize("bug", E2E_BUGS)
def test_bug_loses_exactly_the_points_aimed_at_it(graded, bug):
    _, scores, _ = graded
    cells = scores[bug]
    assert lost_cells(cells) == BUGS[bug]["fails"]
    assert all(c.auto_score == 0 for gid, c in cells.items() if gid in BUGS[bug]["fails"])
    lost = sum(cells[gid].max_score for gid in BUGS[bug]["fails"])
    assert course.autograded_total(cells) == (80 - lost, 80)


def test_edited_test_cells_are_restored(graded):
    # Had the `pass` cells been kept, this submission would have scored 80.
    root, scores, _ = graded
    assert lost_cells(scores[EDITED_TESTS]) == BUGS[EDITED_TESTS]["fails"]
    autograded = course.read(root / "autograded" / EDITED_TESTS / CHAPTER / f"{CHAPTER}.ipynb")
    assert not any(c.source == "pass" for c in autograded.cells)


def test_failure_reaches_the_student_as_a_plain_message(graded):
    root, _, _ = graded
    errors = course.cell_errors(root, "unbiased_variance", CHAPTER)
    msg = errors["batchnorm_batchnorm_forward_torch_2d"]
    assert msg.startswith("AssertionError: batchnorm_batchnorm_forward_torch_2d failed. batchnorm_forward: out is wrong")
    # Graded cells of a correct submission print nothing on stderr.
    assert course.cell_errors(root, "reference", CHAPTER) == {}


def test_validate_passes_on_source_and_fails_everywhere_on_release(graded):
    _, _, (source, released) = graded
    assert "Success! Your notebook passes all the tests." in source
    assert "Success! The notebook does not pass any tests." in released


def test_release_refuses_when_the_reference_fails(graded):
    root, _, _ = graded
    assert release.require_full_marks(root, [CHAPTER], "reference") == {CHAPTER: (80, 80)}
    with pytest.raises(release.ReleaseError) as info:
        release.require_full_marks(root, [CHAPTER], "backward_without_mean_term")
    message = str(info.value)
    assert "refusing to release" in message and "scores 55 of 80" in message
    for gid in BUGS["backward_without_mean_term"]["fails"]:
        assert f"{gid}: AssertionError: {gid} failed" in message
