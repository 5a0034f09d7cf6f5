"""Drop duplicate inline <script> blocks from every HTML page.

Sphinx 7.4 re-adds scripts registered after the builder starts, storing the
copy with filename '' where the original has None, so its de-duplication misses
inline scripts. sphinx-thebe's `const THEBE_JS_URL = ...` then appears twice and
the browser reports "Identifier 'THEBE_JS_URL' has already been declared".
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx


def _key(js: Any) -> tuple:
    return (js.filename or None, js.priority, tuple(sorted(js.attributes.items())))


def drop_duplicate_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    files = context.get("script_files")
    if not isinstance(files, list):
        return
    seen: set[tuple] = set()
    unique = []
    for js in files:
        key = _key(js)
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app: Sphinx) -> dict[str, Any]:
    # Late priority: run after the extensions that add page-specific scripts.
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
