"""Finding submissions: folder layouts, LMS exports, chapter and student recognition,
duplicates, and zips that try to escape or explode."""
import os
import struct
import zipfile
from pathlib import Path

import pytest

from autograder import intake
from autograder.intake import Found, IntakeError, Skipped, discover

CHAPTERS = ("batchnorm", "bn_inference", "dropout", "layernorm", "pooling", "variance_shift")
NOTEBOOK = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def make(root: Path, *names: str, data: bytes = NOTEBOOK) -> Path:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def make_zip(path: Path, members: dict[str, bytes] | list[str]) -> Path:
    if isinstance(members, list):
        members = {name: NOTEBOOK for name in members}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def run(tmp_path, source, **kwargs):
    return discover(source, CHAPTERS, workdir=tmp_path / "work", **kwargs)


def triples(found: list[Found]) -> list[tuple[str, str, str]]:
    return [(f.chapter, f.student, f.origin) for f in found]


def reasons(skipped: list[Skipped]) -> dict[str, str]:
    return {s.origin: s.reason for s in skipped}


# --- folder layouts ---------------------------------------------------------------------

def test_student_folders_sorted_by_chapter_then_student(tmp_path):
    subs = make(tmp_path / "subs", "bob/batchnorm.ipynb", "alice/layernorm.ipynb", "alice/batchnorm.ipynb",
                "carol/bn_inference.ipynb")
    found, skipped = run(tmp_path, subs)
    assert triples(found) == [
        ("batchnorm", "alice", "alice/batchnorm.ipynb"),
        ("batchnorm", "bob", "bob/batchnorm.ipynb"),
        ("bn_inference", "carol", "carol/bn_inference.ipynb"),
        ("layernorm", "alice", "alice/layernorm.ipynb"),
    ]
    assert found[0].path == subs / "alice" / "batchnorm.ipynb"
    assert skipped == []


def test_nbgrader_submitted_layout_ignores_files_beside_the_notebook(tmp_path):
    subs = make(tmp_path / "submitted", "alice/batchnorm/batchnorm.ipynb", "bob/dropout/dropout.ipynb")
    make(subs, "alice/batchnorm/timestamp.txt", "alice/batchnorm/coursechecks/__init__.py")
    found, skipped = run(tmp_path, subs)
    assert triples(found) == [("batchnorm", "alice", "alice/batchnorm/batchnorm.ipynb"),
                              ("dropout", "bob", "bob/dropout/dropout.ipynb")]
    assert skipped == []


def test_nbgrader_layout_refuses_a_notebook_named_for_another_chapter(tmp_path):
    subs = make(tmp_path / "subs", "alice/batchnorm/layernorm.ipynb")
    found, skipped = run(tmp_path, subs)
    assert found == []
    assert "batchnorm folder" in reasons(skipped)["alice/batchnorm/layernorm.ipynb"]


def test_hidden_and_system_files_are_silent_other_files_are_reported(tmp_path):
    subs = make(tmp_path / "subs", "alice/batchnorm.ipynb", "alice/.ipynb_checkpoints/batchnorm-checkpoint.ipynb",
                ".DS_Store", "__MACOSX/alice/._batchnorm.ipynb", "alice/.hidden.ipynb", "alice/notes.txt",
                "grades.csv", "alice/extra/batchnorm.ipynb")
    found, skipped = run(tmp_path, subs)
    assert triples(found) == [("batchnorm", "alice", "alice/batchnorm.ipynb")]
    assert reasons(skipped) == {
        "alice/notes.txt": "not a notebook (.ipynb)",
        "grades.csv": "not a notebook (.ipynb)",
        "alice/extra/batchnorm.ipynb": reasons(skipped)["alice/extra/batchnorm.ipynb"],
    }
    assert "recognised layout" in reasons(skipped)["alice/extra/batchnorm.ipynb"]


