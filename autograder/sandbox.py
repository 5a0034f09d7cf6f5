"""Run :mod:`autograder.runner` on one job inside a bubblewrap sandbox, with limits.

What the sandbox sees: the system's ``/usr`` and the Python installation, read-only; the
job's plan and inputs, read-only; the chapter's released ``coursechecks``; a small tmpfs as
its working directory and ``/tmp``. Not the course directory (no ``source/``, no gradebook,
no other students), not ``solutions/``, no network (only a private loopback), and for
numpy-only chapters not PyTorch either. It runs as a dedicated non-root uid per parallel
slot (so the process-count limit counts that sandbox alone) with limits on address space,
CPU time, processes, file size and open files set before ``exec``, and a wall-clock limit
enforced from outside by killing it.

:func:`run_job` returns the frames the runner sent, how the process ended and why.
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from autograder import transport

PACKAGE = Path(__file__).resolve().parent
SANDBOX_UID_BASE = 64000  # slot i runs as uid/gid SANDBOX_UID_BASE + i
TORCH_DIRS = ("torch", "torchgen", "functorch")


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 300.0  # the whole notebook, enforced from outside
    cpu_seconds: int = 300  # RLIMIT_CPU
    cell_seconds: float = 120.0  # one cell (stopped inside the runner, then the next cell runs)
    call_seconds: float = 60.0  # one call of a student's function by a check
    memory_bytes: int = 6 * 2**30  # RLIMIT_AS
    processes: int = 64  # RLIMIT_NPROC, per sandbox uid
    file_bytes: int = 64 * 2**20  # RLIMIT_FSIZE
    tmpfs_bytes: int = 256 * 2**20  # working directory and /tmp
    open_files: int = 256
    cell_output_bytes: int = 256 * 2**10  # kept per cell, the rest is counted and dropped
    total_output_bytes: int = 4 * 2**20
    result_bytes: int = 256 * 2**20  # everything the runner may send back
    frame_bytes: int = 64 * 2**20  # one check's outputs


@dataclass
class RunResult:
    frames: list[tuple[str, bytes]] = field(default_factory=list)
    returncode: int | None = None
    wall_timeout: bool = False
    stream_error: str = ""  # the result stream was damaged or too large
    stderr: str = ""
    seconds: float = 0.0


class SandboxUnavailable(RuntimeError):
    pass


_PROBE: dict[bool, str] = {}


def sandbox_uid(slot: int) -> int | None:
    """The dedicated uid of a parallel slot when we are root (None: run as ourselves)."""
    return SANDBOX_UID_BASE + slot if os.geteuid() == 0 else None


def _process_count(uid: int) -> int | None:
    """How many processes ``uid`` runs now, or None where /proc cannot tell (not Linux)."""
    if not Path("/proc/self").is_dir():
        return None
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def _set_limits(limits: Limits, own_processes: int | None, strict: bool):
    """The rlimits, applied in the child before exec. ``strict`` (the sandbox, on Linux):
    every limit must hold. Otherwise (a student's own machine, macOS included) a limit the
    system does not support is skipped rather than refusing to run."""
    wanted = [
        (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        (resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 5),
        (resource.RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if own_processes is not None:
        nproc = limits.processes + own_processes
        wanted.append((resource.RLIMIT_NPROC, nproc, nproc))

    def apply() -> None:
        for which, soft, hard in wanted:
            try:
                resource.setrlimit(which, (soft, hard))
            except (ValueError, OSError):
                if strict:
                    raise

    return apply


def _system_mounts() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib64", "lib32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "fonts"):
        path = Path("/etc") / name
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    return args


def _ro_bind(src: Path, dest: Path | None = None) -> list[str]:
    """Bind ``src`` read-only, first creating its missing parents world-traversable (bwrap
    makes them 0700, which the unprivileged sandbox uid could not pass through)."""
    dest = dest or src
    args: list[str] = []
    for parent in reversed(dest.parents):
        if str(parent) not in ("/", "/usr", "/tmp"):  # mounted already, with their own modes
            args += ["--perms", "0755", "--dir", str(parent)]
    return args + ["--ro-bind", str(src), str(dest)]


def _python_mounts(hide_torch: bool) -> list[str]:
    args: list[str] = []
    prefixes = sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()})
    for prefix in prefixes:
        if not str(prefix).startswith("/usr/"):
            args += _ro_bind(prefix)
    if Path(sys.prefix) != Path(sys.prefix).resolve():  # a venv reached through a symlink
        args += ["--symlink", str(Path(sys.prefix).resolve()), sys.prefix]
    if hide_torch:
        purelib = Path(sysconfig.get_paths()["purelib"]).resolve()
        for name in TORCH_DIRS:
            if (purelib / name).is_dir():
                args += ["--tmpfs", str(purelib / name)]
    return args


def bwrap_command(job: Path, checks_dir: Path, limits: Limits, hide_torch: bool, uid: int | None) -> list[str]:
    """The bubblewrap command line that runs the runner on ``job`` (a directory holding
    ``plan.json`` and ``inputs.npz``). With ``uid`` (we are root) bwrap runs privileged and
    ``setpriv`` drops to that uid with no capabilities before any Python starts; otherwise
    bwrap builds an unprivileged user namespace and the runner keeps our own uid."""
    if uid is None:
        isolation = ["--unshare-all"]
        drop: list[str] = []
    else:
        isolation = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        drop = [shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}",
                "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return [
        shutil.which("bwrap") or "bwrap",
        *isolation, "--die-with-parent", "--new-session", "--hostname", "sandbox",
        *_system_mounts(),
        "--proc", "/proc", "--dev", "/dev",
        # /tmp before the Python installation: a virtual environment under /tmp must be
        # bound on top of the empty tmpfs, not hidden by it.
        "--perms", "01777", "--size", str(limits.tmpfs_bytes), "--tmpfs", "/tmp",
        *_python_mounts(hide_torch),
        "--perms", "0755", "--dir", "/job",
        "--perms", "0777", "--size", str(limits.tmpfs_bytes), "--tmpfs", "/job/work",
        *_ro_bind(job, Path("/job/in")),
        *_ro_bind(PACKAGE / "runner.py", Path("/job/lib/runner.py")),
        *_ro_bind(PACKAGE / "transport.py", Path("/job/lib/transport.py")),
        *_ro_bind(checks_dir, Path("/job/work/coursechecks")),
        "--chdir", "/job/work",
        "--clearenv",
        *_env_args("/job/work"),
        "--",
        *drop,
        sys.executable, "-I", "/job/lib/runner.py", "/job/in",
    ]


def _environment(home: str) -> dict[str, str]:
    return {
        "HOME": home,
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "MPLCONFIGDIR": f"{home}/.config/matplotlib",
        "IPYTHONDIR": f"{home}/.ipython",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _env_args(home: str) -> list[str]:
    args: list[str] = []
    for key, value in _environment(home).items():
        args += ["--setenv", key, value]
    return args


def build_font_cache(dest: Path) -> Path | None:
    """Build matplotlib's font list in ``dest`` (trusted, once per run); its path, or None."""
    dest.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MPLCONFIGDIR": str(dest), "MPLBACKEND": "Agg"}
    try:
        subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=env,
                       capture_output=True, timeout=120, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    caches = sorted(dest.glob("fontlist-*.json"))
    if not caches:
        return None
    os.chmod(caches[-1], 0o644)
    return caches[-1]


def probe() -> str:
    """Empty if bubblewrap can build a sandbox here, else the reason it cannot."""
    if True in _PROBE:
        return _PROBE[True]
    reason = ""
    if shutil.which("bwrap") is None:
        reason = "bubblewrap (the bwrap command) is not installed"
    else:
        try:
            with tempfile.TemporaryDirectory() as empty:
                os.chmod(empty, 0o755)
                cmd = bwrap_command(Path(empty), Path(empty), Limits(), True, sandbox_uid(0))
                cmd = cmd[: cmd.index(sys.executable)] + [sys.executable, "-I", "-c", "pass"]
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                reason = f"bubblewrap cannot create a sandbox here: {proc.stderr.strip() or proc.returncode}"
        except (OSError, subprocess.SubprocessError) as exc:
            reason = f"bubblewrap cannot create a sandbox here: {exc}"
    _PROBE[True] = reason
    return reason


def require_sandbox() -> None:
    reason = probe()
    if reason:
        raise SandboxUnavailable(
            f"{reason}. Student code must not run unconfined: install bubblewrap "
            "(Debian/Ubuntu: apt-get install bubblewrap) and make sure unprivileged user "
            "namespaces are allowed, or, on a machine you can afford to expose to every "
            "submission, pass --unsafe-no-sandbox."
        )


def run_job(job: Path, checks_dir: Path, limits: Limits, *, slot: int = 0, hide_torch: bool = True,
            sandboxed: bool = True) -> RunResult:
    """Run the runner on ``job`` and collect its frames; never raises for what the student's
    code does (hangs, crashes, floods, forks)."""
    job, checks_dir = Path(job).resolve(), Path(checks_dir).resolve()
    uid = sandbox_uid(slot) if sandboxed else None
    # Not root: the process limit counts all our own processes too, so leave room for them.
    own = 0 if uid is not None else _process_count(os.getuid())
    with tempfile.TemporaryDirectory(prefix="unsafe-") as scratch:
        if sandboxed:
            cmd = bwrap_command(job, checks_dir, limits, hide_torch, uid)
            cwd, env = "/", {}
        else:
            work = Path(scratch)
            shutil.copytree(checks_dir, work / "coursechecks")
            cmd = [sys.executable, "-I", str(PACKAGE / "runner.py"), str(job)]
            cwd, env = str(work), _environment(str(work))
        return _supervise(cmd, cwd, env, limits, own, sandboxed)


def _supervise(cmd, cwd, env, limits: Limits, own: int | None, sandboxed: bool) -> RunResult:
    result = RunResult()
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env or None, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_set_limits(limits, own, strict=sandboxed),
    )

    def read_frames() -> None:
        try:
            for item in transport.read_frames(proc.stdout, limits.result_bytes, limits.frame_bytes):
                result.frames.append(item)
        except transport.BadPayload as exc:
            result.stream_error = str(exc)
            _kill(proc)
        finally:
            _drain(proc.stdout)

    def read_stderr() -> None:
        kept = bytearray()
        while chunk := proc.stderr.read(65536):
            if len(kept) < 65536:
                kept += chunk[: 65536 - len(kept)]
        result.stderr = kept.decode("utf-8", "replace")

    readers = [threading.Thread(target=read_frames, daemon=True), threading.Thread(target=read_stderr, daemon=True)]
    for thread in readers:
        thread.start()
    try:
        proc.wait(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        result.wall_timeout = True
        _kill(proc)
        proc.wait()
    for thread in readers:
        thread.join(timeout=10)
    result.returncode = proc.returncode
    result.seconds = time.monotonic() - started
    return result


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _drain(stream) -> None:
    try:
        while stream.read(65536):
            pass
    except (OSError, ValueError):
        pass
