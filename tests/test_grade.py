"""Grading a class end to end in the sandbox: scores, records, nbgrader's gradebook, the
files nbgrader expects, re-runs, interrupted runs, seeds and another database.

A small class of the batchnorm chapter is graded once per scenario (module-scoped fixtures):
a reference answer, a typical bug, an untouched release notebook and a file that is not a
notebook."""
import hashlib
import io
import re
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest

import bugs
from autograder import grade, records
from autograder.authoring import course
from autograder.authoring.checks import core
from autograder.authoring.course import _tools_on_path
from autograder.grade import ChapterRun, Options
from autograder.grading.record import Recorder
from autograder.store import RecordStore
from course_kit import new_course

REPO = Path(__file__).resolve().parent.parent
EXERCISES = REPO / "exercises"
CHAPTER = "batchnorm"
BUG = bugs.load(CHAPTER).BUGS["unbiased_variance"]
WRITTEN = "batchnorm_experiment_sigmoid_depth"
CHECKS = core.chapter_checks(CHAPTER)
TEST_CELLS = sorted({c.cell_id for c in CHECKS.values()})
STUDENTS = ("broken", "bug", "reference", "untouched")


def copy_course(root: Path) -> Path:
    """The batchnorm chapter of ``exercises/`` (source and release) in a new course directory."""
    target = root / "course"
    new_course(target, CHAPTER)
    return target


def notebook_of(kind: str) -> str:
    """A submission's text: the reference answers, the reference with a bug appended to an
    answer cell, the untouched release, or broken JSON."""
    release = course.read(EXERCISES / "release" / CHAPTER / f"{CHAPTER}.ipynb")
    answers = course.answers(course.read(EXERCISES / "source" / CHAPTER / f"{CHAPTER}.ipynb"))
    if kind == "reference":
        return nbformat.writes(course.fill_answers(release, answers))
    if kind == "bug":
        cell = BUG["answer_cell"]
        return nbformat.writes(course.fill_answers(release, {**answers, cell: answers[cell] + "\n" + BUG["source"]}))
    if kind == "untouched":
        return nbformat.writes(release)
    return '{"cells": [ this is not json'


def make_class(root: Path, students: dict[str, str]) -> Path:
    """``root/submissions/<student>/batchnorm.ipynb`` for each (student, kind)."""
    for student, kind in students.items():
        path = root / "submissions" / student / f"{CHAPTER}.ipynb"
        path.parent.mkdir(parents=True)
        path.write_text(notebook_of(kind))
    return root / "submissions"


def all_records(url: str) -> dict[str, records.SubmissionRecord]:
    with RecordStore(url) as store:
        return {r.student: r for r in store.records(CHAPTER)}


def nbgrader_book(url: str):
    from nbgrader.api import Gradebook

    with _tools_on_path():
        return Gradebook(url)


def lost(rec: records.SubmissionRecord) -> set[str]:
    return {c.cell for c in rec.cells if c.awarded < c.points}


# --- the first grading of the class ------------------------------------------------------------


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    course_dir = copy_course(root)
    subs = make_class(root, {s: s for s in STUDENTS})
    progress = []
    summary = grade.grade(subs, Options(course_dir, jobs=2), lambda *args: progress.append(args))
    url = grade.default_url(course_dir)
    return {"course": course_dir, "subs": subs, "summary": summary, "progress": progress,
            "records": all_records(url), "scores": course.scores(course_dir, CHAPTER), "url": url}


def test_summary_counts_every_submission(graded):
    summary = graded["summary"]
    assert sorted(r.student for r in summary.graded) == ["bug", "reference", "untouched"]
    assert [(r.student, r.status) for r in summary.failed] == [("broken", records.INVALID)]
    assert summary.unchanged == [] and summary.skipped == []
    lines = summary.lines()
    assert lines[0].startswith("graded 3, not fully graded 1, unchanged since last run 0, skipped files 0 (")
    assert lines[1].startswith(f"  broken/{CHAPTER}: {records.INVALID}: ")


def test_progress_is_reported_for_every_submission(graded):
    progress = graded["progress"]
    assert progress[0] == (0, 4, "")
    assert [done for done, total, _ in progress[1:]] == [1, 2, 3, 4]
    assert {text for _, _, text in progress[1:]} == {
        f"broken/{CHAPTER}: {records.INVALID}", f"bug/{CHAPTER}: graded",
        f"reference/{CHAPTER}: graded", f"untouched/{CHAPTER}: graded"}