def test_symlinks_in_a_folder_are_not_followed(tmp_path):
    subs = make(tmp_path / "subs", "alice/batchnorm.ipynb")
    make(tmp_path, "secret.ipynb")
    (subs / "bob").mkdir()
    (subs / "bob" / "batchnorm.ipynb").symlink_to(tmp_path / "secret.ipynb")
    (subs / "carol").symlink_to(tmp_path, target_is_directory=True)
    found, skipped = run(tmp_path, subs)
    assert [f.student for f in found] == ["alice"]
    assert set(reasons(skipped)) == {"bob/batchnorm.ipynb", "carol"}
    assert all("symbolic link" in r for r in reasons(skipped).values())


# --- chapters ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, chapter", [
    ("bn_inference.ipynb", "bn_inference"),
    ("BN-Inference.ipynb", "bn_inference"),
    ("batchnorm (1).ipynb", "batchnorm"),
    ("batchnorm-Copy1.ipynb", "batchnorm"),
    ("Copy of Variance Shift.ipynb", "variance_shift"),
    ("hw3_pooling_final.ipynb", "pooling"),
])
def test_chapter_is_read_from_the_file_name(tmp_path, name, chapter):
    found, skipped = run(tmp_path, make(tmp_path / "subs", f"alice/{name}"))
    assert [(f.student, f.chapter) for f in found] == [("alice", chapter)]
    assert skipped == []


def test_longest_chapter_name_wins_over_a_shorter_one_inside_it(tmp_path):
    subs = make(tmp_path / "subs", "alice/bn_inference.ipynb", "bob/inference.ipynb")
    found, _ = discover(subs, ["inference", "bn_inference", "batchnorm"], workdir=tmp_path / "w")
    assert [(f.student, f.chapter) for f in found] == [("alice", "bn_inference"), ("bob", "inference")]


def test_a_name_with_two_chapters_or_none_is_skipped(tmp_path):
    subs = make(tmp_path / "subs", "alice/batchnorm_vs_layernorm.ipynb", "bob/homework.ipynb")
    found, skipped = run(tmp_path, subs)
    assert found == []
    why = reasons(skipped)
    assert "more than one chapter (batchnorm, layernorm)" in why["alice/batchnorm_vs_layernorm.ipynb"]
    assert "does not say which chapter" in why["bob/homework.ipynb"]


def test_chapter_option_names_unnamed_files_and_leaves_other_chapters_out(tmp_path):
    subs = make(tmp_path / "subs", "alice/homework.ipynb", "bob/batchnorm.ipynb", "bob/layernorm.ipynb")
    found, skipped = run(tmp_path, subs, chapter="batchnorm")
    assert [(f.student, f.chapter) for f in found] == [("alice", "batchnorm"), ("bob", "batchnorm")]
    assert skipped == []  # bob's layernorm is another chapter's business


def test_unknown_chapter_option_is_an_error(tmp_path):
    with pytest.raises(IntakeError, match="unknown chapter 'batchnrom'"):
        run(tmp_path, make(tmp_path / "subs", "alice/batchnorm.ipynb"), chapter="batchnrom")


# --- LMS exports ---------------------------------------------------------------------------

def test_canvas_export(tmp_path):
    subs = make(tmp_path / "canvas", "doejane_12345_678901_batchnorm.ipynb",
                "smithjohn_LATE_222_900001_batchnorm-1.ipynb", "leeann_333_5_my_homework.ipynb")
    found, skipped = run(tmp_path, subs)
    assert [(f.student, f.chapter) for f in found] == [("12345", "batchnorm"), ("222", "batchnorm")]
    assert "does not say which chapter" in reasons(skipped)["leeann_333_5_my_homework.ipynb"]
    found, skipped = run(tmp_path, subs, chapter="batchnorm")
    assert [f.student for f in found] == ["12345", "222", "333"]


