"""Read one submitted notebook defensively and rebuild it on the trusted release template.

Shipped to students as ``coursechecks/submission.py`` (the self-check rebuilds a notebook
exactly as the grader will), so it needs nothing beyond the standard library and nbformat.

nbgrader's rule is "overwrite the locked cells with the release's"; here the whole notebook is
rebuilt instead, so that nothing the student did to the grading machinery counts: locked and
test cells come from the release (source, type and metadata), answer cells keep the student's
source under the release's metadata, cells the student added stay as ungraded free cells, and
graded cells the student deleted are put back. Every repair is reported as a plain sentence.

Nothing here executes code. Submissions that cannot be graded raise :class:`Rejected`.
"""
from __future__ import annotations

import copy
import json
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

# Statuses of a submission that cannot be graded (the same strings as autograder.records).
INVALID, TOO_LARGE = "invalid notebook", "too large"

MAX_NOTEBOOK_BYTES = 20 * 2**20  # default cap; callers may pass another
MAX_CELLS = 2000
MAX_SOURCE_BYTES = 2 * 2**20  # total source text kept from the student

LOCKED, TEST, ANSWER = "locked", "test", "answer"  # roles of graded template cells
_CELL_TYPES = ("code", "markdown", "raw")
_REDOWNLOAD = "Re-download it from JupyterLab with File > Download and submit that file."


class Rejected(Exception):
    """A submission that cannot be graded; ``message`` is written for the student."""

    def __init__(self, status: str, message: str):
        if status not in (INVALID, TOO_LARGE):
            raise ValueError(f"a rejected submission is {INVALID!r} or {TOO_LARGE!r}, not {status!r}")
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class PlannedCell:
    """One cell of the notebook to grade.

    kind: "code" (to execute), "test" (a graded test cell: not executed, the grader runs its
          checks at this point), "markdown" or "raw".
    metadata: what the autograded notebook gets: the release's for template cells (nbgrader
          block included), {} for free cells.
    attachments: images pasted into a markdown or raw cell by the student (kept so that a
          written answer keeps its figures).
    """

    kind: str
    source: str
    grade_id: str | None
    metadata: dict
    attachments: dict = field(default_factory=dict)

    @property
    def cell_type(self) -> str:
        return "code" if self.kind in ("code", TEST) else self.kind


@dataclass
class Prepared:
    chapter: str
    cells: list[PlannedCell]
    notes: list[str]  # plain sentences about what was repaired
    metadata: dict  # notebook metadata: the release's (kernelspec etc.)
    nbformat_minor: int

    def test_cells(self) -> list[tuple[int, str]]:
        """(index in ``cells``, grade_id) of every test cell, in notebook order."""
        return [(i, c.grade_id) for i, c in enumerate(self.cells) if c.kind == TEST and c.grade_id]


# ---------------------------------------------------------------------------------------------
# Reading


def read_notebook(path: Path, max_bytes: int = MAX_NOTEBOOK_BYTES) -> dict:
    """The submitted notebook as a format-4 dict whose cells all have text sources.

    The size is checked before a byte is read. A format-3 notebook is converted (nbformat then
    records ``orig_nbformat`` in its metadata, which :func:`restore` reports). Outputs are not
    validated: they are dropped when the notebook is rebuilt.
    """
    data = _read_capped(Path(path), max_bytes)
    return _as_v4(_parse(_decode(data)))


def _read_capped(path: Path, max_bytes: int) -> bytes:
    try:
        info = path.stat()
    except OSError as error:
        raise Rejected(INVALID, f"The notebook file could not be opened ({error.strerror}).") from None
    if not stat.S_ISREG(info.st_mode):
        raise Rejected(INVALID, "The submission is not a regular file; submit the .ipynb file itself.")
    if info.st_size > max_bytes:
        raise Rejected(TOO_LARGE, _too_large_message(info.st_size, max_bytes))
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # the file may have grown since stat
    except OSError as error:
        raise Rejected(INVALID, f"The notebook file could not be read ({error.strerror}).") from None
    if len(data) > max_bytes:
        raise Rejected(TOO_LARGE, _too_large_message(len(data), max_bytes))
    if not data.strip():
        raise Rejected(
            INVALID,
            f"The notebook file is empty ({len(data)} bytes). Save the notebook in JupyterLab "
            "(File > Save Notebook) and submit the .ipynb file again.",
        )
    return data


