"""The grading pipeline's shape: its stages are modules of their own, the grading path does
not import the authoring side (the notebook generator, release), and the local pool and the
Dask cluster are interchangeable behind one seam."""
import subprocess
import sys

from autograder.grading import execute, pipeline
from autograder.grading.dask_cluster import DaskCluster


def test_the_grading_path_does_not_import_the_notebook_generator():
    code = ("import sys, autograder.cli, autograder.grade, autograder.student_check, "
            "autograder.grading.dask_cluster, autograder.grading.worker; "
            "print(sorted(m for m in sys.modules if m in ('autograder.authoring.notebooks', 'autograder.authoring.release', "
            "'autograder.authoring.course', 'autograder.authoring.specs')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_stages_are_declared_in_order():
    doc = pipeline.__doc__
    stages = ["find", "prepare", "run", "judge", "record"]
    assert [doc.index(f"    {s} ") for s in stages] == sorted(doc.index(f"    {s} ") for s in stages)


def test_both_executors_offer_the_same_seam():
    for executor in (execute.LocalPool, DaskCluster):
        assert callable(executor.run) and callable(executor.close)
    assert execute.LocalPool(3, sandboxed=False).slots == 3


def test_the_local_pool_yields_every_job_once_with_its_token(monkeypatch):
    seen = []
    monkeypatch.setattr(execute.worker, "run", lambda job, sandboxed: seen.append(job) or f"result {job}")
    ticks = []
    pool = execute.LocalPool(2, sandboxed=False)
    got = dict(pool.run(((n, f"job{n}") for n in range(7)), idle=lambda: ticks.append(1), tick=0.05))
    assert got == {n: f"result job{n}" for n in range(7)} and sorted(seen) == sorted(f"job{n}" for n in range(7))
    assert ticks  # the recorder gets its chance between results


def test_a_job_that_raises_is_reported_not_raised(monkeypatch):
    def boom(job, sandboxed):
        raise RuntimeError("sandbox broke")

    monkeypatch.setattr(execute.worker, "run", boom)
    ((token, outcome),) = list(execute.LocalPool(1, sandboxed=False).run(iter([("t", "job")])))
    assert token == "t" and isinstance(outcome, RuntimeError)
