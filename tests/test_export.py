"""The grades CSV and the class report."""
import base64
import csv
import random
import re
import time
from pathlib import Path

import pytest

from autograder.parts import ManualGrade, chapter_parts
from autograder.reports.export import failure_counts, normalise, write_grades_csv, write_report
from autograder.records import (
    GRADED, INVALID, KERNEL_DIED, STATUSES, TIMED_OUT, TOO_LARGE, CellScore, CheckVerdict, SubmissionRecord,
)

EXERCISES = Path(__file__).resolve().parent.parent / "exercises"
PARTS = {ch: chapter_parts(EXERCISES, ch) for ch in ("batchnorm", "pooling")}
BN_AUTO = [p for p in PARTS["batchnorm"] if p.autograded]
POOL_AUTO = [p for p in PARTS["pooling"] if p.autograded]
BN_WRITTEN = "batchnorm_experiment_sigmoid_depth"
POOL_WRITTEN = "pooling_experiment_gradient_maps"
FIRST = BN_AUTO[0].grade_id  # batchnorm_batchnorm_forward_torch_2d
SECRET = "SENTINEL"  # planted in every hidden check's id and description and in the seeds
HOSTILE = "<script>alert(1)</script>"


def record(student: str, chapter: str, failed: dict[str, str] | None = None, status: str = GRADED,
           message: str = "graded") -> SubmissionRecord:
    """A submission of ``chapter``; each part in ``failed`` fails its hidden check with the
    given message, every other part passes. Not graded submissions have no scores."""
    if status != GRADED:
        return SubmissionRecord(student, chapter, status, message)
    failed = failed or {}
    cells, checks = [], []
    for part in PARTS[chapter]:
        if not part.autograded:
            continue
        gid = part.grade_id
        ok = gid not in failed
        checks.append(CheckVerdict(gid, gid, f"{gid} visible", False, True, "passed"))
        checks.append(CheckVerdict(f"{gid}_{SECRET}", gid, f"{SECRET} description", True, ok,
                                   "passed" if ok else failed[gid]))
        cells.append(CellScore(gid, part.points, part.points if ok else 0.0, "passed" if ok else failed[gid]))
    return SubmissionRecord(student, chapter, GRADED, message, cells=cells, checks=checks,
                            seeds={f"{FIRST}_{SECRET}": 424242})


def wrong(err: float, i: int, j: int) -> str:
    return f"batchnorm_forward: out is wrong: relative error {err:.2e} (allowed 1e-08), worst at index ({i}, {j})"


RECORDS = [
    record("ann", "batchnorm", {FIRST: wrong(3.1e-2, 3, 1)}),
    record("ann", "pooling"),
    record("ben", "batchnorm", {FIRST: wrong(2.7e-2, 0, 4), BN_AUTO[1].grade_id: f"raised ValueError: {HOSTILE}"}),
    record("cat", "batchnorm", {FIRST: wrong(5.0e-1, 7, 2)}),
    record("dan", "batchnorm", status=TIMED_OUT, message="the notebook ran longer than 60 s"),
    record("eve", "batchnorm", status=KERNEL_DIED, message=f"the kernel died {HOSTILE}"),
    record("fay", "pooling", status=INVALID, message="the file is not a notebook"),
    record("gus", "pooling", status=TOO_LARGE, message="the notebook is larger than 5 MB"),
]
MANUAL = {
    "ann": [ManualGrade(BN_WRITTEN, 12.5, 20.0, "ok"), ManualGrade(POOL_WRITTEN, None, 20.0, None)],
    "ben": [ManualGrade(BN_WRITTEN, 20.0, 20.0, None)],
}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_csv_header_has_every_part_in_chapter_then_notebook_order(tmp_path):
    path = write_grades_csv(tmp_path / "grades.csv", RECORDS, MANUAL, PARTS)
    header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
    parts = [p.grade_id for p in PARTS["batchnorm"] + PARTS["pooling"]]
    assert header == ["student", "chapter", "status", *parts, "autograded", "manual", "total", "max"]


def test_csv_rows_are_sorted_and_add_up(tmp_path):
    rows = read_csv(write_grades_csv(tmp_path / "grades.csv", reversed(RECORDS), MANUAL, PARTS))
    assert [(r["student"], r["chapter"]) for r in rows] == sorted((r.student, r.chapter) for r in RECORDS)
    ann_bn, ann_pool = rows[0], rows[1]
    assert (ann_bn[FIRST], ann_bn[BN_AUTO[1].grade_id], ann_bn[BN_WRITTEN]) == ("0", "10", "12.5")
    assert (ann_bn["autograded"], ann_bn["manual"], ann_bn["total"], ann_bn["max"]) == ("70", "12.5", "82.5", "100")
    assert ann_bn[POOL_AUTO[0].grade_id] == "" and ann_bn[POOL_WRITTEN] == ""  # other chapter
    # the written answer awaits a grader: blank, and the total counts what is graded so far
    assert (ann_pool[POOL_WRITTEN], ann_pool["manual"], ann_pool["total"]) == ("", "", "80")
    dan = next(r for r in rows if r["student"] == "dan")
    assert (dan["status"], dan[FIRST], dan["autograded"], dan["total"]) == (TIMED_OUT, "0", "0", "0")


def test_csv_has_only_the_chapters_present(tmp_path):
    rows = read_csv(write_grades_csv(tmp_path / "grades.csv", RECORDS[:1], MANUAL, PARTS))
    assert not any(c.startswith("pooling_") for c in rows[0])


