"""Write grades the way ``nbgrader autograde`` does, so formgrader and nbgrader's own
commands see an ordinary gradebook.

The assignment's cells are registered with nbgrader's ``SaveCells`` (what
``generate_assignment`` does) and each graded notebook is scored by nbgrader's
``SaveAutoGrades`` rules (``determine_grade``: an error or stderr output in a test cell
scores 0, an untouched answer cell gets "No response."), over one open connection for the
whole run. Manual grades already in the gradebook are kept.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import nbformat

from autograder.course import _tools_on_path


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
