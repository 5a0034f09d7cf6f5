"""Hostile and broken submissions: no undeserved points, no stopped batch, no harm done.

One class of the ``batchnorm`` exercise (numpy only, so quick to run) is graded once, in the
real sandbox, with tight limits: two honest students and one student per attack or breakage,
each built in code by editing the reference submission the way a student would (the hostile
code sits in an answer cell or in a new cell right after the setup cell). Most attacks sit
on top of correct answers, so every case states exactly which test cells must score 0; the
others keep their points. Before grading, the course's own files and the honest students'
notebooks are fingerprinted; afterwards they must be byte-identical.
"""
from __future__ import annotations

import copy
import json
import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat
import pytest

import bugs
from autograder import grade, records, sandbox
from autograder.authoring import course
from autograder.records import GRADED, INVALID, KERNEL_DIED, TIMED_OUT, TOO_LARGE
from autograder.store import RecordStore, default_url
from course_kit import Submission, fingerprints, new_course, output_text, write_submission
from course_kit import index as _index, plain, text as _text

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed; CI installs it"
)

CHAPTER = "batchnorm"
LIMITS = sandbox.Limits(wall_seconds=40, cpu_seconds=30, cell_seconds=10, call_seconds=10,
                        memory_bytes=2 * 2**30)

FORWARD_ANSWER = "batchnorm_batchnorm_forward_answer"
BACKWARD_ANSWER = "batchnorm_batchnorm_backward_answer"
IDENTITY_ANSWER = "batchnorm_identity_affine_answer"
TORCH_2D, TORCH_4D = "batchnorm_batchnorm_forward_torch_2d", "batchnorm_batchnorm_forward_torch_4d"
STANDARDIZES, CACHE = "batchnorm_batchnorm_forward_standardizes", "batchnorm_batchnorm_forward_cache"
FORWARD = frozenset({TORCH_2D, TORCH_4D, STANDARDIZES, CACHE})  # 35 points
BACKWARD = frozenset({  # 30 points
    "batchnorm_batchnorm_backward_finite_difference", "batchnorm_batchnorm_backward_autograd",
    "batchnorm_batchnorm_backward_param_grads", "batchnorm_batchnorm_backward_dx_sums_to_zero",
})
IDENTITY_2D, IDENTITY_4D = "batchnorm_identity_affine_recovers_input_2d", "batchnorm_identity_affine_recovers_input_4d"
IDENTITY_3D = "batchnorm_identity_affine_recovers_input_3d"
IDENTITY = frozenset({IDENTITY_2D, IDENTITY_4D, IDENTITY_3D})  # 15 points
EVERY_TEST = FORWARD | BACKWARD | IDENTITY
NONE: frozenset[str] = frozenset()
BUG = bugs.load(CHAPTER).BUGS["unbiased_variance"]

# --- what hostile students write ---------------------------------------------------------------

