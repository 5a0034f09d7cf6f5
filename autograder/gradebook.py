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

from autograder.tools import tools_on_path as _tools_on_path


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
        :meth:`transaction`, by the rules of nbgrader's ``SaveAutoGrades``. A new submission
        is built as nbgrader's ``add_submission`` builds it (a grade per grade and task cell,
        a comment per solution and task cell), with its scores set before the one flush;
        existing ones are loaded in one query per batch."""
        from nbgrader import utils
        from nbgrader.api import Grade, Student, SubmittedAssignment, SubmittedNotebook

        log = logging.getLogger("autograder")
        db = self.gb.db
        by_chapter: dict[str, list] = {}
        for item in items:
            by_chapter.setdefault(item[0], []).append(item)
        for chapter, batch in by_chapter.items():
            assignment = self.gb.find_assignment(chapter)
            students = {student for _, student, _, _ in batch}
            known = {sid for (sid,) in db.query(Student.id).filter(Student.id.in_(students))}
            for student in sorted(students - known):
                db.add(Student(id=student))
            existing = {sub.student_id: sub for sub in db.query(SubmittedAssignment).filter(
                SubmittedAssignment.assignment_id == assignment.id, SubmittedAssignment.student_id.in_(students))}
            cells: dict[str, dict[str, dict]] = {}  # student -> "grades"/"comments" -> cell name -> row
            if existing:
                ids = [sub.id for sub in existing.values()]
                for nb_row in db.query(SubmittedNotebook).filter(SubmittedNotebook.assignment_id.in_(ids)):
                    entry = cells.setdefault(nb_row.assignment.student_id, {"grades": {}, "comments": {}})
                    entry["grades"].update({g.cell.name: g for g in nb_row.grades})
                    entry["comments"].update({c.cell.name: c for c in nb_row.comments})
            layout = [(notebook, [(c.name, c.id) for c in notebook.grade_cells],
                       [(c.name, c.id) for c in notebook.solution_cells],
                       [(c.name, c.id) for c in notebook.task_cells]) for notebook in assignment.notebooks]
            for _, student, nb, timestamp in batch:
                when = utils.parse_utc(timestamp) if timestamp else None
                if student in existing:
                    if when is not None:
                        existing[student].timestamp = when
                    entry = cells[student]
                else:
                    entry = self._new_submission(assignment, layout, student, when)
                for cell in nb.cells:
                    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                    if utils.is_grade(cell):
                        grade: Grade = entry["grades"][grade_id]
                        grade.auto_score, _ = utils.determine_grade(cell, log)
                        grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
                    if utils.is_solution(cell) or utils.is_task(cell):
                        untouched = (cell.metadata.nbgrader.get("checksum", None) == utils.compute_checksum(cell)
                                     and not utils.is_task(cell))
                        entry["comments"][grade_id].auto_comment = "No response." if untouched else None
        db.flush()

    def _new_submission(self, assignment, layout, student: str, when) -> dict:
        """nbgrader's ``add_submission`` without its commit: the submission and an empty grade
        and comment for every cell, returned by cell name."""
        from nbgrader.api import Comment, Grade, SubmittedAssignment, SubmittedNotebook

        extra = {"timestamp": when} if when is not None else {}
        entry: dict[str, dict] = {"grades": {}, "comments": {}}
        db = self.gb.db
        with db.no_autoflush:
            submission = SubmittedAssignment(assignment=assignment, student_id=student, **extra)
            for notebook, grade_cells, solution_cells, task_cells in layout:
                nb = SubmittedNotebook(notebook=notebook, assignment=submission)
                for name, cell_id in grade_cells:
                    entry["grades"][name] = Grade(cell_id=cell_id, notebook=nb)
                for name, cell_id in solution_cells:
                    entry["comments"][name] = Comment(cell_id=cell_id, notebook=nb)
                for name, cell_id in task_cells:
                    entry["comments"][name] = Comment(cell_id=cell_id, notebook=nb)
                    entry["grades"][name] = Grade(cell_id=cell_id, notebook=nb)
            db.add(submission)  # last, as nbgrader does: the cascade adds the notebooks, grades, comments
        return entry

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
