r"""Find the submissions to grade in a folder of student folders or in an LMS export.

Only names and file metadata are looked at here; notebook contents are the grader's
business (it reads them with byte caps). `discover` returns what will be graded
(`Found`) and, for every file left out that looks like it was meant to be graded, a
plain sentence saying why (`Skipped`).

Accepted layouts (`SUBMISSIONS` is a folder or a `.zip` file; the same rules apply
inside the zip):

| Layout | Example file | Student id | Chapter |
|---|---|---|---|
| Student folders (main) | `s123/batchnorm.ipynb` | the folder name | `--chapter`, else the file name |
| nbgrader `submitted/` | `s123/batchnorm/batchnorm.ipynb` | the first folder | the second folder |
| Canvas export | `doejane_LATE_12345_678901_batchnorm.ipynb` | the Canvas user id (`12345`) | `--chapter`, else the original file name |
| Moodle export | `Jane Doe_4567_assignsubmission_file_batchnorm.ipynb` | the participant id (`4567`) | `--chapter`, else the original file name |
| Generic flat export | `s123_bn_inference.ipynb`, `s123-batchnorm.ipynb` | the part before the chapter | the chapter at the end of the name |
| `--pattern REGEX` | `hw_(?P<student>\d+)_(?P<chapter>\w+)\.ipynb` | the `student` group | the `chapter` group, else as above |

- Flat exports (Canvas, Moodle, generic) are the files at the top of the folder or zip; the
  built-in patterns are tried in the order of the table. Moodle's "download submissions in
  folders" variant (`Jane Doe_4567_assignsubmission_file_/batchnorm.ipynb`) is read too.
- `--pattern` replaces the built-in rules: every notebook's file name, wherever it is, is
  matched from its start against the regular expression (as nbgrader's `zip_collect`
  does); `student` is a required named group, `chapter` an optional one.
- A chapter is recognised in a file name by substring, ignoring case and treating `-`,
  `.` and spaces as `_`, longest chapter name first (`bn_inference` is never read as a
  shorter name inside it); copies such as `batchnorm (1).ipynb` or
  `batchnorm-Copy1.ipynb` count. A name that mentions two chapters is skipped.
- With `--chapter`, notebooks named for another chapter are left out silently in student
  folders (which usually hold every chapter) and listed as skipped in an LMS export (a
  student may have uploaded the wrong notebook).
- A folder named after a chapter is not read as a student (`batchnorm/s123.ipynb` is
  skipped with the reason).
- Student ids are stripped and must match `[A-Za-z0-9][A-Za-z0-9._@-]{0,63}`: they become
  directory names.
- Hidden files and folders (`.ipynb_checkpoints`, `.DS_Store`), `__MACOSX` and
  `__pycache__` are ignored; other non-notebook files at the top or in a student folder
  are listed as skipped; files deeper than `STUDENT/CHAPTER/NOTEBOOK` are not looked at.
- When all files sit in a single top-level folder (a zipped `submissions/` folder) and
  reading inside it recognises more submissions, that folder is treated as the root.
- Several notebooks for one student and chapter: Canvas files keep the highest submission
  id (the `LATE` marker does not matter), others the most recently modified, ties by
  name; the rest are listed as skipped, naming the one kept.
- Zips: only the notebooks that will be graded are extracted, to
  `WORKDIR/<student>/<chapter>.ipynb`. Members with absolute or `..` paths and symbolic
  links are never extracted; nested zips are not expanded. Limits: `MAX_MEMBERS` entries,
  `MAX_MEMBER_BYTES` per extracted file, `MAX_TOTAL_BYTES` in all.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

MAX_MEMBERS = 10_000  # entries in a zip, or files and folders looked at in a folder
MAX_MEMBER_BYTES = 512 * 2**20
MAX_TOTAL_BYTES = 4 * 2**30
MAX_DEPTH = 3  # student/chapter/notebook.ipynb is the deepest layout

STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_IGNORED_NAMES = {"__MACOSX", "__pycache__", "Thumbs.db", "desktop.ini"}
_CANVAS = re.compile(r"(?P<name>[^_]+)_(?:LATE_)?(?P<student>\d+)_(?P<submission>\d+)_(?P<file>.+)")
_MOODLE = re.compile(r"(?P<name>.+)_(?P<student>\d+)_assignsubmission_file_(?P<file>.+)")
_MOODLE_FOLDER = re.compile(r".+_\d+_assignsubmission_file_?")
_COPY_SUFFIX = r"(?:\s*\(\d+\)|[-_ ]copy\s*\d*|[-_ ]\d+)*"
_LAYOUTS = "STUDENT/CHAPTER.ipynb, STUDENT/CHAPTER/CHAPTER.ipynb or an LMS export file name"


@dataclass(frozen=True)
class Found:
    """A notebook to grade."""

    student: str  # validated student id, safe as a directory name
    chapter: str
    path: Path  # inside SUBMISSIONS, or inside ``workdir`` for a zip
    origin: str  # the name the instructor knows, e.g. "export.zip:doejane_123_456_batchnorm.ipynb"


@dataclass(frozen=True)
class Skipped:
    """A file that is not graded, and why."""

    origin: str
    reason: str


class IntakeError(ValueError):
    """The input as a whole cannot be used (missing, unreadable, unknown chapter, bad pattern)."""


@dataclass(frozen=True)
class _Entry:
    """A regular file of the input, known by its path relative to the root."""

    parts: tuple[str, ...]
    origin: str
    mtime: float
    source: Path | zipfile.ZipInfo


@dataclass(frozen=True)
class _Candidate:
    student: str
    chapter: str
    entry: _Entry
    submission: int | None  # Canvas submission id: the higher one is the later submission


@dataclass(frozen=True)
class _Rules:
    chapters: tuple[str, ...]
    chapter: str | None
    pattern: re.Pattern[str] | None


def discover(
    submissions: Path,
    chapters: Sequence[str],
    *,
    chapter: str | None = None,
    pattern: str | None = None,
    workdir: Path,
) -> tuple[list[Found], list[Skipped]]:
    """The notebooks to grade in ``submissions`` (a folder or a ``.zip``), sorted by
    (chapter, student), and the files left out with the reason, sorted by origin.

    ``chapter`` grades every notebook as that chapter unless its name says another one;
    ``pattern`` replaces the built-in file name rules (see the module docstring); zip
    members are extracted under ``workdir``. Raises :class:`IntakeError` when the input as a
    whole is unusable.
    """
    chapters = tuple(chapters)
    if chapter is not None and chapter not in chapters:
        raise IntakeError(f"unknown chapter {chapter!r}; the chapters are: {', '.join(chapters)}")
    rules = _Rules(chapters, chapter, _compile_pattern(pattern) if pattern is not None else None)
    submissions = Path(submissions)
    if not submissions.exists():
        raise IntakeError(f"{submissions} does not exist")
    if submissions.is_dir():
        entries, skipped = _folder_entries(submissions)
        kept, more = _candidates(entries, rules)
        found = [Found(c.student, c.chapter, c.entry.source, c.entry.origin) for c in kept]
    elif submissions.suffix.lower() == ".zip":
        with _open_zip(submissions) as archive:
            entries, skipped = _zip_entries(archive, submissions.name)
            kept, more = _candidates(entries, rules)
            found, failed = _extract_all(archive, kept, Path(workdir))
        more += failed
    else:
        raise IntakeError(f"{submissions} is neither a folder nor a .zip file")
    found.sort(key=lambda f: (f.chapter, f.student))
    return found, sorted(skipped + more, key=lambda s: (s.origin, s.reason))


def _compile_pattern(pattern: str) -> re.Pattern[str]:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise IntakeError(f"the pattern {pattern!r} is not a valid regular expression: {exc}") from None
    if "student" not in regex.groupindex:
        raise IntakeError(f"the pattern {pattern!r} has no (?P<student>...) group to capture the student id")
    return regex


# --- listing the input -------------------------------------------------------------------

def _ignored(name: str) -> bool:
    """System and editor files that never are submissions: not worth a line in the report."""
    return name.startswith(".") or name.startswith("~$") or name in _IGNORED_NAMES


def _folder_entries(root: Path) -> tuple[list[_Entry], list[Skipped]]:
    entries: list[_Entry] = []
    skipped: list[Skipped] = []
    seen = 0
    # One level deeper than the layouts need, for a folder that wraps the real root.
    for path, parts, info in _walk(root, (), MAX_DEPTH + 1, skipped):
        seen += 1
        if seen > MAX_MEMBERS:
            raise IntakeError(f"{root} holds more than {MAX_MEMBERS} files and folders; is it the submissions folder?")
        origin = "/".join(parts)
        if stat.S_ISLNK(info.st_mode):
            skipped.append(Skipped(origin, "a symbolic link; links are not followed"))
        elif stat.S_ISREG(info.st_mode):
            entries.append(_Entry(parts, origin, info.st_mtime, path))
        elif not stat.S_ISDIR(info.st_mode):
            skipped.append(Skipped(origin, "not a regular file"))
    return entries, skipped


def _walk(
    folder: Path, parts: tuple[str, ...], depth: int, skipped: list[Skipped]
) -> Iterator[tuple[Path, tuple[str, ...], os.stat_result]]:
    """(path, relative parts, lstat) of everything under ``folder`` up to ``depth`` levels,
    hidden and system entries left out, symbolic links not followed."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        if not parts:
            raise IntakeError(f"cannot read {folder}: {exc.strerror or exc}") from None
        skipped.append(Skipped("/".join(parts), f"the folder cannot be read: {exc.strerror or exc}"))
        return
    for name in names:
        if _ignored(name):
            continue
        path, sub = folder / name, parts + (name,)
        try:
            info = path.lstat()
        except OSError as exc:
            skipped.append(Skipped("/".join(sub), f"cannot be read: {exc.strerror or exc}"))
            continue
        yield path, sub, info
        if stat.S_ISDIR(info.st_mode) and len(sub) < depth:
            yield from _walk(path, sub, depth, skipped)


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise IntakeError(f"{path} is not a readable zip file: {exc}") from None