ENDLESS = "while True:\n    pass\n"
ENDLESS_IGNORING_SIGINT = "import signal\n\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n" + ENDLESS
ENDLESS_IGNORING_SIGALRM = "import signal\n\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n" + ENDLESS
ENDLESS_SWALLOWING = """\
while True:
    try:
        while True:
            pass
    except BaseException:
        pass
"""
# Hangs only on the input of one visible test (shape (10, 4)), so one call meets the limit.
HANGING_IDENTITY = """

_identity_affine = identity_affine


def identity_affine(x, eps=1e-5):
    if np.shape(x) == (10, 4):
        while True:
            pass
    return _identity_affine(x, eps)
"""
SYS_EXIT = "import sys\n\nsys.exit(0)\n"
OS_EXIT = "import os\n\nos._exit(0)\n"
HUGE_ARRAY = "huge = np.ones((2**40,))  # 8 TiB\n"
HUGE_ARRAY_FORWARD = """

_batchnorm_forward = batchnorm_forward


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    scratch = np.ones((2**40,))
    return _batchnorm_forward(x, gamma, beta, eps)
"""
HOARDING_BACKWARD = """

def batchnorm_backward(dout, cache):
    hoard = []
    while True:
        hoard.append(bytes(2**26))
"""
FORK_BOMB = "import os\n\nwhile True:\n    os.fork()\n"
MANY_LINES = "for i in range(3_000_000):\n    print(i)\n"
LONG_LINE = 'print("x" * 100_000_000)\n'
# Wrong on purpose: zeros of the right shape and a cache with the documented keys.
WRONG_FORWARD = """

def batchnorm_forward(x, gamma, beta, eps=1e-5):
    c = x.shape[1]
    shape = (1, c) + (1,) * (x.ndim - 2)
    cache = {"xhat": np.zeros_like(x), "gamma": gamma, "inv_std": np.ones(shape), "m": x.size // c,
             "mean": np.zeros(c), "var": np.ones(c)}
    return np.zeros_like(x), cache
"""
PATCH_ASSERT_ALLCLOSE = "\nnp.testing.assert_allclose = lambda *args, **kwargs: None\n"
PATCH_ALLCLOSE = "\nnp.allclose = lambda *args, **kwargs: True\n"
PATCH_CHECK = "\ncheck = lambda *args, **kwargs: None\n"
PATCH_JUDGE = """
import coursechecks.core


def _always_passed(check, *args, **kwargs):
    return coursechecks.core.Result(check.grade_id, True, float(check.points), "passed")


coursechecks.core.judge = _always_passed
coursechecks.core.run_check = _always_passed
"""
BLANK_EVERY_CELL = "\nget_ipython().input_transformers_post.append(lambda lines: [])\n"
ALWAYS_EQUAL_FORWARD = """

class Anything:
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False


class NoArray(Anything):
    def __array__(self, *args, **kwargs):
        raise TypeError("no array here")


class ObjectArray(Anything):
    def __array__(self, *args, **kwargs):
        return np.array([Anything(), Anything()], dtype=object)


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    return NoArray(), {"xhat": NoArray(), "mean": NoArray(), "var": NoArray()}
"""
ALWAYS_EQUAL_IDENTITY = """

def identity_affine(x, eps=1e-5):
    return ObjectArray(), ObjectArray()
"""
NETWORK = """\
import socket

try:
    socket.create_connection(("1.1.1.1", 53), timeout=2).close()
    print("connected")
except OSError as error:
    print("no network:", type(error).__name__, error)
try:
    socket.getaddrinfo("pypi.org", 443)
    print("resolved")
except OSError as error:
    print("no name resolution:", type(error).__name__)
"""
NOISY_FORWARD = """

import sys
import warnings

_quiet_forward = batchnorm_forward


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    warnings.warn("batchnorm_forward: a harmless warning", RuntimeWarning)
    print("batchnorm_forward called on", np.shape(x), file=sys.stderr)
    return _quiet_forward(x, gamma, beta, eps)


warnings.warn("the forward answer cell ran")
print("a message on stderr from the answer cell", file=sys.stderr)
"""


def probe_cell(action: str, paths: list[str], attempt: str) -> str:
    """A cell that tries ``attempt`` (code using ``path``) on every path and prints
    "<action> done: PATH" or "<action> refused: PATH ERROR" for each."""
    return (f"for path in {paths!r}:\n"
            f"    try:\n{textwrap.indent(attempt.strip(), ' ' * 8)}\n"
            f"        print({action + ' done:'!r}, path)\n"
            f"    except Exception as error:\n"
            f"        print({action + ' refused:'!r}, path, type(error).__name__)\n")


READ = 'with open(path, "rb") as handle:\n    print(handle.read().decode("utf-8", "replace"))'
OVERWRITE = 'with open(path, "w") as handle:\n    handle.write("{}")'
OVERWRITE_BYTES = 'with open(path, "r+b") as handle:\n    handle.write(b"{}")'
APPEND_ALWAYS_PASSING_JUDGE = r'''with open(path, "a") as handle:
    handle.write("\ndef judge(check, *args, **kwargs):\n    return Result(check.grade_id, True, check.points, 'passed')\n")'''
