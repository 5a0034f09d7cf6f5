"""Reading a submitted notebook and rebuilding it on the release: the grader's name for
:mod:`autograder.authoring.checks.submission`, which is written once and ships to students
in ``coursechecks/`` so that their self-check repairs a notebook exactly as grading does."""
from autograder import records
from autograder.authoring.checks.submission import (
    ANSWER,
    INVALID,
    LOCKED,
    MAX_CELLS,
    MAX_NOTEBOOK_BYTES,
    MAX_SOURCE_BYTES,
    TEST,
    TOO_LARGE,
    PlannedCell,
    Prepared,
    Rejected,
    prepare,
    read_notebook,
    restore,
    to_notebook,
)

assert (INVALID, TOO_LARGE) == (records.INVALID, records.TOO_LARGE), "statuses drifted apart"

__all__ = ["ANSWER", "LOCKED", "MAX_CELLS", "MAX_NOTEBOOK_BYTES", "MAX_SOURCE_BYTES", "TEST", "PlannedCell",
           "Prepared", "Rejected", "prepare", "read_notebook", "restore", "to_notebook"]
