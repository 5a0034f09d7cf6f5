"""The class's grades as a CSV file and a class report as one self-contained HTML page.

Both read the submission records, the manual grades from nbgrader's gradebook and the parts
of each chapter's release notebook. Chapters appear in alphabetical order (the course's
order, see ``autograder.authoring.notebooks.chapters``), parts in notebook order, students sorted.
"""
from __future__ import annotations

import base64
import csv
import io
import math
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Iterable

from autograder.parts import ManualGrade, Part, Scores, parts_of, score
from autograder.records import GRADED, STATUSES, SubmissionRecord
from autograder.reports import templates
from autograder.reports.feedback import CSS, fmt, write_atomic

TOP_FAILURES = 5
# Numbers that differ between students (errors, indices, shapes): one group per message.
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# A spreadsheet would run a text cell starting like this as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _scored(
    records: Iterable[SubmissionRecord], manual: dict[str, list[ManualGrade]], parts: dict[str, list[Part]]
) -> list[tuple[SubmissionRecord, Scores]]:
    """Every record with its scores, sorted by student then chapter."""
    ordered = sorted(records, key=lambda r: (r.student, r.chapter))
    return [(r, score(r, parts_of(parts, r.chapter), manual.get(r.student, []))) for r in ordered]


def _text_cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def write_grades_csv(
    path: Path,
    records: Iterable[SubmissionRecord],
    manual: dict[str, list[ManualGrade]],
    parts: dict[str, list[Part]],
) -> Path:
    """One row per (student, chapter): status, the points of every part (blank for parts of
    other chapters and for written answers awaiting a grader), then autograded, manual (blank
    while a written answer awaits a grader), total (autograded plus the manual points given so
    far) and max."""
    scored = _scored(records, manual, parts)
    chapters = sorted({r.chapter for r, _ in scored})
    columns = [p.grade_id for ch in chapters for p in parts_of(parts, ch)]

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["student", "chapter", "status", *columns, "autograded", "manual", "total", "max"])
    for record, s in scored:
        cells = {gid: "" if p is None else fmt(p) for gid, p in s.points.items()}
        writer.writerow([
            _text_cell(record.student), _text_cell(record.chapter), _text_cell(record.status),
            *(cells.get(gid, "") for gid in columns),
            fmt(s.autograded), "" if s.awaiting else fmt(s.manual), fmt(s.total), fmt(s.max),
        ])
    return write_atomic(Path(path), buf.getvalue().encode("utf-8"))


def normalise(message: str) -> str:
    """A failure message with every number replaced by ``#``, so that the same mistake made
    by different students (with different errors or indices) counts as one. The location of
    an exception in the student's code (``\n  at cell 12, line 5: ...``) differs per student
    and is left out."""
    message = message.split("\n  at ", 1)[0]
    return " ".join(_NUMBER.sub("#", message).split())


def failure_counts(records: list[SubmissionRecord], part: str) -> Counter:
    """How many submissions failed a check of ``part`` with each (normalised) message."""
    counts: Counter = Counter()
    for record in records:
        counts.update({normalise(c.message) for c in record.checks if c.cell == part and not c.passed})
    return counts


def _png(fig) -> str:
    # Figures are built with matplotlib.figure.Figure, not pyplot: no global backend or
    # figure registry to set up or leak, and PNG is drawn by Agg.
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})  # no version: stable bytes
    return base64.b64encode(buf.getvalue()).decode("ascii")


