"""Code shown in the book fits its code block without scrolling.

Each displayed line must fit in MAX_COLUMNS characters: the widest line the
book's theme shows in a code block at its widest page width without a
horizontal scroll bar. Two kinds of code are displayed:

* every ``literalinclude`` in a chapter, read the way Sphinx reads it (a whole
  file, or one object found by Sphinx's own ``ModuleAnalyzer`` for
  ``:pyobject:``);
* every code cell of a chapter (a MyST notebook) whose input the reader can
  see: all cells except those tagged ``remove-input`` or ``remove-cell``
  (``hide-input`` cells count, they are shown when expanded). A cell's options,
  ``:key: value`` lines or a ``---`` YAML block, are not code and not checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from sphinx.pycode import ModuleAnalyzer

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
MAX_COLUMNS = 77
TAB_SIZE = 8  # Sphinx's default for literalinclude (no :tab-width: is used)
# Options that do not change which lines are shown; any other option would
# need to be understood here, so it fails the test instead of being ignored.
HARMLESS_OPTIONS = {"language", "caption", "name", "class", "linenos", "emphasize-lines"}
DIRECTIVE = re.compile(r"^(`{3,}|:{3,})\{literalinclude\}\s+(\S+)\s*$")
OPTION = re.compile(r"^:([\w-]+):\s*(.*)$")


@dataclass(frozen=True)
class Include:
    chapter: str
    line: int
    path: Path
    options: dict[str, str]

    @property
    def label(self) -> str:
        target = self.options.get("pyobject", self.path.name)
        return f"{self.chapter}:{target}"


def literal_includes(markdown: Path) -> list[Include]:
    """Every ``{literalinclude}`` directive of a MyST page, with its options."""
    found = []
    lines = markdown.read_text(encoding="utf8").splitlines()
    for number, text in enumerate(lines, 1):
        match = DIRECTIVE.match(text.strip())
        if not match:
            continue
        options = {}
        for option in lines[number:]:
            opt = OPTION.match(option.strip())
            if not opt:
                break
            options[opt.group(1)] = opt.group(2)
        path = (markdown.parent / match.group(2)).resolve()
        found.append(Include(markdown.stem, number, path, options))
    return found


def shown_lines(include: Include) -> list[str]:
    """The lines Sphinx displays for one include."""
    unknown = set(include.options) - HARMLESS_OPTIONS - {"pyobject"}
    if unknown:
        raise ValueError(f"{include.label}: options this test does not model: {unknown}")
    lines = include.path.read_text(encoding="utf8").splitlines()
    name = include.options.get("pyobject")
    if name is None:
        return lines
    tags = ModuleAnalyzer.for_file(str(include.path), "").find_tags()
    if name not in tags:
        raise ValueError(f"{include.label}: {include.path.name} has no object {name!r}")
    _, start, end = tags[name]
    return lines[start - 1 : end]


def too_wide(lines: list[str], limit: int = MAX_COLUMNS) -> list[tuple[int, int]]:
    """(line number within the shown block, width) of every line over the limit."""
    widths = (len(line.expandtabs(TAB_SIZE)) for line in lines)
    return [(i, w) for i, w in enumerate(widths, 1) if w > limit]


INCLUDES = [inc for md in sorted(BOOK.glob("*.md")) for inc in literal_includes(md)]


def test_the_book_has_literal_includes():
    # Guards the parser: a test over an empty list would pass for nothing.
    chapters = {inc.chapter for inc in INCLUDES}
    assert {"batchnorm", "bn_inference", "layernorm", "dropout", "pooling"} <= chapters


@pytest.mark.parametrize("include", INCLUDES, ids=[inc.label for inc in INCLUDES])
def test_included_code_fits_the_code_block(include):
    lines = shown_lines(include)
    assert lines, f"{include.label} shows nothing"
    wide = too_wide(lines)
    assert not wide, (
        f"{include.label} (book/{include.chapter}.md line {include.line}) has lines "
        f"wider than {MAX_COLUMNS} columns, (line in block, width): {wide}"
    )


def test_the_width_check_catches_a_long_line(tmp_path):
    source = tmp_path / "module.py"
    source.write_text(
        "def short():\n    return 1\n\n\n"
        "def long():\n    return '" + "x" * 80 + "'\n    # after\n",
        encoding="utf8",
    )
    page = tmp_path / "page.md"
    page.write_text(
        "```{literalinclude} module.py\n:language: python\n:pyobject: long\n```\n"
        "```{literalinclude} module.py\n:pyobject: short\n```\n",
        encoding="utf8",
    )
    long_one, short_one = literal_includes(page)
    assert long_one.options == {"language": "python", "pyobject": "long"}
    # Sphinx's object ends at its last statement: the trailing comment is not shown.
    assert shown_lines(long_one) == ["def long():", "    return '" + "x" * 80 + "'"]
    assert too_wide(shown_lines(long_one)) == [(2, 93)]
    assert too_wide(shown_lines(short_one)) == []
    with pytest.raises(ValueError, match="options this test does not model"):
        shown_lines(Include("page", 1, source, {"lines": "1-2"}))


# --- code cells -------------------------------------------------------------

CODE_CELL = re.compile(r"^(`{3,}|~{3,})\{code-cell\}")
HIDDEN_INPUT_TAGS = {"remove-input", "remove-cell"}


@dataclass(frozen=True)
class CodeCell:
    chapter: str
    line: int  # line of the page where the cell's code starts
    tags: tuple[str, ...]
    code: tuple[str, ...]

    @property
    def visible(self) -> bool:
        return not HIDDEN_INPUT_TAGS & set(self.tags)


def code_cells(markdown: Path) -> list[CodeCell]:
    """Every ``{code-cell}`` of a MyST notebook page: its tags and code lines."""
    cells = []
    lines = markdown.read_text(encoding="utf8").splitlines()
    i = 0
    while i < len(lines):
        match = CODE_CELL.match(lines[i])
        i += 1
        if not match:
            continue
        fence, options = match.group(1), {}
        if i < len(lines) and lines[i].strip() == "---":  # YAML options block
            end = lines.index("---", i + 1)
            options = yaml.safe_load("\n".join(lines[i + 1 : end])) or {}
            i = end + 1
        while i < len(lines) and (opt := OPTION.match(lines[i])):
            options[opt.group(1)] = yaml.safe_load(opt.group(2))
            i += 1
        start = i
        while i < len(lines) and lines[i].strip() != fence:
            i += 1
        if i == len(lines):
            raise ValueError(f"{markdown.name}: code cell at line {start} is not closed")
        tags = tuple(options.get("tags") or ())
        cells.append(CodeCell(markdown.stem, start + 1, tags, tuple(lines[start:i])))
        i += 1
    return cells


def wide_cell_lines(cells: list[CodeCell]) -> list[tuple[int, int]]:
    """(line in the page, width) of every over-wide line of the visible cells."""
    return [(cell.line + i - 1, width)
            for cell in cells if cell.visible
            for i, width in too_wide(list(cell.code))]


CELLS = [cell for md in sorted(BOOK.glob("*.md")) for cell in code_cells(md)]
CELL_CHAPTERS = sorted({cell.chapter for cell in CELLS})


def test_the_book_has_code_cells():
    # Guards the parser: a test over an empty list would pass for nothing.
    assert {"batchnorm", "bn_inference", "layernorm", "dropout", "pooling",
            "network", "variance_shift"} <= set(CELL_CHAPTERS)
    visible = [cell for cell in CELLS if cell.visible]
    assert len(visible) > 50 and all(cell.code for cell in visible)
    # Both kinds of cell, and hide-input cells count as visible.
    assert any(not cell.visible for cell in CELLS)
    assert any("hide-input" in cell.tags and cell.visible for cell in CELLS)


@pytest.mark.parametrize("chapter", CELL_CHAPTERS)
def test_visible_code_cells_fit_the_code_block(chapter):
    wide = wide_cell_lines([cell for cell in CELLS if cell.chapter == chapter])
    assert not wide, (
        f"book/{chapter}.md: code-cell lines wider than {MAX_COLUMNS} columns "
        f"a reader can see, (line in page, width): {wide}"
    )


def test_the_cell_check_catches_a_long_line_in_visible_cells_only(tmp_path):
    long = "x = '" + "y" * 80 + "'"
    page = tmp_path / "page.md"
    page.write_text(
        "# A page\n\n"
        "```{code-cell} ipython3\nshort = 1\n" + long + "\n```\n\n"
        "```{code-cell} ipython3\n:tags: [remove-input]\n\n" + long + "\n```\n\n"
        "```{code-cell} ipython3\n:tags: [remove-cell]\n" + long + "\n```\n\n"
        "```{code-cell} ipython3\n---\ntags: [hide-input]\nmystnb:\n  figure:\n"
        "    caption: " + "a caption longer than any code block " * 3 + "\n---\n"
        + long + "\n```\n",
        encoding="utf8",
    )
    shown, no_input, no_cell, hidden_input = code_cells(page)
    assert shown.tags == () and shown.code == ("short = 1", long) and shown.line == 4
    assert no_input.tags == ("remove-input",) and no_input.code == ("", long)
    assert no_cell.tags == ("remove-cell",)
    # The YAML options block (with its long caption) is not code.
    assert hidden_input.tags == ("hide-input",) and hidden_input.code == (long,)
    assert [c.visible for c in (shown, no_input, no_cell, hidden_input)] == [
        True, False, False, True]
    # Lines 5 (a plain cell) and 26 (hide-input) are caught; the same line in
    # the remove-input (11) and remove-cell (16) cells is not.
    assert wide_cell_lines([shown, no_input, no_cell, hidden_input]) == [(5, 86), (26, 86)]
