"""``autograder grade``: the public entry point of the grading pipeline.

The stages live in :mod:`autograder.grading` (see :mod:`autograder.grading.pipeline`); this
module names what callers use: :func:`grade`, :class:`Options`, :class:`Summary`, the
chapter plan :class:`ChapterRun`, and a plain-text progress bar.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

from autograder import submission  # tests patch grade.submission.prepare
from autograder.coursedir import CourseDir
from autograder.grading.find import sha256_file  # noqa: F401
from autograder.grading.pipeline import Grader, Options, Summary, grade  # noqa: F401
from autograder.grading.prepare import ChapterRun  # noqa: F401
from autograder.store import default_url  # noqa: F401

__all__ = ["ChapterRun", "Grader", "Options", "Summary", "default_url", "grade", "require_course",
           "sha256_file", "submission", "text_progress"]


def require_course(course_dir: Path) -> None:
    """A clear error for a course directory that is missing or has nothing released."""
    CourseDir(course_dir).require()


def text_progress(stream=sys.stderr) -> Callable[[int, int, str], None]:
    """tqdm's progress bar: redrawn in place on a terminal; on a log, one line every tenth of
    the way (tqdm's own line, so a log reads like the terminal)."""
    from tqdm import tqdm

    state: dict = {"start": time.monotonic(), "last": -1, "bar": None}

    def show(done: int, total: int, text: str) -> None:
        if total == 0:
            return
        if stream.isatty():
            if state["bar"] is None:
                state["bar"] = tqdm(total=total, file=stream, unit="nb", dynamic_ncols=True)
            bar = state["bar"]
            bar.set_postfix_str(text[:60], refresh=False)
            bar.update(done - bar.n)
            if done == total:
                bar.close()
            return
        tenth = 10 * done // total
        if tenth != state["last"] or done == total:
            state["last"] = tenth
            line = tqdm.format_meter(done, total, time.monotonic() - state["start"], ncols=100, unit="nb",
                                     ascii=True, postfix=text[:60])
            stream.write(line + "\n")
            stream.flush()

    return show