def test_canvas_keeps_the_higher_submission_id_late_or_not(tmp_path):
    subs = make(tmp_path / "canvas", "doejane_LATE_12345_700_batchnorm.ipynb", "doejane_12345_650_batchnorm.ipynb")
    os.utime(subs / "doejane_LATE_12345_700_batchnorm.ipynb", (1_000, 1_000))  # older file, later submission
    found, skipped = run(tmp_path, subs)
    assert [f.origin for f in found] == ["doejane_LATE_12345_700_batchnorm.ipynb"]
    assert reasons(skipped) == {
        "doejane_12345_650_batchnorm.ipynb":
            "12345 has more than one batchnorm notebook; kept doejane_LATE_12345_700_batchnorm.ipynb "
            "(the later Canvas submission)",
    }


def test_moodle_export_flat_and_in_folders(tmp_path):
    subs = make(tmp_path / "moodle", "Jane Doe_4567_assignsubmission_file_batchnorm.ipynb",
                "John Roe_4568_assignsubmission_file_/bn_inference.ipynb")
    found, skipped = run(tmp_path, subs)
    assert [(f.student, f.chapter) for f in found] == [("4567", "batchnorm"), ("4568", "bn_inference")]
    assert skipped == []


def test_generic_flat_names(tmp_path):
    subs = make(tmp_path / "flat", "s123_bn_inference.ipynb", "jean-luc-batchnorm.ipynb",
                "mary_ann_variance_shift (2).ipynb", "batchnorm.ipynb", "alice_notes.ipynb")
    found, skipped = run(tmp_path, subs)
    assert [(f.chapter, f.student) for f in found] == [
        ("batchnorm", "jean-luc"), ("bn_inference", "s123"), ("variance_shift", "mary_ann")]
    assert set(reasons(skipped)) == {"batchnorm.ipynb", "alice_notes.ipynb"}
    assert all("--pattern" in r for r in reasons(skipped).values())


def test_lms_file_for_another_chapter_is_reported(tmp_path):
    subs = make(tmp_path / "canvas", "doejane_12345_678901_layernorm.ipynb")
    found, skipped = run(tmp_path, subs, chapter="batchnorm")
    assert found == []
    assert reasons(skipped) == {"doejane_12345_678901_layernorm.ipynb": "it is for layernorm, not batchnorm"}


# --- custom pattern ------------------------------------------------------------------------

def test_custom_pattern_with_student_and_chapter(tmp_path):
    subs = make(tmp_path / "flat", "hw-42-dropout.ipynb", "hw-43-nonsense.ipynb", "other.ipynb")
    found, skipped = run(tmp_path, subs, pattern=r"hw-(?P<student>\d+)-(?P<chapter>\w+)\.ipynb")
    assert [(f.student, f.chapter) for f in found] == [("42", "dropout")]
    why = reasons(skipped)
    assert "captured 'nonsense', which is not a chapter" in why["hw-43-nonsense.ipynb"]
    assert "does not match the pattern" in why["other.ipynb"]


def test_custom_pattern_without_chapter_reads_the_rest_of_the_name(tmp_path):
    # The student id "dropout7" must not make the file a dropout submission.
    subs = make(tmp_path / "flat", "dropout7__pooling.ipynb", "x1__homework.ipynb")
    found, skipped = run(tmp_path, subs, pattern=r"(?P<student>[^_]+)__")
    assert [(f.student, f.chapter) for f in found] == [("dropout7", "pooling")]
    found, _ = run(tmp_path, subs, pattern=r"(?P<student>[^_]+)__", chapter="pooling")
    assert [f.student for f in found] == ["dropout7", "x1"]


@pytest.mark.parametrize("pattern, message", [
    (r"(?P<chapter>\w+)_(?P<id>\d+)", "has no \\(\\?P<student>"),
    (r"(?P<student>\d+", "not a valid regular expression"),
])
def test_bad_patterns_are_errors(tmp_path, pattern, message):
    with pytest.raises(IntakeError, match=message):
        run(tmp_path, make(tmp_path / "flat", "1_batchnorm.ipynb"), pattern=pattern)


# --- student ids ---------------------------------------------------------------------------