SQL_UPDATE = (
    'import sqlite3\n'
    'db = sqlite3.connect(f"file:{path}?mode=rw", uri=True)\n'
    'db.execute("UPDATE grade SET auto_score = 0, manual_score = 0")\n'
    'db.commit()'
)
IMPORT_SOLUTIONS = "import solutions.batchnorm\nprint(solutions.batchnorm.__file__)\n"


# --- building the class ------------------------------------------------------------------------

@dataclass
class Class:
    """The course being graded and what a builder may aim at."""

    course_dir: Path
    submissions: Path
    reference: dict  # the release notebook with the reference answers, as a student submits it

    def notebook(self, **appended: str) -> dict:
        """The reference submission with code appended to answer cells (by grade_id)."""
        nb = copy.deepcopy(self.reference)
        for cell in nb["cells"]:
            grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
            if grade_id in appended:
                cell["source"] = _text(cell["source"]) + appended[grade_id]
        return nb

    def with_free_cell(self, code: str, **appended: str) -> dict:
        """The reference (plus ``appended``) with a new code cell right after the setup cell."""
        nb = self.notebook(**appended)
        setup = _index(nb, "batchnorm_setup")
        nb["cells"].insert(setup + 1, {"cell_type": "code", "execution_count": None, "id": "mine",
                                       "metadata": {}, "outputs": [], "source": code})
        return nb

    def submitted(self, student: str) -> Path:
        return self.submissions / student / f"{CHAPTER}.ipynb"

    def copied(self, student: str) -> Path:
        return self.course_dir / "submitted" / student / CHAPTER / f"{CHAPTER}.ipynb"

    def autograded(self, student: str) -> Path:
        return self.course_dir / "autograded" / student / CHAPTER / f"{CHAPTER}.ipynb"


def _edit_test_cell(c: Class, edit: Callable[[dict], None], grade_id: str = TORCH_4D) -> dict:
    nb = c.notebook()
    edit(nb["cells"][_index(nb, grade_id)])
    return nb


def _deleted(c: Class, nb: dict | None = None) -> dict:
    nb = nb or c.notebook()
    del nb["cells"][_index(nb, TORCH_2D)]
    return nb


def _duplicated(c: Class) -> dict:
    nb = c.notebook()
    at = _index(nb, TORCH_4D)
    nb["cells"].insert(at + 1, {**copy.deepcopy(nb["cells"][at]), "id": "copy"})
    return nb


def _metadata_edited(cell: dict) -> None:
    cell["metadata"]["nbgrader"].update(schema_version=99, points=500)


def _replaced_by_pass(cell: dict) -> None:
    cell["source"] = "pass"


def _turned_markdown(cell: dict) -> None:
    cell["cell_type"] = "markdown"
    for key in ("outputs", "execution_count"):
        cell.pop(key, None)


def _format_3(c: Class) -> bytes:
    nb = nbformat.reads(json.dumps(c.reference), as_version=4)
    return nbformat.writes(nbformat.convert(nb, 3), version=3).encode()


def _other_kernel(c: Class) -> dict:
    nb = c.notebook()
    nb["metadata"]["kernelspec"] = {"name": "no-such-kernel", "display_name": "Julia 1.10", "language": "julia"}
    return nb


def _not_utf8(c: Class) -> bytes:
    data = json.dumps(c.reference).encode()
    at = data.index(b"Provided helpers")
    return data[:at] + b"\xff\xfe" + data[at:]


def _huge(c: Class) -> Callable[[Path], None]:
    """A valid notebook of 300 MB: one output holds a huge string, written in chunks."""

    def write(path: Path) -> None:
        nb = c.notebook()
        nb["cells"][_index(nb, "batchnorm_setup")]["outputs"] = [
            {"output_type": "stream", "name": "stdout", "text": "@BIG@"}]
        head, tail = json.dumps(nb).encode().split(b"@BIG@")
        chunk = b"x" * 2**20
        with open(path, "wb") as handle:
            handle.write(head)
            for _ in range(300):
                handle.write(chunk)
            handle.write(tail)

    return write


