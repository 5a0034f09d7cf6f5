"""The bubblewrap sandbox: its command line, and what code running inside it can see and do."""
import json
import os
import resource
import sys
import sysconfig
from pathlib import Path

import pytest

from autograder import sandbox
from autograder.sandbox import Limits, bwrap_command, run_job

REPO = Path(__file__).resolve().parent.parent
CHECKS = REPO / "exercises" / "release" / "batchnorm" / "coursechecks"
COURSE = REPO / "exercises"
PURELIB = Path(sysconfig.get_paths()["purelib"]).resolve()
LIMITS = Limits(wall_seconds=60, cpu_seconds=60, memory_bytes=3 * 2**30, processes=32,
                file_bytes=8 * 2**20, open_files=128)

# A free cell that reports what it sees; paths of the host are passed in its source.
SPY = f'''
import json, os, resource, socket
facts = {{"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "root": sorted(os.listdir("/")),
          "cwd": os.getcwd(), "env": dict(os.environ)}}
try:
    socket.create_connection(("1.1.1.1", 53), timeout=3).close()
    facts["net"] = "connected"
except OSError as exc:
    facts["net"] = f"{{type(exc).__name__}}: {{exc}}"
try:
    socket.getaddrinfo("pypi.org", 443)
    facts["dns"] = "resolved"
except OSError as exc:
    facts["dns"] = type(exc).__name__
for name, path in {{"course": {str(COURSE)!r}, "solutions": {str(REPO / "solutions")!r},
                   "notebook": {str(COURSE / "source" / "batchnorm" / "batchnorm.ipynb")!r}}}.items():
    try:
        open(path).close() if name == "notebook" else os.listdir(path)
        facts[name] = "readable"
    except OSError as exc:
        facts[name] = type(exc).__name__
for module in ("solutions", "autograder"):  # the course is installed editable, pointing at the checkout
    try:
        __import__(module)
        facts["import_" + module] = "imported"
    except ImportError as exc:
        facts["import_" + module] = type(exc).__name__
facts["torch_dir"] = os.listdir({str(PURELIB / "torch")!r}) if os.path.isdir({str(PURELIB / "torch")!r}) else None
try:
    open("/job/in/plan.json", "a").close()
    facts["job_writable"] = True
except OSError:
    facts["job_writable"] = False
with open("scratch.txt", "w") as fh:
    fh.write("the working directory is writable")
facts["limits"] = {{name: resource.getrlimit(getattr(resource, name))
                   for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE")}}
print(json.dumps(facts))
'''


def job_with(root: Path, *sources: str, limits: Limits = LIMITS) -> Path:
    """A job directory whose plan runs the given code cells (no test cells)."""
    job = root / "job"
    job.mkdir(parents=True)
    os.chmod(root, 0o755)
    os.chmod(job, 0o755)
    plan = {"chapter": "batchnorm", "cells": [{"kind": "code", "source": s, "grade_id": None} for s in sources],
            "checks": {}, "block_torch": False,
            "limits": {"cell_seconds": limits.cell_seconds, "call_seconds": limits.call_seconds,
                       "cell_output_bytes": limits.cell_output_bytes, "total_output_bytes": limits.total_output_bytes}}
    (job / "plan.json").write_text(json.dumps(plan))
    os.chmod(job / "plan.json", 0o644)
    return job


def cells(result) -> dict[int, dict]:
    return {b["index"]: b for b in (json.loads(p) for k, p in result.frames if k == "cell")}


def stdout_of(cell: dict) -> str:
    return "".join(o["text"] for o in cell["outputs"] if o["output_type"] == "stream" and o["name"] == "stdout")


# --- the command line --------------------------------------------------------------------------


def test_probe_finds_a_working_sandbox_here():
    assert sandbox.probe() == ""
    sandbox.require_sandbox()  # does not raise