def test_csv_neutralises_spreadsheet_formulas(tmp_path):
    rows = read_csv(write_grades_csv(tmp_path / "g.csv", [record("=HYPERLINK(1)", "pooling")], {}, PARTS))
    assert rows[0]["student"] == "'=HYPERLINK(1)"


def test_csv_never_mentions_hidden_checks(tmp_path):
    text = write_grades_csv(tmp_path / "grades.csv", RECORDS, MANUAL, PARTS).read_text(encoding="utf-8")
    assert SECRET not in text and "424242" not in text


def test_normalise_replaces_numbers_but_not_names():
    assert normalise(wrong(3.1e-2, 3, 1)) == normalise(wrong(2.7e-2, 10, 4)) == (
        "batchnorm_forward: out is wrong: relative error # (allowed #), worst at index (#, #)"
    )
    assert normalise("maxpool2d_backward: dx has shape (2, 3), expected (2,)") == (
        "maxpool2d_backward: dx has shape (#, #), expected (#,)"
    )
    assert normalise("off by -0.5") == "off by #"


def test_failure_counts_group_messages_per_submission():
    assert failure_counts(RECORDS, FIRST) == {normalise(wrong(0.1, 0, 0)): 3}
    assert failure_counts(RECORDS, BN_AUTO[1].grade_id) == {"raised ValueError: <script>alert(#)</script>": 1}
    twice = record("hal", "batchnorm", {FIRST: wrong(0.2, 1, 1)})
    twice.checks.append(CheckVerdict(f"{FIRST}_2", FIRST, "", True, False, wrong(0.3, 2, 2)))
    assert failure_counts([twice], FIRST) == {normalise(wrong(0.1, 0, 0)): 1}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    return write_report(path, RECORDS, MANUAL, PARTS).read_text(encoding="utf-8")


def section(html: str, chapter: str) -> str:
    start = html.index(f"<h2 id=\"{chapter}\">")
    end = html.find("<h2 ", start + 1)
    return html[start:end if end > 0 else None]


def test_report_has_status_counts(report):
    bn = section(report, "batchnorm")
    assert "5 submissions" in bn
    for status in (GRADED, TIMED_OUT, KERNEL_DIED):
        assert re.search(rf"<td>{status}</td><td class=\"num\">{3 if status == GRADED else 1}</td>", bn)
    assert "<td>too large</td><td class=\"num\">1</td>" in section(report, "pooling")


def test_report_has_histograms_as_inline_png(report):
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', report)
    assert len(images) == 4  # per chapter: total scores and points per part
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)


def test_report_groups_failure_messages(report):
    bn = section(report, "batchnorm")
    grouped = "batchnorm_forward: out is wrong: relative error # (allowed #), worst at index (#, #)"
    # three of the three graded batchnorm submissions fail the first part this way
    assert re.search(re.escape(grouped) + r'</td><td class="num">3</td><td class="num">100%</td>', bn)
    assert "3.10e-02" not in bn


def test_report_shows_at_most_five_messages_per_part(tmp_path):
    records = [record(f"s{i}", "batchnorm", {FIRST: f"mistake {chr(97 + i)}"}) for i in range(7)]
    html = write_report(tmp_path / "r.html", records, {}, PARTS).read_text(encoding="utf-8")
    assert [m for m in "abcdefg" if f"mistake {m}<" in html] == list("abcde")


def test_report_lists_submissions_that_were_not_graded(report):
    bn = section(report, "batchnorm")
    not_graded = bn[bn.index("<h3>Not graded</h3>"):]
    assert "<td>dan</td><td>timed out</td><td class=\"msg\">the notebook ran longer than 60 s</td>" in not_graded
    assert "eve" in not_graded and "ann" not in not_graded


def test_report_escapes_everything_and_leaks_nothing(report):
    assert "<script" not in report.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report
    assert SECRET not in report and "424242" not in report
    assert not re.search(r"https?:|<link|url\(", report)


def test_report_is_deterministic_and_fast(tmp_path):
    rng = random.Random(0)
    records = []
    for i in range(100):
        for chapter, auto in (("batchnorm", BN_AUTO), ("pooling", POOL_AUTO)):
            status = rng.choice([GRADED] * 9 + list(STATUSES[1:]))
            failed = {p.grade_id: wrong(rng.random(), rng.randrange(9), rng.randrange(9))
                      for p in auto if rng.random() < 0.3}
            records.append(record(f"student{i:03d}", chapter, failed, status, message=f"{status} for a reason"))
    start = time.perf_counter()
    first = write_report(tmp_path / "a.html", records, MANUAL, PARTS).read_bytes()
    elapsed = time.perf_counter() - start
    second = write_report(tmp_path / "b.html", list(reversed(records)), MANUAL, PARTS).read_bytes()
    assert first == second
    assert elapsed < 6  # about 1 s on an idle machine; a generous bound for a busy one


def test_normalise_groups_one_exception_raised_on_different_lines():
    a = "batchnorm_forward: raised ValueError: bad axis\n  at cell 12, line 5: m = x.mean(2)"
    b = "batchnorm_forward: raised ValueError: bad axis\n  at Cell In[3], line 2: mu = x.mean(axis=2)"
    assert normalise(a) == normalise(b) == "batchnorm_forward: raised ValueError: bad axis"
