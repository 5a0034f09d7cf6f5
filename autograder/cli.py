"""The instructor's and the student's command line: ``autograder VERB ...``.

    autograder release [CHAPTER...]          generate student notebooks (refuses a failing reference)
    autograder grade SUBMISSIONS [options]   grade a folder or an LMS export, in parallel, sandboxed
    autograder feedback                      per-student HTML feedback
    autograder export [--lms canvas|moodle]  grades.csv, the class report (and the LMS's gradebook file)
    autograder check NOTEBOOK                visible tests + "will this notebook grade?" (students)

Every verb works on a course directory (nbgrader's layout): ``--course DIR``, else the current
directory if it holds ``nbgrader_config.py`` (as nbgrader decides; see
:func:`autograder.coursedir.locate`), and on its gradebook (``gradebook.db`` there, or any
SQLAlchemy URL with ``--db``). Outside a course, every verb stops with exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _course_args(parser: argparse.ArgumentParser, db: bool = True) -> None:
    parser.add_argument("--course", type=Path, default=None,
                        help="course directory (default: the current directory, if it holds nbgrader_config.py)")
    if db:
        parser.add_argument("--db", metavar="URL", default=None,
                            help="gradebook database URL (default: sqlite:///<course>/gradebook.db)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autograder", description=__doc__.split("\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("release", help="generate the student notebooks")
    p.add_argument("chapters", nargs="*", metavar="CHAPTER", help="default: every chapter")
    _course_args(p, db=False)

    p = verbs.add_parser("grade", help="grade submissions")
    p.add_argument("submissions", type=Path, help="folder <student>/<chapter>.ipynb, or an LMS export (zip or folder)")
    p.add_argument("--chapter", help="grade only this chapter (and name it, if file names do not)")
    p.add_argument("--jobs", type=int, default=0, help="students graded at once (default: one per core)")
    p.add_argument("--pattern", help="regex with named groups 'student' (and 'chapter') for LMS file names")
    p.add_argument("--force", action="store_true", help="regrade submissions that have not changed")
    p.add_argument("--timeout", type=float, default=300, help="wall-clock seconds per notebook (default: %(default)s)")
    p.add_argument("--memory", type=float, default=6, help="GiB of address space per notebook (default: %(default)s)")
    p.add_argument("--max-notebook-mb", type=float, default=20, help="largest notebook accepted (default: %(default)s)")
    p.add_argument("--seed", type=int, help="fix the run's test inputs (to reproduce a run)")
    p.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="run student code without bubblewrap (only where it cannot do harm)")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run the sandboxes on the Dask scheduler at ADDRESS (e.g. tcp://host:8786)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _course_args(p)

    p = verbs.add_parser("feedback", help="write per-student HTML feedback")
    p.add_argument("--chapter", help="only this chapter")
    _course_args(p)

    p = verbs.add_parser("export", help="write grades.csv and report.html (and an LMS gradebook file)")
    p.add_argument("--out", type=Path, help="output folder (default: the course directory)")
    p.add_argument("--lms", choices=("canvas", "moodle"),
                   help="also write the gradebook file this LMS imports: <lms>-grades.csv")
    p.add_argument("--lms-id", metavar="COLUMN",
                   help="the LMS column the student ids go into: for canvas id (default: Canvas user ids, as in "
                        "a Canvas download's file names), sis-user-id or sis-login-id; for moodle idnumber "
                        "(default), email, username or userid")
    p.add_argument("--roster", metavar="WORKSHEET", type=Path, action="append",
                   help="for moodle: a grading worksheet downloaded from a Moodle assignment (repeat for each "
                        "chapter), to turn the participant ids of Moodle's file names into emails (or --lms-id)")
    _course_args(p)

    p = verbs.add_parser("check", help="check a notebook before submitting it")
    p.add_argument("notebook", type=Path)
    p.add_argument("--chapter", help="which exercise (default: read from the notebook)")
    _course_args(p, db=False)
    return parser


def _release(args) -> int:
    from autograder.authoring import release

    try:
        totals = release.release(args.chapters, exercises_dir=args.course)
    except (release.ReleaseError, release.course.NbgraderError) as exc:
        print(exc, file=sys.stderr)
        return 1
    for chapter, (score, maximum) in totals.items():
        print(f"released {chapter}: reference scores {score:g}/{maximum:g} automatically graded points")
    return 0


def _grade(args) -> int:
    from autograder import grade, intake, sandbox, store
    from autograder.grading.dask_cluster import ClusterUnavailable

    limits = sandbox.Limits(wall_seconds=args.timeout, cpu_seconds=int(args.timeout),
                            memory_bytes=int(args.memory * 2**30))
    options = grade.Options(
        course_dir=args.course, db_url=args.db, jobs=args.jobs, limits=limits,
        sandboxed=not args.unsafe_no_sandbox, chapter=args.chapter, pattern=args.pattern,
        max_notebook_bytes=int(args.max_notebook_mb * 2**20), force=args.force, seed=args.seed,
        cluster=args.cluster,
    )
    if args.unsafe_no_sandbox:
        print("warning: grading WITHOUT a sandbox: student code runs with your permissions", file=sys.stderr)
    try:
        summary = grade.grade(args.submissions, options, None if args.quiet else grade.text_progress())
    except (sandbox.SandboxUnavailable, ClusterUnavailable, intake.IntakeError, store.DatabaseUnavailable,
            FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary.lines()))
    return 0


def _records(args):
    from autograder import parts
    from autograder.grade import require_course
    from autograder.store import RecordStore, default_url, require_database

    require_course(args.course)
    url = args.db or default_url(args.course)
    require_database(url)
    with RecordStore(url) as store:
        recs = list(store.records(getattr(args, "chapter", None)))
    chapters = sorted({r.chapter for r in recs})
    chapter_parts = {ch: parts.chapter_parts(args.course, ch) for ch in chapters}
    manual: dict[str, list] = {}  # student -> manual grades of every chapter (grade_ids name the chapter)
    for ch in chapters:
        for student, grades in parts.manual_grades(url, ch).items():
            manual.setdefault(student, []).extend(grades)
    return recs, manual, chapter_parts


def _feedback(args) -> int:
    from autograder import store
    from autograder.reports import feedback

    try:
        recs, manual, chapter_parts = _records(args)
    except (FileNotFoundError, store.DatabaseUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not recs:
        print("nothing graded yet: run `autograder grade` first", file=sys.stderr)
        return 1
    written = feedback.write_feedback(args.course, recs, manual, chapter_parts)
    print(f"wrote {len(written)} feedback file(s) under {Path(args.course) / 'feedback'}")
    return 0


def _export(args) -> int:
    from autograder import store
    from autograder.reports import export

    try:
        recs, manual, chapter_parts = _records(args)
    except (FileNotFoundError, store.DatabaseUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not recs:
        print("nothing graded yet: run `autograder grade` first", file=sys.stderr)
        return 1
    out = args.out or Path(args.course)
    out.mkdir(parents=True, exist_ok=True)
    if args.lms is None and (args.lms_id is not None or args.roster):
        print("error: --lms-id and --roster need --lms canvas or --lms moodle", file=sys.stderr)
        return 2
    if args.lms is not None:
        from autograder.reports import lms

        try:
            lms_path, empty = lms.write_lms_csv(out / f"{args.lms}-grades.csv", args.lms, recs, manual,
                                                chapter_parts, args.lms_id, args.roster)
        except lms.LmsExportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    csv_path = export.write_grades_csv(out / "grades.csv", recs, manual, chapter_parts)
    report = export.write_report(out / "report.html", recs, manual, chapter_parts)
    print(f"wrote {csv_path} and {report}")
    if args.lms is not None:
        print(f"wrote {lms_path} for {args.lms}")
        if empty:
            reasons = ", ".join(f"{n} {why}" for why, n in sorted(empty.items()))
            print(f"left empty (no grade yet, not 0): {reasons}")
    return 0


def _check(args) -> int:
    from autograder import student_check

    if not args.notebook.exists():
        print(f"error: {args.notebook} does not exist", file=sys.stderr)
        return 2
    try:
        report = student_check.check_notebook(args.notebook, args.course, args.chapter)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.text())
    return report.exit_code


def main(argv: list[str] | None = None) -> int:
    from autograder.coursedir import NotACourse, locate

    args = build_parser().parse_args(argv)
    try:
        args.course = locate(args.course)
    except NotACourse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return {"release": _release, "grade": _grade, "feedback": _feedback, "export": _export,
            "check": _check}[args.verb](args)


if __name__ == "__main__":
    sys.exit(main())
