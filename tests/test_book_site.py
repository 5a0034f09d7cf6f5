"""Browser test of the built book in _build/html, as a reader would see it.

Serves the site from 127.0.0.1 and drives Debian's Chromium headless through
Playwright (never a downloaded browser). For every page in _toc.yml: HTTP 200, no
console errors, every image loaded, all math typeset by the bundled MathJax,
notebook and exercise-zip links that resolve, and no request to any other host. A full-page
screenshot of each page is saved to _build/screenshots/<page>.png for a person to
look at.

The same checks run on the term edition in _build/term/_build/html (`make book-term`), which
must also show its notices in place of the graded code and offer no page sources.

Build the sites first (`make book book-term`; `make test` does it). Without a build the
tests are skipped, unless the CI environment variable is set: then they fail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.server
import os
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
TERM_SITE = ROOT / "_build" / "term" / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LOCAL_HOST = "127.0.0.1"
TIMEOUT_MS = 30_000
IN_CI = bool(os.environ.get("CI"))


def toc_pages() -> list[str]:
    """Docnames of every page in _toc.yml, root first, in reading order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return [str(Path(p).with_suffix("")) for p in pages]


PAGES = toc_pages()


def require_site(site: Path = SITE) -> None:
    if (site / "index.html").is_file():
        return
    target = "book-term" if site == TERM_SITE else "book"
    reason = f"the book is not built ({site / 'index.html'} is missing); run `make {target}`"
    if IN_CI:
        pytest.fail(f"{reason}. CI is set, so a missing site is a failure.")
    pytest.skip(reason)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass


@contextlib.contextmanager
def serve(directory: Path):
    """Serve a directory on 127.0.0.1 at a free port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((LOCAL_HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOCAL_HOST}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def base_url():
    require_site()
    with serve(SITE) as url:
        yield url


@pytest.fixture(scope="module")
def term_base_url():
    require_site(TERM_SITE)
    with serve(TERM_SITE) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


# Runs in the page: waits for MathJax (if the page loads it) to finish typesetting.
WAIT_FOR_MATHJAX = """
async () => {
  if (!document.querySelector('script[src*="mathjax"]')) return false;
  const deadline = Date.now() + 20000;
  while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
    if (Date.now() > deadline) throw new Error('MathJax never started');
    await new Promise(r => setTimeout(r, 50));
  }
  await MathJax.startup.promise;
  return true;
}
"""

# Runs in the page: forces every image to load, then lists the broken ones.
BROKEN_IMAGES = """
async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(img => { img.loading = 'eager'; });
  await Promise.all(imgs.map(img => img.complete ? null :
    new Promise(r => { img.addEventListener('load', r); img.addEventListener('error', r); })));
  return imgs.filter(img => !(img.complete && img.naturalWidth > 0))
             .map(img => img.getAttribute('src'));
}
"""

# Runs in the page: the visible text of the article without code, which may
# legitimately contain dollar signs and backslashes.
PROSE_TEXT = """
() => {
  const main = document.querySelector('main') || document.body;
  const copy = main.cloneNode(true);
  copy.querySelectorAll('pre, code, .highlight, script, style, mjx-assistive-mml')
      .forEach(el => el.remove());
  copy.style.position = 'absolute';
  document.body.appendChild(copy);
  const text = copy.innerText;
  copy.remove();
  return text;
}
"""

# Runs in the page: math elements emitted by Sphinx that MathJax did not typeset.
UNTYPESET_MATH = """
() => Array.from(document.querySelectorAll('.math'))
  .filter(el => !el.querySelector('mjx-container'))
  .map(el => el.textContent.trim().slice(0, 60))
