"""Grading a class: the pipeline's stages and where the sandboxes run."""
