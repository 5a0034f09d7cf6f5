"""``python -m coursechecks NOTEBOOK.ipynb``: the self-check, run beside the notebook."""
import sys

from .selfcheck import main

sys.exit(main())
