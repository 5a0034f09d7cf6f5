"""The grading pipeline on a Dask cluster, deployed as an instructor deploys it: a real
``dask scheduler`` and ``dask worker`` processes on 127.0.0.1 (see ``conftest.dask_cluster``),
``autograder grade --cluster`` as a command.

A worker SIGKILLed mid-run costs only time; the coordinator SIGKILLed mid-run loses nothing
already recorded and the rerun grades exactly what is missing; the scores are those of the
local pool with the same seed; an unreachable scheduler or a worker without bubblewrap is a
plain error before anything is touched."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder import grade, sandbox
from autograder.grading import worker
from autograder.grading.dask_cluster import ClusterUnavailable, DaskCluster
from autograder.store import RecordStore
from test_grade import CHAPTER, copy_course, make_class, nbgrader_book

pytestmark = pytest.mark.skipif(bool(sandbox.probe()), reason="needs bubblewrap")
KINDS = ("reference", "bug", "untouched", "broken")
SEED = 7


def mixed_class(root: Path, n: int) -> Path:
    return make_class(root, {f"s{i:02d}": KINDS[i % len(KINDS)] for i in range(n)})


def command(submissions: Path, course_dir: Path, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "autograder", "grade", str(submissions), "--course", str(course_dir),
            "--db", url, "--seed", str(SEED), "--quiet", *extra]


def scores(url: str) -> dict[str, tuple[str, float, tuple]]:
    with RecordStore(url) as store:
        return {r.student: (r.status, r.auto_score, tuple((c.cell, c.awarded) for c in r.cells))
                for r in store.records(CHAPTER)}


def assert_once_each(url: str, students: list[str]) -> None:
    with RecordStore(url) as store:
        assert sorted(r.student for r in store.records()) == sorted(students)
    with nbgrader_book(url) as gb:
        subs = gb.assignment_submissions(CHAPTER)
        run = sorted(s.student.id for s in subs)
        assert run == sorted(set(run))
        for sub in subs:
            (notebook,) = sub.notebooks
            assert len(notebook.grades) == len({g.cell.name for g in notebook.grades})


def wait_until(condition, timeout: float = 300, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The class graded by the local pool: the scores the cluster must reproduce."""
    root = tmp_path_factory.mktemp("local")
    submissions = mixed_class(root, 20)
    url = f"sqlite:///{root / 'local.db'}"
    grade.grade(submissions, grade.Options(copy_course(root), db_url=url, jobs=2, seed=SEED))
    return submissions, scores(url)


def test_a_killed_worker_costs_nothing_but_time(local, dask_cluster, tmp_path):
    submissions, expected = local
    course_dir = copy_course(tmp_path)
    url = f"sqlite:///{tmp_path / 'cluster.db'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    coordinator = subprocess.Popen(command(submissions, course_dir, url, "--cluster", dask_cluster.address),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # Kill a worker once grading is under way (a job of it is then running or queued).
        wait_until(lambda: any((course_dir / "autograded").glob("*/*/*.ipynb")) or coordinator.poll() is not None,
                   what="the first graded submission")
        victim = dask_cluster.workers[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        out, err = coordinator.communicate(timeout=600)
    finally:
        if coordinator.poll() is None:
            os.kill(coordinator.pid, signal.SIGKILL)
        dask_cluster.start_worker()  # the next tests get two workers again
    assert coordinator.returncode == 0, err
    assert out.startswith("graded "), out
    assert scores(url) == expected  # every submission, graded alike by both
    assert_once_each(url, list(expected))
    dask_cluster.wait_for_workers(2)


def test_losing_every_worker_at_once_costs_nothing_but_time(local, dask_cluster, tmp_path):
    """Every worker that held the chapter's scattered inputs dies: the coordinator scatters
    them again to the workers that join, and the class completes as if nothing happened."""
    submissions, expected = local
    course_dir = copy_course(tmp_path)
    url = f"sqlite:///{tmp_path / 'cluster.db'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    coordinator = subprocess.Popen(command(submissions, course_dir, url, "--cluster", dask_cluster.address),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_until(lambda: any((course_dir / "autograded").glob("*/*/*.ipynb")) or coordinator.poll() is not None,
                   what="the first graded submission")
        for victim in [w for w in dask_cluster.workers if w.poll() is None]:
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
        time.sleep(2)  # the scheduler notices: the scattered inputs have no holder left
        dask_cluster.start_worker()
        dask_cluster.start_worker()
        out, err = coordinator.communicate(timeout=600)
    finally:
        if coordinator.poll() is None:
            os.kill(coordinator.pid, signal.SIGKILL)
    assert coordinator.returncode == 0, err
    assert out.startswith("graded "), out
    assert scores(url) == expected
    assert_once_each(url, list(expected))
    dask_cluster.wait_for_workers(2)


def test_a_killed_coordinator_loses_nothing_and_the_rerun_completes(local, dask_cluster, tmp_path):
    submissions, expected = local
    course_dir = copy_course(tmp_path)
    url = f"sqlite:///{tmp_path / 'cluster.db'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def recorded() -> int:
        try:
            return len(scores(url))
        except Exception:  # noqa: BLE001 (the database is still being made)
            return 0

    first = subprocess.Popen(command(submissions, course_dir, url, "--cluster", dask_cluster.address),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_until(lambda: recorded() > 0 or first.poll() is not None, what="the first recorded batch")
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    before = scores(url)
    assert 0 < len(before) < len(expected), "the coordinator should have been killed mid-run"
    rerun = subprocess.run(command(submissions, course_dir, url, "--cluster", dask_cluster.address),
                           capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    counts = re.match(r"graded (\d+), not fully graded (\d+), unchanged since last run (\d+)", rerun.stdout)
    graded, failed, unchanged = (int(x) for x in counts.groups())
    assert graded + failed == len(expected) - len(before)  # exactly what was missing
    assert unchanged == len(before)
    assert scores(url) == expected
    assert_once_each(url, list(expected))


def test_an_unreachable_scheduler_is_a_plain_error_before_anything_is_touched(local, tmp_path):
    submissions, _ = local
    course_dir = copy_course(tmp_path)
    url = f"sqlite:///{tmp_path / 'never.db'}"
    proc = subprocess.run(command(submissions, course_dir, url, "--cluster", "tcp://127.0.0.1:9"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "never.db").exists() and not (course_dir / "submitted").exists()


def test_a_worker_without_bubblewrap_refuses_with_a_clear_message(monkeypatch):
    from dask.distributed import LocalCluster

    monkeypatch.setattr(sandbox, "probe", lambda: "bubblewrap (the bwrap command) is not installed")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        with pytest.raises(ClusterUnavailable, match="refuses to run student code: bubblewrap .* --unsafe-no-sandbox"):
            DaskCluster(cluster.scheduler_address)
        unsafe = DaskCluster(cluster.scheduler_address, sandboxed=False)  # the instructor's explicit choice
        assert unsafe.slots == 1
        unsafe.close()
    assert worker.refusal(False) == ""