def _torch_first(c: Class) -> dict:
    nb = c.notebook()
    cell = nb["cells"][_index(nb, IDENTITY_ANSWER)]
    cell["source"] = "import torch\n\n" + _text(cell["source"])
    return nb


def _read_hidden(c: Class) -> dict:
    source = f"{CHAPTER}/{CHAPTER}.ipynb"
    paths = [f"source/{source}", f"../source/{source}", f"../../source/{source}", f"../../../source/{source}",
             str(c.course_dir / "source" / source), str(course.REPO / "exercises" / "source" / source),
             str(course.REPO / "solutions" / f"{CHAPTER}.py"), str(c.course_dir / "gradebook.db")]
    return c.with_free_cell(probe_cell("read", paths, READ) + probe_cell("import", ["solutions"], IMPORT_SOLUTIONS))


def _write_gradebook(c: Class) -> dict:
    paths = [str(c.course_dir / "gradebook.db"), "gradebook.db", "../gradebook.db"]
    return c.with_free_cell(probe_cell("write", paths, OVERWRITE_BYTES)
                            + probe_cell("update", paths, SQL_UPDATE))


def _rewrite_helper(c: Class) -> dict:
    paths = ["coursechecks/core.py", "/job/work/coursechecks/core.py",
             str(c.course_dir / "release" / CHAPTER / "coursechecks" / "core.py")]
    return c.with_free_cell(probe_cell("rewrite", paths, APPEND_ALWAYS_PASSING_JUDGE), **{FORWARD_ANSWER: WRONG_FORWARD})


def _overwrite_other(c: Class) -> dict:
    paths = [str(c.copied("honest1")), str(c.submitted("honest1")), str(c.autograded("honest1")),
             f"../honest1/{CHAPTER}.ipynb", f"../../submitted/honest1/{CHAPTER}/{CHAPTER}.ipynb"]
    return c.with_free_cell(probe_cell("overwrite", paths, OVERWRITE))


@dataclass(frozen=True)
class Case:
    build: Callable[[Class], Submission]
    status: str | tuple[str, ...]
    says: str  # a phrase of the record's message or of one of its notes
    zero: frozenset[str] = NONE  # test cells that must score 0
    exact: bool = True  # every other test cell has full points (else: at most)


