"""Typical student bugs, one module per chapter (``tests/bugs/<chapter>.py``).

Each module defines ``BUGS``: name -> dict(answer_cell, fails, source), where ``source`` is
complete numpy code redefining one graded function (independent of the reference's
helpers), ``answer_cell`` the grade_id of the answer cell it goes into, and ``fails`` the
test cells that must fail because of it (every other cell keeps its points). ``E2E`` names
the bugs that the end-to-end tests submit to real nbgrader.
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import numpy as np


def chapters() -> list[str]:
    """Chapters that have a bug module."""
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]))


def load(chapter: str):
    return importlib.import_module(f"bugs.{chapter}")


def function(chapter: str, bug: str):
    """The buggy function of one entry, compiled: ``(name, function)``."""
    namespace = {"np": np}
    exec(load(chapter).BUGS[bug]["source"], namespace)  # noqa: S102 (fixture code in this package)
    names = [n for n in namespace if n not in ("np", "__builtins__")]
    (name,) = names
    return name, namespace[name]
