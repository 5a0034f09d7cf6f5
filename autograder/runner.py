"""Run one rebuilt submission inside the sandbox and report what happened, as frames.

Started by :mod:`autograder.sandbox` as ``python -I runner.py JOB_DIR`` in a process that may
be hostile from its first student cell on, so it decides nothing: it executes the code cells
in order in an IPython shell (magics work, no kernel to start), records each cell's outputs
under byte caps, and at each test cell calls the student's functions on the inputs the
grader chose, sending the raw outputs back as arrays. Whether they are right is decided by
the trusted process that reads the frames. Everything the grader needs (plan, inputs) is
loaded before any student code runs.

A tested function that raises, changes its arguments in place or returns one of them fails
with :func:`coursechecks.core.call_student`'s message, which names the argument or shows the
student's line (by its notebook cell, see :func:`label_new_cells`).

Frames written to the original stdout (fd 1 is then pointed at /dev/null, so student code
writing to it cannot interleave): ``begin`` {index}, ``cell`` {index, outputs, timed_out,
out_of_memory}, ``check`` npz of one check's outputs (plus its name), ``fail`` {check,
message, timed_out, out_of_memory}, ``done`` {}.
"""
from __future__ import annotations

import base64
import contextlib
import copy
import importlib
import io
import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np

try:
    from autograder import transport
except ImportError:  # in the sandbox, where only this file and transport.py are copied
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import transport

OWNER = os.getpid()  # a forked child of student code must not speak for the grader


class TimeLimit(BaseException):
    """Raised in student code when a cell or a call runs too long (BaseException: a bare
    ``except Exception`` in student code does not swallow it)."""


class Reporter:
    def __init__(self, fd: int):
        self.out = os.fdopen(fd, "wb", buffering=0)

    def send(self, data: bytes) -> None:
        if os.getpid() == OWNER:
            self.out.write(data)

    def json(self, kind: str, obj) -> None:
        self.send(transport.json_frame(kind, obj))


class _Counter(io.RawIOBase):
    """Keeps nothing, counts the bytes."""

    def __init__(self) -> None:
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.count += len(data)
        return len(data)


class Outputs:
    """nbformat outputs of the running cell, capped in bytes per cell and per notebook."""

    def __init__(self, cell_cap: int, total_cap: int):
        self.cell_cap, self.total_left = cell_cap, total_cap
        self.items: list[dict] = []
        self.used = 0
        self.dropped = 0
        self.streams: list[CappedStream] = []
        # Where a full cell's text goes: a buffered C-level writer, so that a print loop
        # costs what printing to a file costs instead of a Python call per line.
        self._counter = _Counter()
        self.overflow = io.TextIOWrapper(io.BufferedWriter(self._counter, 1 << 16), encoding="utf-8",
                                         errors="replace")

    def start(self) -> None:
        self.items, self.used, self.dropped = [], 0, 0
        for stream in self.streams:
            stream.__dict__.pop("write", None)  # back from the overflow to the capped writer

    def full(self) -> bool:
        return self.used >= self.cell_cap or self.total_left <= 0

    def _room(self, n: int) -> int:
        return max(0, min(self.cell_cap - self.used, self.total_left))

    def _take(self, n: int) -> None:
        self.used += n
        self.total_left -= n

    def stream(self, name: str, text: str) -> None:
        room = self._room(len(text))
        if len(text) > room:
            self.dropped += len(text) - room
            text = text[:room]
        if not text:
            return
        self._take(len(text))
        last = self.items[-1] if self.items else None
        if last and last["output_type"] == "stream" and last["name"] == name:
            last["text"] += text
        else:
            self.items.append({"output_type": "stream", "name": name, "text": text})

    def rich(self, output_type: str, data: dict, metadata: dict) -> None:
        # Only inert formats: no HTML or JavaScript from student code reaches a grader's browser.
        keep = {k: v for k, v in data.items()
                if k in ("text/plain", "image/png", "image/jpeg", "text/latex", "text/markdown")}
        keep = {k: v if isinstance(v, str) else str(v) for k, v in keep.items()}
        size = sum(len(v) for v in keep.values())
        if not keep or size > self._room(size):
            self.dropped += size
            return
        self._take(size)
        out = {"output_type": output_type, "data": keep, "metadata": {}}
        if output_type == "execute_result":
            out["execution_count"] = None
        self.items.append(out)

    def error(self, ename: str, evalue: str, traceback: list[str]) -> None:
        ename, evalue = ename[:200], evalue[:2000]
        traceback = [line[:4000] for line in traceback[-30:]]
        self._take(min(self._room(0), len(ename) + len(evalue) + sum(map(len, traceback))))
        self.items.append({"output_type": "error", "ename": ename, "evalue": evalue, "traceback": traceback})

    def finish(self) -> list[dict]:
        self.overflow.flush()
        self.dropped += self._counter.count
        self._counter.count = 0
        if self.dropped:
            self.items.append({"output_type": "stream", "name": "stdout",
                               "text": f"\n[output truncated: {self.dropped} more bytes were not kept]\n"})
        return self.items


