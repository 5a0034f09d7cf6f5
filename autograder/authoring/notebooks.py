"""Build the instructor (source) notebook of a chapter from its spec; never edit it by hand.

Single source: every answer cell is the source of the functions in ``solutions/<chapter>.py``
(``inspect.getsource``), the docstring left visible and the body wrapped in
``### BEGIN SOLUTION`` / ``### END SOLUTION``; every test cell calls the checks of
``autograder/authoring/checks/<chapter>.py`` by grade_id, hidden checks inside
``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` with a grading seed from the spec.
Points come from the checks. The spec (``autograder/authoring/specs/<chapter>.py``) adds the prose,
the experiment and the manually graded question.

Private helpers the solutions call are handled by the spec: ``provided`` ones (input checks,
shape bookkeeping) go into a locked read-only cell; helpers that compute part of the
answer are listed among a part's ``functions`` and become solution stubs themselves.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder.authoring.checks import Check, chapter_checks
from autograder.authoring.checks.selfcheck import SELF_CHECK_CELL, STUDENT_INSTALL

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
SCHEMA_VERSION = 3
TOTAL_POINTS = 100
HELPER_PACKAGE = "coursechecks"  # name of the released copy of autograder/authoring/checks
HELPER_MODULES = ("__init__.py", "__main__.py", "core.py", "selfcheck.py", "submission.py")
BOOK_CONFIG = Path(__file__).resolve().parents[2] / "_config.yml"
SELF_CHECK = "python -m coursechecks"  # run beside the notebook; see checks/selfcheck.py


def chapter_url(name: str, config: Path = BOOK_CONFIG) -> str:
    """The published web page of chapter ``name``: the book's ``html.baseurl`` (the one place
    that names where the book is published) joined with the page path jupyter-book writes
    for ``book/<name>.md``."""
    import yaml

    html = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("html") or {}
    base = html.get("baseurl")
    if not isinstance(base, str) or not base.startswith("https://"):
        raise ValueError(f"{config} must set html.baseurl to the book's https:// address, got {base!r}")
    return f"{base.rstrip('/')}/book/{name}.html"


@dataclass(frozen=True)
class Part:
    """One autograded part: the functions the student writes and the test cells that grade them.

    functions: names in the chapter's solutions module, in order; the last one is graded.
    tests:     grade_ids of the test cells (each the grade_id of a visible check; hidden
               checks join the cell named by their ``cell``).
    text:      markdown shown before the answer cell.
    section:   the anchor of the chapter's section that explains the part (the notebook
               links ``chapter_url(chapter)#section``).
    self_check: optional ungraded code cell between the answer and the tests (e.g. a
               finite-difference gradient check that prints relative errors).
    """

    title: str
    text: str
    functions: tuple[str, ...]
    tests: tuple[str, ...]
    section: str = ""
    self_check: str = ""


@dataclass(frozen=True)
class Experiment:
    """A run-and-interpret part: code that plots, a question, a manually graded answer."""

    grade_id: str
    title: str
    text: str
    code: str
    question: str
    model_answer: str
    points: int


@dataclass(frozen=True)
class Chapter:
    name: str
    title: str
    intro: str
    solutions_module: str
    provided: tuple[tuple[str, str], ...]  # (module, function) shown in a locked cell
    provided_imports: str
    parts: tuple[Part, ...]
    experiments: tuple[Experiment, ...]
    hidden_seeds: dict[str, int] = field(default_factory=dict)
    # First line of the locked cell of provided helpers (a chapter may provide whole layers).
    provided_note: str = "Provided helpers: input checks and shape bookkeeping (read-only)."


def chapters() -> list[str]:
    """Names of the chapters that have a spec module in ``autograder/authoring/specs``."""
    import autograder.authoring.specs as specs

    return sorted(m.name for m in pkgutil.iter_modules(specs.__path__) if not m.name.startswith("_"))


def load_spec(name: str) -> Chapter:
    spec = importlib.import_module(f"autograder.authoring.specs.{name}").CHAPTER
    if spec.name != name:
        raise ValueError(f"autograder/authoring/specs/{name}.py describes chapter {spec.name!r}")
    return spec


def solution_source(fn) -> str:
    """The function's source with its body (after the docstring) in a solution region."""
    src = textwrap.dedent(inspect.getsource(fn))
    node = ast.parse(src).body[0]
    if not isinstance(node, ast.FunctionDef):
        raise TypeError(f"{fn.__name__} is not a plain function")
    body = node.body
    has_doc = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
        and isinstance(body[0].value.value, str)
    if has_doc and len(body) == 1:
        raise ValueError(f"{fn.__name__} has a docstring but no body")
    header_end = body[0].end_lineno if has_doc else body[0].lineno - 1
    indent = " " * (body[1] if has_doc else body[0]).col_offset
    lines = src.rstrip().splitlines()
    return "\n".join(
        lines[:header_end] + [indent + BEGIN_SOLUTION] + lines[header_end:] + [indent + END_SOLUTION]
    )


