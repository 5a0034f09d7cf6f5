"""``python -m coursechecks``: the self-check that ships in every chapter's zip says what
``autograder check`` says, in a student's environment that has neither the autograder nor
``solutions/``."""
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import pytest

import bugs
from autograder import records, submission, transport
from autograder.authoring import course, notebooks
from autograder.authoring.checks import core, selfcheck
from autograder.student_check import check_notebook

REPO = Path(__file__).resolve().parent.parent
EXERCISES = REPO / "exercises"
sys.path.insert(0, str(REPO / "book" / "_ext"))
import exercise_zips  # noqa: E402 (the book's extension, not a package)

CHAPTER = "batchnorm"
BUG = bugs.load(CHAPTER).BUGS["batch_axis_only"]
EDITED_TEST = "batchnorm_batchnorm_backward_autograd"
DELETED = "batchnorm_identity_affine_recovers_input_4d"
UNANSWERED = "batchnorm_identity_affine_answer"
PROBE = "import os, sys, json, importlib.util\n" \
        "if os.environ.get('COURSECHECKS_PROBE'):\n" \
        "    with open(os.environ['COURSECHECKS_PROBE'], 'w') as f:\n" \
        "        json.dump({'executable': sys.executable, 'autograder': importlib.util.find_spec('autograder') is None,\n" \
        "                   'solutions': importlib.util.find_spec('solutions') is None}, f)"


def test_statuses_are_the_graders():
    assert (selfcheck.GRADED, selfcheck.TIMED_OUT, selfcheck.KERNEL_DIED) == (
        records.GRADED, records.TIMED_OUT, records.KERNEL_DIED)
    assert (submission.INVALID, submission.TOO_LARGE) == (records.INVALID, records.TOO_LARGE)


@pytest.mark.parametrize("chapter", notebooks.chapters())
def test_plain_inputs_are_what_the_grader_ships(chapter):
    """The self-check hides PyTorch exactly when the grader does: both decide by whether every
    visible check's inputs are plain data."""
    for check in core.chapter_checks(chapter).values():
        value = core.make_inputs(check, check.seed)
        try:
            transport.encode(value)
            shippable = True
        except transport.Unshippable:
            shippable = False
        assert selfcheck.plain(value) == shippable, check.grade_id


def test_the_last_cell_only_explains_itself_outside_jupyterlab(monkeypatch, capsys):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    selfcheck.in_notebook("batchnorm.ipynb")
    assert capsys.readouterr().out.strip() == (
        "To check this notebook, save it and run in a terminal beside it: python -m coursechecks batchnorm.ipynb")


@pytest.mark.parametrize("chapter", notebooks.chapters())
def test_every_notebook_ends_with_the_self_check(chapter):
    nb = course.read(EXERCISES / "release" / chapter / f"{chapter}.ipynb")
    last = nb.cells[-1]
    meta = last.metadata["nbgrader"]
    assert meta["grade_id"] == f"{chapter}_{selfcheck.SELF_CHECK_CELL}"
    assert meta["locked"] and not meta["grade"] and not meta["solution"]
    assert last.source == notebooks.self_check_source(chapter)
    assert f"python -m coursechecks {chapter}.ipynb" in nb.cells[-2].source


@pytest.mark.parametrize("chapter", notebooks.chapters())
def test_the_original_ships_with_the_checks(chapter):
    folder = EXERCISES / "release" / chapter
    assert (folder / "coursechecks" / selfcheck.ORIGINAL).read_bytes() == (folder / f"{chapter}.ipynb").read_bytes()


# --- agreement with ``autograder check``, from an unpacked zip ----------------------------------


@pytest.fixture(scope="module")
def student_python(tmp_path_factory) -> Path:
    """A Python with the course's packages (numpy, torch, matplotlib, the Jupyter stack) but
    neither the autograder nor solutions: a venv whose only addition is the site-packages
    directory, without the editable install's import hook."""
    root = tmp_path_factory.mktemp("student-env")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "course-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory) -> Path:
    """The chapter's zip as the book builds it, unpacked."""
    root = tmp_path_factory.mktemp("zip")
    target = root / f"{CHAPTER}-exercise.zip"
    exercise_zips.write_zip(EXERCISES / "release" / CHAPTER, target)
    with zipfile.ZipFile(target) as zf:
        zf.extractall(root / "unpacked")
    return root / "unpacked" / CHAPTER


def _release() -> nbformat.NotebookNode:
    return course.read(EXERCISES / "release" / CHAPTER / f"{CHAPTER}.ipynb")


def _answers() -> dict[str, str]:
    return course.answers(course.read(EXERCISES / "source" / CHAPTER / f"{CHAPTER}.ipynb"))


def _reference() -> nbformat.NotebookNode:
    nb = course.fill_answers(_release(), _answers())
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    return nb


def _edited_test_cell() -> nbformat.NotebookNode:
    nb = course.fill_answers(_release(), _answers())
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == EDITED_TEST:
            cell.source = "print('all good')"
    return nb


def _deleted_cell() -> nbformat.NotebookNode:
    nb = course.fill_answers(_release(), _answers())
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != DELETED]
    return nb


def _unanswered() -> nbformat.NotebookNode:
    answers = _answers()
    del answers[UNANSWERED]
    return course.fill_answers(_release(), answers)


def _wrong_answer() -> nbformat.NotebookNode:
    answers = _answers()
    answers[BUG["answer_cell"]] += "\n" + BUG["source"]
    return course.fill_answers(_release(), answers)


