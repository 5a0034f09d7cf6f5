"""The student's self-check: ``python -m coursechecks NOTEBOOK.ipynb`` beside the notebook,
and the notebook's last cell.

It says what ``autograder check`` says, with the grader's own code: the notebook is read and
rebuilt on the released original (``coursechecks/original.ipynb``) by :mod:`.submission`;
at each test cell's place the visible checks call the student's functions through
:func:`student_outputs` (the grader's runner does the same), the outputs are decided by
:func:`verdict` (the grader's judge does the same) and :class:`Report` words the result for
both. Only the place differs: here a fresh Jupyter kernel of the student's own environment
(nbclient, with a time limit per cell), at grading time a sandbox. It is a preview for an
honest notebook, not a guard: code that patches the checks in its own kernel can fool it,
never the grader.

Shipped to students, so it needs numpy, nbformat, nbclient and ipykernel only (JupyterLab
installs the last three), never ``solutions`` or ``autograder``.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.abc
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import core

GRADED, TIMED_OUT, KERNEL_DIED = "graded", "timed out", "kernel died"  # as autograder.records
ORIGINAL = "original.ipynb"  # the released notebook, shipped in coursechecks/ as the template
SELF_CHECK_CELL = "selfcheck"  # grade_id suffix of the notebook's last cell, which runs this
CELL_SECONDS = 120.0  # one cell, as the grader's default limit
# What a student installs (the notebooks, the book's intro and the README say the same).
STUDENT_INSTALL = "pip install numpy matplotlib jupyterlab torch==2.13.0"
PACKAGE_DIR = Path(__file__).resolve().parent
_TORCH_IMPORT = re.compile(r"^\s*(import|from)\s+torch\b", re.MULTILINE)
_NOT_CHAPTERS = {"__init__", "__main__", "core", "selfcheck", "submission"}


@dataclass(frozen=True)
class Verdict:
    """One visible check's outcome (the fields of the grader's ``records.CheckVerdict``)."""

    check: str
    cell: str
    description: str
    hidden: bool
    passed: bool
    message: str


@dataclass
class Report:
    """What a student is told about a notebook, by the self-check and by ``autograder check``."""

    chapter: str
    gradable: bool
    advice: list[str] = field(default_factory=list)
    passed: list = field(default_factory=list)  # verdicts with .check, .message, .hidden
    failed: list = field(default_factory=list)
    status: str = GRADED
    message: str = ""

    @property
    def exit_code(self) -> int:
        """0: gradable and every visible test passes; 1: a visible test fails; 2: not gradable."""
        if not self.gradable:
            return 2
        return 1 if self.failed or self.status != GRADED else 0

    def text(self) -> str:
        lines = [f"Checking your {self.chapter} notebook."]
        if not self.gradable:
            lines.append("It cannot be graded as it is:")
            lines += [f"  - {a}" for a in self.advice]
            return "\n".join(lines)
        total = len(self.passed) + len(self.failed)
        lines.append(f"Visible tests: {len(self.passed)} of {total} passed."
                     + (" (Hidden tests run at grading time on other inputs.)" if total else ""))
        for verdict in self.failed:
            lines.append(f"  FAILED {verdict.check}: {verdict.message}")
        if self.status != GRADED:
            lines.append(f"The run did not complete normally ({self.status}): {self.message}")
        if self.advice:
            lines.append("Before you submit:")
            lines += [f"  - {a}" for a in self.advice]
        else:
            lines.append("The notebook is intact: it will be graded as it is.")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Shared with the grader


def untouched_answers(prepared, template: dict) -> list[str]:
    """A sentence for every answer cell of ``prepared`` (a rebuilt notebook) still as handed out."""
    stubs = {
        c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"])
        for c in template["cells"]
        if c.get("metadata", {}).get("nbgrader", {}).get("solution")
    }
    advice = []
    for cell in prepared.cells:
        if cell.grade_id in stubs and cell.source.strip() == stubs[cell.grade_id].strip():
            kind = "written answer" if cell.kind == "markdown" else "answer cell"
            advice.append(f"The {kind} {cell.grade_id} is still as it was handed out.")
    return advice


def student_outputs(check: core.Check, fn, inputs: dict) -> dict[str, np.ndarray]:
    """The student's outputs for one check as plain float64 arrays, or :class:`core.CheckFailure`."""
    raw = core.call_student(check, fn, inputs)
    return {key: core.as_float_array(value, key) for key, value in raw.items()}


