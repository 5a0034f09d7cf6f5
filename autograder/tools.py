"""nbgrader's command-line tools, found next to this Python."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


@contextlib.contextmanager
def tools_on_path():
    """nbgrader's gradebook shells out to ``alembic``, installed next to this Python: make
    sure it is found even when the virtual environment is not activated."""
    old = os.environ.get("PATH", "")
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + old
    try:
        yield
    finally:
        os.environ["PATH"] = old
