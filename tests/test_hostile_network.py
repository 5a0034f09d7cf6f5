"""Hostile submissions of the ``network`` capstone: the provided layers stay the course's.

The notebook gives students the course's layers in a read-only cell and grades only the
assembly and the training. One small class is graded once, in the real sandbox, with tight
limits: the reference, a stub, and one student per attack aimed at this chapter (an edited
provided cell, provided classes patched from an answer cell, torch imported to do the work,
a deleted and a duplicated test cell, an endless training step). Each case states its
status, a phrase of its message or notes, and exactly which test cells score 0. The course's
files and the honest notebooks must be byte-identical afterwards.
"""
from __future__ import annotations

import copy
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from autograder import grade, records, sandbox
from autograder.authoring import course
from autograder.records import GRADED, TIMED_OUT
from autograder.store import RecordStore, default_url
from course_kit import fingerprints, index, new_course, output_text, plain, text, write_submission

# Skipped only where bubblewrap is missing, and never under CI: there a missing sandbox fails.
pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None and not os.environ.get("CI"),
                                reason="bubblewrap (bwrap) is not installed; CI installs it")

CHAPTER = "network"
# The experiment cell trains 12 small networks (a few seconds); an endless training step costs
# 4 calls (two test cells, a visible and a hidden check each) and that cell: 4 * 3 + 8 s.
LIMITS = sandbox.Limits(wall_seconds=60, cpu_seconds=50, cell_seconds=8, call_seconds=3,
                        memory_bytes=2 * 2**30)

P = "network_"
PROVIDED = P + "provided"
LOSS = frozenset({P + "softmax_cross_entropy_torch", P + "softmax_cross_entropy_large_logits"})  # 8 points
FORWARD = frozenset({P + "network_forward_train_mlp", P + "network_forward_eval_cnn"})  # 12
BACKWARD = frozenset({P + "network_backward_torch_mlp", P + "network_backward_torch_cnn"})  # 20
SGD = frozenset({P + "sgd_momentum_step_torch", P + "sgd_momentum_step_no_momentum"})  # 8
ADAM = frozenset({P + "adam_step_torch", P + "adam_step_betas_eps"})  # 12
TRAIN = frozenset({P + "train_step_torch_mlp", P + "train_step_torch_cnn"})  # 20
EVERY_TEST = LOSS | FORWARD | BACKWARD | SGD | ADAM | TRAIN
NONE: frozenset[str] = frozenset()
DELETED, DUPLICATED = P + "network_forward_train_mlp", P + "train_step_torch_cnn"

# --- what hostile students write ---------------------------------------------------------------

# Appended to the read-only cell: batch norm's backward returns zeros.
ZERO_BATCHNORM_BACKWARD = """


def _zero_backward(self, dout, cache):
    return np.zeros_like(dout), {name: np.zeros_like(value) for name, value in self.params.items()}


BatchNorm.backward = _zero_backward
"""
# Appended to the backward answer: every provided layer's backward now returns zeros, so the
# (otherwise correct) backward pass returns zeros everywhere, and checks that took their
# expected gradients from the notebook's classes would agree with it.
ZEROED_LAYERS = """


def _zeroed(backward):
    def zero_backward(self, dout, cache):
        dx, grads = backward(self, dout, cache)
        return np.zeros_like(dx), {name: np.zeros_like(g) for name, g in grads.items()}
    return zero_backward


for _layer in (Affine, ReLU, Conv2d, Flatten, BatchNorm, LayerNorm, Dropout, MaxPool2d, AvgPool2d):
    _layer.backward = _zeroed(_layer.backward)
"""
TORCH_LOSS = """import torch


def softmax_cross_entropy(logits, y):
    t = torch.tensor(logits, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(t, torch.as_tensor(y))
    loss.backward()
    return float(loss), t.grad.numpy()
"""
ENDLESS_TRAIN_STEP = """

def train_step(layers, x, y, velocities, lr, momentum):
    while True:
        pass
"""
NO_TORCH = "torch is not available while grading this chapter: its exercises are written in numpy"


# --- building the class ------------------------------------------------------------------------