def _too_large_message(size: int, limit: int) -> str:
    return (
        f"The notebook is {size / 2**20:.1f} MB; the limit is {_megabytes(limit)}. Clear the outputs "
        "(Edit > Clear Outputs of All Cells), save, and submit again."
    )


def _megabytes(n: int) -> str:
    mb = n / 2**20
    return f"{mb:.0f} MB" if mb == int(mb) else f"{mb:.1f} MB"


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise Rejected(
            INVALID,
            f"The notebook is not UTF-8 text: byte 0x{data[error.start]:02x} at line {line}, column "
            f"{column} cannot be read, so the file was probably saved by another program or damaged. "
            + _REDOWNLOAD,
        ) from None
    return text.removeprefix("\ufeff")  # a byte-order mark some editors add is harmless


def _parse(text: str) -> dict:
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as error:
        raise Rejected(
            INVALID,
            f"The notebook is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
            "it was probably edited outside Jupyter or cut short. " + _REDOWNLOAD,
        ) from None
    except (ValueError, RecursionError):  # e.g. nesting too deep, a number too long
        raise Rejected(INVALID, "The notebook is not JSON that can be read. " + _REDOWNLOAD) from None
    if not isinstance(nb, dict):
        raise Rejected(
            INVALID,
            f"The file is JSON but not a notebook (it holds {_json_kind(nb)}, not a notebook object). "
            "Submit the .ipynb file of the exercise.",
        )
    return nb


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    kinds = {dict: "an object", list: "a list", str: "text", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def _as_v4(nb: dict) -> dict:
    """Check the format version and the cells' shape; convert format 3 to 4."""
    version = nb.get("nbformat")
    if isinstance(version, bool) or not isinstance(version, int):
        raise Rejected(
            INVALID,
            "The file has no notebook format version, so it is not a Jupyter notebook. "
            "Submit the .ipynb file of the exercise.",
        )
    if version == 3:
        nb = _upgraded_v3(nb)
    elif version != 4:
        raise Rejected(
            INVALID,
            f"The notebook is in format version {version}; only versions 3 and 4 can be graded. "
            "Open the exercise in the course's JupyterLab, save it there, and submit again.",
        )
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise Rejected(INVALID, "The notebook has no list of cells, so it cannot be graded. " + _REDOWNLOAD)
    for number, cell in enumerate(cells, 1):
        if not isinstance(cell, dict):
            raise Rejected(
                INVALID, f"Cell {number} is not a notebook cell (it is {_json_kind(cell)}). " + _REDOWNLOAD
            )
        if not isinstance(cell.get("cell_type"), str):
            raise Rejected(INVALID, f"Cell {number} has no cell type. " + _REDOWNLOAD)
        if not _is_source(cell.get("source", "")):
            raise Rejected(
                INVALID,
                f"Cell {number} has a source that is not text (it is {_json_kind(cell['source'])}). " + _REDOWNLOAD,
            )
    return nb


def _is_source(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(s, str) for s in value))


