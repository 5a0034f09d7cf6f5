"""The chapter zips (``book/_ext/exercise_zips.py``): each unpacks into one folder named after
the chapter, holding the notebook and the complete ``coursechecks/`` package, and nothing else."""
import sys
import zipfile
from pathlib import Path

import pytest

from autograder.authoring import notebooks
from autograder.authoring.checks import selfcheck

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "book" / "_ext"))
import exercise_zips  # noqa: E402 (the book's extension, not a package)

CHAPTERS = notebooks.chapters()


def expected_names(chapter: str) -> set[str]:
    checks = [*notebooks.HELPER_MODULES, f"{chapter}.py", selfcheck.ORIGINAL]
    return {f"{chapter}/{chapter}.ipynb", *(f"{chapter}/{notebooks.HELPER_PACKAGE}/{name}" for name in checks)}


def assert_one_chapter_folder(path: Path, chapter: str) -> None:
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert names == expected_names(chapter), sorted(names ^ expected_names(chapter))
        release = REPO / "exercises" / "release" / chapter
        for name in names:
            assert zf.read(name) == (release / name.split("/", 1)[1]).read_bytes(), name


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_a_zip_unpacks_into_one_folder_named_after_the_chapter(chapter, tmp_path):
    target = tmp_path / f"{chapter}-exercise.zip"
    exercise_zips.write_zip(REPO / "exercises" / "release" / chapter, target)
    assert_one_chapter_folder(target, chapter)


def test_zips_are_reproducible(tmp_path):
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    exercise_zips.write_zip(REPO / "exercises" / "release" / CHAPTERS[0], first)
    exercise_zips.write_zip(REPO / "exercises" / "release" / CHAPTERS[0], second)
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_built_site_offers_that_zip(chapter):
    """The zip the built site links (when the book has been built)."""
    built = sorted((REPO / "_build" / "html" / "_downloads").glob(f"*/{chapter}-exercise.zip"))
    if not built:
        pytest.skip("the book has not been built (make book)")
    for path in built:
        assert_one_chapter_folder(path, chapter)
