"""Shared fixtures. The nbgrader course is expensive (kernel starts), so it is built once."""
import os

import pytest

import pgserver

from autograder.authoring import notebooks, release


@pytest.fixture(scope="session")
def released_course(tmp_path_factory):
    """A full ``release`` run of every chapter into a scratch ``exercises/`` copy.

    Returns ``(exercises_dir, course_dir, totals)``: the published files, the nbgrader
    course it was built in (with the reference already autograded as student
    ``reference``), and the reference's (score, maximum) per chapter.
    """
    out = tmp_path_factory.mktemp("exercises")
    work = tmp_path_factory.mktemp("course")
    # COURSE_CHAPTERS=a,b limits a local run to some chapters; CI always builds them all.
    chapters = notebooks.chapters()
    only = os.environ.get("COURSE_CHAPTERS")
    if only and not os.environ.get("CI"):
        chapters = [c for c in chapters if c in only.split(",")]
    totals = release.release(chapters, exercises_dir=out, workdir=work)
    return out, work, totals


# --- a throwaway PostgreSQL server, for the gradebook at postgresql://... ------------------------


@pytest.fixture(scope="session")
def postgres_server():
    """A private PostgreSQL cluster (see :mod:`pgserver`). Yields a function that creates a
    new database and returns its SQLAlchemy URL. CI installs PostgreSQL, so there a missing
    server fails instead of skipping."""
    folder = pgserver.postgres_bin()
    if folder is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    with pgserver.postgres_server(folder) as new_database:
        yield new_database


# --- a Dask cluster as an instructor deploys it: `dask scheduler` and `dask worker` ---------------


class DaskDeployment:
    """A scheduler and worker processes on 127.0.0.1, started and stopped by their own pids."""

    def __init__(self, root):
        import subprocess
        import sys
        import time
        from pathlib import Path

        self.root, self.workers, self._subprocess, self._time = Path(root), [], subprocess, time
        self.bin = Path(sys.executable).parent / "dask"
        self.env = {**os.environ, "OMP_NUM_THREADS": "1"}
        scheduler_file = self.root / "scheduler.json"
        self.scheduler = subprocess.Popen(
            [str(self.bin), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(scheduler_file)],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "scheduler.log", "wb"), env=self.env)
        deadline = time.monotonic() + 60
        while not scheduler_file.is_file():
            if time.monotonic() > deadline or self.scheduler.poll() is not None:
                raise RuntimeError("the dask scheduler did not start: " + (self.root / "scheduler.log").read_text())
            time.sleep(0.2)
        import json

        self.address = json.loads(scheduler_file.read_text())["address"]

    def start_worker(self):
        """One more ``dask worker`` (no nanny: its pid is the worker's), one thread."""
        n = len(self.workers)
        proc = self._subprocess.Popen(
            [str(self.bin), "worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
             "--name", f"w{n}", "--local-directory", str(self.root / f"w{n}")],
            stdout=self._subprocess.DEVNULL, stderr=open(self.root / f"worker{n}.log", "wb"), env=self.env)
        self.workers.append(proc)
        return proc

    def wait_for_workers(self, count: int) -> None:
        from dask.distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=120)

    def stop(self) -> None:
        import signal

        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=20)
            except self._subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory):
    """A scheduler and two workers on 127.0.0.1 for the session (tests may kill a worker and
    start another: :meth:`DaskDeployment.start_worker`)."""
    deployment = DaskDeployment(tmp_path_factory.mktemp("dask"))
    try:
        deployment.start_worker()
        deployment.start_worker()
        deployment.wait_for_workers(2)
        yield deployment
    finally:
        deployment.stop()
