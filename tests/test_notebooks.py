"""The notebook generator: single source from solutions/, nbgrader metadata, points, currency."""
import dataclasses
import importlib
import inspect
import re
import textwrap
from pathlib import Path

import nbformat
import pytest

from autograder.authoring import notebooks
from autograder.authoring.checks import chapter_checks

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = notebooks.chapters()


def nbg(cell):
    return cell.metadata.get("nbgrader", {})


@pytest.fixture(scope="module", params=CHAPTERS)
def built(request):
    spec = notebooks.load_spec(request.param)
    return spec, notebooks.build_notebook(spec)


def sample(a, b=2):
    """Docstring.

    More text.
    """
    # a comment that belongs to the answer
    return a + b


def no_doc(
    a,
    b,
):
    return a - b


def test_solution_source_keeps_the_docstring_outside_the_region():
    src = notebooks.solution_source(sample)
    lines = src.splitlines()
    assert lines[0] == "def sample(a, b=2):"
    assert lines[lines.index('    """') + 1] == "    ### BEGIN SOLUTION"
    assert lines[-1] == "    ### END SOLUTION" and "    return a + b" in lines
    assert "# a comment that belongs to the answer" in src.split("BEGIN SOLUTION")[1]
    src = notebooks.solution_source(no_doc)
    assert src.splitlines()[:5] == ["def no_doc(", "    a,", "    b,", "):", "    ### BEGIN SOLUTION"]


def test_chapters_are_discovered():
    assert "batchnorm" in CHAPTERS


def test_build_is_deterministic_and_valid(built):
    spec, nb = built
    again = notebooks.build_notebook(spec)
    assert nbformat.writes(nb) == nbformat.writes(again)
    nbformat.validate(nb)
    ids = [c.id for c in nb.cells]
    assert len(set(ids)) == len(ids)


def test_cell_types_and_points(built):
    spec, nb = built
    grade_ids = [nbg(c)["grade_id"] for c in nb.cells if nbg(c)]
    assert len(set(grade_ids)) == len(grade_ids)
    total = 0
    for cell in nb.cells:
        meta = nbg(cell)
        if not meta:
            assert "BEGIN SOLUTION" not in cell.source and "BEGIN HIDDEN" not in cell.source
            continue
        assert meta["schema_version"] == 3
        if meta["grade"]:
            total += meta["points"]
        if meta["grade"] and not meta["solution"]:  # autograded test cell
            assert cell.cell_type == "code" and meta["locked"]
            assert "BEGIN SOLUTION" not in cell.source
        elif meta["solution"] and cell.cell_type == "code":  # autograded answer
            assert not meta["grade"] and not meta["locked"]
            assert "### BEGIN SOLUTION" in cell.source and "HIDDEN" not in cell.source
        elif meta["solution"]:  # manually graded written answer
            assert meta["grade"] and meta["points"] > 0
        else:  # read-only setup/helpers
            assert meta["locked"] and "SOLUTION" not in cell.source and "HIDDEN" not in cell.source
    assert total == notebooks.TOTAL_POINTS


def test_every_check_runs_in_exactly_one_test_cell_worth_its_points(built):
    spec, nb = built
    checks = chapter_checks(spec.name)
    calls = {}
    for cell in nb.cells:
        for grade_id in re.findall(r'check\("([^"]+)"', cell.source):
            assert grade_id not in calls
            calls[grade_id] = cell
    assert set(calls) == set(checks)
    for grade_id, cell in calls.items():
        c = checks[grade_id]
        assert nbg(cell)["grade_id"] == c.cell_id
        assert nbg(cell)["points"] == sum(x.points for x in checks.values() if x.cell_id == c.cell_id)
        visible_part = cell.source.split(notebooks.BEGIN_HIDDEN)[0]
        assert (f'"{grade_id}"' in visible_part) is (not c.hidden)
        if c.hidden:
            assert f"seed={spec.hidden_seeds[grade_id]})" in cell.source