def _nbgrader(cell, grade_id: str, *, grade: bool, solution: bool, locked: bool, points: float | None = None):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": SCHEMA_VERSION,
            "solution": solution}
    if grade:
        meta["points"] = points
    cell.metadata["nbgrader"] = meta
    if locked:
        cell.metadata["deletable"] = False
        cell.metadata["editable"] = False
    return cell


def test_cells(spec: Chapter) -> dict[str, list[Check]]:
    """The checks of each test cell, the visible check first."""
    cells: dict[str, list[Check]] = {}
    for c in chapter_checks(spec.name).values():
        cells.setdefault(c.cell_id, []).append(c)
    for cell_id, group in cells.items():
        visible = [c for c in group if not c.hidden]
        if [c.grade_id for c in visible] != [cell_id]:
            raise ValueError(f"test cell {cell_id} must hold exactly one visible check with its grade_id")
        group.sort(key=lambda c: c.hidden)
    return cells


def _test_source(cell_id: str, group: list[Check], seeds: dict[str, int]) -> str:
    visible, hidden = group[0], group[1:]
    lines = [f"# {visible.description}", f'check("{visible.grade_id}", {visible.function})']
    if hidden:
        lines.append(BEGIN_HIDDEN)
        for c in hidden:
            if c.grade_id not in seeds:
                raise ValueError(f"no grading seed for hidden check {c.grade_id}")
            lines.append(f'check("{c.grade_id}", {c.function}, seed={seeds[c.grade_id]})')
        lines.append(END_HIDDEN)
    return "\n".join(lines)


def autograded_points(spec: Chapter) -> float:
    return sum(c.points for c in chapter_checks(spec.name).values())


def _intro(spec: Chapter, n_parts: int) -> str:
    auto = autograded_points(spec)
    manual = sum(e.points for e in spec.experiments)
    return f"""# {spec.title}

The exercise for the chapter *{spec.title}* of the course book:
[read the chapter online]({chapter_url(spec.name)}).

{spec.intro.strip()}

**Set-up.** Keep this notebook and the `coursechecks/` folder beside it together (the
chapter's zip unpacks into one folder, `{spec.name}/`, holding both). You need Python 3 with
`{STUDENT_INSTALL}`; PyTorch is used only by the checks.

**How to work.** Run the cells from top to bottom. Write your code where a cell says
`# YOUR CODE HERE`, replacing the `raise NotImplementedError()` line, and keep the function
names and signatures. Use numpy only. Each test cell calls `check(...)`: it prints `passed ...`
or stops with a message naming the wrong output and its relative error. When the notebook is
graded, hidden tests with other inputs run in the same cells, and the test cells are restored
to their original content, so editing them changes nothing. {STDERR_RULE}

**Points.** {auto:g} points are graded automatically ({n_parts} parts) and {manual:g} by hand
(the written answer{'s' if len(spec.experiments) > 1 else ''}), {auto + manual:g} in total.
"""


# What output on stderr costs, said once (the grader judges a test cell by its checks' verdicts
# alone; the checks silence warnings of the functions they call).
STDERR_RULE = ("Warnings and other output on standard error cost nothing: a test is decided "
               "only by whether your function's outputs are right.")


def _before_submitting(spec: Chapter) -> str:
    return f"""## Before you submit

Save the notebook (File > Save Notebook), then run the cell below. It checks the saved file
the way the grader will read it: it runs the notebook in a fresh kernel with the original test
cells, reports every visible test, and lists anything that would cost points (an answer left
as handed out, a deleted or edited cell, a file too large). In a terminal beside the notebook,
`{SELF_CHECK} {spec.name}.ipynb` does the same. Then submit the `.ipynb` file only.
"""


def self_check_source(chapter: str) -> str:
    """The notebook's last cell (read-only, ungraded): the self-check of the saved notebook.
    It does nothing when the grader runs the notebook (see ``selfcheck.in_notebook``)."""
    return f'from coursechecks.selfcheck import in_notebook\n\nin_notebook("{chapter}.ipynb")'


