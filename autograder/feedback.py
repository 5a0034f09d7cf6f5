"""One HTML feedback page per graded submission, where nbgrader puts feedback:
``feedback/<student>/<chapter>/<chapter>.html``.

A page is self-contained (inline CSS, no scripts, no external requests) and shows only what
the record holds: scores, the messages of failed checks (hidden checks by number, never by
name, code, seed or expected value), repair notes and the grader's comment. Every string is
escaped, since messages repeat what the student's code raised.
"""
from __future__ import annotations

import os
import tempfile
from html import escape
from pathlib import Path
from typing import Iterable

from autograder.parts import ManualGrade, Part, parts_of, score
from autograder.records import GRADED, CheckVerdict, SubmissionRecord

MAX_MESSAGE = 2000  # characters of one message shown; a student's exception may be huge

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

# A second line of defence behind escaping: even injected markup could not run or load anything.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def page(title: str, body: str) -> str:
    """A complete, self-contained HTML document."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


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


def fmt(x: float) -> str:
    return f"{x:g}"


def clip(message: str, limit: int = MAX_MESSAGE) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "\u2026"


def _path_component(name: str, what: str) -> str:
    # Student ids and chapter names become folder names: refuse anything that could leave
    # the feedback folder.
    if not name or name in {".", ".."} or any(c in name for c in "/\\\0"):
        raise ValueError(f"The {what} {name!r} cannot be used as a folder name.")
    return name


def feedback_path(course_dir: Path, student: str, chapter: str) -> Path:
    student = _path_component(student, "student id")
    chapter = _path_component(chapter, "chapter name")
    return Path(course_dir) / "feedback" / student / chapter / f"{chapter}.html"


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


def _auto_row(part: Part, record: SubmissionRecord, awarded: float) -> str:
    checks = [c for c in record.checks if c.cell == part.grade_id]
    labels = _check_labels(checks)
    visible = [escape(c.description) for c in checks if not c.hidden]
    n_hidden = sum(c.hidden for c in checks)
    if n_hidden:
        visible.append(f"and {n_hidden} hidden check{'s' if n_hidden > 1 else ''}")
    name = f"<code>{escape(part.grade_id)}</code>"
    if visible:
        name += "<ul class=\"checks\">" + "".join(f"<li>{d}</li>" for d in visible) + "</ul>"

    cell = next((c for c in record.cells if c.cell == part.grade_id), None)
    failures = [
        f"<p class=\"msg\"><strong>{escape(label)}</strong>: {escape(clip(c.message))}</p>"
        for c, label in zip(checks, labels)
        if not c.passed
    ]
    if cell is None:
        detail = f"<span class=\"fail\">not run ({escape(record.status)})</span>"
    elif failures:
        detail = "".join(failures)
    elif cell.awarded < part.points and cell.message != "passed":
        detail = f"<p class=\"msg\">{escape(clip(cell.message))}</p>"
    else:
        detail = "<span class=\"pass\">passed</span>"
    css = "pass" if awarded >= part.points else "fail"
    return (
        f"<tr><td>{name}</td><td class=\"num {css}\">{fmt(awarded)} / {fmt(part.points)}</td>"
        f"<td>{detail}</td></tr>"
    )


def _manual_row(part: Part, points: float | None, grade: ManualGrade | None) -> str:
    name = f"<code>{escape(part.grade_id)}</code><ul class=\"checks\"><li>written answer, graded by hand</li></ul>"
    if points is None:
        awarded = f"<td class=\"num wait\">\u2013 / {fmt(part.points)}</td>"
        detail = "<span class=\"wait\">awaiting a grader</span>"
    else:
        css = "pass" if points >= part.points else "fail"
        awarded = f"<td class=\"num {css}\">{fmt(points)} / {fmt(part.points)}</td>"
        detail = ""
    if grade is not None and grade.comment:
        detail += f"<p class=\"msg\"><strong>Grader\u2019s comment</strong>: {escape(clip(grade.comment))}</p>"
    return f"<tr><td>{name}</td>{awarded}<td>{detail}</td></tr>"


def render(record: SubmissionRecord, parts: list[Part], manual: list[ManualGrade]) -> str:
    """The feedback page of one submission (``parts`` of its chapter, ``manual`` the
    student's manual grades)."""
    scores = score(record, parts, manual)
    by_id = {g.grade_id: g for g in manual}
    student, chapter = escape(record.student), escape(record.chapter)

    out = [f"<h1>Feedback: {chapter}</h1>", f"<p class=\"meta\">Student <strong>{student}</strong>"]
    if record.graded_at:
        out[-1] += f" \u00b7 graded {escape(record.graded_at)}"
    out[-1] += "</p>"

    if record.status == GRADED:
        out.append(f"<p class=\"status\">Status: <strong>{escape(record.status)}</strong></p>")
    else:
        out.append(
            f"<div class=\"status bad\"><p>Status: <strong>{escape(record.status)}</strong></p>"
            f"<p class=\"msg\">{escape(clip(record.message))}</p></div>"
        )

    auto_max = sum(p.points for p in parts if p.autograded)
    total = f"<p class=\"total\">Total: <strong>{fmt(scores.total)} / {fmt(scores.max)}</strong>"
    total += f" (autograded {fmt(scores.autograded)} / {fmt(auto_max)}"
    written = [p for p in parts if not p.autograded]
    if written:
        waiting = set(scores.awaiting)
        if waiting:
            pending = sum(p.points for p in written if p.grade_id in waiting)
            total += f"; the written answer ({fmt(pending)} points) is still awaiting a grader"
        else:
            total += f", written {fmt(scores.manual)} / {fmt(sum(p.points for p in written))}"
    out.append(total + ")</p>")

    rows = [
        _auto_row(p, record, scores.points[p.grade_id] or 0.0)
        if p.autograded
        else _manual_row(p, scores.points[p.grade_id], by_id.get(p.grade_id))
        for p in parts
    ]
    out += [
        "<h2>Parts</h2>",
        "<table><thead><tr><th>Part</th><th class=\"num\">Points</th><th>Details</th></tr></thead>",
        "<tbody>", *rows, "</tbody></table>",
    ]
    if record.notes:
        out.append("<h2>Notes on your submission</h2>")
        out.append("<ul>" + "".join(f"<li class=\"msg\">{escape(clip(n))}</li>" for n in record.notes) + "</ul>")
    return page(f"Feedback: {record.chapter} \u2013 {record.student}", "\n".join(out))


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
