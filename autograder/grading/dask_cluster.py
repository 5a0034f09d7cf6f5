"""Sandboxes on a Dask cluster: ``autograder grade SUBMISSIONS --cluster tcp://HOST:8786``.

Dask's idiom for a batch of independent jobs: ``client.submit(fn, payload, pure=False,
retries=N)`` per job and results taken as they come. Only plain data travels: the job's
bytes go out (the chapter's shared inputs and checks are scattered to the workers once, not
sent per job: dropout's inputs are 16 MB),
the result's frames come back. Judging and recording stay in the coordinator.

A worker that dies mid-job costs only time: the scheduler runs its jobs again elsewhere, and
a job is idempotent (a fresh sandbox from the same bytes), so the coordinator, which takes
each job's result once, records each submission once. If every worker holding the shared
inputs dies, Dask forgets the jobs that needed them (and the results still held there): the
coordinator scatters the inputs again and resubmits those jobs. Every worker is asked up front whether
it can build a sandbox, so a cluster without bubblewrap is a plain error before anything is
touched.
"""
from __future__ import annotations

import hashlib
import time
from concurrent.futures import CancelledError
from typing import Any, Callable, Iterable, Iterator

from autograder.grading import worker
from autograder.grading.execute import Outcome
from autograder.grading.prepare import Job


class ClusterUnavailable(RuntimeError):
    """The scheduler cannot be reached, or its workers cannot run the jobs."""


def _run_shared(job: dict, shared: dict, sandboxed: bool) -> dict:
    return worker.run_remote({**job, **shared}, sandboxed)


SHARED = ("inputs_npz", "coursechecks", "font_cache")  # the same for every job of a chapter


class DaskCluster:
    def __init__(self, address: str, sandboxed: bool = True, timeout: float = 10, retries: int = 3):
        try:
            from dask.distributed import Client
        except ImportError:  # pragma: no cover (a runtime dependency)
            raise ClusterUnavailable("--cluster needs dask[distributed] (pip install 'dask[distributed]')") from None
        self.sandboxed, self.retries = sandboxed, retries
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterUnavailable(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        try:
            refusals = {addr: why for addr, why in self.client.run(worker.refusal, sandboxed).items() if why}
            if refusals:
                raise ClusterUnavailable("; ".join(f"{addr}: {why}" for addr, why in sorted(refusals.items())))
            self.slots = sum(self.client.nthreads().values())
            if not self.slots:
                raise ClusterUnavailable(f"the Dask scheduler at {address} has no workers")
        except BaseException:
            self.client.close()
            raise
        self._scattered: dict[str, Any] = {}

    def _shared(self, job: Job) -> Any:
        data = job.to_data()
        parts = {name: data[name] for name in SHARED}
        digest = hashlib.sha256(repr(parts).encode()).hexdigest()
        if digest in self._scattered and self._scattered[digest].status != "finished":
            del self._scattered[digest]  # its every holder died: scatter it again
        if digest not in self._scattered:
            # On every worker: a worker that dies must not take the only copy with it
            # (a worker that joins later fetches it from the others).
            [self._scattered[digest]] = self.client.scatter([parts], broadcast=True, hash=False)
        return self._scattered[digest]

    def _submit(self, job: Job) -> Any:
        own = {k: v for k, v in job.to_data().items() if k not in SHARED}
        return self.client.submit(_run_shared, own, self._shared(job), self.sandboxed,
                                  pure=False, retries=self.retries)

    def run(self, jobs: Iterable[tuple[Any, Job]], idle: Callable[[], None] = lambda: None,
            tick: float = 1.0) -> Iterator[Outcome]:
        jobs = iter(jobs)
        pending: dict = {}  # future -> (token, job, times it was lost)
        exhausted = False
        while True:
            slots = max(1, sum(self.client.nthreads().values()))  # workers may come and go
            while not exhausted and len(pending) < 2 * slots:
                nxt = next(jobs, None)
                if nxt is None:
                    exhausted = True
                    break
                token, job = nxt
                pending[self._submit(job)] = (token, job, 0)
            if not pending:
                return
            done = self._first_done(pending, tick)
            idle()
            for future in done:
                token, job, lost = pending.pop(future)
                try:
                    outcome = self._outcome(future)
                except CancelledError as exc:
                    # Forgotten with its inputs (or its result) when their holders died.
                    if lost < self.retries:
                        pending[self._submit(job)] = (token, job, lost + 1)
                        continue
                    outcome = RuntimeError(f"the cluster lost this job {lost + 1} times ({exc})")
                yield token, outcome

    @staticmethod
    def _outcome(future) -> Any:
        """The job's result, or the exception it ended with; ``CancelledError`` if Dask forgot
        it or lost its result (its status can change between ``done()`` and this call)."""
        try:
            status = future.status
            if status == "finished":
                return worker.result_from_data(future.result())
            outcome = future.exception() if status == "error" else None
        finally:
            future.release()
        if isinstance(outcome, worker.WorkerRefused):
            raise ClusterUnavailable(str(outcome))
        if outcome is None or isinstance(outcome, CancelledError):
            raise CancelledError(f"{future.key} is {status}")
        return outcome

    @staticmethod
    def _first_done(pending: dict, tick: float) -> list:
        """The futures that are done, waiting up to ``tick`` seconds for the first one."""
        deadline = time.monotonic() + tick
        while True:
            done = [f for f in pending if f.done()]
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(0.02)

    def close(self) -> None:
        self.client.close()
