"""Feedback pages: where they go, what they show, and what they must never show."""
import re
from html import unescape
from pathlib import Path

import pytest

from autograder.parts import ManualGrade, chapter_parts
from autograder.records import GRADED, INVALID, TIMED_OUT, CellScore, CheckVerdict, SubmissionRecord
from autograder.reports.feedback import feedback_path, write_feedback

EXERCISES = Path(__file__).resolve().parent.parent / "exercises"
PARTS = {ch: chapter_parts(EXERCISES, ch) for ch in ("batchnorm", "pooling")}
TORCH_2D = "batchnorm_batchnorm_forward_torch_2d"
CACHE = "batchnorm_batchnorm_forward_cache"
WRITTEN = "batchnorm_experiment_sigmoid_depth"

# What only the grader may know: a hidden check's id, description and seed.
SECRET_ID = "batchnorm_forward_SENTINELID_hidden"
SECRET_DESCRIPTION = "SENTINELDESC on a (7, 3) input with eps = 0.25"
SECRET_SEED = 918273645
HOSTILE = "<script>alert(1)</script>"


def graded_record(student: str, failing: dict[str, list[CheckVerdict]]) -> SubmissionRecord:
    """A graded batchnorm submission: every part passes one visible check, except the parts
    in ``failing``, which get the given verdicts instead."""
    cells, checks = [], []
    for part in PARTS["batchnorm"]:
        if not part.autograded:
            continue
        verdicts = failing.get(part.grade_id) or [
            CheckVerdict(part.grade_id, part.grade_id, f"{part.grade_id} works", False, True, "passed")
        ]
        ok = all(v.passed for v in verdicts)
        cells.append(CellScore(part.grade_id, part.points, part.points if ok else 0.0,
                               "passed" if ok else next(v.message for v in verdicts if not v.passed)))
        checks += verdicts
    return SubmissionRecord(student, "batchnorm", GRADED, "graded", cells=cells, checks=checks,
                            seeds={SECRET_ID: SECRET_SEED}, graded_at="2025-01-31T12:00:00+00:00")


ALICE = graded_record("alice", {
    TORCH_2D: [
        CheckVerdict(TORCH_2D, TORCH_2D, "out matches F.batch_norm on a (8, 5) input", False, True, "passed"),
        CheckVerdict(SECRET_ID, TORCH_2D, SECRET_DESCRIPTION, True, False,
                     "batchnorm_forward: out is wrong: relative error 3.10e-02 (allowed 1e-08), worst at index (3, 1)"),
    ],
    CACHE: [CheckVerdict(CACHE, CACHE, "the cache holds xhat", False, False,
                         f"batchnorm_forward: raised ValueError: {HOSTILE}")],
})
ALICE.notes.append("restored the deleted test cell <b>batchnorm_batchnorm_forward_cache</b>")
BOB = SubmissionRecord("bob", "batchnorm", TIMED_OUT, f"the notebook ran longer than 60 s {HOSTILE}")
CAROL = SubmissionRecord("carol", "pooling", INVALID, "the file is not a notebook (invalid JSON at line 1)")
MANUAL = {"alice": [ManualGrade(WRITTEN, 15.0, 20.0, "Clear, but <img src=x onerror=alert(2)> (b) is missing.")]}


@pytest.fixture
def pages(tmp_path):
    paths = write_feedback(tmp_path, [ALICE, BOB, CAROL], MANUAL, PARTS)
    return tmp_path, paths, {p.parts[-3]: p.read_text(encoding="utf-8") for p in paths}


def text_of(html: str) -> str:
    """The page's visible text, whitespace collapsed."""
    body = html.split("<body>", 1)[1]
    body = re.sub(r"</?(strong|code|span)\b[^>]*>", "", body)  # inline: no word break
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).split())


def test_pages_go_where_nbgrader_puts_feedback(pages):
    course, paths, _ = pages
    assert paths == [
        course / "feedback" / "alice" / "batchnorm" / "batchnorm.html",
        course / "feedback" / "bob" / "batchnorm" / "batchnorm.html",
        course / "feedback" / "carol" / "pooling" / "pooling.html",
    ]
    leftovers = [p for p in (course / "feedback").rglob("*") if p.is_file() and p not in paths]
    assert leftovers == []  # no temporary files left behind


def test_graded_page_shows_total_parts_failures_notes_and_comment(pages):
    text = text_of(pages[2]["alice"])
    # 80 autograded points minus the two failed parts (10 + 5), plus 15 of 20 written
    assert "Total: 80 / 100 (autograded 65 / 80, written 15 / 20)" in text
    assert "Status: graded" in text
    assert "out matches F.batch_norm on a (8, 5) input and 1 hidden check 0 / 10" in text
    assert ("hidden check 1 of this part: batchnorm_forward: out is wrong: relative error 3.10e-02 "
            "(allowed 1e-08), worst at index (3, 1)") in text
    assert f"the cache holds xhat: batchnorm_forward: raised ValueError: {HOSTILE}" in text
    assert "restored the deleted test cell <b>batchnorm_batchnorm_forward_cache</b>" in text
    assert "15 / 20 Grader’s comment: Clear, but <img src=x onerror=alert(2)> (b) is missing." in text


def test_parts_appear_in_notebook_order(pages):
    html = pages[2]["alice"]
    positions = [html.index(f"<code>{p.grade_id}</code>") for p in PARTS["batchnorm"]]
    assert positions == sorted(positions)


def test_a_submission_that_was_not_graded_says_why(pages):
    text = text_of(pages[2]["bob"])
    assert f"Status: timed out the notebook ran longer than 60 s {HOSTILE}" in text
    assert "Total: 0 / 100" in text
    assert "the written answer (20 points) is still awaiting a grader" in text
    assert "not run (timed out)" in text
    assert "– / 20 awaiting a grader" in text


def test_student_strings_are_escaped(pages):
    for html in pages[2].values():
        assert "<script" not in html.lower()
        assert "<img" not in html.lower()
        assert "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[2]["alice"]


def test_pages_are_self_contained(pages):
    for html in pages[2].values():
        assert not re.search(r"https?:|<link|<script|src=|url\(|@import", html.split("<body>")[0])
        assert "Content-Security-Policy" in html


def test_nothing_about_hidden_checks_leaks(pages):
    html = pages[2]["alice"]
    assert "SENTINEL" not in html
    assert str(SECRET_SEED) not in html
    assert "hidden check 1 of this part" in html


def test_pages_are_deterministic(tmp_path):
    first = write_feedback(tmp_path / "a", [ALICE], MANUAL, PARTS)[0].read_bytes()
    second = write_feedback(tmp_path / "b", [ALICE], MANUAL, PARTS)[0].read_bytes()
    assert first == second


def test_rewriting_replaces_the_page(tmp_path):
    write_feedback(tmp_path, [ALICE], {}, PARTS)
    (path,) = write_feedback(tmp_path, [ALICE], MANUAL, PARTS)
    assert "Grader’s comment" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("student", ["../evil", "a/b", "..", ""])
def test_a_student_id_that_is_no_folder_name_is_refused(tmp_path, student):
    with pytest.raises(ValueError, match="cannot be used as a folder name"):
        feedback_path(tmp_path, student, "batchnorm")


def test_a_chapter_without_parts_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="No graded parts are known for chapter 'pooling'"):
        write_feedback(tmp_path, [CAROL], {}, {"batchnorm": PARTS["batchnorm"]})
