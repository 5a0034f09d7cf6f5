"""The term edition (book/_ext/term_edition.py) gives no graded answer away.

Reads the two built sites, the full edition in _build/html and the term edition in
_build/term/_build/html (`make book-term`; `make test` builds both), and checks them against
what the exercise notebooks grade, found here independently of the extension:

* no line of any solution region of exercises/source/*/*.ipynb appears anywhere in the term
  edition's output folder (HTML, search index, scripts, zips), while the full edition shows
  every one of them, so the search is known to find what it looks for;
* no value glued inside a ``term-withheld`` passage or cell is shown in the term edition,
  while the full edition shows each;
* nothing in the term edition points at the repository (which holds solutions/) or offers
  the page sources.

Without the builds the tests are skipped, unless CI is set: then they fail.
"""
from __future__ import annotations

import ast
import dataclasses
import html
import importlib.util
import json
import os
import re
import zipfile
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FULL = ROOT / "_build" / "html"
TERM = ROOT / "_build" / "term" / "_build" / "html"
EXECUTED = ROOT / "_build" / "jupyter_execute" / "book"
IN_CI = bool(os.environ.get("CI"))
TEXT_SUFFIXES = {".html", ".js", ".txt", ".md", ".ipynb", ".json", ".py", ".css", ".svg"}
SHORTEST_NEEDLE = 24  # shorter lines ("return out, cache") are shared with ungraded code
MARKER = "term-withheld"


def require(site: Path) -> None:
    if (site / "index.html").is_file():
        return
    reason = f"{site} is not built; run `make book-term` (it builds both editions)"
    if IN_CI:
        pytest.fail(f"{reason}. CI is set, so a missing site is a failure.")
    pytest.skip(reason)


def squeeze(text: str) -> str:
    """Text as a reader or a search would see it, without whitespace: tags dropped, entities
    and JSON escapes decoded, so a code line matches whether Pygments split it into spans,
    a notebook stored it as a JSON string, or a page wrapped it."""
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    text = text.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
    return re.sub(r"\s+", "", text)


@dataclasses.dataclass(frozen=True)
class Solution:
    chapter: str
    grade_id: str
    defines: frozenset  # the names the answer cell defines
    body: tuple  # the lines between BEGIN and END SOLUTION


