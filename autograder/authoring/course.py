"""A throwaway nbgrader course directory: generate, submit, autograde, read the scores.

Used by the release step (which must prove that the reference solution scores full marks
before it publishes anything) and by the end-to-end tests. nbgrader runs as a subprocess
(``python -m nbgrader``) with the course's own ``nbgrader_config.py``, exactly as an
instructor would run it, and with its gradebook inside the temporary directory.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder.authoring import notebooks
from autograder.tools import tools_on_path as _tools_on_path

REPO = Path(__file__).resolve().parents[2]
EXERCISES = REPO / "exercises"
COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")


class NbgraderError(RuntimeError):
    """nbgrader exited with an error; the message carries its output."""


def run_nbgrader(course_dir: Path, *args: str, timeout: float = 600) -> str:
    """Run ``nbgrader ARGS`` in ``course_dir``; return its combined output."""
    with _tools_on_path():
        proc = subprocess.run(
            [sys.executable, "-m", "nbgrader", *args],
            cwd=course_dir, capture_output=True, text=True, timeout=timeout,
        )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise NbgraderError(f"nbgrader {' '.join(args)} failed (exit {proc.returncode}):\n{output}")
    return output


def new_course(root: Path, chapters: list[str]) -> Path:
    """A course directory under ``root`` with the config and freshly generated sources."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXERCISES / "nbgrader_config.py", root / "nbgrader_config.py")
    for chapter in chapters:
        notebooks.write_source(notebooks.load_spec(chapter), root)
    return root


def generate(course_dir: Path, chapter: str) -> Path:
    """``nbgrader generate_assignment``; returns the released notebook's path."""
    run_nbgrader(course_dir, "generate_assignment", chapter, "--force")
    return Path(course_dir) / "release" / chapter / f"{chapter}.ipynb"


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def _strip_markers(source: str) -> str:
    markers = {notebooks.BEGIN_SOLUTION, notebooks.END_SOLUTION}
    return "\n".join(line for line in source.split("\n") if line.strip() not in markers)


def answers(source_nb: nbformat.NotebookNode) -> dict[str, str]:
    """The reference answers of a source notebook by grade_id (solution markers removed)."""
    return {
        cell.metadata["nbgrader"]["grade_id"]: _strip_markers(cell.source)
        for cell in source_nb.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }


def fill_answers(release_nb: nbformat.NotebookNode, filled: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of the released notebook with the given answer cells filled in, as a student would."""
    nb = nbformat.from_dict(release_nb)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in filled:
            cell.source = filled[grade_id]
    return nb


def submit(course_dir: Path, student: str, chapter: str, nb: nbformat.NotebookNode,
           extra_files: dict[str, bytes] | None = None) -> Path:
    """Place a submission where ``nbgrader autograde`` looks for it."""
    folder = Path(course_dir) / "submitted" / student / chapter
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in (extra_files or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    path = folder / f"{chapter}.ipynb"
    nbformat.write(nb, str(path))
    return path


def autograde(course_dir: Path, chapter: str, student: str | None = None, force: bool = True) -> str:
    """``nbgrader autograde`` for one student's or every submission of ``chapter``
    (without ``force``, submissions graded before are skipped)."""
    args = [f"--student={student}"] if student else []
    return run_nbgrader(course_dir, "autograde", chapter, *(["--force"] if force else []), *args)


@dataclass(frozen=True)
class CellScore:
    auto_score: float | None  # None until graded (e.g. a written answer awaiting a human)
    max_score: float
    autograded: bool  # a code test cell, as opposed to a manually graded written answer


def scores(course_dir: Path, chapter: str, url: str | None = None) -> dict[str, dict[str, CellScore]]:
    """Per student, the score of every graded cell of ``chapter`` from the gradebook
    (``gradebook.db`` in ``course_dir`` unless ``url`` names another database)."""
    from nbgrader.api import Gradebook

    url = url or f"sqlite:///{Path(course_dir) / 'gradebook.db'}"
    result: dict[str, dict[str, CellScore]] = {}
    with _tools_on_path(), Gradebook(url) as gb:
        for student in gb.students:
            try:
                sub = gb.find_submission_notebook(chapter, chapter, student.id)
            except Exception:  # noqa: BLE001 (MissingEntry: no submission for this chapter)
                continue
            result[student.id] = {
                g.name: CellScore(g.auto_score, g.max_score, g.cell.cell_type == "code") for g in sub.grades
            }
    return result


def autograded_total(cells: dict[str, CellScore]) -> tuple[float, float]:
    """(score, maximum) over the automatically graded cells."""
    auto = [c for c in cells.values() if c.autograded]
    return sum(c.auto_score or 0.0 for c in auto), sum(c.max_score for c in auto)


def lost_cells(cells: dict[str, CellScore]) -> set[str]:
    """The automatically graded cells that did not get full marks."""
    return {gid for gid, c in cells.items() if c.autograded and (c.auto_score or 0.0) < c.max_score}


def cell_errors(course_dir: Path, student: str, chapter: str) -> dict[str, str]:
    """Error messages of the graded cells that failed in an autograded notebook."""
    path = Path(course_dir) / "autograded" / student / chapter / f"{chapter}.ipynb"
    errors = {}
    for cell in read(path).cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                errors[grade_id] = f"{out.ename}: {out.evalue}"
            elif out.output_type == "stream" and out.name == "stderr":
                errors.setdefault(grade_id, f"stderr: {out.text.strip()[:300]}")
    return errors
