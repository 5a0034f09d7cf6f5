"""The course directory: nbgrader's layout, in one place.

    <course>/source/<chapter>/<chapter>.ipynb          the instructor's notebook
    <course>/release/<chapter>/<chapter>.ipynb         what students get
    <course>/release/<chapter>/coursechecks/           the checks released with it
    <course>/submitted/<student>/<chapter>/<chapter>.ipynb (+ timestamp.txt)
    <course>/autograded/<student>/<chapter>/<chapter>.ipynb (+ timestamp.txt)
    <course>/feedback/<student>/<chapter>/<chapter>.html
    <course>/gradebook.db                              unless another database is named

Like nbgrader's ``CourseDirectory.format_path``: nothing else joins these paths by hand.

Which course a command acts on (:func:`locate`): ``--course DIR`` if given, else the current
directory if it holds ``nbgrader_config.py``. Like nbgrader, which reads that file from the
directory it runs in and takes that directory as the course root, only the current directory
is looked at, never its parents and never the folder the package was installed from: the
course ``autograder`` grades is always the one ``nbgrader`` would act on in the same shell.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


CONFIG = "nbgrader_config.py"


class NotACourse(FileNotFoundError):
    """The command was run outside a course directory and no ``--course`` was given."""


def locate(course: Path | None = None, cwd: Path | None = None) -> Path:
    """The course directory: ``course`` if given, else ``cwd`` (default: the current
    directory) when it holds ``nbgrader_config.py``; otherwise :class:`NotACourse`."""
    if course is not None:
        return Path(course)
    here = Path.cwd() if cwd is None else Path(cwd)
    if (here / CONFIG).is_file():
        return here
    raise NotACourse(f"{here} is not a course directory (it has no {CONFIG}): "
                     "run autograder in the course directory or pass --course DIR")


@dataclass(frozen=True)
class CourseDir:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root).resolve())

    def require(self) -> None:
        """A clear error for a course directory that is missing or has nothing released."""
        if not (self.root / "release").is_dir():
            raise FileNotFoundError(
                f"{self.root} is not a course directory: it has no release/ folder "
                "(pass --course, or run `autograder release` first)")

    def chapters(self) -> list[str]:
        """The released chapters."""
        release = self.root / "release"
        return sorted(p.name for p in release.iterdir() if p.is_dir()) if release.is_dir() else []

    def release_notebook(self, chapter: str) -> Path:
        return self.root / "release" / chapter / f"{chapter}.ipynb"

    def coursechecks(self, chapter: str) -> Path:
        return self.root / "release" / chapter / "coursechecks"

    def source_notebook(self, chapter: str) -> Path:
        """The instructor's notebook, else the released one (a course that ships only releases)."""
        path = self.root / "source" / chapter / f"{chapter}.ipynb"
        return path if path.is_file() else self.release_notebook(chapter)

    def submitted(self, student: str, chapter: str) -> Path:
        return self.root / "submitted" / student / chapter / f"{chapter}.ipynb"

    def autograded(self, student: str, chapter: str) -> Path:
        return self.root / "autograded" / student / chapter / f"{chapter}.ipynb"

    def feedback(self, student: str, chapter: str) -> Path:
        return self.root / "feedback" / student / chapter / f"{chapter}.html"

    def default_db_url(self) -> str:
        """nbgrader's default gradebook location: ``gradebook.db`` in the course directory."""
        return f"sqlite:///{self.root / 'gradebook.db'}"