CASES: dict[str, Case] = {
    "honest1": Case(lambda c: c.notebook(), GRADED, "Graded."),
    "honest2": Case(lambda c: c.notebook(**{BUG["answer_cell"]: "\n" + BUG["source"]}), GRADED, "Graded.",
                    frozenset(BUG["fails"])),
    # Endless loops. The runner stops a cell after cell_seconds by SIGALRM and goes on, so the
    # answers below the loop still count; code that defeats the alarm meets the CPU or wall limit.
    "loop_cell": Case(lambda c: c.with_free_cell(ENDLESS), TIMED_OUT, "ran longer than the limit"),
    "loop_ignoring_sigint": Case(lambda c: c.with_free_cell(ENDLESS_IGNORING_SIGINT), TIMED_OUT,
                                 "ran longer than the limit"),
    "loop_ignoring_sigalrm": Case(lambda c: c.with_free_cell(ENDLESS_IGNORING_SIGALRM), TIMED_OUT,
                                  "while running cell 2", EVERY_TEST),
    "loop_swallowing_limits": Case(lambda c: c.with_free_cell(ENDLESS_SWALLOWING), TIMED_OUT,
                                   "while running cell 2", EVERY_TEST),
    "loop_in_function": Case(lambda c: c.notebook(**{IDENTITY_ANSWER: HANGING_IDENTITY}), TIMED_OUT,
                             "ran longer than the limit", frozenset({IDENTITY_2D})),
    # Leaving the process.
    "sys_exit": Case(lambda c: c.with_free_cell(SYS_EXIT), GRADED, "Graded."),
    "os_exit": Case(lambda c: c.with_free_cell(OS_EXIT), KERNEL_DIED, "os._exit", EVERY_TEST),
    # Resources.
    "memory_array": Case(lambda c: c.with_free_cell(HUGE_ARRAY, **{FORWARD_ANSWER: HUGE_ARRAY_FORWARD}), GRADED,
                         "ran out of memory", FORWARD),
    # The hoard of a failed call is freed, but the gradient-check cell's MemoryError traceback keeps
    # one alive (IPython keeps the last error), so later cells may run short of memory: at most.
    "memory_list": Case(lambda c: c.notebook(**{BACKWARD_ANSWER: HOARDING_BACKWARD}), (GRADED, KERNEL_DIED),
                        "ran out of memory", BACKWARD, exact=False),
    # At the process limit the bomb's forks fail; its children leave at the end of the cell.
    "fork_bomb": Case(lambda c: c.with_free_cell(FORK_BOMB), GRADED, "Graded."),
    "many_lines": Case(lambda c: c.with_free_cell(MANY_LINES), GRADED, "Graded."),
    "long_line": Case(lambda c: c.with_free_cell(LONG_LINE), GRADED, "Graded."),
    # Files that are not notebooks to grade.
    "huge_notebook": Case(_huge, TOO_LARGE, "the limit is 20 MB", EVERY_TEST),
    "malformed_json": Case(lambda c: json.dumps(c.reference).encode()[:5000], INVALID, "not valid JSON", EVERY_TEST),
    "empty_file": Case(lambda c: b"", INVALID, "empty", EVERY_TEST),
    "not_utf8": Case(_not_utf8, INVALID, "not UTF-8", EVERY_TEST),
    "format_3": Case(_format_3, GRADED, "format version 3"),
    "other_kernel": Case(_other_kernel, GRADED, "Graded."),
    # Tampered test cells are restored from the release.
    "test_deleted": Case(_deleted, GRADED, f"{TORCH_2D} was missing; it was restored"),
    "test_duplicated": Case(_duplicated, GRADED, f"{TORCH_4D} appeared more than once"),
    "test_metadata_edited": Case(lambda c: _edit_test_cell(c, _metadata_edited), GRADED,
                                 f"{TORCH_4D} had been changed"),
    "test_replaced_by_pass": Case(lambda c: _edit_test_cell(c, _replaced_by_pass), GRADED,
                                  f"{TORCH_4D} had been changed"),
    "test_turned_markdown": Case(lambda c: _edit_test_cell(c, _turned_markdown), GRADED,
                                 f"{TORCH_4D} had been turned into a markdown cell"),
    "wrong_and_test_deleted": Case(
        lambda c: _deleted(c, c.notebook(**{BUG["answer_cell"]: "\n" + BUG["source"]})), GRADED,
        f"{TORCH_2D} was missing", frozenset(BUG["fails"])),
    # Disarming the checks in the notebook, next to a wrong answer.
    "patched_assert_allclose": Case(lambda c: c.notebook(**{FORWARD_ANSWER: WRONG_FORWARD + PATCH_ASSERT_ALLCLOSE}),
                                    GRADED, "Graded.", FORWARD),
    "patched_allclose": Case(lambda c: c.notebook(**{FORWARD_ANSWER: WRONG_FORWARD + PATCH_ALLCLOSE}),
                             GRADED, "Graded.", FORWARD),
    "patched_check": Case(lambda c: c.notebook(**{FORWARD_ANSWER: WRONG_FORWARD + PATCH_CHECK}),
                          GRADED, "Graded.", FORWARD),
    "patched_judge": Case(lambda c: c.notebook(**{FORWARD_ANSWER: WRONG_FORWARD + PATCH_JUDGE}),
                          GRADED, "Graded.", FORWARD),
    # Every later cell runs blank, the later answers too: nothing after the wrong forward pass exists.
    "blanking_transformer": Case(lambda c: c.notebook(**{FORWARD_ANSWER: WRONG_FORWARD + BLANK_EVERY_CELL}),
                                 GRADED, "Graded.", EVERY_TEST),
    "always_equal": Case(lambda c: c.notebook(**{FORWARD_ANSWER: ALWAYS_EQUAL_FORWARD,
                                                 IDENTITY_ANSWER: ALWAYS_EQUAL_IDENTITY}),
                         GRADED, "Graded.", FORWARD | IDENTITY),
    # Reaching out of the sandbox.
    "read_hidden": Case(_read_hidden, GRADED, "Graded."),
    "write_gradebook": Case(_write_gradebook, GRADED, "Graded."),
    "rewrite_helper": Case(_rewrite_helper, GRADED, "Graded.", FORWARD),
    "overwrite_other": Case(_overwrite_other, GRADED, "Graded."),
    "network": Case(lambda c: c.with_free_cell(NETWORK), GRADED, "Graded."),
    # Harmless noise and a forbidden import.
    "stderr_noise": Case(lambda c: c.notebook(**{FORWARD_ANSWER: NOISY_FORWARD}), GRADED, "Graded."),
    "import_torch": Case(_torch_first, GRADED, "Graded.", IDENTITY),
}
HONEST = ("honest1", "honest2")


