"""The grader's fingerprint: derived from the code that grades, ``solutions/`` included.

The end-to-end test grades in a copy of the source tree (``autograder/``, ``solutions/``, the
README) imported through PYTHONPATH, so editing a reference function there really changes
how the copy grades: the next run regrades and the score follows the broken reference. An
edit of the README changes nothing."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import fingerprint, sandbox
from test_grade import CHAPTER, copy_course, make_class

REPO = Path(__file__).resolve().parent.parent


def _rel(paths):
    return {str(p.relative_to(REPO)) for p in paths}


def test_grading_files_are_found_from_the_imports():
    files = _rel(fingerprint.grading_files((*fingerprint.GRADING_MODULES, "autograder.authoring.checks.batchnorm")))
    # the chapter's checks, the reference they import lazily and what that imports
    assert {"autograder/authoring/checks/batchnorm.py", "autograder/authoring/checks/core.py", "autograder/authoring/checks/__init__.py",
            "solutions/batchnorm.py", "solutions/_validate.py", "solutions/__init__.py"} <= files
    # the judge, the in-sandbox runner and what they import
    assert {"autograder/judge.py", "autograder/runner.py", "autograder/transport.py",
            "autograder/records.py", "autograder/submission.py", "autograder/grading/prepare.py",
            "autograder/grading/judging.py", "autograder/gradebook.py"} <= files
    # what cannot change a grade
    assert not files & {"autograder/reports/feedback.py", "autograder/reports/export.py", "autograder/cli.py",
                        "autograder/grading/dask_cluster.py", "autograder/authoring/notebooks.py",
                        "solutions/experiments.py", "autograder/authoring/checks/pooling.py", "solutions/pooling.py"}


def test_relative_imports_are_followed():
    files = _rel(fingerprint.grading_files(["autograder.authoring.checks.pooling"]))
    assert {"autograder/authoring/checks/core.py", "solutions/pooling.py"} <= files


def test_the_fingerprint_is_stable_and_covers_the_limits(tmp_path):
    course_dir = copy_course(tmp_path)
    released = [course_dir / "release" / CHAPTER / f"{CHAPTER}.ipynb"]
    a = fingerprint.chapter_fingerprint(CHAPTER, released, "limits A")
    assert a == fingerprint.chapter_fingerprint(CHAPTER, released, "limits A")
    assert a != fingerprint.chapter_fingerprint(CHAPTER, released, "limits B")
    assert a != fingerprint.chapter_fingerprint("layernorm", released, "limits A")


def _source_copy(root: Path) -> Path:
    tree = root / "tree"
    for part in ("autograder", "solutions"):
        shutil.copytree(REPO / part, tree / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "README.md", tree / "README.md")
    return tree


def _grade(tree: Path, submissions: Path, course_dir: Path, url: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(submissions), "--course", str(course_dir),
         "--db", url, "--seed", "3", "--quiet"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    where = subprocess.run([sys.executable, "-c", "import autograder; print(autograder.__file__)"],
                           cwd=tree, env=env, capture_output=True, text=True).stdout
    assert where.startswith(str(tree)), where  # the copy is what grades
    return proc.stdout


def _score(url: str) -> float:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        (text,) = conn.execute(sqlalchemy.text("select record from autograder_submission")).one()
    engine.dispose()
    return sum(c["awarded"] for c in json.loads(text)["cells"])


@pytest.mark.skipif(bool(sandbox.probe()), reason="needs bubblewrap")
def test_a_changed_reference_regrades_and_a_changed_readme_does_not(tmp_path):
    tree = _source_copy(tmp_path)
    course_dir = copy_course(tmp_path)
    submissions = make_class(tmp_path, {"ada": "reference"})
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    assert _grade(tree, submissions, course_dir, url).startswith("graded 1,")
    full = _score(url)

    readme = tree / "README.md"
    readme.write_text(readme.read_text() + "\nA note that decides no grade.\n")
    assert "unchanged since last run 1" in _grade(tree, submissions, course_dir, url)

    reference = tree / "solutions" / "batchnorm.py"
    text = reference.read_text()
    assert text.count("    return out, cache\n") == 1
    reference.write_text(text.replace("    return out, cache\n", "    return 2 * out, cache\n"))
    assert _grade(tree, submissions, course_dir, url).startswith("graded 1,")
    assert _score(url) < full  # the hidden checks now compare with the broken reference