"""

SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc=[\"']([^\"']+)[\"']", re.IGNORECASE)
RAW_DELIMITERS = ("$$", "\\(", "\\[")


@dataclasses.dataclass
class PageReport:
    """What a reader's browser saw on one page; every list should be empty."""

    status: int | None = None
    foreign_requests: list[str] = dataclasses.field(default_factory=list)
    console_errors: list[str] = dataclasses.field(default_factory=list)
    broken_images: list[str] = dataclasses.field(default_factory=list)
    untypeset_math: list[str] = dataclasses.field(default_factory=list)
    mathjax_errors: int = 0
    math_elements: int = 0
    raw_delimiters: list[str] = dataclasses.field(default_factory=list)
    bad_notebook_links: list[str] = dataclasses.field(default_factory=list)
    notebook_links: list[str] = dataclasses.field(default_factory=list)

    def problems(self) -> dict:
        found = {
            k: v
            for k, v in dataclasses.asdict(self).items()
            if k not in ("status", "math_elements", "notebook_links") and v
        }
        if self.status != 200:
            found["status"] = self.status
        return found


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def inspect_page(browser, url: str, screenshot: Path | None = None) -> PageReport:
    """Open url in a fresh context and record everything a reader would hit."""
    report = PageReport()
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def route(r):
        if urlparse(r.request.url).hostname != LOCAL_HOST:
            report.foreign_requests.append(r.request.url)
            r.abort()  # never wait on a network that is not there
        else:
            r.continue_()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on(
        "console",
        lambda m: m.type == "error"
        and report.console_errors.append(f"{m.text} ({m.location.get('url', '')})"),
    )
    page.on("pageerror", lambda exc: report.console_errors.append(f"uncaught: {exc}"))
    try:
        response = page.goto(url, wait_until="load")
        report.status = response.status if response else None
        page.evaluate(WAIT_FOR_MATHJAX)
        report.broken_images = page.evaluate(BROKEN_IMAGES)
        page.wait_for_load_state("networkidle")
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)

        report.math_elements = page.locator(".math").count()
        report.untypeset_math = page.evaluate(UNTYPESET_MATH)
        report.mathjax_errors = page.locator("mjx-merror").count()
        text = page.evaluate(PROSE_TEXT)
        report.raw_delimiters = [d for d in RAW_DELIMITERS if d in text]

        hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a[href]'), a => a.href)")
        for href in hrefs:
            target = urlparse(href)
            # Notebooks (the page's own) and exercise zips (notebook + its checks).
            if not target.path.endswith((".ipynb", ".zip")):
                continue
            report.notebook_links.append(href)
            # An exercise notebook must be served by the site itself: it is
            # downloaded from the page, offline.
            if target.hostname != LOCAL_HOST:
                report.bad_notebook_links.append(f"{href} (not on the site)")
            elif _http_status(target._replace(query="", fragment="").geturl()) != 200:
                report.bad_notebook_links.append(f"{href} (does not resolve)")
    finally:
        context.close()
    return report


@pytest.mark.parametrize("docname", PAGES)
def test_page_renders(docname, base_url, browser):
    url = urljoin(base_url, f"{docname}.html")
    report = inspect_page(browser, url, SCREENSHOTS / f"{Path(docname).name}.png")
    assert report.problems() == {}, f"{docname}: {report.problems()}"
    if is_notebook_page(docname):
        # The page's download menu offers the executed notebook.
        name = f"{Path(docname).name}.ipynb"
        assert any(link.endswith(name) for link in report.notebook_links), f"no link to {name}"
    chapter = Path(docname).name
    if (ROOT / "exercises" / "release" / chapter / f"{chapter}.ipynb").is_file():
        # The chapter offers its graded exercise, packaged with the checks it imports.
        zip_name = f"{chapter}-exercise.zip"
        assert any(link.endswith(zip_name) for link in report.notebook_links), f"no link to {zip_name}"


@pytest.mark.parametrize("docname", PAGES)
def test_term_page_renders(docname, term_base_url, browser):
    url = urljoin(term_base_url, f"{docname}.html")
    report = inspect_page(browser, url, SCREENSHOTS / "term" / f"{Path(docname).name}.png")
    assert report.problems() == {}, f"{docname}: {report.problems()}"
    # No executed notebook to download: it would carry what the page withholds.
    notebooks = [link for link in report.notebook_links if urlparse(link).path.endswith(".ipynb")]
    assert not notebooks, f"{docname} offers {notebooks}"
    chapter = Path(docname).name
    if (ROOT / "exercises" / "release" / chapter / f"{chapter}.ipynb").is_file():
        zip_name = f"{chapter}-exercise.zip"
        assert any(link.endswith(zip_name) for link in report.notebook_links), f"no link to {zip_name}"


