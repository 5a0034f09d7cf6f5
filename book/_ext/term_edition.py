"""The term edition: the book without the answers to its graded exercises.

One source gives two builds. The full edition (the default) is the book as it is. The term
edition, built with ``COURSE_EDITION=term`` (``make book-term``), is what an instructor
publishes while the exercises are open:

* every ``literalinclude`` of a graded function (``:pyobject:``) shows only its signature and
  docstring, followed by a notice naming the exercise notebook;
* every passage marked ``term-withheld`` (the directive), and the outputs of every code cell
  with the tag of the same name, are replaced by a notice: the text, numbers and figures
  that answer a written question;
* the page sources, the download and launch buttons and every link to the repository (which
  holds ``solutions/``) are switched off.

The replacement happens while the documents are read, so the HTML, the search index and
everything else derived from the doctree are free of the withheld text. Which functions are
graded is read from the exercise notebooks: a function defined in a cell that nbgrader marks
``solution: true`` in ``exercises/source/<chapter>/<chapter>.ipynb`` is that chapter's
graded answer. (The capstone's read-only cells repeat other chapters' functions; they are
graded in those chapters, and found there.)

The term build reuses the full build's execution cache, so it executes nothing that the
full build has already run.
"""
from __future__ import annotations

import ast
import json
import os
import textwrap
from functools import lru_cache
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.directives.code import LiteralInclude
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

EDITION_VARIABLE = "COURSE_EDITION"
EDITIONS = ("full", "term")
TAG = "term-withheld"


def edition_from_environment() -> str:
    edition = os.environ.get(EDITION_VARIABLE, "full").strip().lower() or "full"
    if edition not in EDITIONS:
        raise ValueError(f"{EDITION_VARIABLE} must be one of {', '.join(EDITIONS)}, got {edition!r}")
    return edition


@lru_cache(maxsize=None)
def graded_functions(course_root: str) -> dict[str, str]:
    """Map each graded function's name to the chapter whose notebook grades it."""
    graded: dict[str, str] = {}
    sources = sorted(Path(course_root, "exercises", "source").glob("*/*.ipynb"))
    for path in sources:
        if path.stem != path.parent.name:
            continue
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for cell in cells:
            if cell["cell_type"] != "code" or not cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
                continue
            source = "".join(cell["source"])
            for node in ast.parse(source).body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    graded[node.name] = path.stem
    if not graded:
        raise RuntimeError(f"no graded function found in {course_root}/exercises/source/*/*.ipynb")
    return graded


def signature_and_docstring(filename: str, pyobject: str) -> str:
    """The object's decorators, signature and docstring, its body replaced by ``...``."""
    source = Path(filename).read_text(encoding="utf-8")
    scope: list[ast.stmt] = ast.parse(source).body
    node = None
    for part in pyobject.split("."):
        node = next(
            (n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part),
            None,
        )
        if node is None:
            raise ValueError(f"{pyobject} not found in {filename}")
        scope = node.body
    lines = source.splitlines()
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    first = node.body[0]
    has_docstring = (
        isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
    )
    end = first.end_lineno if has_docstring else first.lineno - 1
    head = textwrap.dedent("\n".join(lines[start - 1 : end]))
    indent = " " * (first.col_offset - node.col_offset)
    return f"{head}\n{indent}...\n"


def notice(text: str) -> nodes.admonition:
    box = nodes.admonition(classes=["term-withheld"])
    box += nodes.title(text="Withheld in the term edition")
    box += nodes.paragraph(text=text)
    return box


def _chapter(env) -> str:
    return Path(env.docname).name


def _body_notice(name: str, chapter: str) -> nodes.admonition:
    return notice(
        f"The body of {name} is part of the graded exercise notebook {chapter}.ipynb. "
        "It appears here, in the full edition of the book, after the deadline of the exercise."
    )


def _passage_notice(chapter: str, what: str = "This passage") -> nodes.admonition:
    return notice(
        f"{what} answers a question of the graded exercise notebook {chapter}.ipynb. "
        "It appears here, in the full edition of the book, after the deadline of the exercise."
    )


