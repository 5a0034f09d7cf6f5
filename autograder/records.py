"""What grading one submission produced: the record every later step (feedback, export,
resume) reads. Plain data, JSON round-trippable, no student code or hidden test source."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

GRADED = "graded"
TIMED_OUT = "timed out"
KERNEL_DIED = "kernel died"
INVALID = "invalid notebook"
TOO_LARGE = "too large"
GRADER_ERROR = "grader error"  # a fault of the grader, not the student: the record says what, the batch goes on
STATUSES = (GRADED, TIMED_OUT, KERNEL_DIED, INVALID, TOO_LARGE, GRADER_ERROR)


@dataclass(frozen=True)
class CheckVerdict:
    """One check's outcome, decided outside the sandbox."""

    check: str  # the check's grade_id, e.g. batchnorm_batchnorm_forward_torch_2d_hidden
    cell: str  # grade_id of the notebook test cell the check belongs to
    description: str  # what the check tests (the check's one-line description)
    hidden: bool
    passed: bool
    message: str  # "passed" or the failure message (no expected values for hidden checks)


@dataclass(frozen=True)
class CellScore:
    """An automatically graded test cell: full points only if every one of its checks passed."""

    cell: str
    points: float
    awarded: float
    message: str  # the first failing check's message, or "passed"


@dataclass
class SubmissionRecord:
    student: str
    chapter: str
    status: str  # one of STATUSES
    message: str  # plain-language summary for the instructor and the student
    sha256: str = ""  # of the submitted notebook's bytes
    cells: list[CellScore] = field(default_factory=list)
    checks: list[CheckVerdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. "restored the deleted test cell X"
    seeds: dict[str, int] = field(default_factory=dict)  # check grade_id -> seed used
    duration_s: float = 0.0
    graded_at: str = ""  # ISO 8601, UTC

    @property
    def auto_score(self) -> float:
        return sum(c.awarded for c in self.cells)

    @property
    def auto_max(self) -> float:
        return sum(c.points for c in self.cells)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SubmissionRecord":
        data = json.loads(text)
        data["cells"] = [CellScore(**c) for c in data.get("cells", [])]
        data["checks"] = [CheckVerdict(**c) for c in data.get("checks", [])]
        return cls(**data)