def _zip_entries(archive: zipfile.ZipFile, zip_name: str) -> tuple[list[_Entry], list[Skipped]]:
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise IntakeError(f"{zip_name} has {len(members)} entries, more than the limit of {MAX_MEMBERS}")
    entries: list[_Entry] = []
    skipped: list[Skipped] = []
    for info in members:
        origin = f"{zip_name}:{info.filename}"
        name = info.filename.replace("\\", "/")  # zips made on Windows may use backslashes
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in parts:
            skipped.append(Skipped(origin, "its path leaves the zip's folder (absolute or '..'); not extracted"))
            continue
        if not parts or any(_ignored(p) for p in parts) or info.is_dir() or len(parts) > MAX_DEPTH + 1:
            continue
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            skipped.append(Skipped(origin, "a symbolic link; not extracted"))
        elif kind not in (0, stat.S_IFREG):
            skipped.append(Skipped(origin, "not a regular file; not extracted"))
        else:
            entries.append(_Entry(parts, origin, _zip_time(info), info))
    return entries, skipped


def _zip_time(info: zipfile.ZipInfo) -> float:
    try:
        return _dt.datetime(*info.date_time).timestamp()
    except (ValueError, OverflowError):  # malformed dates exist in the wild
        return 0.0


# --- recognising submissions ------------------------------------------------------------