def total_histogram(totals: list[float], maximum: float) -> str:
    """A histogram of the total scores, as a base64 PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 2.6))
    ax = fig.subplots()
    top = maximum if maximum > 0 else 1.0
    ax.hist(totals, bins=[top * i / 20 for i in range(21)], color="#4c72b0", edgecolor="white")
    ax.set_xlim(0, top)
    ax.set_xlabel(f"total score (out of {fmt(maximum)})")
    ax.set_ylabel("submissions")
    ax.yaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return _png(fig)


def part_histograms(chapter: str, parts: list[Part], fractions: dict[str, list[float]]) -> str:
    """Small multiples: per part, a histogram of the fraction of its points each student
    scored (ten bins from 0 to 1, bar heights on one scale), as a base64 PNG.

    The panels are drawn into a single axes: a grid of real subplots, with their ticks,
    takes three times as long to draw, and a class report must stay quick.
    """
    import numpy as np
    from matplotlib.figure import Figure

    ncols, gap_x, gap_y = 4, 0.22, 0.75
    nrows = max(1, math.ceil(len(parts) / ncols))
    counts = {p.grade_id: np.histogram(fractions[p.grade_id], bins=10, range=(0.0, 1.0))[0] for p in parts}
    top = max([int(c.max()) for c in counts.values()] + [1])

    fig = Figure(figsize=(10, 1.45 * nrows + 0.2))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98))
    ax.set_axis_off()
    lefts, bottoms, heights, colors = [], [], [], []
    for k, part in enumerate(parts):
        x0, y0 = (k % ncols) * (1 + gap_x), -(k // ncols) * (1 + gap_y)
        lefts += [x0 + i / 10 for i in range(10)]
        bottoms += [y0] * 10
        heights += list(counts[part.grade_id] / top)
        colors += ["#4c72b0" if part.autograded else "#dd8452"] * 10
        values = fractions[part.grade_id]
        mean = f"mean {100 * sum(values) / len(values):.0f}% of {len(values)}" if values else "no grades yet"
        ax.text(x0 + 0.5, y0 + 1.06, f"{part.grade_id.removeprefix(chapter + '_')}\n{mean}",
                ha="center", va="bottom", fontsize=7)
        ax.plot([x0, x0 + 1], [y0, y0], color="#59636e", linewidth=0.8)
        ax.text(x0, y0 - 0.04, "0", ha="center", va="top", fontsize=6, color="#59636e")
        ax.text(x0 + 1, y0 - 0.04, "1", ha="center", va="top", fontsize=6, color="#59636e")
    ax.bar(lefts, heights, width=0.1, bottom=bottoms, align="edge", color=colors, edgecolor="white", linewidth=0.5)
    ax.set_xlim(-0.05, ncols * (1 + gap_x) - gap_x + 0.05)
    ax.set_ylim(-(nrows - 1) * (1 + gap_y) - 0.2, 1.45)
    return _png(fig)


def _chapter(chapter: str, scored: list[tuple[SubmissionRecord, Scores]], parts: list[Part]) -> dict:
    """What the report shows of one chapter (rendered by ``templates/report.html``)."""
    records = [r for r, _ in scored]
    graded = [r for r in records if r.status == GRADED]
    totals = [s.total for _, s in scored]
    maximum = sum(p.points for p in parts)
    # Per part, the fraction of its points each graded submission scored (written answers
    # only once graded): how hard the part was, not how many notebooks failed to run.
    fractions = {
        p.grade_id: [
            s.points[p.grade_id] / p.points
            for r, s in scored
            if r.status == GRADED and s.points[p.grade_id] is not None and p.points > 0
        ]
        for p in parts
    }
    counts = Counter(r.status for r in records)
    order = [s for s in STATUSES if counts[s]] + sorted(set(counts) - set(STATUSES))
    failures = []
    for part in parts:
        if part.autograded:
            top = sorted(failure_counts(graded, part.grade_id).items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_FAILURES]
            if top:
                failures.append((part.grade_id, top))
    return {
        "name": chapter, "submissions": len(records), "graded": len(graded),
        "mean": statistics.fmean(totals), "median": statistics.median(totals), "maximum": maximum,
        "awaiting": sum(1 for _, s in scored if s.awaiting),
        "statuses": [(s, counts[s]) for s in order],
        "totals_png": total_histogram(totals, maximum),
        "parts_png": part_histograms(chapter, parts, fractions),
        "failures": failures,
        "not_graded": [r for r in records if r.status != GRADED],
    }


def write_report(
    path: Path,
    records: Iterable[SubmissionRecord],
    manual: dict[str, list[ManualGrade]],
    parts: dict[str, list[Part]],
) -> Path:
    """The class report: per chapter, submissions and their statuses, histograms of the
    total scores and of each part's points, the most common failure messages per part and
    the submissions that could not be graded."""
    scored = _scored(records, manual, parts)
    chapters = [_chapter(ch, [(r, s) for r, s in scored if r.chapter == ch], parts_of(parts, ch))
                for ch in sorted({r.chapter for r, _ in scored})]
    html = templates.render("report.html", title="Class report", css=CSS, chapters=chapters,
                            submissions=len(scored))
    return write_atomic(Path(path), html.encode("utf-8"))