def test_require_sandbox_explains_what_to_do(monkeypatch):
    monkeypatch.setitem(sandbox._PROBE, True, "bubblewrap (the bwrap command) is not installed")
    with pytest.raises(sandbox.SandboxUnavailable) as info:
        sandbox.require_sandbox()
    message = str(info.value)
    assert message.startswith("bubblewrap (the bwrap command) is not installed. Student code must not run unconfined")
    assert "apt-get install bubblewrap" in message and "--unsafe-no-sandbox" in message


def test_unprivileged_command_unshares_everything_and_keeps_our_uid(tmp_path):
    cmd = bwrap_command(tmp_path, CHECKS, LIMITS, hide_torch=False, uid=None)
    assert "--unshare-all" in cmd and "--die-with-parent" in cmd and "--clearenv" in cmd
    assert not any("setpriv" in arg for arg in cmd)
    assert cmd[-4:] == [sys.executable, "-I", "/job/lib/runner.py", "/job/in"]


def test_as_root_the_command_drops_to_the_slot_uid_before_python_starts(tmp_path):
    uid = sandbox.SANDBOX_UID_BASE + 3
    cmd = bwrap_command(tmp_path, CHECKS, LIMITS, hide_torch=False, uid=uid)
    for flag in ("--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"):
        assert flag in cmd
    start = cmd.index("--", cmd.index("--clearenv"))
    drop = cmd[start + 1: cmd.index(sys.executable, start)]
    assert Path(drop[0]).name == "setpriv"
    assert {f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
            "--no-new-privs"} <= set(drop)
    assert drop[-1] == "--"


def test_slot_uids_are_distinct_and_not_root():
    if os.geteuid() != 0:
        assert sandbox.sandbox_uid(0) is None
    else:
        uids = [sandbox.sandbox_uid(slot) for slot in range(4)]
        assert len(set(uids)) == 4 and 0 not in uids


def test_torch_is_hidden_only_when_asked(tmp_path):
    if not (PURELIB / "torch").is_dir():
        pytest.skip("torch is not installed")
    hidden = bwrap_command(tmp_path, CHECKS, LIMITS, hide_torch=True, uid=None)
    shown = bwrap_command(tmp_path, CHECKS, LIMITS, hide_torch=False, uid=None)
    pairs = list(zip(hidden, hidden[1:]))
    assert ("--tmpfs", str(PURELIB / "torch")) in pairs
    assert str(PURELIB / "torch") not in shown


def test_only_the_job_checks_and_runner_files_of_the_repository_are_mounted(tmp_path):
    cmd = bwrap_command(tmp_path / "job", CHECKS, LIMITS, hide_torch=True, uid=None)
    binds = [cmd[i + 1] for i, arg in enumerate(cmd) if arg in ("--ro-bind", "--bind")]
    # The Python installation is mounted wherever it lives; a virtual environment inside the
    # checkout (make's .venv) is part of it, not of the course.
    python = {str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix)}
    from_repo = {b for b in binds if b.startswith(str(REPO)) and b not in python}
    assert from_repo == {str(CHECKS), str(sandbox.PACKAGE / "runner.py"), str(sandbox.PACKAGE / "transport.py")}
    assert "--bind" not in cmd  # nothing of the host is writable
    assert str(tmp_path / "job") in binds


def test_the_python_installation_is_bound_after_tmp_so_a_venv_under_tmp_stays_visible(tmp_path):
    cmd = bwrap_command(tmp_path / "job", CHECKS, LIMITS, hide_torch=True, uid=None)
    tmpfs = cmd.index("/tmp", cmd.index("--tmpfs"))
    prefix = str(Path(sys.prefix).resolve())
    if not prefix.startswith("/usr/"):
        assert cmd.index(prefix) > tmpfs  # a later mount lies on top of an earlier one
    parents = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--dir"]
    assert "/tmp" not in parents  # the tmpfs keeps its sticky, world-writable mode