class CappedStream(io.TextIOBase):
    def __init__(self, outputs: Outputs, name: str):
        self.outputs, self.name = outputs, name
        outputs.streams.append(self)

    def writable(self) -> bool:
        return True

    def write(self, s) -> int:
        s = str(s)
        self.outputs.stream(self.name, s)
        if self.outputs.full():  # nothing more of this cell is kept: only count it, fast
            self.write = self.outputs.overflow.write
        return len(s)

    def flush(self) -> None:
        pass


def make_shell(outputs: Outputs):
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class Publisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
            outputs.rich("display_data", data, metadata or {})

        def clear_output(self, wait=False):
            pass

    class Hook(DisplayHook):
        def start_displayhook(self):
            pass

        def write_output_prompt(self):
            pass

        def write_format_data(self, format_dict, md_dict=None):
            outputs.rich("execute_result", format_dict, md_dict or {})

        def finish_displayhook(self):
            pass

    class Shell(InteractiveShell):
        displayhook_class = Hook
        display_pub_class = Publisher

        def _showtraceback(self, etype, evalue, stb):
            outputs.error(getattr(etype, "__name__", str(etype)), str(evalue), list(stb))

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "NoColor"
    config.InteractiveShell.xmode = "Plain"
    return Shell.instance(config=config)


@contextlib.contextmanager
def time_limit(seconds: float, what: str):
    def expire(signum, frame):
        # Fire again every second: student code that swallows one TimeLimit meets the next.
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        raise TimeLimit(f"{what} ran longer than {seconds:g} s and was stopped")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _exception_flags(exc: BaseException | None) -> dict:
    return {"timed_out": isinstance(exc, TimeLimit), "out_of_memory": isinstance(exc, MemoryError)}


def build_inputs(plan: dict, job: Path) -> dict[str, dict]:
    """Every check's inputs, made before student code runs: shipped by the grader as arrays,
    or made here from the grader's seed when they hold objects (a torch model, a generator)."""
    shipped = {}
    path = job / "inputs.npz"
    if path.exists():
        shipped = transport.unpack(path.read_bytes(), max_bytes=2**31)
    from coursechecks import core

    inputs = {}
    for entries in plan["checks"].values():
        for entry in entries:
            name = entry["check"]
            if name in shipped:
                inputs[name] = shipped[name]
            else:
                inputs[name] = core.make_inputs(core.get_check(name), entry["seed"])
    return inputs