@lru_cache(maxsize=None)
def solutions() -> tuple[Solution, ...]:
    """Every answer cell of the instructor notebooks."""
    found = []
    for path in sorted((ROOT / "exercises" / "source").glob("*/*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf8"))["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell["cell_type"] != "code" or not meta.get("solution"):
                continue
            source = "".join(cell["source"])
            inside, body = False, []
            for line in source.splitlines():
                if "### BEGIN SOLUTION" in line:
                    inside = True
                elif "### END SOLUTION" in line:
                    inside = False
                elif inside:
                    body.append(line)
            defines = frozenset(re.findall(r"^(?:def|class) (\w+)", source, re.M))
            found.append(Solution(path.stem, meta["grade_id"], defines, tuple(body)))
    return tuple(found)


@lru_cache(maxsize=None)
def shared_lines() -> frozenset:
    """Lines that are not specific to one answer: found in two answers, or in code of
    solutions/ that no notebook grades (input checks, the layers' wrappers)."""
    graded = set().union(*(s.defines for s in solutions()))
    seen: dict[str, int] = {}
    for solution in solutions():
        for line in {squeeze(line) for line in solution.body}:
            seen[line] = seen.get(line, 0) + 1
    shared = {line for line, count in seen.items() if count > 1}
    for path in (ROOT / "solutions").glob("*.py"):
        source = path.read_text(encoding="utf8")
        tree = ast.parse(source)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in graded:
                continue
            segment = ast.get_source_segment(source, node) or ""
            shared |= {squeeze(line) for line in segment.splitlines()}
    return frozenset(shared)


def needles(solution: Solution) -> list[str]:
    """The distinctive lines of one answer: code, not comments, long, and its own."""
    found = []
    for line in solution.body:
        code = line.strip()
        if len(code) < SHORTEST_NEEDLE or code.startswith("#"):
            continue
        needle = squeeze(code)
        # A substring of shared code would be found where no answer is.
        if not any(needle in line for line in shared_lines()):
            found.append(needle)
    return found


def site_texts(site: Path):
    """(name, squeezed text) of every text file of a site and of every member of its zips."""
    for path in sorted(site.rglob("*")):
        if not path.is_file():
            continue
        name = str(path.relative_to(site))
        if path.suffix in TEXT_SUFFIXES:
            yield name, squeeze(path.read_text(encoding="utf8", errors="replace"))
        elif path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                for member in zf.namelist():
                    if Path(member).suffix in TEXT_SUFFIXES:
                        text = zf.read(member).decode("utf8", errors="replace")
                        yield f"{name}!{member}", squeeze(text)


def provided_elsewhere(zip_member: str) -> set[str]:
    """Names defined read-only in a released notebook (an earlier chapter's graded layers).

    The capstone and BN-at-inference notebooks hand out earlier chapters' functions as
    read-only code: that is the course's design, so those notebooks go out only after the
    earlier chapters' deadlines. Their zips are the release itself, not the website's text.
    """
    if not zip_member.endswith(".ipynb"):
        return set()
    # The zip unpacks into a folder named after its chapter; besides the notebook it holds
    # coursechecks/original.ipynb, a copy of the same released notebook.
    chapter = Path(zip_member).parts[0]
    path = ROOT / "exercises" / "release" / chapter / f"{chapter}.ipynb"
    names = set()
    for cell in json.loads(path.read_text(encoding="utf8"))["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] == "code" and meta.get("locked") and not meta.get("grade"):
            names |= set(re.findall(r"^def (\w+)", "".join(cell["source"]), re.M))
    return names


def test_every_solution_has_distinctive_lines():
    assert len({s.chapter for s in solutions()}) == 7
    bare = [s.grade_id for s in solutions() if not needles(s)]
    assert not bare, f"solution cells without a line long enough to search for: {bare}"


def test_full_edition_shows_every_graded_body():
    require(FULL)
    pages = squeeze("".join(p.read_text(encoding="utf8") for p in (FULL / "book").glob("*.html")))
    # The capstone's graded functions are partly shown (network_forward); the others are
    # the reference's methods. Every other chapter's page prints its solutions in full.
    for solution in solutions():
        if solution.chapter == "network":
            continue
        # A solution cell may hold a private helper the page does not print; its graded
        # function is printed, so at least one of the cell's lines must be found.
        assert any(n in pages for n in needles(solution)), f"{solution.grade_id}: the full edition lacks it"


def test_term_edition_shows_no_graded_body():
    require(TERM)
    leaks = []
    for name, text in site_texts(TERM):
        for solution in solutions():
            if "!" in name and solution.defines & provided_elsewhere(name.split("!")[1]):
                continue
            hits = [n for n in needles(solution) if n in text]
            if hits:
                leaks.append(f"{name}: {solution.grade_id} ({hits[0][:60]})")
    assert not leaks, "graded code in the term edition:\n" + "\n".join(leaks[:20])


def test_term_edition_replaces_each_graded_listing_with_a_notice():
    require(TERM)
    page = (TERM / "book" / "batchnorm.html").read_text(encoding="utf8")
    assert page.count('class="term-withheld admonition"') >= 3
    assert "def batchnorm_forward(x, gamma, beta" in html.unescape(re.sub(r"<[^>]+>", "", page))
    assert "part of the graded exercise notebook batchnorm.ipynb" in page


def chapter_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


GLUE = re.compile(r"\{glue:text\}`([\w-]+)")
PASTED = re.compile(r'<span class="pasted-text">(.*?)</span>')


def glue_references(source: str) -> list[tuple[str, bool]]:
    """(key, withheld) for every glued number of a page's Markdown, in reading order."""
    refs, fence = [], None
    for line in source.splitlines():
        stripped = line.strip()
        opening = re.match(r"^(:{3,})\{" + MARKER + r"\}", stripped)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None and stripped == fence:
            fence = None
        else:
            refs += [(key, fence is not None) for key in GLUE.findall(line)]
    return refs


def test_withheld_numbers_are_absent_from_the_term_edition():
    require(FULL)
    require(TERM)
    pages_with_withheld_numbers = 0
    for docname in chapter_pages():
        refs = glue_references((ROOT / f"{docname}.md").read_text(encoding="utf8"))
        withheld = {key for key, hidden in refs if hidden}
        shown = {key for key, hidden in refs if not hidden}
        assert not withheld & shown, f"{docname}: withheld numbers shown elsewhere: {withheld & shown}"
        full = PASTED.findall((FULL / f"{docname}.html").read_text(encoding="utf8"))
        term = PASTED.findall((TERM / f"{docname}.html").read_text(encoding="utf8"))
        # The full edition shows every glued number, in reading order; the term edition
        # shows exactly those outside the withheld blocks, and none of the others.
        assert len(full) == len(refs), f"{docname}: {len(full)} numbers shown, {len(refs)} in the source"
        assert term == [value for value, (_, hidden) in zip(full, refs) if not hidden], docname
        pages_with_withheld_numbers += bool(withheld)
    assert pages_with_withheld_numbers >= 5


def test_every_marker_becomes_a_notice():
    require(TERM)
    for docname in chapter_pages():
        source = (ROOT / f"{docname}.md").read_text(encoding="utf8")
        markers = len(re.findall(r"^\s*:{3,}\{" + MARKER + r"\}", source, re.M))
        markers += len(re.findall(r"^:?tags: \[.*\b" + MARKER + r"\b.*\]", source, re.M))
        listings = len(re.findall(r"^:pyobject: ", source, re.M))
        page = (TERM / f"{docname}.html").read_text(encoding="utf8")
        notices = page.count('class="term-withheld admonition"')
        assert markers <= notices <= markers + listings, f"{docname}: {markers} markers, {notices} notices"


def test_term_edition_points_nowhere_near_the_repository():
    require(FULL)
    require(TERM)
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    repository = config["repository"]["url"].removeprefix("https://")
    full_index = (FULL / "book" / "batchnorm.html").read_text(encoding="utf8")
    assert repository in full_index and "_sources/" in full_index  # the check can fail
    assert not (TERM / "_sources").exists(), "the term edition ships the page sources"
    for path in TERM.rglob("*"):
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            text = path.read_text(encoding="utf8", errors="replace")
            assert repository not in text, f"{path.relative_to(TERM)} links to the repository"
            assert "_sources/" not in text, f"{path.relative_to(TERM)} links to a page source"
            for launcher in ("mybinder.org/v2", "colab.research.google.com/github"):
                assert launcher not in text, f"{path.relative_to(TERM)} offers a {launcher} launch"
    assert not list(TERM.rglob("*.ipynb")), "the term edition offers executed notebooks"


def _extension():
    spec = importlib.util.spec_from_file_location("term_edition", ROOT / "book" / "_ext" / "term_edition.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_graded_functions_come_from_the_answer_cells():
    graded = _extension().graded_functions(str(ROOT))
    # Exactly the names the answer cells define, each with the notebook that grades it.
    assert graded == {name: s.chapter for s in solutions() for name in s.defines}
    assert graded["batchnorm_forward"] == "batchnorm" and graded["network_forward"] == "network"
    # The capstone hands out the earlier layers read-only: they are graded where they are
    # answers, and conv2d_forward, which no notebook asks for, is not graded at all.
    assert graded["maxpool2d_forward"] == "pooling" and "conv2d_forward" not in graded


def test_signature_and_docstring_keep_no_statement_of_the_body():
    stub = _extension().signature_and_docstring(str(ROOT / "solutions" / "batchnorm.py"), "batchnorm_forward")
    tree = ast.parse(stub)
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef) and function.name == "batchnorm_forward"
    assert [type(node) for node in function.body] == [ast.Expr, ast.Expr]  # docstring, ...
    assert isinstance(function.body[1].value, ast.Constant) and function.body[1].value.value is Ellipsis


def test_an_unknown_edition_is_refused(monkeypatch):
    monkeypatch.setenv("COURSE_EDITION", "draft")
    with pytest.raises(ValueError, match="COURSE_EDITION must be one of full, term"):
        _extension().edition_from_environment()
