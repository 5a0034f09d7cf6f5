"""Stage 3, run: one job in a sandbox, wherever the sandbox is (this machine or a worker).

:func:`run` takes a :class:`~autograder.grading.prepare.Job` and returns the result as plain
data (:func:`result_to_data`). It needs the course's Python environment and bubblewrap, not
the course directory and not ``solutions/``. A worker that cannot build a sandbox refuses
every job with a message that names the machine, unless the instructor chose to run without.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
import threading
from pathlib import Path

from autograder import sandbox
from autograder.grading.prepare import Job


class WorkerRefused(RuntimeError):
    """This machine cannot run student code safely (no working bubblewrap)."""


SLOT_LOCKS = Path(tempfile.gettempdir()) / "autograder-slots"


class _Slot:
    """A sandbox slot (and so a sandbox uid) that no other job on this machine holds: the
    first of ``SLOT_LOCKS/<n>.lock`` this process can lock. Machine-wide, so several Dask
    workers (or a worker and a local run) on one machine never share a sandbox uid, whose
    process limit would then count both; the lock goes with the process that dies."""

    _lock = threading.Lock()

    def __enter__(self) -> int:
        SLOT_LOCKS.mkdir(mode=0o1777, parents=True, exist_ok=True)
        with self._lock:
            n = 0
            while True:
                fd = os.open(SLOT_LOCKS / f"{n}.lock", os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    n += 1
                    continue
                self.fd, self.slot = fd, n
                return n

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def refusal(sandboxed: bool) -> str:
    """Empty if this machine may run jobs, else why not."""
    if not sandboxed:
        return ""
    reason = sandbox.probe()
    if reason:
        return (f"worker {socket.gethostname()} refuses to run student code: {reason}. Install bubblewrap "
                "there (apt-get install bubblewrap) or grade with --unsafe-no-sandbox.")
    return ""


def run(job: Job, sandboxed: bool = True, slot: int | None = None) -> sandbox.RunResult:
    why = refusal(sandboxed)
    if why:
        raise WorkerRefused(why)
    with (_Slot() if slot is None else contextlib.nullcontext(slot)) as taken:
        with tempfile.TemporaryDirectory(prefix="autograder-job-") as folder:
            os.chmod(folder, 0o755)  # the sandbox uid reads the job through bind mounts
            job_dir, checks_dir = job.write(Path(folder))
            return sandbox.run_job(job_dir, checks_dir, job.sandbox_limits(), slot=taken,
                                   hide_torch=job.hide_torch, sandboxed=sandboxed)


def result_to_data(result: sandbox.RunResult) -> dict:
    return {"frames": [(kind, bytes(data)) for kind, data in result.frames], "returncode": result.returncode,
            "wall_timeout": result.wall_timeout, "stream_error": result.stream_error,
            "stderr": result.stderr, "seconds": result.seconds}


def result_from_data(data: dict) -> sandbox.RunResult:
    return sandbox.RunResult(frames=[(str(k), bytes(v)) for k, v in data["frames"]],
                             returncode=data["returncode"], wall_timeout=bool(data["wall_timeout"]),
                             stream_error=str(data["stream_error"]), stderr=str(data["stderr"]),
                             seconds=float(data["seconds"]))


def run_remote(job: dict, sandboxed: bool) -> dict:
    """What a Dask worker runs: a job sent as plain data (:meth:`Job.to_data`), run in a
    sandbox, its result returned as plain data."""
    return result_to_data(run(Job(**job), sandboxed))