def _upgraded_v3(nb: dict) -> dict:
    """nbformat's own v3 -> v4 conversion, after making sure it cannot trip over the input."""
    nb = copy.deepcopy(nb)
    worksheets = nb.get("worksheets", [])
    if not isinstance(worksheets, list) or not all(isinstance(w, dict) for w in worksheets):
        raise Rejected(INVALID, "The notebook (format version 3) has no readable worksheets. " + _REDOWNLOAD)
    if not isinstance(nb.get("metadata"), dict):
        nb["metadata"] = {}
    for sheet in worksheets:
        cells = sheet.get("cells", [])
        if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
            raise Rejected(
                INVALID, "The notebook (format version 3) has cells that cannot be read. " + _REDOWNLOAD
            )
        sheet["cells"] = cells
        for number, cell in enumerate(cells, 1):
            if not isinstance(cell.get("metadata"), dict):
                cell["metadata"] = {}
            key = "input" if cell.get("cell_type") == "code" else "source"
            if not _is_source(cell.get(key, "")):
                raise Rejected(INVALID, f"Cell {number} has a source that is not text. " + _REDOWNLOAD)
            cell[key] = _text(cell.get(key, ""))
            if cell.get("cell_type") == "code":
                cell["outputs"] = []  # dropped anyway; old outputs are the likeliest to break conversion
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nbformat warns about anything non-standard
            upgraded = nbformat.v4.upgrade(nbformat.from_dict(nb))
    except Exception:  # noqa: BLE001 (any failure of the conversion means the same to the student)
        raise Rejected(
            INVALID,
            "The notebook is in the old format version 3 and could not be converted. Open it in "
            "JupyterLab, save it (that writes version 4), and submit again.",
        ) from None
    return json.loads(json.dumps(upgraded))  # plain dicts, like a version-4 file


# ---------------------------------------------------------------------------------------------
# Rebuilding


@dataclass(frozen=True)
class _TemplateCell:
    index: int  # position in the release notebook
    role: str  # LOCKED, TEST or ANSWER
    grade_id: str
    cell: dict


def restore(submitted: dict, template: dict, chapter: str) -> Prepared:
    """Rebuild ``submitted`` on ``template`` (the release notebook); see the module docstring.

    The student's cell order is kept: a test cell's checks run where the student left it.
    """
    nb = _as_v4(submitted)
    notes: list[str] = []
    original = nb.get("metadata", {}).get("orig_nbformat") if isinstance(nb.get("metadata"), dict) else None
    if isinstance(original, int) and original < 4:
        notes.append(f"The notebook was in the old format version {original}; it was converted to version 4.")
    cells = nb["cells"]
    if len(cells) > MAX_CELLS:
        raise Rejected(
            TOO_LARGE,
            f"The notebook has {len(cells):,} cells; the limit is {MAX_CELLS:,}. "
            "Delete the cells you do not need and submit again.",
        )

    graded = _graded_cells(template)
    template_ids = {_grade_id(c) for c in template["cells"]} - {None}
    placed: list[tuple[PlannedCell, int | None]] = []  # with the template index of graded cells
    used: set[str] = set()
    kept_bytes = 0
    for cell in cells:
        grade_id = _grade_id(cell)
        match = graded.get(grade_id) if grade_id else None
        if match and grade_id not in used:
            used.add(grade_id)
            planned = _restored(match, cell, notes)
            placed.append((planned, match.index))
            if match.role == ANSWER:
                kept_bytes += _size(planned)
            continue
        if match and match.role != ANSWER:
            notes.append(f"The {_describe(match)} {grade_id} appeared more than once; the copy was ignored.")
            continue
        if match:
            notes.append(
                f"The answer cell {grade_id} appeared more than once; the copy was kept as an ordinary "
                "cell (its code still runs, but it is not graded)."
            )
        elif grade_id and grade_id not in template_ids:
            notes.append(
                f"A cell claimed to be the graded cell {grade_id}, which is not part of the exercise; "
                "it was kept as an ordinary cell and earns no points."
            )
        planned = _free(cell, notes)
        placed.append((planned, None))
        kept_bytes += _size(planned)
    if kept_bytes > MAX_SOURCE_BYTES:
        raise Rejected(
            TOO_LARGE,
            f"The code and text in the notebook add up to {kept_bytes / 2**20:.1f} MB; the limit is "
            f"{_megabytes(MAX_SOURCE_BYTES)}. Remove pasted data or long printed text from the cells and submit again.",
        )

    found = [index for _, index in placed if index is not None]
    if graded and not found:
        notes.append(f"None of the graded cells of {chapter} were found; is this the notebook of another exercise?")
    else:
        notes.extend(_order_note(found, template))
    for match in graded.values():  # template order
        if match.index not in found:
            _insert_missing(placed, match, notes)
            found.append(match.index)

    return Prepared(
        chapter=chapter,
        cells=[planned for planned, _ in placed],
        notes=notes,
        metadata=copy.deepcopy(template.get("metadata", {})),
        nbformat_minor=int(template.get("nbformat_minor", 5)),
    )


