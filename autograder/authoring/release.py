"""Regenerate and release exercise notebooks: ``python -m autograder.authoring.release [CHAPTER...]``.

For each chapter (default: every chapter with a spec), in a temporary course directory:

1. generate the source notebook from ``solutions/`` + the chapter's checks and spec, and
   copy the checks package beside it as ``coursechecks/``;
2. run ``nbgrader generate_assignment`` and put a copy of the released notebook into the
   released ``coursechecks/`` (``original.ipynb``: what the students' self-check compares with);
3. submit the released notebook with the reference answers filled in and run
   ``nbgrader autograde``; if it does not score every automatically graded point, stop
   with a non-zero exit and the failing cells, leaving ``exercises/`` untouched;
4. otherwise replace ``exercises/source/<chapter>`` and ``exercises/release/<chapter>``.
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

from autograder.authoring import course, notebooks
from autograder.authoring.checks import selfcheck

REFERENCE_STUDENT = "reference"


class ReleaseError(RuntimeError):
    """The reference solution does not score full marks, or a chapter is unknown."""


def build(course_dir: Path, chapters: list[str]) -> Path:
    """Generate sources and run ``generate_assignment`` in ``course_dir`` (no grading)."""
    course.new_course(course_dir, chapters)
    for chapter in chapters:
        released = course.generate(course_dir, chapter)
        # The students' self-check rebuilds a notebook on the release, as the grader does:
        # the pristine notebook ships inside coursechecks/.
        shutil.copyfile(released, released.parent / notebooks.HELPER_PACKAGE / selfcheck.ORIGINAL)
    return Path(course_dir)


def verify_reference(course_dir: Path, chapters: list[str], student: str = REFERENCE_STUDENT) -> dict[str, tuple[float, float]]:
    """Submit and autograde the reference answers; :class:`ReleaseError` unless all score full marks."""
    for chapter in chapters:
        src = course.read(Path(course_dir) / "source" / chapter / f"{chapter}.ipynb")
        rel = course.read(Path(course_dir) / "release" / chapter / f"{chapter}.ipynb")
        course.submit(course_dir, student, chapter, course.fill_answers(rel, course.answers(src)))
        course.autograde(course_dir, chapter, student)
    return require_full_marks(course_dir, chapters, student)


def require_full_marks(course_dir: Path, chapters: list[str], student: str) -> dict[str, tuple[float, float]]:
    """(score, maximum) of a graded submission per chapter, or :class:`ReleaseError` naming
    every automatically graded cell that lost points and its error."""
    totals, problems = {}, []
    for chapter in chapters:
        cells = course.scores(course_dir, chapter).get(student, {})
        totals[chapter] = score, maximum = course.autograded_total(cells)
        lost = sorted(course.lost_cells(cells))
        if lost or not cells:
            errors = course.cell_errors(course_dir, student, chapter) if cells else {}
            problems.append(
                f"{chapter}: the reference solution scores {score:g} of {maximum:g} automatically "
                "graded points. Failing cells:\n"
                + "\n".join(f"  {gid}: {errors.get(gid, 'no error output')}" for gid in lost)
            )
    if problems:
        raise ReleaseError("refusing to release:\n" + "\n".join(problems))
    return totals


def release(chapters: list[str] | None = None, exercises_dir: Path = course.EXERCISES,
            workdir: Path | None = None) -> dict[str, tuple[float, float]]:
    """Regenerate, verify and publish; returns (score, maximum) of the reference per chapter.

    The course is assembled in ``workdir`` (kept, e.g. for inspection) or in a temporary
    directory; ``exercises_dir`` is written only after the reference has scored full marks.
    """
    known = notebooks.chapters()
    chapters = list(chapters or known)
    unknown = sorted(set(chapters) - set(known))
    if unknown:
        raise ReleaseError(f"unknown chapter(s) {', '.join(unknown)}; known: {', '.join(known)}")
    with contextlib.ExitStack() as stack:
        work = Path(workdir) if workdir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="release-")))
        build(work, chapters)
        totals = verify_reference(work, chapters)
        for chapter in chapters:
            for kind in ("source", "release"):
                dest = Path(exercises_dir) / kind / chapter
                if dest.exists():
                    shutil.rmtree(dest)
                shutil.copytree(work / kind / chapter, dest, ignore=course.COPY_IGNORE)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.authoring.release", description=__doc__.split("\n")[0])
    parser.add_argument("chapters", nargs="*", metavar="CHAPTER", help="default: every chapter")
    args = parser.parse_args(argv)
    try:
        totals = release(args.chapters)
    except (ReleaseError, course.NbgraderError) as exc:
        print(exc, file=sys.stderr)
        return 1
    for chapter, (score, maximum) in totals.items():
        print(f"released {chapter}: reference scores {score:g}/{maximum:g} automatically graded points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
