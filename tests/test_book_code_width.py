"""Reference code shown in the book fits its code block without scrolling.

Every ``literalinclude`` in a chapter is read the way Sphinx reads it (a whole
file, or one object found by Sphinx's own ``ModuleAnalyzer`` for ``:pyobject:``)
and each displayed line must fit in MAX_COLUMNS characters: the widest line the
book's theme shows in a code block at its widest page width without a
horizontal scroll bar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
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