CASES = {"reference": _reference, "stub": _release, "edited_test_cell": _edited_test_cell,
         "deleted_cell": _deleted_cell, "unanswered": _unanswered, "wrong_answer": _wrong_answer}


def run_self_check(python: Path, folder: Path, name: str, probe: Path | None = None):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    if probe:
        env["COURSECHECKS_PROBE"] = str(probe)
    return subprocess.run([str(python), "-m", "coursechecks", name], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("case", CASES)
def test_the_zip_self_check_says_what_autograder_check_says(case, student_python, unpacked, tmp_path):
    name = f"{CHAPTER} {case}.ipynb"
    nbformat.write(CASES[case](), str(unpacked / name))
    probe = tmp_path / "probe.json"
    got = run_self_check(student_python, unpacked, name, probe)
    expected = check_notebook(unpacked / name, EXERCISES, chapter=CHAPTER)
    assert got.stdout.strip() == expected.text(), got.stderr[-3000:]
    assert got.returncode == expected.exit_code
    if case == "reference":
        assert got.returncode == 0 and expected.passed and not expected.failed
        # The kernel ran in the student's Python, where neither package can be imported.
        seen = json.loads(probe.read_text())
        assert seen == {"executable": seen["executable"], "autograder": True, "solutions": True}
        assert Path(seen["executable"]).parent == student_python.parent
    elif case == "stub":
        assert got.returncode == 1 and not expected.passed
        assert "The answer cell batchnorm_batchnorm_forward_answer is still as it was handed out." in got.stdout
    elif case == "edited_test_cell":
        assert f"The test cell {EDITED_TEST} had been changed; it was restored from the release." in got.stdout
        assert got.returncode == 0
    elif case == "deleted_cell":
        assert f"The test cell {DELETED} was missing; it was restored from the release." in got.stdout
    elif case == "unanswered":
        assert f"The answer cell {UNANSWERED} is still as it was handed out." in got.stdout
        assert {v.check for v in expected.failed} == {
            c.grade_id for c in core.chapter_checks(CHAPTER).values()
            if c.function == "identity_affine" and not c.hidden}
    elif case == "wrong_answer":
        assert got.returncode == 1
        assert expected.failed and {v.cell for v in expected.failed} <= set(BUG["fails"])


def test_a_file_too_large_is_refused_like_the_grader_refuses_it(student_python, unpacked):
    name = "huge.ipynb"
    (unpacked / name).write_bytes(b" " * (submission.MAX_NOTEBOOK_BYTES + 1))
    got = run_self_check(student_python, unpacked, name)
    expected = check_notebook(unpacked / name, EXERCISES, chapter=CHAPTER)
    assert got.returncode == expected.exit_code == 2
    assert got.stdout.strip() == expected.text()
    assert "the limit is 20 MB" in got.stdout


def test_the_self_check_needs_nothing_of_the_repository(student_python):
    got = subprocess.run([str(student_python), "-c", "import autograder"], capture_output=True, text=True,
                         cwd="/", env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert got.returncode != 0 and "No module named 'autograder'" in got.stderr


@pytest.mark.parametrize("chapter", ["batchnorm", "network"])
def test_the_last_cell_costs_nothing_when_graded(chapter, tmp_path):
    """In the grader's sandbox the notebook's self-check cell only prints how to run it: no
    kernel, no points (it is not a graded cell), a small fraction of a second."""
    from autograder import judge, sandbox
    from autograder.grading import worker
    from autograder.grading.prepare import ChapterRun

    release = EXERCISES / "release" / chapter / f"{chapter}.ipynb"
    path = tmp_path / f"{chapter}.ipynb"
    nbformat.write(course.fill_answers(course.read(release), course.answers(
        course.read(EXERCISES / "source" / chapter / f"{chapter}.ipynb"))), str(path))
    prepared = submission.prepare(path, release, chapter)
    last = len(prepared.cells) - 1
    assert prepared.cells[last].grade_id == f"{chapter}_{selfcheck.SELF_CHECK_CELL}"
    limits = sandbox.Limits()
    run = ChapterRun(EXERCISES, chapter, None, visible_only=True)
    result = worker.run(run.job(path.name, prepared, limits, None), sandboxed=not sandbox.probe(), slot=0)
    cells = {body["index"]: body for body in (json.loads(p) for k, p in result.frames if k == "cell")}
    assert cells[last]["outputs"] == [{"output_type": "stream", "name": "stdout", "text": (
        f"To check this notebook, save it and run in a terminal beside it: python -m coursechecks {chapter}.ipynb\n")}]
    assert cells[last]["seconds"] < 0.5
    verdicts = judge.judge_run(run.plan, dict((gid, i) for i, gid in prepared.test_cells()), result, limits)
    assert verdicts.status == records.GRADED and all(v.passed for v in verdicts.checks)
    assert f"{chapter}_{selfcheck.SELF_CHECK_CELL}" not in {c.cell for c in verdicts.cells}


def test_the_last_cell_runs_the_self_check_in_jupyterlab(student_python, unpacked):
    """Where JupyterLab started the kernel (it names the notebook in JPY_SESSION_NAME), the
    last cell checks the saved notebook and prints the same report as the command line."""
    import nbclient

    name = f"{CHAPTER} in lab.ipynb"
    nbformat.write(_release(), str(unpacked / name))
    expected = run_self_check(student_python, unpacked, name)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(notebooks.self_check_source(CHAPTER))])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(unpacked)}})
    client.execute(env={**env, "JPY_SESSION_NAME": str(unpacked / name)})
    printed = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert printed.startswith(f"Checking the saved file {name} (save the notebook first")
    assert printed.strip().endswith(expected.stdout.strip())
