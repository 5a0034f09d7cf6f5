"""Stage 1, find: the submissions to grade, and which of them changed since their grading.

A submission is skipped when its bytes and the grader's fingerprint of its chapter (see
:mod:`autograder.fingerprint`) are those stored with its record, unless ``force``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from autograder import intake


@dataclass(frozen=True)
class ToGrade:
    found: intake.Found
    sha256: str  # of the submitted bytes
    fingerprint: str  # the bytes and the grader together

    @property
    def name(self) -> str:
        return f"{self.found.student}/{self.found.chapter}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def split_changed(found: list[intake.Found], versions: dict[str, str], stored: dict[tuple[str, str], str],
                  limits_repr: str, force: bool) -> tuple[list[ToGrade], list[intake.Found]]:
    """(to grade, unchanged): ``versions`` per chapter, ``stored`` fingerprints per
    (student, chapter)."""
    todo, unchanged = [], []
    for item in found:
        digest = sha256_file(item.path)
        fingerprint = hashlib.sha256((digest + versions[item.chapter] + limits_repr).encode()).hexdigest()
        if not force and stored.get((item.student, item.chapter)) == fingerprint:
            unchanged.append(item)
        else:
            todo.append(ToGrade(item, digest, fingerprint))
    return todo, unchanged
