"""How long the cells of each chapter's reference notebook take under plain ``nbgrader autograde``:
the number ``exercises/nbgrader_config.py`` sets its per-cell execution timeout from.

Each chapter's source notebook (reference answers, visible and hidden tests) runs top to bottom
through nbgrader's own ``Execute`` preprocessor, without a timeout, in a copy of its folder (so
``coursechecks/`` is beside it, as for a student's submission). nbclient records when each cell
started and replied; the slowest cell is what a per-cell timeout must cover. Prints one line per
chapter and the machine's load average, which says how busy the machine was.

    python benchmarks/autograde_timeout.py [CHAPTER...]
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "exercises" / "source"


def _seconds(cell) -> float:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def measure(chapter: str) -> tuple[float, float, str]:
    """(slowest cell's seconds, whole notebook's wall seconds, the slowest cell's grade_id or index)."""
    from nbgrader.preprocessors import Execute

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / chapter
        shutil.copytree(SOURCE / chapter, folder)
        nb = nbformat.read(str(folder / f"{chapter}.ipynb"), as_version=4)
        start = time.perf_counter()
        Execute(timeout=None).preprocess(nb, {"metadata": {"path": str(folder)}})
        wall = time.perf_counter() - start
    times = [(_seconds(c), c.metadata.get("nbgrader", {}).get("grade_id", f"cell {i}"))
             for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    slowest, name = max(times)
    return slowest, wall, name


def main(chapters: list[str]) -> None:
    chapters = chapters or sorted(p.name for p in SOURCE.iterdir() if p.is_dir())
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    worst = 0.0
    for chapter in chapters:
        slowest, wall, name = measure(chapter)
        worst = max(worst, slowest)
        print(f"{chapter:15s} notebook {wall:6.1f} s   slowest cell {slowest:6.1f} s ({name})", flush=True)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"slowest cell of all: {worst:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