def _candidates(entries: list[_Entry], rules: _Rules) -> tuple[list[_Candidate], list[Skipped]]:
    """One candidate per (student, chapter), and the files left out."""
    matched, skipped = _classify_all(entries, rules, strip=False)
    tops = {e.parts[0] for e in entries}
    if len(tops) == 1 and all(len(e.parts) > 1 for e in entries):
        inner, inner_skipped = _classify_all(entries, rules, strip=True)
        if len({(c.student, c.chapter) for c in inner}) > len({(c.student, c.chapter) for c in matched}):
            matched, skipped = inner, inner_skipped
    kept, superseded = _choose(matched)
    return kept, skipped + superseded


def _classify_all(
    entries: list[_Entry], rules: _Rules, *, strip: bool
) -> tuple[list[_Candidate], list[Skipped]]:
    matched: list[_Candidate] = []
    skipped: list[Skipped] = []
    for entry in entries:
        parts = entry.parts[1:] if strip else entry.parts
        if len(parts) > MAX_DEPTH:
            continue
        result = _classify(parts, rules)
        if isinstance(result, str):
            skipped.append(Skipped(entry.origin, result))
        elif result is not None:
            student, chapter, submission = result
            matched.append(_Candidate(student, chapter, entry, submission))
    return matched, skipped


