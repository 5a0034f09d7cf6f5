"""Grading records in their own table of the gradebook database."""
import importlib.util
import shutil
import sqlite3
from pathlib import Path

import pytest

from autograder.authoring.course import _tools_on_path
from autograder.records import GRADED, TIMED_OUT, CellScore, CheckVerdict, SubmissionRecord
from autograder.store import DatabaseUnavailable, RecordStore, default_url, require_database


def record(student: str, chapter: str, status: str = GRADED, awarded: float = 10.0) -> SubmissionRecord:
    return SubmissionRecord(
        student, chapter, status, f"{student} {status}", sha256="ab" * 32,
        cells=[CellScore(f"{chapter}_cell", 10.0, awarded, "passed" if awarded else "wrong")],
        checks=[CheckVerdict(f"{chapter}_cell", f"{chapter}_cell", "works", False, bool(awarded), "passed")],
        notes=["restored the deleted test cell X"], seeds={f"{chapter}_cell_hidden": 12345},
        duration_s=1.25, graded_at="2025-02-01T10:00:00+00:00",
    )


@pytest.fixture(scope="module")
def blank_db(tmp_path_factory) -> Path:
    """A database made by a first RecordStore (making one costs seconds: nbgrader creates
    its gradebook in it first); each test works on a copy."""
    path = tmp_path_factory.mktemp("blank") / "gradebook.db"
    RecordStore(f"sqlite:///{path}").close()
    return path


@pytest.fixture
def url(tmp_path, blank_db) -> str:
    shutil.copy(blank_db, tmp_path / "gradebook.db")
    return f"sqlite:///{tmp_path / 'gradebook.db'}"


def test_put_then_get_returns_an_equal_record(url):
    rec = record("ann", "batchnorm")
    with RecordStore(url) as store:
        store.put(rec, "f1")
        got = store.get("ann", "batchnorm")
    assert got == rec
    assert got.auto_score == 10.0 and got.checks[0].passed is True


def test_unknown_submission_has_no_record_and_no_fingerprint(url):
    with RecordStore(url) as store:
        store.put(record("ann", "batchnorm"), "f1")
        assert store.get("ann", "pooling") is None
        assert store.get("bob", "batchnorm") is None
        assert store.fingerprint("bob", "batchnorm") is None
        assert store.fingerprint("ann", "batchnorm") == "f1"


def test_second_put_replaces_the_record(url):
    with RecordStore(url) as store:
        store.put(record("ann", "batchnorm"), "f1")
        store.put(record("ann", "batchnorm", TIMED_OUT, awarded=0.0), "f2")
        assert store.fingerprint("ann", "batchnorm") == "f2"
        assert store.get("ann", "batchnorm").status == TIMED_OUT
        assert [(r.student, r.status) for r in store.records()] == [("ann", TIMED_OUT)]
    rows = sqlite3.connect(url.removeprefix("sqlite:///")).execute(
        "select count(*) from autograder_submission").fetchone()
    assert rows == (1,)


def test_records_are_ordered_by_chapter_then_student_and_filtered(url):
    with RecordStore(url) as store:
        for student, chapter in [("cat", "pooling"), ("bob", "batchnorm"), ("ann", "pooling"), ("ann", "batchnorm")]:
            store.put(record(student, chapter), student + chapter)
        assert [(r.chapter, r.student) for r in store.records()] == [
            ("batchnorm", "ann"), ("batchnorm", "bob"), ("pooling", "ann"), ("pooling", "cat")]
        assert [r.student for r in store.records("pooling")] == ["ann", "cat"]
        assert list(store.records("layernorm")) == []


def test_records_survive_closing_the_store(url):
    with RecordStore(url) as store:
        store.put(record("ann", "batchnorm"), "f1")
    with RecordStore(url) as store:
        assert store.get("ann", "batchnorm") == record("ann", "batchnorm")


def test_default_url_is_gradebook_db_in_the_course_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_url(Path("course")) == f"sqlite:///{tmp_path / 'course' / 'gradebook.db'}"


def tables(url: str) -> set[str]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return {name for (name,) in conn.execute("select name from sqlite_master where type = 'table'")}


def test_a_new_database_is_also_a_working_nbgrader_gradebook(url):
    from nbgrader.api import Gradebook

    with RecordStore(url) as store:
        store.put(record("ann", "batchnorm"), "f1")
    with _tools_on_path(), Gradebook(url) as gb:
        gb.add_assignment("batchnorm")
        gb.add_student("ann")
        assert [a.name for a in gb.assignments] == ["batchnorm"]
    assert {"autograder_submission", "assignment", "alembic_version"} <= tables(url)


def test_shares_a_sqlite_file_made_by_nbgrader_first(tmp_path):
    from nbgrader.api import Gradebook

    url = f"sqlite:///{tmp_path / 'nbgrader.db'}"

    with _tools_on_path(), Gradebook(url) as gb:
        gb.add_student("ann", first_name="Ann")
    with RecordStore(url) as store:
        store.put(record("ann", "batchnorm"), "f1")
    # nbgrader still opens its gradebook (no migration refused because of the extra table)
    # and the two coexist in one file.
    with _tools_on_path(), Gradebook(url) as gb:
        assert [s.id for s in gb.students] == ["ann"]
        gb.add_student("bob")
    with RecordStore(url) as store:
        assert store.get("ann", "batchnorm") == record("ann", "batchnorm")
    assert {"autograder_submission", "student", "submitted_notebook", "alembic_version"} <= tables(url)


def test_a_missing_database_driver_names_the_package_to_install():
    if importlib.util.find_spec("MySQLdb") is not None:
        pytest.skip("mysqlclient is installed here")
    with pytest.raises(DatabaseUnavailable, match=r"^mysql://ta:\*\*\*@db/course: the database driver 'MySQLdb' "
                                                  r"is not installed \(pip install 'mysqlclient'\)$"):
        require_database("mysql://ta:pw@db/course")


def test_a_reachable_database_passes_and_is_left_as_it_was(url):
    before = Path(url.removeprefix("sqlite:///")).read_bytes()
    require_database(url)
    assert Path(url.removeprefix("sqlite:///")).read_bytes() == before