def test_scores_follow_the_answers(graded):
    recs = graded["records"]
    assert recs["reference"].auto_score == recs["reference"].auto_max == 80
    assert lost(recs["reference"]) == set()
    assert lost(recs["bug"]) == BUG["fails"]
    assert recs["untouched"].auto_score == 0 and lost(recs["untouched"]) == set(TEST_CELLS)
    assert "not implemented yet" in recs["untouched"].cells[0].message


def test_records_and_the_nbgrader_gradebook_agree(graded):
    recs, scores = graded["records"], graded["scores"]
    assert sorted(scores) == ["bug", "reference", "untouched"]  # nothing for the broken file
    for student, rec in recs.items():
        if rec.status != records.GRADED:
            continue
        assert {c.cell: c.awarded for c in rec.cells} == {
            gid: s.auto_score for gid, s in scores[student].items() if s.autograded}
        assert {c.cell: c.points for c in rec.cells} == {
            gid: s.max_score for gid, s in scores[student].items() if s.autograded}


def test_the_written_answer_awaits_a_grader_unless_untouched(graded):
    scores = graded["scores"]
    assert scores["reference"][WRITTEN].auto_score is None
    assert scores["bug"][WRITTEN].auto_score is None
    assert scores["untouched"][WRITTEN].auto_score == 0  # "No response."
    with nbgrader_book(graded["url"]) as gb:
        comment = gb.find_comment(WRITTEN, CHAPTER, CHAPTER, "untouched")
        assert comment.auto_comment == "No response."


def test_an_invalid_file_is_recorded_with_a_reason_and_not_autograded(graded):
    rec = graded["records"]["broken"]
    assert rec.status == records.INVALID and "JSON" in rec.message
    assert rec.cells == [] and rec.checks == []
    assert not (graded["course"] / "autograded" / "broken").exists()


def test_records_hold_every_check_and_the_run_seeds(graded):
    for student in ("reference", "bug", "untouched"):
        rec = graded["records"][student]
        assert sorted(c.check for c in rec.checks) == sorted(CHECKS)
        assert {c.check: (c.cell, c.hidden) for c in rec.checks} == {
            gid: (c.cell_id, c.hidden) for gid, c in CHECKS.items()}
        assert set(rec.seeds) == set(CHECKS)
        assert rec.duration_s > 0
        assert datetime.fromisoformat(rec.graded_at).tzinfo is not None


def test_without_a_seed_the_visible_tests_get_other_inputs_than_in_the_notebook(graded):
    seeds = graded["records"]["reference"].seeds
    visible = [c for c in CHECKS.values() if not c.hidden]
    assert all(seeds[c.grade_id] != c.seed for c in visible)
    assert len(set(seeds.values())) == len(seeds)


def test_every_student_of_a_run_gets_the_same_seeds(graded):
    recs = graded["records"]
    assert recs["reference"].seeds == recs["bug"].seeds == recs["untouched"].seeds


def test_record_sha256_is_the_hash_of_the_submitted_bytes(graded):
    for student, rec in graded["records"].items():
        data = (graded["subs"] / student / f"{CHAPTER}.ipynb").read_bytes()
        assert rec.sha256 == hashlib.sha256(data).hexdigest()