def _classify(parts: tuple[str, ...], rules: _Rules) -> tuple[str, str, int | None] | str | None:
    """(student, chapter, Canvas submission id) for a notebook to grade, a reason to skip
    the file, or None for a file that is silently left out."""
    name = parts[-1]
    if not name.lower().endswith(".ipynb"):
        if len(parts) > 2:  # coursechecks/ and nbgrader's timestamp.txt beside a notebook
            return None
        if name.lower().endswith(".zip"):
            return "a zip archive inside the submissions; archives inside are not expanded"
        return "not a notebook (.ipynb)"
    if rules.pattern is not None:
        return _by_pattern(name, rules)
    if len(parts) == 1:
        return _by_lms_name(name, rules)
    if len(parts) == 2 and _MOODLE_FOLDER.fullmatch(parts[0]):
        return _by_lms_name(parts[0].rstrip("_") + "_" + name, rules)
    if len(parts) == 2 and parts[0] in rules.chapters:
        return f"in a folder named after a chapter, not a student ({_LAYOUTS})"
    if len(parts) == 2:
        return _resolve(parts[0], _chapters_in(_stem(name), rules.chapters), None, rules, lms=False)
    if len(parts) == 3 and parts[1] in rules.chapters:
        named = _chapters_in(_stem(name), rules.chapters)
        if named and parts[1] not in named:
            return f"it is in the {parts[1]} folder but its name is for {', '.join(named)}"
        return _resolve(parts[0], [parts[1]], None, rules, lms=False)
    return f"not in a recognised layout ({_LAYOUTS})"


def _by_lms_name(name: str, rules: _Rules) -> tuple[str, str, int | None] | str:
    if m := _CANVAS.fullmatch(name):
        named = _chapters_in(_stem(m["file"]), rules.chapters)
        return _resolve(m["student"], named, int(m["submission"]), rules, lms=True)
    if m := _MOODLE.fullmatch(name):
        return _resolve(m["student"], _chapters_in(_stem(m["file"]), rules.chapters), None, rules, lms=True)
    for chapter in sorted(rules.chapters, key=len, reverse=True):
        spelled = re.escape(chapter).replace("_", "[-_ ]")
        if m := re.fullmatch(rf"(?P<student>.+?)[-_]{spelled}{_COPY_SUFFIX}\.ipynb", name, re.IGNORECASE):
            return _resolve(m["student"], [chapter], None, rules, lms=True)
    return ("its name matches none of the known patterns (Canvas, Moodle, STUDENT_CHAPTER.ipynb); "
            "describe it with --pattern")


def _by_pattern(name: str, rules: _Rules) -> tuple[str, str, int | None] | str:
    assert rules.pattern is not None
    m = rules.pattern.match(name)
    if m is None:
        return f"its name does not match the pattern {rules.pattern.pattern!r}"
    if m["student"] is None:
        return "the pattern matched but captured no student id"
    captured = m["chapter"] if "chapter" in rules.pattern.groupindex else None
    if captured is not None:
        named = _chapters_in(captured, rules.chapters)
        if not named:
            known = ", ".join(rules.chapters)
            return f"the pattern's chapter group captured {captured!r}, which is not a chapter ({known})"
    else:
        start, end = m.span("student")  # a student id may contain a chapter-like word
        named = _chapters_in(_stem(name[:start] + "_" + name[end:]), rules.chapters)
    return _resolve(m["student"], named, None, rules, lms=True)


def _resolve(
    student: str, named: list[str], submission: int | None, rules: _Rules, *, lms: bool
) -> tuple[str, str, int | None] | str | None:
    """Check the student id and settle the chapter from ``--chapter`` and the names found."""
    if rules.chapter is not None and named and rules.chapter not in named:
        if not lms:
            return None  # a student folder holds every chapter: not worth a line per file
        return f"it is for {', '.join(named)}, not {rules.chapter}"
    student = student.strip()
    if not STUDENT_ID.fullmatch(student) or student in (".", ".."):
        return (f"{student!r} is not a usable student id (1 to 64 letters, digits, '.', '_', '@' or '-', "
                "starting with a letter or digit)")
    if rules.chapter is not None:
        return student, rules.chapter, submission
    if len(named) > 1:
        return f"its name mentions more than one chapter ({', '.join(named)})"
    if not named:
        return f"its name does not say which chapter it is ({', '.join(rules.chapters)}); use --chapter"
    return student, named[0], submission


def _stem(name: str) -> str:
    return name[: -len(".ipynb")] if name.lower().endswith(".ipynb") else name


def _normal(text: str) -> str:
    return re.sub(r"[-.\s]+", "_", text.lower())


