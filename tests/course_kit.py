"""What several test modules share: a one-chapter course, its released notebook with and
without the reference answers, the command line run in this process, writing submissions,
fingerprinting files, and reading cells and their outputs."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
from pathlib import Path
from typing import Callable

import nbformat

from autograder.authoring import course
from autograder.cli import main

# A notebook as JSON, raw bytes, or a function that writes the file itself.
Submission = dict | bytes | Callable[[Path], None]


def new_course(course_dir: Path, chapter: str) -> dict:
    """A course in ``course_dir`` with only ``chapter``; returns the release notebook with the
    reference answers filled in, as a student submits it."""
    course_dir.mkdir(parents=True)
    shutil.copy(course.EXERCISES / "nbgrader_config.py", course_dir / "nbgrader_config.py")
    for part in ("source", "release"):
        shutil.copytree(course.EXERCISES / part / chapter, course_dir / part / chapter, ignore=course.COPY_IGNORE)
    return json.loads(nbformat.writes(reference(chapter)))


def release(chapter: str) -> nbformat.NotebookNode:
    """The chapter's notebook as handed out."""
    return course.read(course.EXERCISES / "release" / chapter / f"{chapter}.ipynb")


def reference(chapter: str) -> nbformat.NotebookNode:
    """The released notebook with the reference answers filled in, as a student submits it."""
    answers = course.answers(course.read(course.EXERCISES / "source" / chapter / f"{chapter}.ipynb"))
    return course.fill_answers(release(chapter), answers)


def run_cli(*args) -> tuple[int, str, str]:
    """``autograder ARGS`` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def write_submission(path: Path, submission: Submission) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if callable(submission):
        submission(path)
    elif isinstance(submission, bytes):
        path.write_bytes(submission)
    else:
        path.write_text(json.dumps(submission, indent=1), encoding="utf-8")


def fingerprints(paths: list[Path]) -> dict[str, str]:
    """sha256 of every file under ``paths`` (files or folders), by path."""
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def text(source) -> str:
    """A cell's source as one string (notebooks may store it as a list of lines)."""
    return source if isinstance(source, str) else "".join(source)


def index(nb: dict, grade_id: str) -> int:
    """The position of the graded cell ``grade_id``."""
    return next(i for i, c in enumerate(nb["cells"]) if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def output_text(output: dict) -> str:
    """What one output shows, as text."""
    if output["output_type"] == "stream":
        return output["text"]
    if output["output_type"] == "error":
        return f"{output['ename']}: {output['evalue']}"
    return output.get("data", {}).get("text/plain", "")


def plain(message: str) -> str:
    """A check's message without a hidden check's note on its kind of input, which comes
    before the diagnosis it shares with the visible checks:
    ``f (hidden check on a (4, 3) input): m`` -> ``f: m``."""
    return re.sub(r"^(\w+) \(hidden check on .*?\): ", r"\1: ", message, count=1)