def make_class(root: Path, students: list[str]) -> Class:
    """A course with only the batchnorm chapter, and the submissions of ``students``."""
    course_dir = root / "course"
    reference = new_course(course_dir, CHAPTER)
    the_class = Class(course_dir, root / "submissions", reference)
    for student in students:
        write_submission(the_class.submitted(student), CASES[student].build(the_class))
    return the_class


@dataclass
class Graded:
    the_class: Class
    summary: grade.Summary
    records: dict[str, records.SubmissionRecord]
    scores: dict[str, dict[str, course.CellScore]]
    before: dict[str, str]
    after: dict[str, str]

    def notebook(self, student: str) -> nbformat.NotebookNode:
        return course.read(self.the_class.autograded(student))

    def cell(self, student: str, grade_id: str | None = None) -> nbformat.NotebookNode:
        """An autograded cell: the graded cell ``grade_id``, or the student's own cell right
        after the setup cell."""
        cells = self.notebook(student).cells
        if grade_id is None:
            cell = cells[_index(self.the_class.reference, "batchnorm_setup") + 1]
            assert "nbgrader" not in cell.metadata
            return cell
        [cell] = [c for c in cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
        return cell

    def shown(self, student: str, grade_id: str | None = None) -> str:
        """Everything that cell shows, as one text."""
        return "\n".join(output_text(o) for o in self.cell(student, grade_id).outputs)


def protected(the_class: Class) -> list[Path]:
    """Files no submission may change: the course's own and the honest students' notebooks."""
    return [the_class.course_dir / "source", the_class.course_dir / "release",
            the_class.course_dir / "nbgrader_config.py", *(the_class.submitted(s) for s in HONEST)]


def grade_class(root: Path, students: list[str], cluster: str | None = None) -> Graded:
    the_class = make_class(root, students)
    before = fingerprints(protected(the_class))
    summary = grade.grade(the_class.submissions,
                          grade.Options(the_class.course_dir, jobs=2, limits=LIMITS, cluster=cluster))
    with RecordStore(default_url(the_class.course_dir)) as store:
        found = {r.student: r for r in store.records(CHAPTER)}
    after = fingerprints(protected(the_class))
    return Graded(the_class, summary, found, course.scores(the_class.course_dir, CHAPTER), before, after)


@pytest.fixture(scope="module", params=["local", "dask"])
def graded(request, tmp_path_factory) -> Graded:
    """The class graded by the local pool, and again through a Dask cluster (a scheduler
    and two workers on 127.0.0.1): the same sandbox, the same verdicts."""
    cluster = request.getfixturevalue("dask_cluster").address if request.param == "dask" else None
    return grade_class(tmp_path_factory.mktemp(f"hostile-{request.param}"), list(CASES), cluster)


# --- the whole class -----------------------------------------------------------------------------


def test_every_submission_was_recorded_and_nothing_skipped(graded):
    assert sorted(graded.records) == sorted(CASES)
    assert graded.summary.skipped == [] and graded.summary.unchanged == []
    assert len(graded.summary.graded) + len(graded.summary.failed) == len(CASES)


def test_course_files_and_honest_notebooks_are_byte_identical(graded):
    assert graded.after == graded.before
    assert len(graded.before) >= 6  # the fingerprint covered real files
    for student in HONEST:  # nbgrader's copy is the student's file, unchanged
        assert graded.the_class.copied(student).read_bytes() == graded.the_class.submitted(student).read_bytes()


def test_honest_students_get_exactly_their_points_in_record_and_gradebook(graded):
    honest1, honest2 = graded.records["honest1"], graded.records["honest2"]
    assert (honest1.status, honest1.auto_score, honest1.auto_max) == (GRADED, 80, 80)
    assert course.autograded_total(graded.scores["honest1"]) == (80, 80)
    lost = sum(c.points for c in honest2.cells if c.cell in BUG["fails"])
    assert lost == 35 and honest2.auto_score == 80 - lost
    assert course.autograded_total(graded.scores["honest2"]) == (80 - lost, 80)
    assert course.lost_cells(graded.scores["honest2"]) == BUG["fails"]


def test_gradebook_agrees_with_every_record(graded):
    for student, record in graded.records.items():
        if record.status in (INVALID, TOO_LARGE):
            assert student not in graded.scores
        else:
            assert course.autograded_total(graded.scores[student]) == (record.auto_score, 80), student


# --- one case at a time --------------------------------------------------------------------------


@pytest.mark.parametrize("student", list(CASES))
def test_status_message_and_points(graded, student):
    case, record = CASES[student], graded.records[student]
    statuses = case.status if isinstance(case.status, tuple) else (case.status,)
    assert record.status in statuses, record.message
    assert case.says in record.message + "\n" + "\n".join(record.notes)
    if record.status in (INVALID, TOO_LARGE):
        assert record.cells == [] and record.auto_score == 0
        return
    awarded = {c.cell: c.awarded for c in record.cells}
    assert set(awarded) == EVERY_TEST and record.auto_max == 80
    assert {cell for cell in case.zero if awarded[cell] != 0} == set(), record.cells
    if case.exact:
        assert {c.cell for c in record.cells if c.awarded != c.points} == case.zero, record.cells


def test_endless_cell_is_stopped_and_the_answers_after_it_still_count(graded):
    for student in ("loop_cell", "loop_ignoring_sigint"):
        assert "TimeLimit: cell 2 ran longer than 10 s and was stopped" in graded.shown(student)
        assert graded.records[student].auto_score == 80


def test_hang_inside_a_tested_function_costs_that_test_only(graded):
    [verdict] = [v for v in graded.records["loop_in_function"].checks if v.check == IDENTITY_2D]
    assert not verdict.passed and "identity_affine ran longer than 10 s" in verdict.message


def test_sys_exit_is_an_error_in_its_cell(graded):
    assert "SystemExit" in graded.shown("sys_exit")


def test_memory_bombs_fail_with_memory_errors(graded):
    assert "MemoryError" in graded.shown("memory_array")
    for student, function, cells in (("memory_array", "batchnorm_forward", FORWARD),
                                     ("memory_list", "batchnorm_backward", BACKWARD)):
        messages = [plain(v.message) for v in graded.records[student].checks if v.cell in cells]
        assert all(m.startswith(f"{function}: raised MemoryError") for m in messages), messages


def test_fork_bomb_meets_the_process_limit(graded):
    assert "BlockingIOError: [Errno 11]" in graded.shown("fork_bomb")


def test_output_floods_are_truncated(graded):
    for student in ("many_lines", "long_line"):
        assert graded.the_class.autograded(student).stat().st_size < 5 * 2**20
        shown = graded.shown(student)
        assert len(shown) <= LIMITS.cell_output_bytes + 200 and "[output truncated:" in shown


def test_oversized_notebook_is_refused_unread(graded):
    record = graded.records["huge_notebook"]
    assert "The notebook is 300.0 MB" in record.message
    assert not (graded.the_class.course_dir / "submitted" / "huge_notebook").exists()
    assert not graded.the_class.autograded("huge_notebook").exists()


@pytest.mark.parametrize("student", ["test_deleted", "test_duplicated", "test_metadata_edited",
                                     "test_replaced_by_pass", "test_turned_markdown"])
def test_tampered_test_cells_are_restored_from_the_release(graded, student):
    def test_cells(nb):
        return [(c.cell_type, c.source, c.metadata["nbgrader"]) for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"]["solution"]]

    release = course.read(graded.the_class.course_dir / "release" / CHAPTER / f"{CHAPTER}.ipynb")
    assert test_cells(graded.notebook(student)) == test_cells(release)


def test_objects_equal_to_anything_are_not_arrays(graded):
    record = graded.records["always_equal"]
    messages = [v.message for v in record.checks if not v.passed]
    assert any("out could not be read as an array (TypeError: no array here)" in m for m in messages)
    assert any("gamma must be a floating-point array, got ObjectArray with dtype object" in m for m in messages)


def test_blanked_cells_define_nothing(graded):
    messages = {plain(v.message) for v in graded.records["blanking_transformer"].checks
                if v.cell in BACKWARD | IDENTITY}
    assert messages == {"batchnorm_backward: batchnorm_backward is not defined",
                        "identity_affine: identity_affine is not defined"}


def test_hidden_tests_and_solutions_are_out_of_reach(graded):
    shown = graded.shown("read_hidden")
    assert "read done" not in shown and "import done" not in shown
    assert shown.count("read refused:") == 8 and "import refused: solutions ModuleNotFoundError" in shown
    text = graded.the_class.autograded("read_hidden").read_text()
    assert "seed=30" not in text and "HIDDEN TESTS" not in text


def test_gradebook_is_out_of_reach(graded):
    shown = graded.shown("write_gradebook")
    assert "done" not in shown
    assert shown.count("write refused:") == 3 and shown.count("update refused:") == 3


def test_shared_helper_is_read_only(graded):
    shown = graded.shown("rewrite_helper")
    assert "done" not in shown and shown.count("rewrite refused:") == 3
    # The helper is there to import, but not to write (PermissionError as another uid, else EROFS).
    assert re.search(r"rewrite refused: coursechecks/core.py (PermissionError|OSError)\n", shown), shown


def test_other_students_are_out_of_reach(graded):
    shown = graded.shown("overwrite_other")
    assert "done" not in shown and shown.count("overwrite refused:") == 5
    assert graded.records["honest1"].auto_score == 80


def test_no_network_in_the_sandbox(graded):
    shown = graded.shown("network")
    assert "no network:" in shown and "connected" not in shown and "resolved" not in shown


def test_stderr_of_correct_code_costs_nothing_and_stays_in_its_cell(graded):
    assert "a message on stderr from the answer cell" in graded.shown("stderr_noise", FORWARD_ANSWER)
    for grade_id in EVERY_TEST:
        assert all(o.get("name") != "stderr" for o in graded.cell("stderr_noise", grade_id).outputs), grade_id


def test_torch_is_not_importable_in_a_numpy_chapter(graded):
    shown = graded.shown("import_torch", IDENTITY_ANSWER)
    assert "torch is not available while grading this chapter: its exercises are written in numpy" in shown
    messages = {plain(v.message) for v in graded.records["import_torch"].checks if v.cell in IDENTITY}
    assert messages == {"identity_affine: identity_affine is not defined"}


# --- no sandbox, no grading ----------------------------------------------------------------------


def test_grader_refuses_to_run_without_bubblewrap(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "_PROBE", {})
    real_which = shutil.which
    monkeypatch.setattr(sandbox.shutil, "which", lambda name, *a, **k: None if name == "bwrap" else real_which(name))
    with pytest.raises(sandbox.SandboxUnavailable) as refused:
        grade.Grader(grade.Options(tmp_path, sandboxed=True))
    assert "bubblewrap" in str(refused.value) and "--unsafe-no-sandbox" in str(refused.value)