@dataclass
class Class:
    course_dir: Path
    submissions: Path
    reference: dict  # the release notebook with the reference answers
    release: dict  # the release notebook as students get it (the stub)

    def notebook(self, **appended: str) -> dict:
        """The reference with code appended to graded cells (by grade_id)."""
        nb = copy.deepcopy(self.reference)
        for grade_id, code in appended.items():
            cell = nb["cells"][index(nb, grade_id)]
            cell["source"] = text(cell["source"]) + code
        return nb

    def replaced(self, grade_id: str, code: str) -> dict:
        nb = self.notebook()
        nb["cells"][index(nb, grade_id)]["source"] = code
        return nb

    def submitted(self, student: str) -> Path:
        return self.submissions / student / f"{CHAPTER}.ipynb"

    def autograded(self, student: str) -> Path:
        return self.course_dir / "autograded" / student / CHAPTER / f"{CHAPTER}.ipynb"


def _deleted(c: Class) -> dict:
    nb = c.notebook()
    del nb["cells"][index(nb, DELETED)]
    return nb


def _duplicated(c: Class) -> dict:
    nb = c.notebook()
    at = index(nb, DUPLICATED)
    nb["cells"].insert(at + 1, {**copy.deepcopy(nb["cells"][at]), "id": "copy"})
    return nb


@dataclass(frozen=True)
class Case:
    build: Callable[[Class], dict]
    status: str
    says: str  # a phrase of the record's message or of one of its notes
    zero: frozenset[str] = NONE  # exactly the test cells that score 0; the others score full points


CASES: dict[str, Case] = {
    "reference": Case(lambda c: c.notebook(), GRADED, "Graded."),
    "stub": Case(lambda c: copy.deepcopy(c.release), GRADED, "Graded.", EVERY_TEST),
    "provided_edited": Case(lambda c: c.notebook(**{PROVIDED: ZERO_BATCHNORM_BACKWARD}), GRADED,
                            f"The read-only cell {PROVIDED} had been changed; it was restored from the release."),
    # The backward pass and the training step (which calls it) return what the patched layers
    # say: nothing for them, the other answers keep their points.
    "layers_patched": Case(lambda c: c.notebook(**{P + "network_backward_answer": ZEROED_LAYERS}), GRADED,
                           "Graded.", BACKWARD | TRAIN),
    # The loss is not defined, so the training step that calls it fails too.
    "torch_loss": Case(lambda c: c.replaced(P + "softmax_cross_entropy_answer", TORCH_LOSS), GRADED,
                       "Graded.", LOSS | TRAIN),
    "test_deleted": Case(_deleted, GRADED, f"The test cell {DELETED} was missing; it was restored from the release."),
    "test_duplicated": Case(_duplicated, GRADED,
                            f"The test cell {DUPLICATED} appeared more than once; the copy was ignored."),
    "endless_train_step": Case(lambda c: c.notebook(**{P + "train_step_answer": ENDLESS_TRAIN_STEP}), TIMED_OUT,
                               "ran longer than the limit", TRAIN),
}
HONEST = ("reference", "stub")


