"""Write grades the way ``nbgrader autograde`` does, so formgrader and nbgrader's own
commands see an ordinary gradebook.

The assignment's cells are registered with nbgrader's ``SaveCells`` (what
``generate_assignment`` does) and each graded notebook is scored by nbgrader's
``SaveAutoGrades`` rules (``determine_grade``: an error or stderr output in a test cell
scores 0, an untouched answer cell gets "No response."), over one open connection for the
whole run. Manual grades already in the gradebook are kept.

:meth:`Gradebook.save_many` writes many notebooks in one transaction (nbgrader's own calls
commit after every cell, which made recording cost more than grading): the same rules, with
each submission's grades and comments loaded in one query instead of one per cell.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import nbformat

from autograder.course import _tools_on_path


class TransactionAborted(RuntimeError):
    """A write inside :meth:`Gradebook.transaction` failed and everything in it was undone."""


class Gradebook(contextlib.AbstractContextManager):
    def __init__(self, db_url: str):
        from nbgrader.api import Gradebook as NbgraderGradebook

        self.db_url = db_url
        with _tools_on_path():
            self.gb = NbgraderGradebook(db_url)

    def __exit__(self, *exc) -> None:
        self.gb.close()

    def register(self, chapter: str, source_notebook: Path) -> None:
        """Create or update the assignment ``chapter`` and its cells from the instructor's notebook."""
        from nbgrader.preprocessors import SaveCells

        self.gb.update_or_create_assignment(chapter)
        nb = nbformat.read(str(source_notebook), as_version=4)
        resources = {"nbgrader": {"db_url": self.db_url, "assignment": chapter, "notebook": chapter}}
        with _tools_on_path():
            SaveCells(log=logging.getLogger("autograder")).preprocess(nb, resources)

    @contextlib.contextmanager
    def transaction(self):
        """One transaction around everything inside: nbgrader's per-call commits become
        flushes, and its rollback after a database error aborts the whole transaction
        (instead of silently dropping what came before) so the caller knows."""
        db = self.gb.db
        commit, rollback = db.commit, db.rollback

        def aborted() -> None:
            raise TransactionAborted("the gradebook refused a write; the batch was rolled back")

        db.commit, db.rollback = db.flush, aborted
        try:
            yield db
        except BaseException:
            db.commit, db.rollback = commit, rollback
            db.rollback()
            raise
        db.commit, db.rollback = commit, rollback
        db.commit()

    def save_many(self, items) -> None:
        """Record ``(chapter, student, notebook, timestamp)`` items, inside
        :meth:`transaction`, by the rules of nbgrader's ``SaveAutoGrades``."""
        from nbgrader import utils

        log = logging.getLogger("autograder")
        for chapter, student, nb, timestamp in items:
            self.gb.update_or_create_student(student)
            extra = {"timestamp": timestamp} if timestamp else {}
            with warnings.catch_warnings():  # nbgrader's add_submission trips SQLAlchemy's autoflush warning
                warnings.simplefilter("ignore")
                self.gb.update_or_create_submission(chapter, student, **extra)
            submitted = self.gb.find_submission_notebook(chapter, chapter, student)
            grades = {g.cell.name: g for g in submitted.grades}
            comments = {c.cell.name: c for c in submitted.comments}
            for cell in nb.cells:
                grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                if utils.is_grade(cell):
                    grade = grades[grade_id]
                    grade.auto_score, _ = utils.determine_grade(cell, log)
                    grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
                if utils.is_solution(cell) or utils.is_task(cell):
                    untouched = (cell.metadata.nbgrader.get("checksum", None) == utils.compute_checksum(cell)
                                 and not utils.is_task(cell))
                    comments[grade_id].auto_comment = "No response." if untouched else None
            self.gb.db.flush()

    def save(self, chapter: str, student: str, nb: nbformat.NotebookNode, timestamp: str | None) -> None:
        """Record an autograded notebook's scores and comments for ``student``."""
        from nbgrader.preprocessors import SaveAutoGrades

        self.gb.update_or_create_student(student)
        extra = {"timestamp": timestamp} if timestamp else {}
        with warnings.catch_warnings():  # nbgrader's add_submission trips SQLAlchemy's autoflush warning
            warnings.simplefilter("ignore")
            self.gb.update_or_create_submission(chapter, student, **extra)
        saver = SaveAutoGrades(log=logging.getLogger("autograder"))
        saver.notebook_id, saver.assignment_id, saver.student_id = chapter, chapter, student
        saver.db_url, saver.gradebook = self.db_url, self.gb
        resources = {"nbgrader": {"notebook": chapter, "assignment": chapter, "student": student}}
        for index, cell in enumerate(nb.cells):
            saver.preprocess_cell(cell, resources, index)