def _graded_cells(template: dict) -> dict[str, _TemplateCell]:
    """The release's graded cells by grade_id, in release order. Cells without nbgrader
    metadata (prose, the student's own gradient check) are free and not matched."""
    graded: dict[str, _TemplateCell] = {}
    for index, cell in enumerate(template["cells"]):
        grade_id = _grade_id(cell)
        role = _role(cell["metadata"]["nbgrader"], cell["cell_type"]) if grade_id else None
        if role and grade_id not in graded:
            graded[grade_id] = _TemplateCell(index, role, grade_id, cell)
    return graded


def _role(meta: dict, cell_type: str) -> str | None:
    if meta.get("solution"):
        return ANSWER  # also the manually graded written answer (grade and solution)
    if meta.get("grade") and cell_type == "code":
        return TEST
    if meta.get("locked"):
        return LOCKED
    return None


def _grade_id(cell: dict) -> str | None:
    meta = cell.get("metadata")
    nbgrader_meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    grade_id = nbgrader_meta.get("grade_id") if isinstance(nbgrader_meta, dict) else None
    return grade_id if isinstance(grade_id, str) and grade_id else None


def _restored(match: _TemplateCell, cell: dict, notes: list[str]) -> PlannedCell:
    """The first submitted copy of a graded cell, with the release's type and metadata."""
    template_type = match.cell["cell_type"]
    student_type = cell["cell_type"]
    kind = TEST if match.role == TEST else template_type
    metadata = copy.deepcopy(match.cell["metadata"])
    grade_id = match.grade_id
    if match.role == ANSWER:
        if student_type != template_type:
            notes.append(
                f"The answer cell {grade_id} had been turned into a {student_type} cell; "
                f"it was turned back into a {template_type} cell."
            )
        elif _nbgrader(cell) != metadata["nbgrader"]:
            notes.append(f"The grading metadata of the answer cell {grade_id} had been changed; the release's was used.")
        attachments = _attachments(cell) if template_type != "code" else {}
        return PlannedCell(kind, _text(cell.get("source", "")), grade_id, metadata, attachments)
    template_source = _text(match.cell.get("source", ""))
    if student_type != template_type:
        notes.append(
            f"The {_describe(match)} {grade_id} had been turned into a {student_type} cell; "
            "it was restored from the release."
        )
    elif _text(cell.get("source", "")) != template_source or _nbgrader(cell) != metadata["nbgrader"]:
        notes.append(f"The {_describe(match)} {grade_id} had been changed; it was restored from the release.")
    return PlannedCell(kind, template_source, grade_id, metadata)


def _free(cell: dict, notes: list[str]) -> PlannedCell:
    """A cell that is not graded: the student's source and type, no metadata."""
    kind = cell["cell_type"]
    if kind not in _CELL_TYPES:
        notes.append(f"A cell of unknown type {kind!r} was kept as a raw cell (it does not run).")
        kind = "raw"
    attachments = _attachments(cell) if kind != "code" else {}
    return PlannedCell(kind, _text(cell.get("source", "")), None, {}, attachments)