def test_autograded_notebooks_are_valid_and_hold_no_hidden_tests(graded):
    source = "\n".join(c.source for c in course.read(EXERCISES / "source" / CHAPTER / f"{CHAPTER}.ipynb").cells)
    hidden_calls = re.findall(r'check\("\w+_hidden", \w+, seed=\d+\)', source)
    assert hidden_calls  # the source notebook does hold them
    release = course.read(EXERCISES / "release" / CHAPTER / f"{CHAPTER}.ipynb")
    release_tests = {c.metadata["nbgrader"]["grade_id"]: c.source for c in release.cells
                     if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"}
    for student in ("reference", "bug", "untouched"):
        path = graded["course"] / "autograded" / student / CHAPTER / f"{CHAPTER}.ipynb"
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
        text = path.read_text()
        assert "BEGIN HIDDEN TESTS" not in text and "seed=" not in text
        assert not any(call in text for call in hidden_calls)
        for seed in graded["records"][student].seeds.values():
            assert not re.search(rf"\b{seed}\b", text)
        tests = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
                 if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"}
        assert tests == release_tests


def test_autograded_test_cells_show_passes_and_failures(graded):
    nb = nbformat.read(str(graded["course"] / "autograded" / "bug" / CHAPTER / f"{CHAPTER}.ipynb"), as_version=4)
    outputs = {c.metadata["nbgrader"]["grade_id"]: c.outputs for c in nb.cells
               if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"}
    for cell in TEST_CELLS:
        kinds = [o.output_type for o in outputs[cell]]
        if cell in BUG["fails"]:
            assert kinds[-1] == "error" and outputs[cell][-1].evalue.split(" failed. ")[1].startswith("batchnorm_forward:")
        else:
            assert kinds == ["stream"] and outputs[cell][0].text.startswith("passed ")
    experiment = next(c for c in nb.cells if c.cell_type == "code" and "sigmoid" in c.source and not c.metadata.get("nbgrader"))
    assert any("image/png" in o.get("data", {}) for o in experiment.outputs)


def test_submitted_copies_and_timestamps_are_where_nbgrader_keeps_them(graded):
    for student in STUDENTS:
        original = graded["subs"] / student / f"{CHAPTER}.ipynb"
        folder = graded["course"] / "submitted" / student / CHAPTER
        assert (folder / f"{CHAPTER}.ipynb").read_bytes() == original.read_bytes()
        stamp = (folder / "timestamp.txt").read_text()
        when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f UTC").replace(tzinfo=timezone.utc)
        assert abs(when.timestamp() - original.stat().st_mtime) < 1e-3
        if student != "broken":
            assert (graded["course"] / "autograded" / student / CHAPTER / "timestamp.txt").read_text() == stamp


def test_the_gradebook_has_the_submission_timestamps(graded):
    with nbgrader_book(graded["url"]) as gb:
        sub = gb.find_submission(CHAPTER, "reference")
        stamp = (graded["course"] / "submitted" / "reference" / CHAPTER / "timestamp.txt").read_text()
        assert sub.timestamp.strftime("%Y-%m-%d %H:%M:%S.%f") == stamp.removesuffix(" UTC")


# --- re-runs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def regraded(graded):
    """Three more runs on the graded class: nothing changed; one submission changed after a
    grader gave the bug's written answer 17 points; everything forced."""
    course_dir, subs, url = graded["course"], graded["subs"], graded["url"]
    unchanged = grade.grade(subs, Options(course_dir, jobs=2))
    with nbgrader_book(url) as gb:
        gb.find_grade(WRITTEN, CHAPTER, CHAPTER, "bug").manual_score = 17.0
        gb.db.commit()
    before = all_records(url)
    nb = course.read(subs / "bug" / f"{CHAPTER}.ipynb")
    nb.cells.append(nbformat.v4.new_code_cell("print('one more cell')"))
    nbformat.write(nb, str(subs / "bug" / f"{CHAPTER}.ipynb"))
    changed = grade.grade(subs, Options(course_dir, jobs=2))
    after_change = all_records(url)
    manual_after_change = manual_score(url)
    forced = grade.grade(subs, Options(course_dir, jobs=2, force=True))
    return {"unchanged": unchanged, "changed": changed, "forced": forced, "before": before,
            "after_change": after_change, "manual_after_change": manual_after_change,
            "manual_after_force": manual_score(url), "after_force": all_records(url), "url": url}


def manual_score(url: str) -> float | None:
    with nbgrader_book(url) as gb:
        return gb.find_grade(WRITTEN, CHAPTER, CHAPTER, "bug").manual_score


def test_a_rerun_grades_nothing_unchanged(regraded):
    summary = regraded["unchanged"]
    assert summary.graded == [] and summary.failed == []
    assert sorted(f.student for f in summary.unchanged) == list(STUDENTS)
    assert "unchanged since last run 4" in summary.lines()[0]


def test_a_changed_submission_alone_is_regraded(regraded):
    summary = regraded["changed"]
    assert [r.student for r in summary.graded + summary.failed] == ["bug"]
    assert sorted(f.student for f in summary.unchanged) == ["broken", "reference", "untouched"]
    before, after = regraded["before"], regraded["after_change"]
    assert after["bug"].graded_at >= before["bug"].graded_at
    assert lost(after["bug"]) == BUG["fails"]
    for student in ("broken", "reference", "untouched"):
        assert after[student] == before[student]


def test_force_regrades_everything(regraded):
    summary = regraded["forced"]
    assert sorted(r.student for r in summary.graded + summary.failed) == list(STUDENTS)
    assert summary.unchanged == []
    after = regraded["after_force"]
    assert lost(after["bug"]) == BUG["fails"] and lost(after["reference"]) == set()
    assert after["reference"].seeds != regraded["before"]["reference"].seeds  # a new run, new seeds


def test_a_manual_grade_survives_regrading(regraded):
    assert regraded["manual_after_change"] == 17.0
    assert regraded["manual_after_force"] == 17.0


def test_regrading_keeps_one_row_per_submission(regraded):
    with RecordStore(regraded["url"]) as store:
        assert [r.student for r in store.records()] == list(STUDENTS)
    with nbgrader_book(regraded["url"]) as gb:
        assert sorted(s.student.id for s in gb.assignment_submissions(CHAPTER)) == ["bug", "reference", "untouched"]


# --- an interrupted run, a fixed seed and another database --------------------------------------


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """Two students graded into another database with a fixed seed, one per transaction;
    recording the second fails as if the grader were killed there; then the run is started
    again."""
    root = tmp_path_factory.mktemp("interrupted")
    course_dir = copy_course(root)
    subs = make_class(root, {"ann": "reference", "bob": "untouched"})
    url = f"sqlite:///{root / 'elsewhere.db'}"
    options = Options(course_dir, db_url=url, jobs=2, seed=11, batch_size=1)
    write = Recorder._write
    calls = []

    def failing_write(self, batch):
        calls.extend(j.record.student for j in batch)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed while storing")  # an interruption, not an error to record
        return write(self, batch)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Recorder, "_write", failing_write)
        with pytest.raises(KeyboardInterrupt, match="killed while storing"):
            grade.grade(subs, options)
    stored_first = all_records(url)
    resumed = grade.grade(subs, options)
    return {"course": course_dir, "url": url, "calls": calls, "stored_first": stored_first,
            "resumed": resumed, "records": all_records(url), "root": root}


def test_an_interrupted_run_is_completed_by_the_next_one(interrupted):
    (first,) = interrupted["stored_first"]
    missing = ({"ann", "bob"} - {first}).pop()
    assert interrupted["calls"][1] == missing
    resumed = interrupted["resumed"]
    assert [r.student for r in resumed.graded] == [missing]
    assert [f.student for f in resumed.unchanged] == [first]
    assert sorted(interrupted["records"]) == ["ann", "bob"]


def test_an_interrupted_run_leaves_no_duplicates(interrupted):
    with RecordStore(interrupted["url"]) as store:
        assert sorted(r.student for r in store.records()) == ["ann", "bob"]
    with nbgrader_book(interrupted["url"]) as gb:
        subs = gb.assignment_submissions(CHAPTER)
        assert sorted(s.student.id for s in subs) == ["ann", "bob"]
        for sub in subs:
            (notebook,) = sub.notebooks
            assert len(notebook.grades) == len({g.cell.name for g in notebook.grades})


def test_a_fixed_seed_gives_every_run_the_same_seeds(interrupted, graded):
    recs = interrupted["records"]
    assert recs["ann"].seeds == recs["bob"].seeds  # graded by two different runs
    assert recs["ann"].seeds != graded["records"]["reference"].seeds
    with_seed = ChapterRun(interrupted["course"], CHAPTER, 11, interrupted["root"]).plan.seeds
    assert recs["ann"].seeds == with_seed


def test_another_database_gets_everything(interrupted):
    assert not (interrupted["course"] / "gradebook.db").exists()
    with nbgrader_book(interrupted["url"]) as gb:
        notebook = gb.find_submission_notebook(CHAPTER, CHAPTER, "ann")
        assert notebook.code_score == 80
    assert interrupted["records"]["ann"].auto_score == 80
    assert (interrupted["course"] / "autograded" / "ann" / CHAPTER / f"{CHAPTER}.ipynb").is_file()


# --- a PostgreSQL gradebook ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def in_postgres(tmp_path_factory, postgres_server):
    """Three students graded into a PostgreSQL gradebook, then the same folder again."""
    root = tmp_path_factory.mktemp("postgres")
    course_dir = copy_course(root)
    subs = make_class(root, {"ann": "reference", "bob": "bug", "cat": "untouched"})
    url = postgres_server()
    options = Options(course_dir, db_url=url, jobs=2)
    first = grade.grade(subs, options)
    again = grade.grade(subs, options)
    return {"course": course_dir, "url": url, "first": first, "again": again,
            "records": all_records(url), "scores": course.scores(course_dir, CHAPTER, url)}


def test_a_postgresql_gradebook_gets_the_scores_nbgrader_reads(in_postgres):
    assert sorted(r.student for r in in_postgres["first"].graded) == ["ann", "bob", "cat"]
    recs, scores = in_postgres["records"], in_postgres["scores"]
    assert recs["ann"].auto_score == 80 and lost(recs["bob"]) == BUG["fails"] and recs["cat"].auto_score == 0
    for student, rec in recs.items():
        assert {c.cell: c.awarded for c in rec.cells} == {
            gid: s.auto_score for gid, s in scores[student].items() if s.autograded}
    with nbgrader_book(in_postgres["url"]) as gb:
        assert gb.find_submission_notebook(CHAPTER, CHAPTER, "ann").code_score == 80
    assert not (in_postgres["course"] / "gradebook.db").exists()


def test_a_postgresql_gradebook_remembers_what_was_graded(in_postgres):
    again = in_postgres["again"]
    assert again.graded == [] and sorted(f.student for f in again.unchanged) == ["ann", "bob", "cat"]
    with RecordStore(in_postgres["url"]) as store:
        assert len(list(store.records())) == 3


# --- the parts that need no sandbox ------------------------------------------------------------


def test_an_unreleased_chapter_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="layernorm has not been released in .* autograder release layernorm"):
        ChapterRun(tmp_path, "layernorm", None, tmp_path)


