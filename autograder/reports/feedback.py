"""One HTML feedback page per graded submission, where nbgrader puts feedback:
``feedback/<student>/<chapter>/<chapter>.html``.

A page is self-contained (inline CSS, no scripts, no external requests) and shows only what
the record holds: scores, the messages of failed checks (hidden checks by number, never by
name, code, seed or expected value), repair notes and the grader's comment. The markup is
``templates/feedback.html`` (autoescaped: messages repeat what the student's code raised).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

from autograder.coursedir import CourseDir
from autograder.parts import ManualGrade, Part, parts_of, score
from autograder.records import GRADED, CheckVerdict, SubmissionRecord
from autograder.reports import templates

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       max-width: 62rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1.05rem; }
.meta { color: #59636e; margin-top: 0; }
.status { padding: .6rem .9rem; border-radius: 6px; border: 1px solid #d0d7de; }
.status.bad { background: #fff1f0; border-color: #f4b4ae; }
.total { font-size: 1.15rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
table.narrow { width: auto; min-width: 20rem; }
th, td { text-align: left; vertical-align: top; padding: .4rem .6rem; border-bottom: 1px solid #d0d7de; }
th { background: #f6f8fa; }
td.num, th.num { text-align: right; white-space: nowrap; }
.pass { color: #1a7f37; }
.fail { color: #cf222e; }
.wait { color: #9a6700; }
.checks { margin: .2rem 0 0; padding-left: 1.2rem; color: #59636e; font-size: .9em; }
.msg { white-space: pre-wrap; overflow-wrap: break-word; margin: .1rem 0; }
code { font: .9em ui-monospace, SFMono-Regular, Menlo, monospace; }
img { max-width: 100%; }
"""

def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


fmt, clip = templates.fmt, templates.clip


def _path_component(name: str, what: str) -> str:
    # Student ids and chapter names become folder names: refuse anything that could leave
    # the feedback folder.
    if not name or name in {".", ".."} or any(c in name for c in "/\\\0"):
        raise ValueError(f"The {what} {name!r} cannot be used as a folder name.")
    return name


def feedback_path(course_dir: Path, student: str, chapter: str) -> Path:
    student = _path_component(student, "student id")
    chapter = _path_component(chapter, "chapter name")
    return CourseDir(course_dir).feedback(student, chapter)


def _check_labels(checks: list[CheckVerdict]) -> list[str]:
    """How each check is named to the student: its description if visible, else its number
    among the hidden checks of the part (a hidden check's name or description could hint
    at its inputs)."""
    labels, hidden = [], 0
    for check in checks:
        if check.hidden:
            hidden += 1
            labels.append(f"hidden check {hidden} of this part")
        else:
            labels.append(check.description)
    return labels


def _auto_row(part: Part, record: SubmissionRecord, awarded: float) -> dict:
    checks = [c for c in record.checks if c.cell == part.grade_id]
    shown = [c.description for c in checks if not c.hidden]
    n_hidden = sum(c.hidden for c in checks)
    if n_hidden:
        shown.append(f"and {n_hidden} hidden check{'s' if n_hidden > 1 else ''}")
    cell = next((c for c in record.cells if c.cell == part.grade_id), None)
    failures = [(label, c.message) for c, label in zip(checks, _check_labels(checks)) if not c.passed]
    row = {"grade_id": part.grade_id, "checks": shown, "awarded": awarded, "points": part.points,
           "failures": [], "state": "", "comment": ""}
    if cell is None:
        row["state"] = "not run"
    elif failures:
        row["failures"] = failures
    elif cell.awarded < part.points and cell.message != "passed":
        row["failures"] = [("", cell.message)]
    else:
        row["state"] = "passed"
    return row


def _manual_row(part: Part, points: float | None, grade: ManualGrade | None) -> dict:
    return {"grade_id": part.grade_id, "checks": ["written answer, graded by hand"], "awarded": points,
            "points": part.points, "failures": [], "state": "awaiting" if points is None else "",
            "comment": grade.comment if grade is not None else ""}


def render(record: SubmissionRecord, parts: list[Part], manual: list[ManualGrade]) -> str:
    """The feedback page of one submission (``parts`` of its chapter, ``manual`` the
    student's manual grades)."""
    scores = score(record, parts, manual)
    by_id = {g.grade_id: g for g in manual}
    written = [p for p in parts if not p.autograded]
    waiting = set(scores.awaiting)
    rows = [
        _auto_row(p, record, scores.points[p.grade_id] or 0.0)
        if p.autograded
        else _manual_row(p, scores.points[p.grade_id], by_id.get(p.grade_id))
        for p in parts
    ]
    return templates.render(
        "feedback.html", title=f"Feedback: {record.chapter} \u2013 {record.student}", css=CSS,
        record=record, graded=record.status == GRADED, rows=rows,
        total=scores.total, maximum=scores.max, autograded=scores.autograded,
        auto_max=sum(p.points for p in parts if p.autograded),
        written_pending=sum(p.points for p in written if p.grade_id in waiting) if written and waiting else None,
        written_max=sum(p.points for p in written) if written and not waiting else None,
        written=scores.manual,
    )


def write_feedback(
    course_dir: Path,
    records: Iterable[SubmissionRecord],
    manual: dict[str, list[ManualGrade]],
    parts: dict[str, list[Part]],
) -> list[Path]:
    """Write the feedback page of every record; returns the paths in the records' order.

    ``manual`` maps a student to their manual grades (of any chapter: they are matched to a
    chapter's parts by grade_id); ``parts`` maps a chapter to its parts.
    """
    written = []
    for record in records:
        path = feedback_path(course_dir, record.student, record.chapter)
        html = render(record, parts_of(parts, record.chapter), manual.get(record.student, []))
        written.append(write_atomic(path, html.encode("utf-8")))
    return written
