"""The course's grading package: grades exercise notebooks against ``solutions/``."""
