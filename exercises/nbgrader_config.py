"""nbgrader configuration for the course (run nbgrader commands from this folder)."""
c = get_config()  # noqa: F821 (provided by nbgrader's config loader)

c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"

# Per-cell execution timeout of plain `nbgrader autograde` (nbgrader's Execute preprocessor,
# whose default is 30 s). The slowest cell of any chapter's reference notebook (an experiment
# cell) took 14.3 s on a 2-core machine with a load average of 14
# (benchmarks/autograde_timeout.py); 120 s is over 8 times that, and still stops an endless
# loop in a student's cell within two minutes. `autograder grade` has its own limit (--timeout).
c.Execute.timeout = 120
