"""The course directory's paths, in nbgrader's layout."""
from pathlib import Path

import pytest

from autograder.coursedir import CourseDir, NotACourse, locate


def test_paths_follow_nbgraders_layout(tmp_path):
    course = CourseDir(tmp_path)
    assert course.release_notebook("bn") == tmp_path / "release" / "bn" / "bn.ipynb"
    assert course.coursechecks("bn") == tmp_path / "release" / "bn" / "coursechecks"
    assert course.submitted("s1", "bn") == tmp_path / "submitted" / "s1" / "bn" / "bn.ipynb"
    assert course.autograded("s1", "bn") == tmp_path / "autograded" / "s1" / "bn" / "bn.ipynb"
    assert course.feedback("s1", "bn") == tmp_path / "feedback" / "s1" / "bn" / "bn.html"
    assert course.default_db_url() == f"sqlite:///{tmp_path / 'gradebook.db'}"


def test_source_falls_back_to_the_release_and_chapters_are_the_released_ones(tmp_path):
    course = CourseDir(tmp_path)
    assert course.chapters() == []
    (tmp_path / "release" / "bn").mkdir(parents=True)
    (tmp_path / "release" / "pool").mkdir()
    assert course.chapters() == ["bn", "pool"]
    assert course.source_notebook("bn") == course.release_notebook("bn")
    (tmp_path / "source" / "bn").mkdir(parents=True)
    (tmp_path / "source" / "bn" / "bn.ipynb").write_text("{}")
    assert course.source_notebook("bn") == tmp_path / "source" / "bn" / "bn.ipynb"


def test_a_folder_without_releases_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a course directory: it has no release/ folder"):
        CourseDir(tmp_path).require()


def test_locate_prefers_the_course_given(tmp_path):
    assert locate(tmp_path / "given", cwd=tmp_path) == tmp_path / "given"


def test_locate_takes_the_current_directory_with_an_nbgrader_config(tmp_path):
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")
    assert locate(cwd=tmp_path) == tmp_path


def test_locate_looks_neither_up_nor_at_the_installed_package(tmp_path, monkeypatch):
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")
    (tmp_path / "release").mkdir()
    with pytest.raises(NotACourse, match=r"release is not a course directory \(it has no nbgrader_config.py\): "
                                         r"run autograder in the course directory or pass --course DIR"):
        locate(cwd=tmp_path / "release")
    monkeypatch.chdir(tmp_path / "release")
    with pytest.raises(NotACourse):
        locate()