class TermLiteralInclude(LiteralInclude):
    """``literalinclude`` that shows only the signature and docstring of a graded function."""

    def run(self) -> list[nodes.Node]:
        result = super().run()
        pyobject = self.options.get("pyobject")
        if self.config.course_edition != "term" or not pyobject:
            return result
        chapter = graded_functions(self.env.srcdir).get(pyobject.split(".")[0])
        if chapter is None:
            return result
        _, filename = self.env.relfn2path(self.arguments[0])
        stub = signature_and_docstring(filename, pyobject)
        for block in result[0].findall(nodes.literal_block):
            block.children = [nodes.Text(stub)]
            block.rawsource = stub
            block["highlight_args"] = {"linenostart": 1}
        return [*result, _body_notice(pyobject, chapter)]


class TermWithheld(SphinxDirective):
    """A passage that answers a graded question: shown in the full edition only.

    The optional argument names the exercise notebook (the page's chapter by default).
    """

    has_content = True
    optional_arguments = 1

    def run(self) -> list[nodes.Node]:
        chapter = self.arguments[0] if self.arguments else _chapter(self.env)
        notebooks = set(graded_functions(self.env.srcdir).values())
        if chapter not in notebooks:
            raise self.error(f"{TAG}: no exercise notebook {chapter!r}; one of {', '.join(sorted(notebooks))}")
        if self.config.course_edition == "term":
            return [_passage_notice(chapter)]
        holder = nodes.Element()
        self.state.nested_parse(self.content, self.content_offset, holder)
        return holder.children


def withhold_tagged_cells(app: Sphinx, doctree: nodes.document) -> None:
    """Replace the outputs of every code cell tagged ``term-withheld`` by a notice.

    The code stays (it is the experiment, and its input is hidden or shown as the page
    chose); what it printed or drew is the answer.
    """
    if app.config.course_edition != "term":
        return
    for cell in list(doctree.findall(nodes.container)):
        tags = [c[len("tag_") :] for c in cell.get("classes", []) if c.startswith(f"tag_{TAG}")]
        if cell.get("nb_element") != "cell_code" or not tags:
            continue
        # "term-withheld" answers the page's own notebook; "term-withheld:<chapter>" another's.
        chapter = tags[0].partition(":")[2] or _chapter(app.env)
        if chapter not in set(graded_functions(app.srcdir).values()):
            logger.warning(f"{TAG}: no exercise notebook {chapter!r}", location=cell)
        outputs = [c for c in cell.children if isinstance(c, nodes.container) and c.get("nb_element") == "cell_code_output"]
        for output in outputs:
            cell.remove(output)
        cell += _passage_notice(chapter, "The output of this cell")


def configure(app: Sphinx, config: Config) -> None:
    if config.course_edition != "term":
        return
    root = Path(app.srcdir)
    # Execute nothing twice: read the outputs the full build cached.
    config.nb_execution_cache_path = str(root / "_build" / ".jupyter_cache")
    # The page sources (.md and the executed .ipynb) would carry the withheld cells, and the
    # repository, source and launch buttons lead to solutions/.
    config.html_copy_source = False
    config.html_show_sourcelink = False
    options = dict(config.html_theme_options)
    for key in (
        "use_repository_button",
        "use_issues_button",
        "use_edit_page_button",
        "use_source_button",
        "use_download_button",
    ):
        options[key] = False
    options.pop("repository_url", None)
    options.pop("launch_buttons", None)
    options["path_to_docs"] = ""
    config.html_theme_options = options
    context = dict(config.html_context)
    for key in ("github_user", "github_repo", "github_version", "doc_path"):
        context.pop(key, None)
    config.html_context = context
    config.html_title = f"{config.html_title} (term edition)"


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("course_edition", edition_from_environment(), "env", [str])
    app.add_directive("literalinclude", TermLiteralInclude, override=True)
    app.add_directive(TAG, TermWithheld)
    # Early: myst-nb reads its cache path and sphinx-book-theme its options after this.
    app.connect("config-inited", configure, priority=100)
    app.connect("doctree-read", withhold_tagged_cells)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
