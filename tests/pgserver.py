"""A throwaway PostgreSQL server in a temporary folder, for the tests and the benchmarks.

Reached only through a Unix socket there (no TCP port), trusted, stopped and deleted on exit.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterator


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: Debian keeps them out of PATH, per major version."""
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").is_file():
            return folder
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@contextlib.contextmanager
def postgres_server(folder: Path, fsync: bool = False) -> Iterator[Callable[[], str]]:
    """Yields a function that creates a new database and returns its SQLAlchemy URL."""
    # PostgreSQL refuses to run as root: as root, run it as Debian's postgres user.
    owner = {}
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        owner = {"user": entry.pw_uid, "group": entry.pw_gid}
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    if owner:
        os.chown(root, owner["user"], owner["group"])
    data = root / "data"

    def run(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120, cwd=root, **owner)

    run(str(folder / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    run(str(folder / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
        f"-k {root} -c listen_addresses='' -c fsync={'on' if fsync else 'off'}", "start")
    made = []

    def new_database() -> str:
        name = f"course{len(made)}"
        run(str(folder / "createdb"), "-h", str(root), "-U", "postgres", name)
        made.append(name)
        return f"postgresql+psycopg://postgres@/{name}?host={root}"

    try:
        yield new_database
    finally:
        subprocess.run([str(folder / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=120, cwd=root, **owner)
        shutil.rmtree(root, ignore_errors=True)