def test_chapter_run_seeds_inputs_and_plan(tmp_path):
    run = ChapterRun(EXERCISES, CHAPTER, 5, tmp_path)
    assert run.plan.seeds == ChapterRun(EXERCISES, CHAPTER, 5, tmp_path).plan.seeds
    assert run.plan.seeds != ChapterRun(EXERCISES, CHAPTER, 6, tmp_path).plan.seeds
    assert set(run.plan.seeds) == set(CHECKS)
    assert run.hide_torch  # numpy-only chapter: every input ships as arrays
    assert run.inputs_file.is_file()
    assert (run.inputs_file.stat().st_mode & 0o777) == 0o644


def test_visible_only_runs_use_the_notebooks_seeds(tmp_path):
    run = ChapterRun(EXERCISES, CHAPTER, None, tmp_path, visible_only=True)
    assert run.plan.seeds == {c.grade_id: c.seed for c in CHECKS.values() if not c.hidden}


def test_the_grader_version_changes_with_the_template(tmp_path):
    course_dir = copy_course(tmp_path)
    before = ChapterRun(course_dir, CHAPTER, None, tmp_path).version
    assert ChapterRun(course_dir, CHAPTER, None, tmp_path).version == before
    template = course_dir / "release" / CHAPTER / f"{CHAPTER}.ipynb"
    template.write_text(template.read_text().replace("Batch normalization", "Batch norm", 1))
    assert ChapterRun(course_dir, CHAPTER, None, tmp_path).version != before


