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

from autograder import submission  # noqa: F401 (tests patch grade.submission.prepare)
from autograder.coursedir import CourseDir
from autograder.grading.find import sha256_file  # noqa: F401
from autograder.grading.pipeline import Grader, Options, Summary, grade  # noqa: F401
from autograder.grading.prepare import ChapterRun  # noqa: F401
from autograder.store import default_url  # noqa: F401


def require_course(course_dir: Path) -> None:
    """A clear error for a course directory that is missing or has nothing released."""
    CourseDir(course_dir).require()


def text_progress(stream=sys.stderr) -> Callable[[int, int, str], None]:
    """A one-line progress bar on a terminal; on a log, a line every tenth of the way."""
    state = {"start": time.monotonic(), "last": -1}

    def show(done: int, total: int, text: str) -> None:
        if total == 0:
            return
        elapsed = time.monotonic() - state["start"]
        eta = elapsed / done * (total - done) if done else 0.0
        width = 30
        bar = "#" * (width * done // total) + "." * (width - width * done // total)
        line = f"[{bar}] {done}/{total}  {elapsed:5.0f} s elapsed, ~{eta:.0f} s left  {text}"[:160]
        if stream.isatty():
            stream.write("\r" + line.ljust(160) + ("\n" if done == total else ""))
            stream.flush()
        else:
            tenth = 10 * done // total
            if tenth != state["last"] or done == total:
                state["last"] = tenth
                stream.write(line + "\n")
                stream.flush()

    return show
