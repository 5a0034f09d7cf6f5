"""The release step: committed release notebooks are current, helper copies are exact, and
nothing released gives away an answer."""
import ast
import json
import re
from pathlib import Path

import pytest

from autograder.authoring import course, notebooks, release

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = notebooks.chapters()


def comparable(nb):
    """What a student sees and what nbgrader uses, without volatile fields."""
    return {
        "metadata": nb.metadata,
        "cells": [{"cell_type": c.cell_type, "source": c.source, "metadata": c.metadata} for c in nb.cells],
    }


def test_release_verifies_the_reference(released_course):
    _, _, totals = released_course
    assert all(score == maximum > 0 for score, maximum in totals.values())


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_committed_release_is_current(released_course, chapter):
    out, _, totals = released_course
    if chapter not in totals:
        pytest.skip(f"{chapter} is not in COURSE_CHAPTERS")
    for kind in ("source", "release"):
        fresh = course.read(out / kind / chapter / f"{chapter}.ipynb")
        committed = course.read(REPO / "exercises" / kind / chapter / f"{chapter}.ipynb")
        assert comparable(committed) == comparable(fresh), (
            f"exercises/{kind}/{chapter} is stale: run `autograder release {chapter}` in exercises/"
        )
        files = sorted(p.relative_to(out / kind) for p in (out / kind / chapter).rglob("*") if p.is_file())
        committed_files = sorted(
            p.relative_to(REPO / "exercises" / kind) for p in (REPO / "exercises" / kind / chapter).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )
        assert files == committed_files


@pytest.mark.parametrize("chapter", CHAPTERS)
@pytest.mark.parametrize("kind", ["source", "release"])
def test_helper_copies_are_byte_identical(chapter, kind):
    folder = REPO / "exercises" / kind / chapter / notebooks.HELPER_PACKAGE
    for name, data in notebooks.helper_files(chapter).items():
        assert (folder / name).read_bytes() == data, f"{folder / name} differs from autograder/authoring/checks/{name}"


def _answer_lines(chapter):
    """Substantial lines of the reference answers (the solution regions)."""
    spec = notebooks.load_spec(chapter)
    lines = set()
    for cell in notebooks.build_notebook(spec).cells:
        if cell.metadata.get("nbgrader", {}).get("solution") and cell.cell_type == "code":
            for region in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", cell.source, re.S):
                lines |= {l.strip() for l in region.splitlines() if len(l.strip()) >= 20}
    return spec, lines


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_nothing_released_reveals_an_answer(chapter):
    spec, lines = _answer_lines(chapter)
    assert lines
    folder = REPO / "exercises" / "release" / chapter
    texts = {p: p.read_text() for p in folder.rglob("*") if p.is_file() and p.suffix in (".py", ".ipynb")}
    nb = json.loads(texts[folder / f"{chapter}.ipynb"])
    notebook_sources = "\n".join("".join(c["source"]) for c in nb["cells"])
    for path, text in texts.items():
        body = notebook_sources if path.suffix == ".ipynb" else text
        leaked = [l for l in lines if l in body]
        assert not leaked, f"{path.name} contains reference code: {leaked}"
    # No hidden test, grading seed, model answer or solution marker in the notebook.
    for marker in ("BEGIN HIDDEN", "BEGIN SOLUTION", "_hidden", "seed="):
        assert marker not in notebook_sources
    for e in spec.experiments:
        assert e.model_answer.strip().splitlines()[0] not in notebook_sources


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_released_checks_import_solutions_only_inside_hidden_expectations(chapter):
    path = REPO / "exercises" / "release" / chapter / notebooks.HELPER_PACKAGE / f"{chapter}.py"
    tree = ast.parse(path.read_text())
    hidden_expectations = set()
    for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
        if any(isinstance(n, ast.ImportFrom) and (n.module or "").startswith("solutions") for n in ast.walk(fn)):
            hidden_expectations.add(fn.name)
    top_imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any("solutions" in ast.dump(n) for n in top_imports)
    from autograder.authoring.checks import chapter_checks

    for c in chapter_checks(chapter).values():
        uses_reference = c.expected.__name__ in hidden_expectations or (
            c.expected.__closure__ and any(getattr(cell.cell_contents, "__name__", "") in hidden_expectations
                                           for cell in c.expected.__closure__)
        )
        assert not uses_reference or c.hidden, f"visible check {c.grade_id} uses solutions"


def test_unknown_chapter_is_refused():
    with pytest.raises(release.ReleaseError, match="unknown chapter"):
        release.release(["no_such_chapter"])


def test_main_exits_non_zero_with_the_reason(monkeypatch, capsys):
    def refuse(chapters):
        raise release.ReleaseError("refusing to release:\nbatchnorm: the reference solution scores 1 of 2")

    monkeypatch.setattr(release, "release", refuse)
    assert release.main(["batchnorm"]) == 1
    assert "refusing to release" in capsys.readouterr().err
    monkeypatch.setattr(release, "release", lambda chapters: {"batchnorm": (80.0, 80.0)})
    assert release.main([]) == 0
    assert "released batchnorm: reference scores 80/80" in capsys.readouterr().out