def test_term_page_shows_the_notice_not_the_body(term_base_url, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route("**/*", lambda r: r.abort() if urlparse(r.request.url).hostname != LOCAL_HOST else r.continue_())
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(urljoin(term_base_url, "book/batchnorm.html"), wait_until="load")
        listing = page.locator("div.highlight pre", has_text="def batchnorm_forward(").first
        code = listing.inner_text()
        notice = page.locator("div.term-withheld", has_text="batchnorm_forward").first
        notice.scroll_into_view_if_needed()
        notice_visible, notice_text = notice.is_visible(), notice.inner_text()
        repository_links = page.locator("a[href*='github.com']").count()
    finally:
        context.close()
    # The signature and the docstring, then "..." where the body was.
    body = code.split('"""')[-1]
    assert body.strip() == "...", f"the listing still has a body: {body[:200]!r}"
    assert notice_visible and "batchnorm.ipynb" in notice_text and "deadline" in notice_text
    assert repository_links == 0


def is_notebook_page(docname: str) -> bool:
    """A MyST Markdown notebook (jupytext header), as opposed to a plain page."""
    source = ROOT / f"{docname}.md"
    return source.is_file() and source.read_text(encoding="utf8").startswith("---\njupytext")


def test_mathjax_is_served_from_the_build():
    require_site()
    intro = (SITE / f"{PAGES[0]}.html").read_text(encoding="utf8")
    assert re.search(r'<script[^>]*src="(\.\./)*_static/mathjax/tex-chtml\.js(\?v=\w+)?"', intro)
    assert (SITE / "_static" / "mathjax" / "tex-chtml.js").is_file()
    for html in SITE.rglob("*.html"):
        sources = SCRIPT_SRC.findall(html.read_text(encoding="utf8"))
        external = [s for s in sources if re.match(r"(https?:)?//", s)]
        assert not external, f"{html.relative_to(SITE)} loads external scripts: {external}"


def test_every_toc_page_was_built():
    require_site()
    missing = [p for p in PAGES if not (SITE / f"{p}.html").is_file()]
    assert not missing, f"pages in _toc.yml with no HTML: {missing}"


def test_search_finds_variance_shift(base_url, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    foreign, errors = [], []
    context.route(
        "**/*",
        lambda r: (foreign.append(r.request.url), r.abort())
        if urlparse(r.request.url).hostname != LOCAL_HOST
        else r.continue_(),
    )
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        response = page.goto(urljoin(base_url, "search.html?q=variance+shift"), wait_until="load")
        assert response is not None and response.status == 200
        # Sphinx fills the summary line once the search has finished.
        page.wait_for_function(
            "() => { const s = document.querySelector('#search-results .search-summary');"
            " return s && s.innerText.trim().length > 0; }"
        )
        results = page.locator("#search-results ul.search li a").evaluate_all(
            "links => links.map(a => a.getAttribute('href'))"
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "search.png"), full_page=True)
    finally:
        context.close()
    assert results, "searching for 'variance shift' found nothing"
    assert not foreign, f"requests to hosts other than {LOCAL_HOST}: {foreign}"
    assert not errors, f"console errors: {errors}"


BROKEN_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script src="https://cdn.example.invalid/tex-chtml.js"></script></head>
<body><main>
<p>Raw display math: $$x^2$$ and inline \\(y\\).</p>
<img src="missing.png">
<a href="exercise.ipynb">exercise</a>
<script>console.error("boom");</script>
</main></body></html>
"""


def test_checks_catch_a_broken_page(tmp_path, browser):
    # Each kind of breakage the page test looks for, in one page: every check must fire.
    (tmp_path / "broken.html").write_text(BROKEN_PAGE, encoding="utf8")
    with serve(tmp_path) as url:
        report = inspect_page(browser, urljoin(url, "broken.html"))
    assert report.status == 200
    assert report.foreign_requests == ["https://cdn.example.invalid/tex-chtml.js"]
    assert any("boom" in e for e in report.console_errors)
    assert report.broken_images == ["missing.png"]
    assert report.raw_delimiters == ["$$", "\\("]
    assert len(report.bad_notebook_links) == 1 and "does not resolve" in report.bad_notebook_links[0]