def _chapters_in(text: str, chapters: Sequence[str]) -> list[str]:
    """Chapters named in ``text``, longest first: a span used by a longer name is not
    searched again, so ``bn_inference`` never also counts as a shorter name inside it."""
    text = _normal(text)
    taken: list[tuple[int, int]] = []
    found: list[str] = []
    for chapter in sorted(chapters, key=len, reverse=True):
        for m in re.finditer(re.escape(_normal(chapter)), text):
            if not any(m.start() < end and start < m.end() for start, end in taken):
                taken.append(m.span())
                if chapter not in found:
                    found.append(chapter)
    return sorted(found)


def _choose(candidates: list[_Candidate]) -> tuple[list[_Candidate], list[Skipped]]:
    """Keep one notebook per (student, chapter); the others are skipped naming the one kept."""
    groups: dict[tuple[str, str], list[_Candidate]] = {}
    for c in candidates:
        groups.setdefault((c.student, c.chapter), []).append(c)
    kept: list[_Candidate] = []
    skipped: list[Skipped] = []
    for (student, chapter), group in groups.items():
        canvas = all(c.submission is not None for c in group)
        group.sort(key=lambda c: ((-(c.submission or 0) if canvas else 0), -c.entry.mtime, c.entry.origin))
        winner = group[0]
        kept.append(winner)
        for other in group[1:]:
            if canvas and other.submission != winner.submission:
                why = "the later Canvas submission"
            elif other.entry.mtime != winner.entry.mtime:
                why = "modified more recently"
            else:
                why = "same modification time, first by name"
            reason = f"{student} has more than one {chapter} notebook; kept {winner.entry.origin} ({why})"
            skipped.append(Skipped(other.entry.origin, reason))
    return kept, skipped


# --- extracting from a zip ----------------------------------------------------------------

def _extract_all(
    archive: zipfile.ZipFile, kept: list[_Candidate], workdir: Path
) -> tuple[list[Found], list[Skipped]]:
    """Extract the chosen members to ``workdir/<student>/<chapter>.ipynb``."""
    sizes = [c.entry.source.file_size for c in kept if isinstance(c.entry.source, zipfile.ZipInfo)]
    total = sum(size for size in sizes if size <= MAX_MEMBER_BYTES)  # bigger ones are skipped
    if total > MAX_TOTAL_BYTES:
        raise IntakeError(f"the notebooks in {Path(archive.filename or 'the zip').name} would expand to "
                          f"{_size(total)}, more than the limit of {_size(MAX_TOTAL_BYTES)}")
    found: list[Found] = []
    skipped: list[Skipped] = []
    targets: dict[str, str] = {}  # case-folded target -> student, for case-insensitive file systems
    for c in sorted(kept, key=lambda c: (c.chapter, c.student)):
        info = c.entry.source
        assert isinstance(info, zipfile.ZipInfo)
        target = workdir / c.student / f"{c.chapter}.ipynb"
        clash = targets.get(str(target.relative_to(workdir)).casefold())
        if clash is not None:
            reason = f"student id {c.student!r} differs from {clash!r} only in letter case; cannot store both"
        elif info.flag_bits & 0x1:
            reason = "encrypted in the zip; cannot be extracted"
        elif info.file_size > MAX_MEMBER_BYTES:
            reason = f"{_size(info.file_size)} uncompressed, over the limit of {_size(MAX_MEMBER_BYTES)} for one file"
        else:
            reason = _extract(archive, info, target)
        if reason:
            skipped.append(Skipped(c.entry.origin, reason))
            continue
        targets[str(target.relative_to(workdir)).casefold()] = c.student
        found.append(Found(c.student, c.chapter, target, c.entry.origin))
    return found, skipped


class _Oversized(Exception):
    """A member produced more bytes than its entry declares."""


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> str:
    """Copy one member to ``target`` with a byte cap; return a reason on failure, else ''."""
    # zipfile stops at the declared size too; counting here does not depend on that.
    limit = min(info.file_size, MAX_MEMBER_BYTES)
    partial = target.with_name(f".{target.name}.part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with archive.open(info) as src, open(partial, "wb") as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > limit:
                    raise _Oversized
                dst.write(chunk)
        os.replace(partial, target)
        return ""
    except _Oversized:
        reason = "expands beyond the size its zip entry declares; not extracted"
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError, ValueError) as exc:
        reason = f"could not be extracted: {exc}"
    partial.unlink(missing_ok=True)
    return reason


def _size(n: float) -> str:
    units = ("bytes", "KiB", "MiB", "GiB")
    power = 0
    while n >= 1024 and power < len(units) - 1:
        n, power = n / 1024, power + 1
    return f"{int(n)} bytes" if power == 0 else f"{n:.1f} {units[power]}"
