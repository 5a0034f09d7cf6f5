"""exercises/nbgrader_config.py as nbgrader reads it: loaded by nbgrader's own autograde app
from the course directory, not grepped."""
import json
import subprocess
import sys
from pathlib import Path

EXERCISES = Path(__file__).resolve().parent.parent / "exercises"

# What `nbgrader autograde` does up to running a notebook: its app loads nbgrader_config.py from
# the current directory, the Autograde converter builds its exporter and registers the autograde
# preprocessors; print the timeout of the Execute preprocessor that would run the notebook.
PROBE = """
import json
from nbgrader.apps import AutogradeApp
from nbgrader.converters import Autograde
from nbgrader.preprocessors import Execute

app = AutogradeApp()
app.initialize([])
converter = Autograde(coursedir=app.coursedir, parent=app)
converter.exporter = converter.exporter_class(parent=converter, config=converter.config)
converter._sanitizing = False
converter._init_preprocessors()
print(json.dumps([p.timeout for p in converter.exporter._preprocessors if isinstance(p, Execute)]))
"""


def test_plain_nbgrader_autograde_runs_cells_with_the_course_timeout():
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=EXERCISES, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # 30 s is nbgrader's default, which a busy machine exceeded; the course sets 120 s per cell
    # (the slowest reference cell took 14.3 s at a load average of 14 on 2 cores).
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [120]
