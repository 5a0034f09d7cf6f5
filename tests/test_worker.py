"""The run stage's worker side: jobs and results as plain data, machine-wide sandbox slots,
refusal without bubblewrap, and a job run in the sandbox from its bytes alone."""
import pickle
from pathlib import Path

import pytest

from autograder import sandbox, submission
from autograder.grading import worker
from autograder.grading.prepare import ChapterRun, Job
from autograder.judge import judge_run

REPO = Path(__file__).resolve().parent.parent
EXERCISES = REPO / "exercises"
CHAPTER = "batchnorm"


def release_job(tmp_path) -> tuple[ChapterRun, submission.Prepared, Job]:
    run = ChapterRun(EXERCISES, CHAPTER, 3)
    template = EXERCISES / "release" / CHAPTER / f"{CHAPTER}.ipynb"
    prepared = submission.prepare(template, template, CHAPTER)
    return run, prepared, run.job("s1/batchnorm", prepared, sandbox.Limits(wall_seconds=120))


def test_a_job_is_plain_data_and_holds_no_solutions(tmp_path):
    _, _, job = release_job(tmp_path)
    data = job.to_data()
    assert Job(**data) == job
    plain = (bytes, str, bool, int, float, tuple, type(None))
    def check(value):
        assert isinstance(value, plain), type(value)
        if isinstance(value, tuple):
            for item in value:
                check(item)
    for value in data.values():
        check(value)
    blob = pickle.dumps(data)
    import inspect

    import solutions.batchnorm as reference

    for function in (reference.batchnorm_forward, reference.batchnorm_backward):
        body = inspect.getsource(function).split('"""')[-1].strip()  # the code after the docstring
        assert body.encode() not in blob
    assert {name for name, _ in job.coursechecks} >= {"core.py", "batchnorm.py"}


def test_job_files_are_written_readable_for_the_sandbox_uid(tmp_path):
    _, _, job = release_job(tmp_path)
    job_dir, checks_dir = job.write(tmp_path / "job")
    assert (job_dir / "plan.json").read_bytes() == job.plan_json
    assert (job_dir / "inputs.npz").read_bytes() == job.inputs_npz
    assert (checks_dir / "core.py").is_file()
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in [*job_dir.iterdir(), *checks_dir.iterdir()])


def test_results_travel_as_plain_data():
    result = sandbox.RunResult(frames=[("cell", b"{}"), ("check", b"\x00\x01")], returncode=-9,
                               wall_timeout=True, stream_error="", stderr="x", seconds=1.5)
    data = worker.result_to_data(result)
    assert worker.result_from_data(pickle.loads(pickle.dumps(data))) == result


def test_slots_are_exclusive_on_the_machine():
    with worker._Slot() as a, worker._Slot() as b:
        assert a != b
    with worker._Slot() as c:
        assert c == min(a, b)


def test_a_machine_without_bubblewrap_refuses(monkeypatch):
    monkeypatch.setattr(sandbox, "probe", lambda: "bubblewrap (the bwrap command) is not installed")
    assert "refuses to run student code" in worker.refusal(True)
    assert worker.refusal(False) == ""
    with pytest.raises(worker.WorkerRefused, match="--unsafe-no-sandbox"):
        worker.run(release_job(Path("/tmp"))[2], sandboxed=True)


@pytest.mark.skipif(bool(sandbox.probe()), reason="needs bubblewrap")
def test_a_job_runs_in_the_sandbox_from_its_bytes(tmp_path):
    run, prepared, job = release_job(tmp_path)
    result = worker.run(Job(**job.to_data()), sandboxed=True)
    verdicts = judge_run(run.plan, {gid: i for i, gid in prepared.test_cells()}, result, job.sandbox_limits())
    assert verdicts.status == "graded" and verdicts.checks and not any(v.passed for v in verdicts.checks)
