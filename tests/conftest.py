"""Shared fixtures. The nbgrader course is expensive (kernel starts), so it is built once."""
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from autograder import notebooks, release


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


def _postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: Debian keeps them out of PATH, per major version."""
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").is_file():
            return folder
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@pytest.fixture(scope="session")
def postgres_server():
    """A private PostgreSQL cluster in a temporary folder, reached only through a Unix socket
    there (no TCP port), trusted, stopped and deleted at the end of the session. Yields a
    function that creates a new database and returns its SQLAlchemy URL. CI installs
    PostgreSQL, so there a missing server fails instead of skipping."""
    folder = _postgres_bin()
    if folder is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
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
        f"-k {root} -c listen_addresses='' -c fsync=off", "start")
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