def build_notebook(spec: Chapter) -> nbformat.NotebookNode:
    """The instructor notebook for one chapter, outputs empty, cell ids deterministic."""
    module = importlib.import_module(spec.solutions_module)
    groups = test_cells(spec)
    used = [t for p in spec.parts for t in p.tests]
    if sorted(used) != sorted(groups):
        raise ValueError(f"the parts must use every test cell once: {sorted(set(groups) ^ set(used))}")
    total = autograded_points(spec) + sum(e.points for e in spec.experiments)
    if total != TOTAL_POINTS:
        raise ValueError(f"{spec.name} is worth {total:g} points, not {TOTAL_POINTS}")

    v4 = nbformat.v4
    cells = [v4.new_markdown_cell(_intro(spec, len(spec.parts)))]
    setup = "\n".join([
        "import numpy as np",
        "",
        f"from {HELPER_PACKAGE} import check, gradient_check",
    ])
    cells.append(_nbgrader(v4.new_code_cell(setup), f"{spec.name}_setup", grade=False, solution=False, locked=True))
    if spec.provided:
        helpers = [f'"""{spec.provided_note}"""', spec.provided_imports.strip(), ""]
        for mod, name in spec.provided:
            helpers += ["", textwrap.dedent(inspect.getsource(getattr(importlib.import_module(mod), name))).rstrip(), ""]
        cells.append(_nbgrader(v4.new_code_cell("\n".join(helpers).rstrip()), f"{spec.name}_provided",
                               grade=False, solution=False, locked=True))

    for i, part in enumerate(spec.parts, 1):
        points = sum(c.points for t in part.tests for c in groups[t])
        graded = part.functions[-1]
        if not part.section:
            raise ValueError(f"{spec.name}, part {i}: no chapter section named (Part.section)")
        cells.append(v4.new_markdown_cell(
            f"## Part {i}: {part.title} ({points:g} points)\n\n{part.text.strip()}\n\n"
            f"The chapter explains it in [this section]({chapter_url(spec.name)}#{part.section})."))
        answer = "\n\n\n".join(solution_source(getattr(module, f)) for f in part.functions)
        cells.append(_nbgrader(v4.new_code_cell(answer), f"{spec.name}_{graded}_answer",
                               grade=False, solution=True, locked=False))
        if part.self_check:
            cells.append(v4.new_code_cell(part.self_check.strip()))
        for t in part.tests:
            cell = v4.new_code_cell(_test_source(t, groups[t], spec.hidden_seeds))
            cells.append(_nbgrader(cell, t, grade=True, solution=False, locked=True,
                                   points=sum(c.points for c in groups[t])))

    for e in spec.experiments:
        cells.append(v4.new_markdown_cell(f"## Experiment: {e.title} ({e.points:g} points)\n\n{e.text.strip()}"))
        cells.append(v4.new_code_cell(e.code.strip()))
        cells.append(v4.new_markdown_cell(e.question.strip()))
        cells.append(_nbgrader(v4.new_markdown_cell(e.model_answer.strip()), e.grade_id,
                               grade=True, solution=True, locked=False, points=e.points))

    cells.append(v4.new_markdown_cell(_before_submitting(spec)))
    cells.append(_nbgrader(v4.new_code_cell(self_check_source(spec.name)), f"{spec.name}_{SELF_CHECK_CELL}",
                           grade=False, solution=False, locked=True))

    for i, cell in enumerate(cells):
        cell["id"] = f"{spec.name}-{i:02d}"
    nb = v4.new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nbformat.validate(nb)
    return nb


def helper_files(chapter: str) -> dict[str, bytes]:
    """The files released as ``coursechecks/``: the package (init, ``core``, the self-check run
    by ``python -m coursechecks`` and the notebook reader it shares with the grader) and the
    chapter's checks. The release adds ``original.ipynb``, the released notebook itself."""
    root = Path(__file__).parent / "checks"
    return {name: (root / name).read_bytes() for name in HELPER_MODULES + (f"{chapter}.py",)}


def write_source(spec: Chapter, course_dir: Path) -> Path:
    """Write ``source/<chapter>/<chapter>.ipynb`` and ``source/<chapter>/coursechecks/``."""
    folder = Path(course_dir) / "source" / spec.name
    helpers = folder / HELPER_PACKAGE
    helpers.mkdir(parents=True, exist_ok=True)
    for stale in helpers.glob("*.py"):
        stale.unlink()
    for name, data in helper_files(spec.name).items():
        (helpers / name).write_bytes(data)
    path = folder / f"{spec.name}.ipynb"
    nbformat.write(build_notebook(spec), str(path))
    return path