def test_unsafe_student_ids_are_skipped_and_ids_are_stripped(tmp_path):
    names = ["alice _batchnorm.ipynb", "a b_batchnorm.ipynb", "-rf_batchnorm.ipynb", "ü_batchnorm.ipynb",
             "x" * 65 + "_batchnorm.ipynb", " _batchnorm.ipynb", "a$(id)_batchnorm.ipynb"]
    subs = make(tmp_path / "flat", *names)
    found, skipped = run(tmp_path, subs, pattern=r"(?P<student>.*)_batchnorm")
    assert [f.student for f in found] == ["alice"]
    assert set(reasons(skipped)) == set(names[1:])
    assert all("not a usable student id" in r for r in reasons(skipped).values())


def test_student_folder_with_an_unusable_name_is_skipped(tmp_path):
    found, skipped = run(tmp_path, make(tmp_path / "subs", "Jane Doe/batchnorm.ipynb"))
    assert found == []
    assert "'Jane Doe' is not a usable student id" in reasons(skipped)["Jane Doe/batchnorm.ipynb"]


# --- duplicates ----------------------------------------------------------------------------

def test_duplicates_keep_the_most_recent_then_the_first_name(tmp_path):
    subs = make(tmp_path / "subs", "alice/batchnorm.ipynb", "alice/batchnorm (1).ipynb",
                "bob/batchnorm.ipynb", "bob/batchnorm-Copy1.ipynb")
    os.utime(subs / "alice/batchnorm.ipynb", (2_000, 2_000))
    os.utime(subs / "alice/batchnorm (1).ipynb", (1_000, 1_000))
    for name in ("bob/batchnorm.ipynb", "bob/batchnorm-Copy1.ipynb"):
        os.utime(subs / name, (1_000, 1_000))
    found, skipped = run(tmp_path, subs)
    assert [f.origin for f in found] == ["alice/batchnorm.ipynb", "bob/batchnorm-Copy1.ipynb"]
    assert reasons(skipped) == {
        "alice/batchnorm (1).ipynb": "alice has more than one batchnorm notebook; kept alice/batchnorm.ipynb "
                                     "(modified more recently)",
        "bob/batchnorm.ipynb": "bob has more than one batchnorm notebook; kept bob/batchnorm-Copy1.ipynb "
                               "(same modification time, first by name)",
    }


# --- zips ----------------------------------------------------------------------------------

def test_zip_extracts_only_the_notebooks_to_grade(tmp_path):
    export = make_zip(tmp_path / "export.zip", {
        "doejane_12345_678901_batchnorm.ipynb": b"new",
        "doejane_12345_600000_batchnorm.ipynb": b"old",
        "smithjohn_222_900001_report.pdf": b"%PDF",
        "__MACOSX/._doejane_12345_678901_batchnorm.ipynb": b"junk",
    })
    found, skipped = run(tmp_path, export)
    work = tmp_path / "work"
    assert found == [Found("12345", "batchnorm", work / "12345" / "batchnorm.ipynb",
                           "export.zip:doejane_12345_678901_batchnorm.ipynb")]
    assert found[0].path.read_bytes() == b"new"
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file()) == ["12345/batchnorm.ipynb"]
    assert reasons(skipped)["export.zip:smithjohn_222_900001_report.pdf"] == "not a notebook (.ipynb)"
    assert "kept export.zip:doejane_12345_678901_batchnorm.ipynb" in \
        reasons(skipped)["export.zip:doejane_12345_600000_batchnorm.ipynb"]


