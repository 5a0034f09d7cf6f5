"""Recording judged submissions in batches: one transaction for many notebooks, on SQLite and
PostgreSQL; all or nothing; the same scores as nbgrader's own ``SaveAutoGrades``."""
import pytest

from autograder import records, store
from autograder.gradebook import Gradebook
from autograder.grading.record import Judged, Recorder
from autograder.store import RecordStore
from test_gradebook import FAILED, SOURCE, STDERR, TORCH_2D, TORCH_4D, autograded, nbgrader_book

OUTPUTS = [{}, {TORCH_2D: FAILED}, {TORCH_4D: STDERR}]  # student i gets OUTPUTS[i % 3]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'gradebook.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_server")())
    with RecordStore(url), Gradebook(url) as gb:  # makes the tables
        gb.register("batchnorm", SOURCE)
    return url


def judged(tmp_path, n: int) -> list[Judged]:
    items = []
    for i in range(n):
        student = f"s{i:03d}"
        nb = autograded(tmp_path, None, OUTPUTS[i % 3])
        rec = records.SubmissionRecord(student, "batchnorm", records.GRADED, "Graded.", sha256=f"{i:064x}")
        items.append(Judged(rec, nb, f"fp{i}", "2025-03-01 12:00:00.000000 UTC"))
    return items


def stored(url: str) -> dict[str, str]:
    with RecordStore(url) as st:
        return {r.student: r.sha256 for r in st.records()}


def scores(url: str) -> dict[str, dict[str, float | None]]:
    with nbgrader_book(url) as gb:
        return {s.student.id: {g.name: g.auto_score for g in s.notebooks[0].grades}
                for s in gb.assignment_submissions("batchnorm")}


def recorder(url, tmp_path, gb, seen, size):
    return Recorder(gb, lambda student, chapter: tmp_path / "autograded" / student / f"{chapter}.ipynb",
                    batch_size=size, max_wait=3600, on_recorded=lambda rec: seen.append(rec.student))


def test_a_batch_is_written_when_full_in_one_transaction(url, tmp_path):
    seen = []
    with Gradebook(url) as gb:
        rec = recorder(url, tmp_path, gb, seen, 3)
        items = judged(tmp_path, 4)
        for item in items[:2]:
            rec.add(item)
        assert stored(url) == {} and seen == []  # not yet: nothing half-recorded either
        rec.add(items[2])
        assert sorted(stored(url)) == seen == ["s000", "s001", "s002"]
        rec.add(items[3])
        rec.flush()
    assert sorted(stored(url)) == ["s000", "s001", "s002", "s003"]
    assert (tmp_path / "autograded" / "s003" / "batchnorm.ipynb").is_file()


def test_the_batch_writes_the_scores_nbgrader_writes(url, tmp_path):
    items = judged(tmp_path, 3)
    with Gradebook(url) as gb:
        rec = recorder(url, tmp_path, gb, [], 10)
        for item in items:
            rec.add(item)
        rec.flush()
        for item in items:  # nbgrader's own preprocessor, for the same notebooks
            gb.save("batchnorm", "nb-" + item.record.student, item.notebook, item.timestamp)
    got = scores(url)
    for item in items:
        assert got[item.record.student] == got["nb-" + item.record.student]
    assert got["s001"][TORCH_2D] == 0 and got["s002"][TORCH_4D] == 0 and got["s000"][TORCH_2D] > 0


def test_an_interrupted_batch_leaves_nothing_and_a_rerun_records_each_once(url, tmp_path, monkeypatch):
    items = judged(tmp_path, 3)
    put = store.put_rows

    def killed(conn, rows):
        put(conn, rows)
        raise KeyboardInterrupt("killed inside the transaction")

    monkeypatch.setattr("autograder.grading.record.put_rows", killed)
    with Gradebook(url) as gb:
        rec = recorder(url, tmp_path, gb, [], 10)
        for item in items:
            rec.add(item)
        with pytest.raises(KeyboardInterrupt):
            rec.flush()
    assert stored(url) == {} and scores(url) == {}  # neither records nor scores: all or nothing
    monkeypatch.setattr("autograder.grading.record.put_rows", put)
    for _ in range(2):  # the rerun, and once more: set, never added
        with Gradebook(url) as gb:
            rec = recorder(url, tmp_path, gb, [], 10)
            for item in items:
                rec.add(item)
            rec.flush()
    assert sorted(stored(url)) == ["s000", "s001", "s002"]
    with nbgrader_book(url) as gb:
        subs = gb.assignment_submissions("batchnorm")
        assert sorted(s.student.id for s in subs) == ["s000", "s001", "s002"]
        for sub in subs:
            assert len(sub.notebooks[0].grades) == len({g.cell.name for g in sub.notebooks[0].grades})


def test_one_submission_that_cannot_be_written_costs_only_itself(url, tmp_path, monkeypatch):
    items = judged(tmp_path, 3)
    save_many = Gradebook.save_many

    def refuses_s001(self, batch):
        if any(student == "s001" for _, student, _, _ in batch):
            raise ValueError("a value the database refuses")
        return save_many(self, batch)

    monkeypatch.setattr(Gradebook, "save_many", refuses_s001)
    seen = []
    with Gradebook(url) as gb:
        rec = recorder(url, tmp_path, gb, seen, 10)
        for item in items:
            rec.add(item)
        rec.flush()
    assert sorted(seen) == ["s000", "s001", "s002"]
    with RecordStore(url) as st:
        bad = st.get("s001", "batchnorm")
        assert bad.status == records.GRADER_ERROR and "a value the database refuses" in bad.message
        assert st.fingerprint("s001", "batchnorm") == ""  # graded again by the next run
        assert st.get("s000", "batchnorm").status == records.GRADED
