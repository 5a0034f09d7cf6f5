"""Grading records, kept in a table of their own inside nbgrader's gradebook database.

The gradebook holds the scores (what formgrader and nbgrader's own commands read); this table
holds what nbgrader has no place for: each submission's status, the verdict and message of
every check, repair notes, the seeds used, and the fingerprint that tells a re-run whether a
submission changed since it was graded. Living in the same database (SQLite by default, any
SQLAlchemy URL otherwise) keeps the two together when the gradebook is moved or backed up.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from sqlalchemy import Column, MetaData, String, Table, Text, create_engine, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from autograder.records import SubmissionRecord

_METADATA = MetaData()
SUBMISSIONS = Table(
    "autograder_submission",
    _METADATA,
    Column("student", String(128), primary_key=True),
    Column("chapter", String(128), primary_key=True),
    Column("fingerprint", String(64), nullable=False),  # submission bytes + grader version
    Column("status", String(32), nullable=False),
    Column("record", Text, nullable=False),  # SubmissionRecord as JSON
    Column("updated_at", String(32), nullable=False),
)


# The pip package that provides a database driver SQLAlchemy could not import.
_DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient",
                    "pymysql": "PyMySQL", "asyncpg": "asyncpg"}


class DatabaseUnavailable(RuntimeError):
    """The gradebook's URL cannot be opened; the message says why, without the password."""


def require_database(url: str) -> None:
    """Open and close ``url`` once, turning SQLAlchemy's and the driver's errors into a
    :class:`DatabaseUnavailable` that an instructor can act on."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUnavailable(
            f"{url!r} is not a database URL; write it as sqlite:////path/to/gradebook.db or "
            "postgresql://user:password@host/database") from None
    shown = parsed.render_as_string(hide_password=True)
    try:
        engine = create_engine(parsed)
    except NoSuchModuleError:
        raise DatabaseUnavailable(f"{shown}: {parsed.drivername!r} is not a database or driver SQLAlchemy knows") from None
    except ImportError as exc:
        package = _DRIVER_PACKAGES.get((exc.name or "").split(".")[0], exc.name)
        raise DatabaseUnavailable(
            f"{shown}: the database driver {exc.name!r} is not installed (pip install '{package}')") from None
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DatabaseUnavailable(f"cannot open the gradebook database {shown}: {reason}") from None
    finally:
        engine.dispose()


def default_url(course_dir: Path) -> str:
    """nbgrader's default gradebook location: ``gradebook.db`` in the course directory."""
    return f"sqlite:///{Path(course_dir).resolve() / 'gradebook.db'}"


def put_rows(conn, items) -> None:
    """Insert or replace the rows of ``(record, fingerprint)`` items through ``conn`` (a
    connection or session whose transaction the caller owns)."""
    if not items:
        return
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = {(r.student, r.chapter): dict(student=r.student, chapter=r.chapter, fingerprint=fp, status=r.status,
                                         record=r.to_json(), updated_at=now) for r, fp in items}
    for chapter in {c for _, c in rows}:
        students = [s for s, c in rows if c == chapter]
        for start in range(0, len(students), 500):  # stay under every database's parameter limit
            conn.execute(SUBMISSIONS.delete().where(SUBMISSIONS.c.chapter == chapter,
                                                    SUBMISSIONS.c.student.in_(students[start:start + 500])))
    conn.execute(SUBMISSIONS.insert(), list(rows.values()))


class RecordStore:
    """Read and write :class:`SubmissionRecord` rows; one row per (student, chapter)."""

    def __init__(self, db_url: str):
        # nbgrader must create the database: it stamps its schema version only into an empty one.
        from autograder.gradebook import Gradebook

        with Gradebook(db_url):
            pass
        self.engine: Engine = create_engine(db_url, future=True)
        _METADATA.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "RecordStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def fingerprint(self, student: str, chapter: str) -> str | None:
        """The fingerprint stored with the last record, or None if never graded."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(SUBMISSIONS.c.fingerprint).where(
                    SUBMISSIONS.c.student == student, SUBMISSIONS.c.chapter == chapter
                )
            ).first()
        return row[0] if row else None

    def fingerprints(self) -> dict[tuple[str, str], str]:
        """Every stored fingerprint by (student, chapter), in one query."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(SUBMISSIONS.c.student, SUBMISSIONS.c.chapter, SUBMISSIONS.c.fingerprint)).all()
        return {(student, chapter): fp for student, chapter, fp in rows}

    def put(self, record: SubmissionRecord, fingerprint: str) -> None:
        """Insert or replace the record of ``(record.student, record.chapter)`` atomically."""
        with self.engine.begin() as conn:  # one transaction: never half a record
            put_rows(conn, [(record, fingerprint)])

    def get(self, student: str, chapter: str) -> SubmissionRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(SUBMISSIONS.c.record).where(
                    SUBMISSIONS.c.student == student, SUBMISSIONS.c.chapter == chapter
                )
            ).first()
        return SubmissionRecord.from_json(row[0]) if row else None

    def records(self, chapter: str | None = None) -> Iterator[SubmissionRecord]:
        """Every record (of one chapter, if given), ordered by chapter then student."""
        query = select(SUBMISSIONS.c.record).order_by(SUBMISSIONS.c.chapter, SUBMISSIONS.c.student)
        if chapter is not None:
            query = query.where(SUBMISSIONS.c.chapter == chapter)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        for (text,) in rows:
            yield SubmissionRecord.from_json(text)