def test_text_progress_on_a_log_writes_a_line_every_tenth():
    stream = io.StringIO()
    show = grade.text_progress(stream)
    for done in range(0, 101):
        show(done, 100, f"s{done}")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11
    assert lines[5].startswith(" 50%|") and "| 50/100 [" in lines[5]
    assert lines[-1].startswith("100%|" + "#" * 10) and "| 100/100 [" in lines[-1] and lines[-1].endswith("s100]")


def test_a_grader_fault_on_one_submission_is_recorded_and_the_batch_goes_on(tmp_path, monkeypatch):
    course_dir = copy_course(tmp_path)
    subs = make_class(tmp_path, {"ann": "reference", "bob": "reference"})
    prepare = grade.submission.prepare

    def faulty(path, *args, **kwargs):
        if "bob" in str(path):
            raise RuntimeError("a bug in the grader")
        return prepare(path, *args, **kwargs)

    monkeypatch.setattr(grade.submission, "prepare", faulty)
    summary = grade.grade(subs, Options(course_dir, jobs=2))
    recs = all_records(grade.default_url(course_dir))
    assert recs["ann"].status == records.GRADED and recs["ann"].auto_score == 80
    assert recs["bob"].status == records.GRADER_ERROR
    assert "a bug in the grader" in recs["bob"].message and "not the student's fault" in recs["bob"].message
    assert [r.student for r in summary.failed] == ["bob"]
    monkeypatch.setattr(grade.submission, "prepare", prepare)  # the grader is fixed: the next run retries bob alone
    again = grade.grade(subs, Options(course_dir, jobs=2))
    assert [r.student for r in again.graded] == ["bob"] and [f.student for f in again.unchanged] == ["ann"]
    assert all_records(grade.default_url(course_dir))["bob"].auto_score == 80