def test_zip_of_student_folders_and_of_a_wrapping_folder(tmp_path):
    direct = make_zip(tmp_path / "direct.zip", ["alice/batchnorm.ipynb", "bob/batchnorm/batchnorm.ipynb"])
    found, _ = run(tmp_path, direct)
    assert [(f.student, f.chapter) for f in found] == [("alice", "batchnorm"), ("bob", "batchnorm")]

    wrapped = make_zip(tmp_path / "wrapped.zip", ["submissions/alice/batchnorm.ipynb",
                                                  "submissions/bob/layernorm.ipynb"])
    found, skipped = run(tmp_path, wrapped)
    assert [(f.student, f.chapter) for f in found] == [("alice", "batchnorm"), ("bob", "layernorm")]
    assert skipped == []

    canvas = make_zip(tmp_path / "canvas.zip", ["export/a_1_10_batchnorm.ipynb", "export/b_2_20_batchnorm.ipynb"])
    found, _ = run(tmp_path, canvas)
    assert [f.student for f in found] == ["1", "2"]  # not one student called "export"

    one_student = make_zip(tmp_path / "alice.zip", ["alice/batchnorm.ipynb"])
    found, _ = run(tmp_path, one_student)
    assert [(f.student, f.chapter) for f in found] == [("alice", "batchnorm")]


def test_folder_wrapping_a_flat_export_is_read_inside(tmp_path):
    subs = make(tmp_path / "subs", "export/a_1_10_batchnorm.ipynb", "export/b_2_20_batchnorm.ipynb")
    found, _ = run(tmp_path, subs)
    assert [(f.student, f.origin) for f in found] == [("1", "export/a_1_10_batchnorm.ipynb"),
                                                      ("2", "export/b_2_20_batchnorm.ipynb")]
    assert found[0].path == subs / "export" / "a_1_10_batchnorm.ipynb"


def test_zip_members_that_escape_or_link_are_never_extracted(tmp_path):
    export = tmp_path / "evil.zip"
    with zipfile.ZipFile(export, "w") as zf:
        zf.writestr("../a_1_2_batchnorm.ipynb", NOTEBOOK)
        zf.writestr("/etc/b_3_4_batchnorm.ipynb", NOTEBOOK)
        zf.writestr("alice/../../c_5_6_batchnorm.ipynb", NOTEBOOK)
        zf.writestr("C:\\temp\\d_7_8_batchnorm.ipynb", NOTEBOOK)
        link = zipfile.ZipInfo("bob/batchnorm.ipynb")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
        zf.writestr("carol/batchnorm.ipynb", NOTEBOOK)
    found, skipped = run(tmp_path / "deep" / "er", export)
    assert [f.student for f in found] == ["carol"]
    why = reasons(skipped)
    assert len(why) == 5
    assert "symbolic link" in why["evil.zip:bob/batchnorm.ipynb"]
    assert all("leaves the zip's folder" in r for o, r in why.items() if o != "evil.zip:bob/batchnorm.ipynb")
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["deep/er/work/carol/batchnorm.ipynb", "evil.zip"]


def test_nested_zip_is_not_expanded(tmp_path):
    inner = make_zip(tmp_path / "inner.zip", ["alice/batchnorm.ipynb"]).read_bytes()
    export = make_zip(tmp_path / "outer.zip", {"inner.zip": inner, "bob/batchnorm.ipynb": NOTEBOOK})
    found, skipped = run(tmp_path, export)
    assert [f.student for f in found] == ["bob"]
    assert "not expanded" in reasons(skipped)["outer.zip:inner.zip"]


def test_zip_with_too_many_members_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(intake, "MAX_MEMBERS", 3)
    export = make_zip(tmp_path / "many.zip", [f"s{i}/batchnorm.ipynb" for i in range(4)])
    with pytest.raises(IntakeError, match="more than the limit of 3"):
        run(tmp_path, export)


def test_zip_member_over_the_size_cap_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(intake, "MAX_MEMBER_BYTES", 1000)
    export = make_zip(tmp_path / "big.zip", {"alice/batchnorm.ipynb": b" " * 1001, "bob/batchnorm.ipynb": NOTEBOOK})
    found, skipped = run(tmp_path, export)
    assert [f.student for f in found] == ["bob"]
    assert "over the limit of 1000 bytes" in reasons(skipped)["big.zip:alice/batchnorm.ipynb"]
    assert not (tmp_path / "work" / "alice").exists()


