"""Visible checks cover every kind of input the hidden checks use.

Each chapter module classifies a check's generated inputs (``input_kinds(function, inputs)``:
kernel shape, stride, padding, number of dimensions, batch of one, ties, eps, momentum,
training or eval, ...). A student who passes the visible checks has then met every kind of
input the grader will use, so a hidden failure is never a surprise about the input's kind.
The hidden checks are classified over their grading seeds and a few others, since the grader
may choose the seeds. Every parameter of every graded function takes more than one value
across its checks (the course's rule), and a visible check never repeats a hidden one's data.

Run this file directly (``python tests/test_check_coverage.py``) for the table of kinds.
"""
from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest

from autograder.authoring.checks import core


CHAPTERS = ("batchnorm", "bn_inference", "layernorm", "dropout", "variance_shift", "pooling", "network")
EXTRA_SEEDS = (0, 1, 7)

# Parameters a check does not pass under their own name: the input keys they are made from.
DERIVED = {
    ("batchnorm", "batchnorm_backward"): {"dout": ("x",), "cache": ("x", "eps")},
    ("layernorm", "layernorm_backward"): {"dout": ("x",), "cache": ("x", "normalized_ndim", "eps")},
    ("bn_inference", "batchnorm_train_step"): {"x": ("xs",)},
    ("network", "network_forward"): {},
    ("network", "network_backward"): {"caches": ("layers", "x"), "dout": ("dout",)},
    ("network", "sgd_momentum_step"): {"grad": ("grads",), "velocity": ("grads",)},
    ("network", "adam_step"): {"grad": ("grads",), "m": ("grads",), "v": ("grads",), "t": ("grads",)},
    ("network", "train_step"): {"velocities": ("layers",)},
    ("pooling", "maxpool2d_backward"): {"cache": ("x", "kernel_size", "stride", "padding")},
    ("pooling", "avgpool2d_backward"): {"cache": ("x", "kernel_size", "stride", "padding", "count_include_pad")},
    ("pooling", "minpool2d_backward"): {"cache": ("x", "kernel_size", "stride", "padding")},
}
# Parameters the exercise declares out of scope (its text says so); kept in the signature
# for PyTorch's calling convention only.
NOT_REQUIRED = {
    ("pooling", "maxpool2d_forward", "ceil_mode"),
    ("pooling", "avgpool2d_forward", "ceil_mode"),
    ("pooling", "minpool2d_forward", "ceil_mode"),
}


def load_spec(chapter: str):
    return importlib.import_module(f"autograder.authoring.specs.{chapter}").CHAPTER


def _module(chapter: str):
    return importlib.import_module(f"autograder.authoring.checks.{chapter}")


def _seeds(chapter: str, check: core.Check) -> list[int | None]:
    if not check.hidden:
        return [None]
    return [load_spec(chapter).hidden_seeds[check.grade_id], *EXTRA_SEEDS]


def kinds_table(chapter: str) -> dict[str, dict[str, set[str]]]:
    """function -> check grade_id -> the kinds its inputs exercise (hidden: over all seeds)."""
    module = _module(chapter)
    table: dict[str, dict[str, set[str]]] = {}
    for c in core.chapter_checks(chapter).values():
        kinds: set[str] = set()
        for seed in _seeds(chapter, c):
            kinds |= module.input_kinds(c.function, core.make_inputs(c, seed))
        table.setdefault(c.function, {})[c.grade_id] = kinds
    return table


def missing_kinds(chapter: str) -> dict[str, set[str]]:
    """hidden check -> the kinds no visible check of its function exercises."""
    checks = core.chapter_checks(chapter)
    missing = {}
    for function, rows in kinds_table(chapter).items():
        visible = set().union(*[k for gid, k in rows.items() if not checks[gid].hidden])
        for gid, kinds in rows.items():
            if checks[gid].hidden and kinds - visible:
                missing[gid] = kinds - visible
    return missing


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_kinds_are_read_off_the_inputs(chapter):
    module = _module(chapter)
    assert callable(module.input_kinds) and callable(module.describe_input)
    for c in core.chapter_checks(chapter).values():
        inputs = core.make_inputs(c, 3)
        kinds = module.input_kinds(c.function, inputs)
        assert kinds and all(isinstance(k, str) and k for k in kinds), c.grade_id
        assert c.describe is not None and c.describe(inputs) == module.describe_input(c.function, inputs)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_visible_checks_cover_every_kind_the_hidden_checks_use(chapter):
    assert missing_kinds(chapter) == {}