def test_answers_are_the_solutions_source(built):
    # Single source: removing the markers from an answer cell gives back the functions'
    # source from solutions/, character for character.
    spec, nb = built
    module = importlib.import_module(spec.solutions_module)
    answers = {nbg(c)["grade_id"]: c.source for c in nb.cells if nbg(c).get("solution") and c.cell_type == "code"}
    assert len(answers) == len(spec.parts)
    for part in spec.parts:
        src = answers[f"{spec.name}_{part.functions[-1]}_answer"]
        stripped = "\n".join(l for l in src.splitlines() if l.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
        expected = "\n\n\n".join(textwrap.dedent(inspect.getsource(getattr(module, f))).rstrip() for f in part.functions)
        assert stripped == expected


def test_every_name_the_answers_use_is_defined_in_the_notebook(built):
    spec, _ = built
    module = importlib.import_module(spec.solutions_module)
    defined = {f for p in spec.parts for f in p.functions} | {name for _, name in spec.provided}
    defined |= set(re.findall(r"^import (\w+)", spec.provided_imports, re.M)) | {"np"}
    functions = [getattr(module, f) for p in spec.parts for f in p.functions]
    functions += [getattr(importlib.import_module(m), n) for m, n in spec.provided]
    # A provided class (a layer) needs its bases and whatever its methods use.
    for cls in [f for f in functions if inspect.isclass(f)]:
        missing = {b.__name__ for b in cls.__bases__ if b is not object} - defined
        assert not missing, f"{cls.__name__} derives from {missing}, which the notebook does not define"
    functions = [m for f in functions for m in ([f] if not inspect.isclass(f) else
                                                 [v for v in vars(f).values() if inspect.isfunction(v)])]
    for fn in functions:
        # getclosurevars also reports attribute names that match a module global, e.g. the
        # `__name__` of `type(x).__name__`: dunder names are always defined.
        used = {n for n in inspect.getclosurevars(fn).globals if not (n.startswith("__") and n.endswith("__"))}
        missing = used - defined
        assert not missing, f"{fn.__name__} uses {missing}, which the notebook does not define"


def test_intro_links_to_the_chapter_page_on_the_published_book(built):
    spec, nb = built
    import yaml

    base = yaml.safe_load((REPO / "_config.yml").read_text())["html"]["baseurl"]
    url = f"{base.rstrip('/')}/book/{spec.name}.html"
    assert f"]({url})" in nb.cells[0].source
    assert "../book/" not in nb.cells[0].source and ".md)" not in nb.cells[0].source
    # The page exists in the book: jupyter-book writes book/<name>.md to book/<name>.html.
    assert (REPO / "book" / f"{spec.name}.md").exists()
    assert any(f"file: book/{spec.name}" in line for line in (REPO / "_toc.yml").read_text().splitlines())


def test_chapter_url_needs_the_published_address(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("html:\n  baseurl: https://example.org/course/\n")
    assert notebooks.chapter_url("dropout", config) == "https://example.org/course/book/dropout.html"
    config.write_text("html:\n  use_repository_button: true\n")
    with pytest.raises(ValueError, match="html.baseurl"):
        notebooks.chapter_url("dropout", config)


def test_spec_mistakes_are_refused(built):
    spec, _ = built
    with pytest.raises(ValueError, match="not 100"):
        notebooks.build_notebook(dataclasses.replace(spec, experiments=()))
    seeds = dict(spec.hidden_seeds)
    seeds.popitem()
    with pytest.raises(ValueError, match="no grading seed"):
        notebooks.build_notebook(dataclasses.replace(spec, hidden_seeds=seeds))
    parts = (dataclasses.replace(spec.parts[0], tests=spec.parts[0].tests[1:]),) + spec.parts[1:]
    with pytest.raises(ValueError, match="every test cell once"):
        notebooks.build_notebook(dataclasses.replace(spec, parts=parts))


def test_committed_source_notebook_and_helpers_are_current(built):
    spec, nb = built
    folder = REPO / "exercises" / "source" / spec.name
    committed = (folder / f"{spec.name}.ipynb").read_text()
    assert committed == nbformat.writes(nb) + "\n", (
        "exercises/source is stale: run `autograder release " + spec.name + "` in exercises/"
    )
    for name, data in notebooks.helper_files(spec.name).items():
        assert (folder / "coursechecks" / name).read_bytes() == data
    assert sorted(p.name for p in (folder / "coursechecks").glob("*.py")) == sorted(notebooks.helper_files(spec.name))


# --- what a student reads: links, names, instructions -------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)|<(https?://[^>\s]+)>|(?<![(<])(https?://[^\s)>\"'`]+)")
# A file or folder a student could be sent to look for (checked against the chapter's zip).
FILE_NAME = re.compile(r"\b[\w./-]+\.(?:py|md|txt|yml|yaml|toml|cfg|ipynb|zip|csv|json)\b")


def released_text(chapter: str) -> str:
    nb = nbformat.read(str(REPO / "exercises" / "release" / chapter / f"{chapter}.ipynb"), as_version=4)
    return "\n".join(cell.source for cell in nb.cells)


def links(text: str) -> list[str]:
    return [next(g for g in m.groups() if g) for m in LINK.finditer(text)]


def test_chapter_url_is_the_published_page():
    base = notebooks.chapter_url("batchnorm").removesuffix("/book/batchnorm.html")
    assert base.startswith("https://") and notebooks.chapter_url("pooling") == f"{base}/book/pooling.html"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_link_goes_to_the_published_chapter_and_each_part_to_its_section(chapter):
    spec = notebooks.load_spec(chapter)
    found = links(released_text(chapter))
    page = notebooks.chapter_url(chapter)
    assert found and all(url == page or url.startswith(f"{page}#") for url in found), found
    for part in spec.parts:
        assert part.section, f"{chapter}: part {part.title!r} names no section of the chapter"
        assert f"{page}#{part.section}" in found


def _built_page(url: str) -> Path:
    base = notebooks.chapter_url("x").removesuffix("/book/x.html")
    assert url.startswith(base + "/")
    return REPO / "_build" / "html" / url[len(base) + 1:].split("#")[0]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_link_resolves_in_the_built_site(chapter):
    """Each link's page exists in the built book and has the element its anchor names."""
    if not (REPO / "_build" / "html" / "index.html").is_file():
        pytest.skip("the book has not been built (make book)")
    for url in links(released_text(chapter)):
        page = _built_page(url)
        assert page.is_file(), f"{url}: no page {page}"
        if "#" in url:
            anchor = url.split("#", 1)[1]
            assert f'id="{anchor}"' in page.read_text(encoding="utf-8"), f"{url}: no section #{anchor}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_released_notebooks_name_nothing_students_do_not_have(chapter):
    """No text or docstring of a released notebook points at the course's own sources
    (``solutions``, the book's markdown, the repository) or at a file not in the zip."""
    text = released_text(chapter)
    assert not re.search(r"\bsolutions\b|\bautograder\b|book/\w+\.md|requirements\.txt", text)
    folder = REPO / "exercises" / "release" / chapter
    shipped = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    shipped |= {p.rsplit("/", 1)[-1] for p in shipped}
    for name in FILE_NAME.findall(text):
        assert name in shipped, f"{chapter}.ipynb names {name}, which is not in the chapter's zip"


def test_intro_readme_and_notebooks_agree_on_install_and_stderr():
    """One install command and one rule about stderr, in the book's intro, the README's
    student section and every notebook."""
    def flat(text):
        return " ".join(text.split())

    intro = flat((REPO / "book" / "intro.md").read_text(encoding="utf-8"))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    students = flat(readme[readme.index("### For students"):readme.index("### For instructors")])
    for text in (intro, students, *(flat(released_text(c)) for c in CHAPTERS)):
        assert f"`{notebooks.STUDENT_INSTALL}`" in text
        assert flat(notebooks.STDERR_RULE) in text
        assert "python -m coursechecks" in text
        assert "requirements.txt" not in text.replace("`make test` sets up `.venv`", "")
    assert "counts as a failure" not in intro
