"""Stage 3, run: one job in a sandbox, wherever the sandbox is (this machine or a worker).

:func:`run` takes a :class:`~autograder.grading.prepare.Job` and returns the result as plain
data (:func:`result_to_data`). It needs the course's Python environment and bubblewrap, not
the course directory and not ``solutions/``. A worker that cannot build a sandbox refuses
every job with a message that names the machine, unless the instructor chose to run without.
"""
from __future__ import annotations

import os
import socket
import tempfile
import threading
from pathlib import Path

from autograder import sandbox
from autograder.grading.prepare import Job


class WorkerRefused(RuntimeError):
    """This machine cannot run student code safely (no working bubblewrap)."""


_free_slots: list[int] = []
_next_slot = [0]
_lock = threading.Lock()


def _take_slot() -> int:
    """A sandbox slot (and so a sandbox uid) no other job on this machine holds right now."""
    with _lock:
        if _free_slots:
            return _free_slots.pop()
        _next_slot[0] += 1
        return _next_slot[0] - 1


def _give_slot(slot: int) -> None:
    with _lock:
        _free_slots.append(slot)


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
    taken = _take_slot() if slot is None else slot
    try:
        with tempfile.TemporaryDirectory(prefix="autograder-job-") as folder:
            os.chmod(folder, 0o755)  # the sandbox uid reads the job through bind mounts
            job_dir, checks_dir = job.write(Path(folder))
            return sandbox.run_job(job_dir, checks_dir, job.sandbox_limits(), slot=taken,
                                   hide_torch=job.hide_torch, sandboxed=sandboxed)
    finally:
        if slot is None:
            _give_slot(taken)


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