def verdict(check: core.Check, got, inputs: dict, expected, status: str) -> tuple[bool, str]:
    """(passed, message) of one check. ``got``: the outputs (a dict of arrays), a failure
    message (str) or None (nothing came back); ``expected()`` gives the expected values."""
    if isinstance(got, dict):
        result = core.judge(check, got, inputs, expected())
        return result.passed, result.message
    if isinstance(got, str):
        return False, f"{check.function}{core.input_note(check, inputs)}: {got}"
    if status == GRADED:
        return False, f"{check.function}: no valid result came back for this test"
    return False, f"{check.function}: not tested, because the notebook stopped before this test ({status})"


def template_imports_torch(template: dict) -> bool:
    """Whether the notebook's own read-only code imports PyTorch (then it is not hidden)."""
    return any(
        _TORCH_IMPORT.search("".join(cell.get("source", "")))
        for cell in template["cells"]
        if cell.get("metadata", {}).get("nbgrader", {}).get("locked") and cell["cell_type"] == "code"
    )


class BlockTorch(importlib.abc.MetaPathFinder):
    """Numpy-only chapters are graded without PyTorch (an answer may not hand the work to it)."""

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "functorch"):
            raise ImportError(f"{name} is not available while grading this chapter: its exercises are written in numpy")
        return None