@dataclass
class Graded:
    the_class: Class
    summary: grade.Summary
    records: dict[str, records.SubmissionRecord]
    scores: dict[str, dict[str, course.CellScore]]
    before: dict[str, str]
    after: dict[str, str]

    def cell(self, student: str, grade_id: str):
        [cell] = [c for c in course.read(self.the_class.autograded(student)).cells
                  if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
        return cell

    def shown(self, student: str, grade_id: str) -> str:
        return "\n".join(output_text(o) for o in self.cell(student, grade_id).outputs)

    def messages(self, student: str, cells: frozenset[str]) -> set[str]:
        """The messages of the student's checks in these cells, hidden checks' notes removed."""
        return {plain(v.message) for v in self.records[student].checks if v.cell in cells}


def protected(c: Class) -> list[Path]:
    """Files no submission may change: the course's own and the honest students' notebooks."""
    return [c.course_dir / "source", c.course_dir / "release", c.course_dir / "nbgrader_config.py",
            *(c.submitted(s) for s in HONEST)]


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Graded:
    root = tmp_path_factory.mktemp("hostile-network")
    reference = new_course(root / "course", CHAPTER)
    release = course.read(root / "course" / "release" / CHAPTER / f"{CHAPTER}.ipynb")
    the_class = Class(root / "course", root / "submissions", reference, dict(release))
    for student, case in CASES.items():
        write_submission(the_class.submitted(student), case.build(the_class))
    before = fingerprints(protected(the_class))
    summary = grade.grade(the_class.submissions, grade.Options(the_class.course_dir, jobs=2, limits=LIMITS))
    with RecordStore(default_url(the_class.course_dir)) as store:
        found = {r.student: r for r in store.records(CHAPTER)}
    after = fingerprints(protected(the_class))
    return Graded(the_class, summary, found, course.scores(the_class.course_dir, CHAPTER), before, after)


# --- the whole class -----------------------------------------------------------------------------


def test_every_submission_was_graded_and_recorded(graded):
    assert sorted(graded.records) == sorted(CASES)
    assert graded.summary.skipped == [] and graded.summary.unchanged == []
    assert sorted(r.student for r in graded.summary.failed) == ["endless_train_step"]  # timed out
    assert len(graded.summary.graded) == len(CASES) - 1


def test_course_files_and_honest_notebooks_are_byte_identical(graded):
    assert graded.after == graded.before
    assert len(graded.before) >= 6  # the fingerprint covered real files
    for student in HONEST:  # nbgrader's copy is the student's file, unchanged
        copied = graded.the_class.course_dir / "submitted" / student / CHAPTER / f"{CHAPTER}.ipynb"
        assert copied.read_bytes() == graded.the_class.submitted(student).read_bytes()


def test_gradebook_agrees_with_every_record(graded):
    for student, record in graded.records.items():
        assert course.autograded_total(graded.scores[student]) == (record.auto_score, 80), student


# --- one case at a time --------------------------------------------------------------------------


@pytest.mark.parametrize("student", list(CASES))
def test_status_message_and_points(graded, student):
    case, record = CASES[student], graded.records[student]
    assert record.status == case.status, record.message
    assert case.says in record.message + "\n" + "\n".join(record.notes), (record.message, record.notes)
    assert {c.cell for c in record.cells} == EVERY_TEST and record.auto_max == 80
    assert {c.cell for c in record.cells if c.awarded == 0} == case.zero, record.cells
    assert all(c.awarded == c.points for c in record.cells if c.cell not in case.zero), record.cells
    assert record.auto_score == 80 - sum(c.points for c in record.cells if c.cell in case.zero)


def test_stub_fails_every_check_as_not_implemented(graded):
    assert all("NotImplementedError" in c.message for c in graded.records["stub"].cells)


def test_edited_provided_cell_runs_as_released(graded):
    release = graded.the_class.release
    assert graded.cell("provided_edited", PROVIDED).source == text(release["cells"][index(release, PROVIDED)]["source"])
    assert "BatchNorm.backward" not in graded.cell("provided_edited", PROVIDED).source


def test_patched_layers_are_judged_against_torch(graded):
    messages = graded.messages("layers_patched", BACKWARD)
    assert messages and all(m.startswith("network_backward: ") and "is wrong" in m for m in messages), messages


def test_torch_is_not_importable_in_the_network_chapter(graded):
    assert NO_TORCH in graded.shown("torch_loss", P + "softmax_cross_entropy_answer")
    assert graded.messages("torch_loss", LOSS) == {"softmax_cross_entropy: softmax_cross_entropy is not defined"}


@pytest.mark.parametrize("student", ["test_deleted", "test_duplicated"])
def test_tampered_test_cells_are_restored_from_the_release(graded, student):
    def test_cells(nb):
        return [(c.source, c.metadata["nbgrader"]) for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"]["solution"]]

    release = course.read(graded.the_class.course_dir / "release" / CHAPTER / f"{CHAPTER}.ipynb")
    assert test_cells(course.read(graded.the_class.autograded(student))) == test_cells(release)


def test_endless_training_step_is_stopped_at_every_call(graded):
    messages = graded.messages("endless_train_step", TRAIN)
    # Each says where the student's loop was when it was stopped (either line of the loop).
    stopped = re.escape(f"train_step: raised TimeLimit: train_step ran longer than {LIMITS.call_seconds:g} s "
                        "and was stopped")
    assert messages and all(re.fullmatch(stopped + r"\n  at cell \d+, line \d+: (while True:|pass)", m)
                            for m in messages), messages
    assert len([v for v in graded.records["endless_train_step"].checks if v.cell in TRAIN]) == 4
    # The experiment cell, which trains with it, meets the cell limit.
    cells = course.read(graded.the_class.autograded("endless_train_step")).cells
    [experiment] = [i for i, c in enumerate(cells) if c.cell_type == "code" and "def spirals(" in c.source]
    shown = "\n".join(output_text(o) for o in cells[experiment].outputs)
    assert f"TimeLimit: cell {experiment} ran longer than {LIMITS.cell_seconds:g} s and was stopped" in shown, shown