def _values_equal(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 (models and other objects: compared by identity)
        return a is b


def _data(inputs: dict) -> list:
    """The data arrays a check feeds in (what 'the same values' would mean); constant arrays
    such as a fresh layer's running statistics (zeros, ones) are a state, not data."""
    out = []
    for v in inputs.values():
        if isinstance(v, np.ndarray) and v.size > 1 and np.unique(v).size > 1:
            out.append(v)
        elif isinstance(v, (list, tuple)) and v and all(isinstance(a, np.ndarray) for a in v):
            out.append(list(v))
    return out


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_visible_checks_use_other_values_than_the_hidden_ones(chapter):
    checks = list(core.chapter_checks(chapter).values())
    for h in [c for c in checks if c.hidden]:
        hidden = _data(core.make_inputs(h, load_spec(chapter).hidden_seeds[h.grade_id]))
        for v in [c for c in checks if not c.hidden and c.function == h.function]:
            visible = _data(core.make_inputs(v))
            shared = [a for a in hidden if any(_values_equal(a, b) for b in visible)]
            assert not shared, (h.grade_id, v.grade_id)


def _signature_value(value):
    """What 'another value' of a parameter means: arrays by shape (their data always
    differ), sequences of arrays by length and shapes, models by their layers, scalars as is."""
    if isinstance(value, np.ndarray):
        return ("array", value.shape)
    if isinstance(value, (list, tuple)) and value and all(isinstance(a, np.ndarray) for a in value):
        return ("arrays", tuple(a.shape for a in value))
    if isinstance(value, (bool, int, float, str, type(None), tuple)):
        return ("value", repr(value))
    if isinstance(value, np.random.Generator):
        return ("value", "Generator")
    return ("object", repr(value)[:2000])


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_parameter_of_every_graded_function_is_varied(chapter):
    reference = importlib.import_module(f"solutions.{chapter}")
    checks = list(core.chapter_checks(chapter).values())
    problems = []
    for function in sorted({c.function for c in checks}):
        params = inspect.signature(getattr(reference, function)).parameters
        inputs = [core.make_inputs(c, 5 if c.hidden else None) for c in checks if c.function == function]
        for name, param in params.items():
            if (chapter, function, name) in NOT_REQUIRED:
                continue
            keys = DERIVED.get((chapter, function), {}).get(name, (name,))
            seen = {tuple(_signature_value(i.get(k, "<default>")) for k in keys) for i in inputs}
            if not any(k in i for k in keys for i in inputs):
                problems.append(f"{function}({name}): no check passes it")
            elif len(seen) < 2:
                problems.append(f"{function}({name}): every check uses {seen.pop()}")
    assert problems == []


def test_a_failed_hidden_check_says_what_kind_of_input_it_was():
    # The motivating case: a max pool that only handles square kernels passes the visible
    # checks of old and failed a hidden one with a message about ties.
    check = core.get_check("pooling_maxpool2d_forward_torch_hidden")
    inputs = core.make_inputs(check, 11)

    def square_only(x, kernel_size, stride=None, padding=0, ceil_mode=False):
        from solutions import pooling

        k = kernel_size[0] if isinstance(kernel_size, tuple) else kernel_size
        return pooling.maxpool2d_forward(x, k, stride, padding)

    result = core.run_check(check, square_only, 11)
    assert not result.passed
    assert result.message.startswith("maxpool2d_forward (hidden check on a (2, 2, 9, 7) input, 3x2 kernel, "
                                     "stride (2, 1), no padding")
    assert "expected" not in result.message.split("):", 1)[1] or "expected (" in result.message  # shapes only
    assert "11" not in result.message and "solutions" not in result.message
    assert check.describe(inputs) in result.message


def _print_table(chapters=CHAPTERS) -> None:  # pragma: no cover (a report for people)
    for chapter in chapters:
        checks = core.chapter_checks(chapter)
        print(f"\n## {chapter}")
        for function, rows in kinds_table(chapter).items():
            visible = set().union(*[k for gid, k in rows.items() if not checks[gid].hidden])
            hidden = set().union(*[k for gid, k in rows.items() if checks[gid].hidden])
            print(f"{function}:")
            for kind in sorted(visible | hidden):
                mark = "MISSING" if kind in hidden and kind not in visible else ""
                print(f"  {kind:55s} visible={'yes' if kind in visible else 'no ':3s} "
                      f"hidden={'yes' if kind in hidden else 'no ':3s} {mark}")


if __name__ == "__main__":  # pragma: no cover
    import sys

    _print_table(sys.argv[1:] or CHAPTERS)