def plain(value) -> bool:
    """Whether check inputs are plain data (arrays, numbers, text, containers of them), which
    the grader ships to the sandbox; other inputs (a torch model) are made there with torch."""
    if isinstance(value, np.ndarray):
        return not value.dtype.hasobject
    if value is None or isinstance(value, (bool, str, int, float, np.generic)):
        return True
    if isinstance(value, (tuple, list)):
        return all(plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    return False


# ---------------------------------------------------------------------------------------------
# The self-check


def chapter_name() -> str:
    """The chapter this copy of coursechecks was released with (its one chapter module)."""
    names = sorted(p.stem for p in PACKAGE_DIR.glob("*.py") if p.stem not in _NOT_CHAPTERS)
    if len(names) != 1:
        raise RuntimeError(f"coursechecks should hold one chapter's checks, found {names}")
    return names[0]


def visible_checks(chapter: str) -> dict[str, list[core.Check]]:
    """The visible checks of each test cell, in the chapter's order."""
    by_cell: dict[str, list[core.Check]] = {}
    for check in core.chapter_checks(chapter).values():
        if not check.hidden:
            by_cell.setdefault(check.cell_id, []).append(check)
    return by_cell


def _kernel_source(call: str) -> str:
    """A kernel cell that calls this module without leaving a name in the student's namespace."""
    return f'__import__("coursechecks.selfcheck", fromlist=["selfcheck"]).{call}'


_STATE: dict = {}


def _start(chapter: str, outdir: str, block_torch: bool) -> None:
    """Run in the kernel before the first cell of the notebook: the checks' inputs, made by
    the checking process (as the grader makes them outside the sandbox), are loaded before any
    student code runs and before PyTorch is hidden."""
    with open(Path(outdir).parent / "inputs.pickle", "rb") as handle:
        inputs = pickle.load(handle)  # written by _run, in this same check
    _STATE.update(chapter=chapter, outdir=Path(outdir), checks=visible_checks(chapter), inputs=inputs)
    if block_torch:
        sys.meta_path.insert(0, BlockTorch())


def _test_cell(cell: str, namespace: dict) -> None:
    """Run in the kernel in place of a test cell: the student's outputs for its visible checks,
    written as files for the checking process to decide."""
    for check in _STATE["checks"].get(cell, []):
        out = _STATE["outdir"] / check.grade_id
        fn = namespace.get(check.function)
        try:
            if fn is None:
                raise core.CheckFailure(f"{check.function} is not defined")
            arrays = student_outputs(check, fn, _STATE["inputs"][check.grade_id])
        except core.CheckFailure as exc:
            out.with_suffix(".txt").write_text(exc.message, encoding="utf-8")
            continue
        except MemoryError:
            out.with_suffix(".txt").write_text("ran out of memory", encoding="utf-8")
            continue
        np.savez(out.with_suffix(".npz"), **arrays)


def _run(prepared, chapter: str, inputs: dict, block_torch: bool, cell_seconds: float) -> tuple[dict, str, str]:
    """Execute the rebuilt notebook in a fresh kernel; (sent, status, message)."""
    import nbclient
    from nbclient.exceptions import DeadKernelError

    from . import submission

    nb = submission.to_notebook(prepared)
    with tempfile.TemporaryDirectory(prefix="coursechecks-") as work:
        work_dir, out = Path(work) / "run", Path(work) / "results"
        out.mkdir()
        with open(Path(work) / "inputs.pickle", "wb") as handle:
            pickle.dump(inputs, handle)
        shutil.copytree(PACKAGE_DIR, work_dir / "coursechecks", ignore=shutil.ignore_patterns("__pycache__"))
        cells = [_code_cell(_kernel_source(f"_start({chapter!r}, {str(out)!r}, {block_torch!r})"))]
        for planned, cell in zip(prepared.cells, nb.cells):
            if planned.grade_id == f"{chapter}_{SELF_CHECK_CELL}":
                continue  # the notebook's own self-check cell: not inside a self-check
            if planned.kind == "test":
                cells.append(_code_cell(_kernel_source(f"_test_cell({planned.grade_id!r}, globals())")))
            elif cell.cell_type == "code":
                cells.append(cell)
        nb.cells = cells
        client = nbclient.NotebookClient(
            nb, timeout=cell_seconds, allow_errors=True, interrupt_on_timeout=True,
            error_on_timeout={"ename": "CellTimeoutError", "evalue": "", "traceback": []},
            kernel_name="python3", resources={"metadata": {"path": str(work_dir)}},
        )
        status, message = GRADED, "Graded."
        try:
            path = os.pathsep.join(filter(None, [str(work_dir), os.environ.get("PYTHONPATH")]))
            # The kernel's own log (e.g. its warning about TCP) is not the student's concern.
            client.execute(env={**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": path}, stderr=subprocess.DEVNULL)
            if any(o.get("ename") == "CellTimeoutError" for c in nb.cells for o in c.get("outputs", [])):
                status, message = TIMED_OUT, (f"Some code ran longer than the limit (a cell {cell_seconds:g} s) "
                                              "and was stopped; the rest was checked.")
        except DeadKernelError as exc:
            status, message = KERNEL_DIED, f"The notebook's kernel died ({exc}); tests after that point score 0."
        sent: dict = {}
        for path in out.iterdir():
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    sent[path.stem] = {k: data[k] for k in data.files}
            elif path.suffix == ".txt":
                sent[path.stem] = path.read_text(encoding="utf-8")[:2000]
    return sent, status, message


def _code_cell(source: str):
    import nbformat  # with nbclient, only when a notebook is run

    return nbformat.v4.new_code_cell(source)


def check_notebook(path: Path, cell_seconds: float = CELL_SECONDS) -> Report:
    """Check ``path`` against this package's chapter as ``autograder check`` would."""
    from . import submission

    chapter = chapter_name()
    template_path = PACKAGE_DIR / ORIGINAL
    try:
        prepared = submission.prepare(Path(path), template_path, chapter)
    except submission.Rejected as exc:
        return Report(chapter, False, [exc.message])
    template = json.loads(template_path.read_text(encoding="utf-8"))
    report = Report(chapter, True, list(prepared.notes) + untouched_answers(prepared, template))
    checks = visible_checks(chapter)
    inputs = {c.grade_id: core.make_inputs(c, c.seed) for cs in checks.values() for c in cs}
    block_torch = all(plain(v) for v in inputs.values()) and not template_imports_torch(template)
    sent, report.status, report.message = _run(prepared, chapter, inputs, block_torch, cell_seconds)
    for cell, group in checks.items():
        for check in group:
            passed, text = verdict(check, sent.get(check.grade_id), inputs[check.grade_id],
                                   lambda c=check: core.expected_values(c, inputs[c.grade_id]), report.status)
            (report.passed if passed else report.failed).append(
                Verdict(check.grade_id, cell, check.description, check.hidden, passed, text))
    return report


def in_notebook(notebook: str) -> None:
    """What the notebook's last cell runs: the self-check of the saved notebook, in JupyterLab.

    It runs only where JupyterLab (jupyter_server) started the kernel, which names the open
    notebook; anywhere else (the grader, a plain script) it only says how to run it, so it
    costs nothing at grading time.
    """
    session = os.environ.get("JPY_SESSION_NAME", "")
    if not session:
        print(f"To check this notebook, save it and run in a terminal beside it: python -m coursechecks {notebook}")
        return
    path = Path(session)
    if not path.is_file():
        path = Path(path.name) if Path(path.name).is_file() else Path(notebook)
    print(f"Checking the saved file {path.name} (save the notebook first: File > Save Notebook) ...", flush=True)
    print(check_notebook(path).text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m coursechecks",
        description="Check an exercise notebook before you submit it: the visible tests, and anything "
                    "in the file that would cost points at grading time.")
    parser.add_argument("notebook", type=Path, help="the notebook file, e.g. batchnorm.ipynb")
    parser.add_argument("--cell-seconds", type=float, default=CELL_SECONDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.notebook.exists():
        print(f"error: {args.notebook} does not exist", file=sys.stderr)
        return 2
    try:
        report = check_notebook(args.notebook, args.cell_seconds)
    except ImportError as exc:  # nbclient or ipykernel missing: not the notebook's fault
        print(f"error: {exc}. Install the tools first: {STUDENT_INSTALL}", file=sys.stderr)
        return 2
    print(report.text())
    return report.exit_code
