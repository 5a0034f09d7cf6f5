"""Package each released exercise as a zip that chapters offer for download.

A student needs the notebook *and* the ``coursechecks/`` folder beside it, so a chapter links
``{download}`` to ``book/_generated/<chapter>-exercise.zip`` rather than to the bare notebook.
The zips are rebuilt from ``exercises/release`` at every build (before documents are read, so
the download role finds them), with fixed timestamps so identical releases give identical files.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from sphinx.application import Sphinx

EPOCH = (1980, 1, 1, 0, 0, 0)


def write_zip(chapter_dir: Path, target: Path) -> None:
    files = sorted(p for p in chapter_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            info = zipfile.ZipInfo(f"{chapter_dir.name}/{path.relative_to(chapter_dir).as_posix()}", EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())


def build_zips(app: Sphinx) -> None:
    root = Path(app.srcdir)
    out = root / "book" / "_generated"
    for chapter_dir in sorted((root / "exercises" / "release").glob("*/")):
        if (chapter_dir / f"{chapter_dir.name}.ipynb").is_file():
            write_zip(chapter_dir, out / f"{chapter_dir.name}-exercise.zip")


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", build_zips)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