def test_zip_over_the_total_cap_is_an_error_before_extracting(tmp_path, monkeypatch):
    monkeypatch.setattr(intake, "MAX_TOTAL_BYTES", 1500)
    export = make_zip(tmp_path / "bomb.zip", {f"s{i}/batchnorm.ipynb": b" " * 1000 for i in range(2)})
    with pytest.raises(IntakeError, match="would expand to"):
        run(tmp_path, export)
    assert not (tmp_path / "work").exists()


def test_zip_member_that_lies_about_its_size_is_skipped(tmp_path):
    export = make_zip(tmp_path / "liar.zip", {"alice/batchnorm.ipynb": b"x" * 100_000, "bob/batchnorm.ipynb": NOTEBOOK})
    data = bytearray(export.read_bytes())
    # Rewrite the declared uncompressed size (local header and central directory) to 10 bytes.
    local = data.index(b"PK\x03\x04")
    struct.pack_into("<I", data, local + 22, 10)
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 10)
    export.write_bytes(bytes(data))
    found, skipped = run(tmp_path, export)
    assert [f.student for f in found] == ["bob"]
    assert "could not be extracted" in reasons(skipped)["liar.zip:alice/batchnorm.ipynb"]
    assert not (tmp_path / "work" / "alice" / "batchnorm.ipynb").exists()
    assert list((tmp_path / "work" / "alice").iterdir()) == []  # no partial file left behind


def test_encrypted_zip_member_is_skipped(tmp_path):
    export = make_zip(tmp_path / "locked.zip", ["alice/batchnorm.ipynb"])
    data = bytearray(export.read_bytes())
    # Set the "encrypted" flag in the local header and the central directory.
    struct.pack_into("<H", data, data.index(b"PK\x03\x04") + 6, 1)
    struct.pack_into("<H", data, data.index(b"PK\x01\x02") + 8, 1)
    export.write_bytes(bytes(data))
    found, skipped = run(tmp_path, export)
    assert found == []
    assert reasons(skipped) == {"locked.zip:alice/batchnorm.ipynb": "encrypted in the zip; cannot be extracted"}


def test_zip_case_clash_is_not_extracted_twice(tmp_path):
    export = make_zip(tmp_path / "case.zip", {"Alice/batchnorm.ipynb": b"A", "alice/batchnorm.ipynb": b"a"})
    found, skipped = run(tmp_path, export)
    assert [f.student for f in found] == ["Alice"]
    assert found[0].path.read_bytes() == b"A"
    assert "only in letter case" in reasons(skipped)["case.zip:alice/batchnorm.ipynb"]


# --- unusable input ------------------------------------------------------------------------

def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(IntakeError, match="does not exist"):
        run(tmp_path, tmp_path / "nowhere")


@pytest.mark.parametrize("data", [b"not a zip at all", b"PK\x03\x04" + b"\0" * 40])
def test_unreadable_zip_is_an_error(tmp_path, data):
    broken = tmp_path / "export.zip"
    broken.write_bytes(data)
    with pytest.raises(IntakeError, match="not a readable zip file"):
        run(tmp_path, broken)


def test_a_single_notebook_is_not_a_submissions_folder(tmp_path):
    with pytest.raises(IntakeError, match="neither a folder nor a .zip"):
        run(tmp_path, make(tmp_path, "batchnorm.ipynb") / "batchnorm.ipynb")


def test_a_huge_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(intake, "MAX_MEMBERS", 5)
    subs = make(tmp_path / "home", *(f"s{i}/batchnorm.ipynb" for i in range(3)))
    with pytest.raises(IntakeError, match="more than 5 files and folders"):
        run(tmp_path, subs)


def test_a_folder_named_after_a_chapter_is_not_a_student(tmp_path):
    found, skipped = run(tmp_path, make(tmp_path / "subs", "batchnorm/alice.ipynb", "bob/batchnorm.ipynb"))
    assert [f.student for f in found] == ["bob"]
    assert "named after a chapter" in reasons(skipped)["batchnorm/alice.ipynb"]
