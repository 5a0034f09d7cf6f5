"""The grader's fingerprint: a digest of everything that decides a grade except the submission.

A submission is skipped by a re-run only when its bytes and this fingerprint are unchanged, so
the fingerprint must miss nothing that decides a grade. It is derived from the code, not listed
by hand: starting from the modules that grade (the chapter's checks, the judge, the in-sandbox
runner, the submission repairs), every first-party module they import, at any depth and also
from inside functions (the hidden checks import ``solutions`` lazily), is read from the
source tree. Released files of the chapter (the template and its ``coursechecks``), the
versions of the libraries that compute and score (numpy, torch, nbgrader) and the limits
complete it. Anything not reachable that way (the README, the book, feedback pages) cannot
change a grade and does not change the fingerprint.
"""
from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parent.parent  # the source tree holding autograder/ and solutions/
FIRST_PARTY = ("autograder", "solutions")
LIBRARIES = ("numpy", "torch", "nbgrader")  # compute expected values, run answers, score cells

# The modules whose code decides a grade. Everything they import is found from here.
GRADING_MODULES = (
    "autograder.grading.prepare",  # the plan: seeds, inputs, what the sandbox runs
    "autograder.runner",  # runs the notebook and the checks inside the sandbox
    "autograder.sandbox",  # the limits' meaning and the sandbox itself
    "autograder.submission",  # what is kept of a submission, repairs
    "autograder.grading.judging",  # frames -> verdicts, status, points, the record
    "autograder.judge",
    "autograder.gradebook",  # scores as nbgrader's rules give them
)


def module_file(name: str, root: Path) -> Path | None:
    """The file of first-party module ``name`` under ``root`` (a package's ``__init__.py``)."""
    if name.split(".")[0] not in FIRST_PARTY:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path, module: str) -> set[str]:
    """Every module name ``path`` may import, at any nesting level; for ``from a import b``
    both ``a`` and ``a.b`` (``b`` may be a submodule)."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{node.module}" if node.module else anchor
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _with_parents(name: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a`` and ``a.b`` first."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def grading_files(modules: Iterable[str], root: Path = ROOT) -> list[Path]:
    """The source files of ``modules`` and of every first-party module they import."""
    seen: dict[str, Path] = {}
    todo = [p for name in modules for p in _with_parents(name)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = module_file(name, root)
        if path is None:
            continue
        seen[name] = path
        for imported in _imported_names(path, name):
            todo.extend(p for p in _with_parents(imported) if p not in seen)
    return sorted(set(seen.values()))


@lru_cache(maxsize=None)
def _library_versions() -> str:
    found = []
    for name in LIBRARIES:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} missing")
    return ";".join(found)


def chapter_fingerprint(chapter: str, released: Iterable[Path], extra: str = "", root: Path = ROOT) -> str:
    """The fingerprint of grading ``chapter``: its released files (template, coursechecks),
    the code that grades it (found from :data:`GRADING_MODULES` and the chapter's checks),
    the libraries' versions and ``extra`` (e.g. the limits)."""
    digest = hashlib.sha256()
    files = grading_files((*GRADING_MODULES, f"autograder.authoring.checks.{chapter}"), root)
    for path in [*sorted(released), *files]:
        name = path.relative_to(root) if path.is_relative_to(root) else Path(path.parent.name, path.name)
        digest.update(str(name).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(_library_versions().encode() + b"\0" + extra.encode())
    return digest.hexdigest()
