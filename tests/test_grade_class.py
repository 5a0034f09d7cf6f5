"""The class benchmark on a tiny class: both graders run, agree and report their speed."""
import shutil
import importlib.util
import json
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import sandbox
from autograder.authoring.course import EXERCISES

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "grade_class.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("grade_class", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def grade_class():
    return load_benchmark()


def test_the_mix_is_seeded_and_has_every_kind(grade_class):
    assert grade_class._counts(60) == {"correct": 24, "buggy": 18, "stub": 9, "broken": 9}
    assert grade_class._counts(4) == {"correct": 1, "buggy": 1, "stub": 1, "broken": 1}
    first = grade_class.make_class(["pooling"], 8, seed=3)
    again = grade_class.make_class(["pooling"], 8, seed=3)
    assert [(s.student, s.detail, s.notebook) for s in first] == [(s.student, s.detail, s.notebook) for s in again]
    assert {s.kind for s in first} == set(grade_class.MIX)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_a_tiny_class_is_graded_alike_by_both(grade_class, tmp_path, capsys):
    out = tmp_path / "result.json"
    status = grade_class.main(["--students", "4", "--chapters", "batchnorm", "--jobs", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())

    assert status == 0, printed
    assert result["disagreements"] == []
    released = nbformat.read(str(EXERCISES / "release" / "batchnorm" / "batchnorm.ipynb"), as_version=4)
    graded_cells = sum(bool(c.metadata.get("nbgrader", {}).get("grade")) for c in released.cells)
    assert result["class"]["notebooks"] == 4 and result["cells_compared"] == 4 * graded_cells
    assert result["nbgrader"]["per_minute"] > 0 and result["ours"]["per_minute"] > 0
    assert result["ours"]["graded"] == 4 and result["ours"]["not_fully_graded"] == []
    scores = {s["kind"]: (s["nbgrader_score"], s["ours_score"]) for s in result["submissions"]}
    assert scores["correct"][0] == scores["correct"][1] > scores["buggy"][0] == scores["buggy"][1]
    assert "notebooks/min" in printed and "agreement:" in printed
