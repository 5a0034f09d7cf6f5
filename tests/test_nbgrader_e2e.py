"""End to end with real nbgrader: generate_assignment, validate, autograde, the gradebook.

For every chapter with a bug module (``tests/bugs/<chapter>.py``) the course comes from the
session's ``release`` run (the reference is already autograded there); the buggy
submissions, the untouched release (next to a helper rewritten to pass everything) and a
submission whose visible test cells were replaced by ``pass`` are graded by one more
``nbgrader autograde`` run while ``nbgrader validate`` checks the source and the released
notebook in a second thread. Kernel starts are the cost, so each submission proves more
than one thing.
"""
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

import bugs
from autograder.authoring import course, release

TAMPERED_CORE = b"\n\ndef check(*args, **kwargs):\n    return None\n"
lost_cells = course.lost_cells


def with_bug(answers, spec):
    cell = spec["answer_cell"]
    return {**answers, cell: answers[cell] + "\n\n" + spec["source"]}


@pytest.fixture(scope="module", params=bugs.chapters())
def graded(request, released_course):
    chapter = request.param
    module = bugs.load(chapter)
    _, root, totals = released_course
    if chapter not in totals:
        pytest.skip(f"{chapter} is not in COURSE_CHAPTERS")
    source = course.read(root / "source" / chapter / f"{chapter}.ipynb")
    released = course.read(root / "release" / chapter / f"{chapter}.ipynb")
    answers = course.answers(source)

    for i, bug in enumerate(module.E2E):
        nb = course.fill_answers(released, with_bug(answers, module.BUGS[bug]))
        if i == 0:  # this submission also replaces every visible test cell by `pass`
            for cell in nb.cells:
                meta = cell.metadata.get("nbgrader", {})
                if meta.get("grade") and not meta.get("solution"):
                    cell.source = "pass"
        course.submit(root, bug, chapter, nb)
    core = (root / "release" / chapter / "coursechecks" / "core.py").read_bytes()
    course.submit(root, "untouched", chapter, released, extra_files={"coursechecks/core.py": core + TAMPERED_CORE})

    def validate():
        return (course.run_nbgrader(root, "validate", f"source/{chapter}/{chapter}.ipynb"),
                course.run_nbgrader(root, "validate", "--invert", f"release/{chapter}/{chapter}.ipynb"))

    with ThreadPoolExecutor(1) as pool:
        validation = pool.submit(validate)
        course.autograde(root, chapter, force=False)  # the reference is graded already
        scores = course.scores(root, chapter)
        return dict(chapter=chapter, module=module, root=root, scores=scores,
                    total=course.autograded_total(scores["reference"])[1], validation=validation.result())


def test_reference_scores_every_autograded_point(graded):
    cells = graded["scores"]["reference"]
    total = graded["total"]
    assert total > 0 and course.autograded_total(cells) == (total, total)
    assert lost_cells(cells) == set()
    # The written answers wait for a human; autograded and manual points make 100.
    manual = [c for c in cells.values() if c.auto_score is None]
    assert manual and total + sum(c.max_score for c in manual) == 100


def test_untouched_release_scores_zero_and_its_helper_is_replaced(graded):
    root, chapter = graded["root"], graded["chapter"]
    assert course.autograded_total(graded["scores"]["untouched"]) == (0, graded["total"])
    # The student's rewritten coursechecks/core.py was overwritten by the course's copy.
    graded_core = root / "autograded" / "untouched" / chapter / "coursechecks" / "core.py"
    assert graded_core.read_bytes() == (root / "source" / chapter / "coursechecks" / "core.py").read_bytes()


def test_each_bug_loses_exactly_the_points_aimed_at_it(graded):
    module, scores, total = graded["module"], graded["scores"], graded["total"]
    assert len(module.E2E) >= 2
    for bug in module.E2E:
        cells = scores[bug]
        fails = module.BUGS[bug]["fails"]
        assert lost_cells(cells) == fails, bug
        assert all(c.auto_score == 0 for gid, c in cells.items() if gid in fails)
        lost = sum(cells[gid].max_score for gid in fails)
        assert 0 < lost < total and course.autograded_total(cells) == (total - lost, total), bug


def test_edited_test_cells_are_restored(graded):
    # Had the `pass` cells been kept, this submission would have scored full marks.
    root, chapter, module = graded["root"], graded["chapter"], graded["module"]
    edited = module.E2E[0]
    assert lost_cells(graded["scores"][edited]) == module.BUGS[edited]["fails"]
    autograded = course.read(root / "autograded" / edited / chapter / f"{chapter}.ipynb")
    assert not any(c.source == "pass" for c in autograded.cells)


def test_failure_reaches_the_student_as_a_plain_message(graded):
    root, chapter, module = graded["root"], graded["chapter"], graded["module"]
    bug = module.E2E[1]
    errors = course.cell_errors(root, bug, chapter)
    assert set(errors) == module.BUGS[bug]["fails"]
    for gid, msg in errors.items():
        # The cell's first failing check: its visible one, or one of its hidden ones.
        assert re.match(rf"AssertionError: {gid}(_hidden\w*)? failed\. ", msg), msg
    # Graded cells of a correct submission print nothing on stderr.
    assert course.cell_errors(root, "reference", chapter) == {}


def test_validate_passes_on_source_and_fails_everywhere_on_release(graded):
    source, released = graded["validation"]
    assert "Success! Your notebook passes all the tests." in source
    assert "Success! The notebook does not pass any tests." in released


def test_release_refuses_when_the_reference_fails(graded):
    root, chapter, module, total = graded["root"], graded["chapter"], graded["module"], graded["total"]
    assert release.require_full_marks(root, [chapter], "reference") == {chapter: (total, total)}
    bug = module.E2E[-1]
    score = course.autograded_total(graded["scores"][bug])[0]
    with pytest.raises(release.ReleaseError) as info:
        release.require_full_marks(root, [chapter], bug)
    message = str(info.value)
    assert "refusing to release" in message and f"scores {score:g} of {total:g}" in message
    for gid in module.BUGS[bug]["fails"]:
        assert f"{gid}: AssertionError: {gid} failed" in message
