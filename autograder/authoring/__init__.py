"""Authoring the assignments: the graded checks, the notebook specs, the notebook generator
and the release step that proves the reference answers score full marks."""