# --- a real sandbox ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spied(tmp_path_factory):
    job = job_with(tmp_path_factory.mktemp("spy"), SPY)
    result = run_job(job, CHECKS, LIMITS, slot=1, hide_torch=True, sandboxed=True)
    assert result.frames and result.frames[-1][0] == "done", result.stderr[-3000:]
    return json.loads(stdout_of(cells(result)[0]))


def test_sandboxed_code_does_not_run_as_root(spied):
    assert spied["uid"] != 0 and spied["euid"] != 0 and spied["gid"] != 0
    if os.geteuid() == 0:
        assert spied["uid"] == sandbox.SANDBOX_UID_BASE + 1


def test_sandboxed_code_has_no_network(spied):
    assert spied["net"] != "connected" and spied["dns"] != "resolved"


def test_sandboxed_code_cannot_see_the_course_or_the_solutions(spied):
    assert spied["course"] == "FileNotFoundError"
    assert spied["solutions"] == "FileNotFoundError"
    assert spied["notebook"] == "FileNotFoundError"
    assert spied["import_solutions"] == spied["import_autograder"] == "ModuleNotFoundError"
    assert "gradebook.db" not in json.dumps(spied["root"])


def test_sandboxed_code_sees_a_small_system_and_an_empty_torch(spied):
    assert {"usr", "tmp", "job", "proc", "dev"} <= set(spied["root"])
    assert "home" not in spied["root"] and "etc" in spied["root"]  # /etc holds only the loader's files
    assert spied["torch_dir"] == []


def test_sandboxed_code_can_write_its_working_directory_only(spied):
    assert spied["cwd"] == "/job/work"
    assert spied["job_writable"] is False


def test_sandboxed_code_gets_a_clean_environment(spied):
    assert spied["env"]["HOME"] == "/job/work"
    assert spied["env"]["PATH"] == "/usr/bin:/bin"
    assert not any(key.startswith(("VIRTUAL_ENV", "PYTEST", "SSH_")) for key in spied["env"])


def test_resource_limits_are_set_inside(spied):
    limits = {name: tuple(value) for name, value in spied["limits"].items()}
    assert limits["RLIMIT_AS"] == (LIMITS.memory_bytes, LIMITS.memory_bytes)
    assert limits["RLIMIT_CPU"] == (LIMITS.cpu_seconds, LIMITS.cpu_seconds + 5)
    assert limits["RLIMIT_FSIZE"] == (LIMITS.file_bytes, LIMITS.file_bytes)
    assert limits["RLIMIT_NOFILE"] == (LIMITS.open_files, LIMITS.open_files)
    assert limits["RLIMIT_CORE"] == (0, 0)
    soft, hard = limits["RLIMIT_NPROC"]
    assert soft == hard != resource.RLIM_INFINITY
    # as root each slot has a uid of its own, so the limit counts the sandbox alone
    assert soft == LIMITS.processes if os.geteuid() == 0 else soft >= LIMITS.processes


def test_the_wall_clock_limit_stops_a_run_from_outside(tmp_path):
    limits = Limits(wall_seconds=3, cell_seconds=600)
    job = job_with(tmp_path, "print('started')", "while True:\n    pass", "print('never')", limits=limits)
    result = run_job(job, CHECKS, limits, hide_torch=True, sandboxed=True)
    assert result.wall_timeout and result.returncode < 0
    assert result.seconds < 30
    assert stdout_of(cells(result)[0]) == "started\n"
    assert 2 not in cells(result) and ("done", b"{}") not in result.frames


def test_too_much_output_ends_the_run_with_a_stream_error_even_without_the_sandbox(tmp_path):
    limits = Limits(result_bytes=4000, cell_output_bytes=100_000)
    job = job_with(tmp_path, "print('x' * 10_000)", "print('never')", limits=limits)
    result = run_job(job, CHECKS, limits, hide_torch=True, sandboxed=False)
    assert "more than 4000 bytes of results" in result.stream_error
    assert not result.wall_timeout
    assert [kind for kind, _ in result.frames] == ["begin"]  # the frames before the oversize one

