"""Shared fixtures. The nbgrader course is expensive (kernel starts), so it is built once."""
import os

import pytest

import pgserver

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