def _insert_missing(placed: list[tuple[PlannedCell, int | None]], match: _TemplateCell, notes: list[str]) -> None:
    """Put a deleted graded cell back from the release, right after the last cell that comes
    before it in the release (or first)."""
    at = max((i + 1 for i, (_, index) in enumerate(placed) if index is not None and index < match.index), default=0)
    cell = match.cell
    kind = TEST if match.role == TEST else cell["cell_type"]
    planned = PlannedCell(kind, _text(cell.get("source", "")), match.grade_id, copy.deepcopy(cell["metadata"]))
    placed.insert(at, (planned, match.index))
    grade_id = match.grade_id
    if match.role == ANSWER and cell["cell_type"] == "code":
        notes.append(
            f"The answer cell {grade_id} was missing, so the code written in it was probably lost; "
            "the empty version from the release was put back."
        )
    elif match.role == ANSWER:
        notes.append(
            f"The written answer {grade_id} is missing (its cell was deleted); an empty answer cell "
            "from the release was put back."
        )
    else:
        notes.append(f"The {_describe(match)} {grade_id} was missing; it was restored from the release.")


def _order_note(found: list[int], template: dict) -> list[str]:
    """A note when graded cells are out of release order: a test placed above the function it
    checks runs before that function exists."""
    for earlier, later in zip(found, found[1:]):
        if later < earlier:
            first, second = _grade_id(template["cells"][later]), _grade_id(template["cells"][earlier])
            return [
                f"The graded cells are not in the exercise's order ({first} comes after {second}); "
                "the notebook is run in your order, so a test placed above its function may fail."
            ]
    return []


def _describe(match: _TemplateCell) -> str:
    return "test cell" if match.role == TEST else "read-only cell" if match.role == LOCKED else "answer cell"


def _nbgrader(cell: dict) -> object:
    meta = cell.get("metadata")
    return meta.get("nbgrader") if isinstance(meta, dict) else None


def _text(source: str | list[str]) -> str:
    text = source if isinstance(source, str) else "".join(source)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from "\ud800"-style escapes could not be written back
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _attachments(cell: dict) -> dict:
    """Pasted images of a markdown/raw cell, when they have the shape nbformat requires."""
    found = cell.get("attachments")
    if not isinstance(found, dict):
        return {}
    valid = all(
        isinstance(name, str) and isinstance(bundle, dict) and all(_is_source(v) for v in bundle.values())
        for name, bundle in found.items()
    )
    return copy.deepcopy(found) if valid else {}


def _size(planned: PlannedCell) -> int:
    pasted = sum(len(_text(v)) for bundle in planned.attachments.values() for v in bundle.values())
    return len(planned.source.encode("utf-8")) + pasted


def prepare(path: Path, template_path: Path, chapter: str, max_bytes: int = MAX_NOTEBOOK_BYTES) -> Prepared:
    """Read ``path`` and rebuild it on the release notebook at ``template_path`` (trusted)."""
    submitted = read_notebook(path, max_bytes)
    template = json.loads(Path(template_path).read_text(encoding="utf-8"))
    return restore(submitted, template, chapter)


def to_notebook(prepared: Prepared, outputs: dict[int, list] | None = None) -> nbformat.NotebookNode:
    """The rebuilt notebook (format 4, valid); code and test cells get ``outputs[index]``."""
    outputs = outputs or {}
    cells = []
    for index, planned in enumerate(prepared.cells):
        cell: dict = {
            "cell_type": planned.cell_type,
            "metadata": copy.deepcopy(planned.metadata),
            "source": planned.source,
        }
        if prepared.nbformat_minor >= 5:
            cell["id"] = f"cell-{index}"  # deterministic, so regrading gives the same file
        if planned.cell_type == "code":
            cell["execution_count"] = None
            cell["outputs"] = list(outputs.get(index, []))
        elif planned.attachments:
            cell["attachments"] = copy.deepcopy(planned.attachments)
        cells.append(cell)
    return nbformat.from_dict(
        {
            "nbformat": 4,
            "nbformat_minor": prepared.nbformat_minor,
            "metadata": copy.deepcopy(prepared.metadata),
            "cells": cells,
        }
    )
