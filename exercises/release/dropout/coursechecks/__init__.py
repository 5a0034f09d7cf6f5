"""Graded checks, written once as data and shared by the notebooks and the grader.

``core`` holds the machinery; each chapter has a module ``<chapter>.py`` defining
``CHAPTER`` and ``CHECKS``. This package is released beside each exercise notebook as
``coursechecks/`` (``__init__.py``, ``core.py`` and that chapter's module), so nothing here
may import ``solutions`` at module level or reveal an answer.
"""
from .core import (
    Check,
    CheckFailure,
    Result,
    as_float_array,
    call_student,
    cell_checks,
    chapter_checks,
    check,
    close,
    expected_values,
    get_check,
    gradient_check,
    judge,
    label_source,
    make_inputs,
    numerical_gradient,
    passed_line,
    rel_error,
    returning,
    run_check,
    unpack,
)

__all__ = [
    "Check",
    "CheckFailure",
    "Result",
    "as_float_array",
    "call_student",
    "cell_checks",
    "chapter_checks",
    "check",
    "close",
    "expected_values",
    "get_check",
    "gradient_check",
    "judge",
    "label_source",
    "make_inputs",
    "numerical_gradient",
    "passed_line",
    "rel_error",
    "returning",
    "run_check",
    "unpack",
]