def run_test_cell(entries: list[dict], inputs: dict, shell, reporter: Reporter, limits: dict) -> None:
    from coursechecks import core, selfcheck

    for entry in entries:
        name = entry["check"]
        check = core.get_check(name)
        fn = shell.user_ns.get(entry["function"])
        if fn is None:
            reporter.json("fail", {"check": name, "message": f"{entry['function']} is not defined",
                                   **_exception_flags(None)})
            continue
        try:
            with time_limit(limits["call_seconds"], f"{entry['function']}"):
                arrays = selfcheck.student_outputs(check, fn, inputs[name])
            payload = transport.pack({"check": name, "outputs": arrays})
        except core.CheckFailure as exc:
            reporter.json("fail", {"check": name, "message": exc.message, **_exception_flags(exc.__context__)})
            continue
        except TimeLimit as exc:  # raised outside call_student's own handler
            reporter.json("fail", {"check": name, "message": str(exc), "timed_out": True, "out_of_memory": False})
            continue
        except MemoryError:
            reporter.json("fail", {"check": name, "message": "ran out of memory", "timed_out": False,
                                   "out_of_memory": True})
            continue
        reporter.send(transport.frame("check", payload))


def label_new_cells(shell, seen: set[str], index: int, source: str) -> None:
    """Name the code IPython compiled for notebook cell ``index`` ("cell 8", counted from 1
    as in the graded notebook), so a failed check shows the student's line by its cell."""
    from coursechecks import core

    for filename in list(getattr(shell.compile, "_filename_map", {})):
        if filename not in seen:
            seen.add(filename)
            core.label_source(filename, f"cell {index + 1}", source)


def _install_font_cache(job: Path) -> None:
    """matplotlib's font list, built once by the grader: without it every sandbox would
    spend most of a second rebuilding it (and shelling out to fc-list)."""
    config = os.environ.get("MPLCONFIGDIR")
    for cache in job.glob("fontlist-*.json"):
        if config:
            os.makedirs(config, exist_ok=True)
            Path(config, cache.name).write_bytes(cache.read_bytes())


def main(job: Path) -> None:
    reporter = Reporter(os.dup(1))
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    plan = json.loads((job / "plan.json").read_text())
    _install_font_cache(job)
    limits = plan["limits"]
    sys.path.insert(0, os.getcwd())
    if plan.get("block_torch"):
        from coursechecks.selfcheck import BlockTorch  # numpy only: torch is not imported yet

        sys.meta_path.insert(0, BlockTorch())
    inputs = build_inputs(plan, job)
    from coursechecks import core

    core.label_source(__file__, None)  # a time limit is raised from here: not the student's line

    outputs = Outputs(limits["cell_output_bytes"], limits["total_output_bytes"])
    shell = make_shell(outputs)
    sys.stdout, sys.stderr = CappedStream(outputs, "stdout"), CappedStream(outputs, "stderr")
    warnings.simplefilter("default")
    compiled: set[str] = set()

    for index, cell in enumerate(plan["cells"]):
        if os.getpid() != OWNER:  # a process forked by student code does not run the rest of the notebook
            os._exit(0)
        reporter.json("begin", {"index": index})
        if cell["kind"] == "test":
            run_test_cell(plan["checks"].get(cell["grade_id"], []), inputs, shell, reporter, limits)
            continue
        if cell["kind"] != "code":
            continue
        outputs.start()
        error = None
        started = time.monotonic()
        try:
            with time_limit(limits["cell_seconds"], f"cell {index}"):
                result = shell.run_cell(cell["source"], store_history=False, silent=False)
            error = result.error_in_exec or result.error_before_exec
        except TimeLimit as exc:  # fired outside run_cell's own handler
            error = exc
            outputs.error("TimeLimit", str(exc), [])
        label_new_cells(shell, compiled, index, cell["source"])
        # A failed cell's traceback would keep everything it allocated alive (a memory bomb
        # would then starve the cells after it): drop IPython's references to it.
        flags = _exception_flags(error)
        sys.last_type = sys.last_value = sys.last_traceback = None
        shell.last_execution_result = result = error = None
        reporter.json("cell", {"index": index, "outputs": outputs.finish(),
                               "seconds": round(time.monotonic() - started, 3), **flags})
    reporter.json("done", {})


if __name__ == "__main__":
    main(Path(sys.argv[1]))
