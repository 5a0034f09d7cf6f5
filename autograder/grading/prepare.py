"""Stage 2, prepare: one chapter's plan for a run, and each submission's sandbox job.

For every chapter of a run the coordinator draws fresh seeds for every check (visible ones
too, so a hard-coded answer to a visible test earns nothing), makes the inputs and, lazily,
the expected values once for the whole class. A :class:`Job` is what one sandbox needs, as
plain bytes: the plan (cells to run, checks to call with their seeds, limits), the shared
inputs, the chapter's released ``coursechecks`` and matplotlib's font list. It holds nothing
from ``solutions/``: expected values stay with the plan, in the coordinator.

``grade`` and the student's ``check`` both make their jobs here.
"""
from __future__ import annotations

import json
import os
import random
import secrets
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from autograder import fingerprint, judge, submission, transport
from autograder.authoring.checks import core, selfcheck
from autograder.coursedir import CourseDir
from autograder.sandbox import Limits

@dataclass(frozen=True)
class Job:
    """One sandbox run, as plain data: bytes, strings, numbers."""

    name: str  # e.g. "s123/batchnorm", for messages
    plan_json: bytes
    inputs_npz: bytes  # shared by the chapter's jobs (one object in memory)
    coursechecks: tuple[tuple[str, bytes], ...]  # released files, no answers
    font_cache: tuple[str, bytes] | None
    hide_torch: bool
    limits: tuple[tuple[str, float], ...]  # sandbox.Limits as (field, value) pairs

    def to_data(self) -> dict:
        """The fields as a dict of bytes, strings and numbers (what travels to a worker)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def sandbox_limits(self) -> Limits:
        return Limits(**dict(self.limits))

    def write(self, folder: Path) -> tuple[Path, Path]:
        """The job's files under ``folder``, readable by the sandbox uid: (job dir, checks dir)."""
        job_dir, checks_dir = folder / "in", folder / "coursechecks"
        for path in (folder, job_dir, checks_dir):
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o755)
        files = [(job_dir / "plan.json", self.plan_json), (job_dir / "inputs.npz", self.inputs_npz),
                 *((checks_dir / name, data) for name, data in self.coursechecks)]
        if self.font_cache:
            files.append((job_dir / self.font_cache[0], self.font_cache[1]))
        for path, data in files:
            path.write_bytes(data)
            os.chmod(path, 0o644)
        return job_dir, checks_dir


class ChapterRun:
    """Everything shared by the submissions of one chapter in this run."""

    def __init__(self, course_dir: Path, chapter: str, rng_seed: int | None, workdir: Path | None = None,
                 visible_only: bool = False):
        course = CourseDir(course_dir)
        self.chapter = chapter
        self.template = course.release_notebook(chapter)
        self.checks_dir = course.coursechecks(chapter)
        if not self.template.is_file() or not self.checks_dir.is_dir():
            raise FileNotFoundError(f"{chapter} has not been released in {course_dir} (run: autograder release {chapter})")
        self.version = fingerprint.chapter_fingerprint(chapter, [self.template, *self.checks_dir.glob("*.py")])
        self._settings = (rng_seed, visible_only)
        self.workdir = workdir
        self._plan: judge.Plan | None = None
        self._shared: tuple | None = None

    @property
    def plan(self) -> judge.Plan:
        """Seeds, inputs and the shipped inputs, made on first use (an unchanged class never
        pays for them)."""
        if self._plan is None:
            self._make_plan(*self._settings)
        return self._plan

    def _make_plan(self, rng_seed: int | None, visible_only: bool) -> None:
        by_cell: dict[str, list[core.Check]] = {}
        for check in core.chapter_checks(self.chapter).values():
            if not (visible_only and check.hidden):
                by_cell.setdefault(check.cell_id, []).append(check)
        rng = secrets.SystemRandom() if rng_seed is None else random.Random(f"{rng_seed}:{self.chapter}")
        seeds = {c.grade_id: c.seed if visible_only else rng.randrange(1, 2**31) for cs in by_cell.values() for c in cs}
        inputs = {c.grade_id: core.make_inputs(c, seeds[c.grade_id]) for cs in by_cell.values() for c in cs}
        shipped, made_inside = {}, []
        for gid, value in inputs.items():
            try:
                transport.encode(value)
                shipped[gid] = value
            except transport.Unshippable:
                made_inside.append(gid)
        self.inputs_npz = transport.pack(shipped)
        if self.workdir is not None:
            self.inputs_file = Path(self.workdir) / f"{self.chapter}-inputs.npz"
            self.inputs_file.write_bytes(self.inputs_npz)
            os.chmod(self.inputs_file, 0o644)
        # Numpy-only chapters run without PyTorch: faster to start, and an answer cannot
        # hand the work to torch.
        self.hide_torch = not made_inside and not self._template_imports_torch()
        self._plan = judge.Plan(self.chapter, by_cell, seeds, inputs)

    def _template_imports_torch(self) -> bool:
        return selfcheck.template_imports_torch(json.loads(self.template.read_text()))

    def plan_json(self, prepared: submission.Prepared, limits: Limits) -> dict:
        plan = self.plan  # also makes the inputs and hide_torch
        return {
            "chapter": self.chapter,
            "cells": [{"kind": c.kind, "source": c.source if c.kind in ("code", "test") else "",
                       "grade_id": c.grade_id} for c in prepared.cells],
            "checks": {cell: [{"check": c.grade_id, "function": c.function, "seed": plan.seeds[c.grade_id]}
                              for c in checks] for cell, checks in plan.checks.items()},
            "block_torch": self.hide_torch,
            "limits": {"cell_seconds": limits.cell_seconds, "call_seconds": limits.call_seconds,
                       "cell_output_bytes": limits.cell_output_bytes,
                       "total_output_bytes": limits.total_output_bytes},
        }

    def job(self, name: str, prepared: submission.Prepared, limits: Limits,
            font_cache: Path | None = None) -> Job:
        plan_json = json.dumps(self.plan_json(prepared, limits)).encode()
        if self._shared is None or self._shared[0] != font_cache:
            checks = tuple((p.name, p.read_bytes()) for p in sorted(self.checks_dir.iterdir()) if p.is_file())
            font = (font_cache.name, font_cache.read_bytes()) if font_cache else None
            self._shared = (font_cache, checks, font)
        _, checks, font = self._shared
        return Job(name, plan_json, self.inputs_npz, checks, font, self.hide_torch,
                   tuple(asdict(limits).items()))

