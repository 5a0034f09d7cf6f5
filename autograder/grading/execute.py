"""Where the sandboxes run: one seam, two implementations.

An executor takes jobs lazily (so the coordinator prepares them as slots free up) and yields
``(token, result)`` pairs as they finish, ``result`` being a :class:`~autograder.sandbox.RunResult`
or the exception that stopped the job. Between results it calls ``idle`` at least every
``tick`` seconds (the recorder writes a batch that has waited long enough).

- :class:`LocalPool` (the default): a thread per slot on this machine, each running one
  bubblewrap sandbox at a time under a uid of its own. No dependency beyond the course's own.
- :class:`~autograder.grading.dask_cluster.DaskCluster`: the same jobs on a Dask cluster.
"""
from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator, Protocol

from autograder.grading import worker
from autograder.grading.prepare import Job
from autograder.sandbox import RunResult

Outcome = tuple[Any, RunResult | BaseException]


class Executor(Protocol):
    slots: int

    def run(self, jobs: Iterable[tuple[Any, Job]], idle: Callable[[], None], tick: float) -> Iterator[Outcome]:
        ...

    def close(self) -> None:
        ...


class LocalPool:
    """Sandboxes on this machine, ``slots`` at a time."""

    def __init__(self, slots: int = 0, sandboxed: bool = True):
        self.slots = slots or os.cpu_count() or 1
        self.sandboxed = sandboxed

    def _execute(self, job: Job) -> RunResult:
        return worker.run(job, self.sandboxed)  # a machine-wide free slot, see worker._Slot

    def run(self, jobs: Iterable[tuple[Any, Job]], idle: Callable[[], None] = lambda: None,
            tick: float = 1.0) -> Iterator[Outcome]:
        jobs = iter(jobs)
        with ThreadPoolExecutor(max_workers=self.slots) as pool:
            pending: dict = {}
            exhausted = False
            while True:
                # Keep every slot busy and one job ready behind each.
                while not exhausted and len(pending) < 2 * self.slots:
                    nxt = next(jobs, None)
                    if nxt is None:
                        exhausted = True
                        break
                    token, job = nxt
                    pending[pool.submit(self._execute, job)] = token
                if not pending:
                    return
                finished, _ = wait(pending, timeout=tick, return_when=FIRST_COMPLETED)
                idle()
                for future in finished:
                    token = pending.pop(future)
                    exc = future.exception()
                    yield token, (exc if exc is not None else future.result())

    def close(self) -> None:
        pass
