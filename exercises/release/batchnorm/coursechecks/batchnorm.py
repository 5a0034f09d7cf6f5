"""Graded checks of the ``batchnorm`` exercise: training-mode BN forward, backward, identity.

Released to students as ``coursechecks/batchnorm.py``. Visible checks compare with PyTorch
(``F.batch_norm(training=True)`` in float64 and its autograd) or with values derived here
(finite differences, per-channel statistics). Hidden checks import the reference from
``solutions`` inside ``expected``; students do not have it, and their grading seeds come
from the grader, so nothing in this file gives away an answer.

The backward checks build the ``cache`` themselves (with PyTorch, following the keys that
``batchnorm_forward``'s docstring documents), so a bug in the forward pass costs forward
points only.
"""
from __future__ import annotations

import numpy as np

from .core import Check, CheckFailure, array_kinds, close, describing, numerical_gradient, returning, unpack

CHAPTER = "batchnorm"
TOL = 1e-8  # float64 against float64: correct code lands near 1e-14, the bugs above 1e-3
# Centred differences with h = 1e-5 are accurate to about 1e-9 in absolute terms here, so an
# element near zero can show a relative error above 1e-6: allow either.
FD_TOL, FD_ATOL = 1e-6, 1e-7


def _torch():
    import torch
    import torch.nn.functional as F

    return torch, F


def _t(a):
    torch, _ = _torch()
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def _axes(ndim: int) -> tuple[int, ...]:
    return (0,) + tuple(range(2, ndim))


def _forward_inputs(shape: tuple[int, ...], eps: float = 1e-5, affine: bool = True):
    """x with a different offset and spread per channel (so statistics over the wrong axis
    or with the wrong divisor show up), plus gamma, beta and eps."""

    def make(rng: np.random.Generator) -> dict:
        c = shape[1]
        bcast = (1, c) + (1,) * (len(shape) - 2)
        loc = rng.uniform(-3.0, 3.0, c).reshape(bcast)
        scale = rng.uniform(1.0, 3.0, c).reshape(bcast)
        x = loc + scale * rng.standard_normal(shape)
        if affine:
            gamma, beta = rng.uniform(0.5, 2.0, c), rng.standard_normal(c)
        else:
            gamma, beta = np.ones(c), np.zeros(c)
        return {"x": x, "gamma": gamma, "beta": beta, "eps": eps}

    return make


def _torch_forward(inputs: dict) -> np.ndarray:
    _, F = _torch()
    out = F.batch_norm(
        _t(inputs["x"]), None, None, _t(inputs["gamma"]), _t(inputs["beta"]),
        training=True, eps=inputs["eps"],
    )
    return out.numpy()


def _expect_torch_out(inputs: dict) -> dict:
    return {"out": _torch_forward(inputs)}


def _expect_reference_out(inputs: dict) -> dict:
    from solutions.batchnorm import batchnorm_forward

    return {"out": batchnorm_forward(**inputs)[0]}


_forward_out = returning("out", "cache", keep=("out",))


# Standardisation: with gamma = 1 and beta = 0 every channel of the output has mean 0 and
# (biased) variance var / (var + eps), within 4e-5 of 1 for these inputs (m >= 32 values of
# spread >= 1); the unbiased divisor gives (m - 1) / m, at least 1.5e-2 away.
def _channel_moments(outputs: dict, inputs: dict) -> dict:
    out = outputs["out"]
    x = np.asarray(inputs["x"])
    if out.shape != x.shape:
        raise CheckFailure(f"out has shape {out.shape}, expected {x.shape}")
    axes = _axes(out.ndim)
    mean = out.mean(axis=axes)
    return {"per-channel mean of out": mean, "per-channel variance of out": out.var(axis=axes)}


def _expect_standardized(inputs: dict) -> dict:
    c = np.asarray(inputs["x"]).shape[1]
    return {"per-channel mean of out": np.zeros(c), "per-channel variance of out": np.ones(c)}


_compare_standardized = close(
    TOL, atol={"per-channel mean of out": 1e-9, "per-channel variance of out": 1e-4}
)


def _forward_cache(fn, inputs: dict) -> dict:
    result = fn(**inputs)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CheckFailure("batchnorm_forward must return a pair (out, cache)")
    cache = result[1]
    if not isinstance(cache, dict):
        raise CheckFailure(f"the cache must be a dict, got {type(cache).__name__}")
    missing = [k for k in ("xhat", "mean", "var") if k not in cache]
    if missing:
        raise CheckFailure(f"the cache has no key(s) {', '.join(map(repr, missing))}")
    return {f"cache[{k!r}]": cache[k] for k in ("xhat", "mean", "var")}


def _torch_cache(inputs: dict) -> dict:
    """The cache batchnorm_forward documents, computed with PyTorch."""
    torch, F = _torch()
    x, eps = _t(inputs["x"]), inputs["eps"]
    c = x.shape[1]
    var, mean = torch.var_mean(x, dim=_axes(x.ndim), correction=0, keepdim=True)
    return {
        "xhat": F.batch_norm(x, None, None, training=True, eps=eps).numpy(),
        "gamma": np.array(inputs["gamma"], dtype=np.float64),
        "inv_std": (1.0 / torch.sqrt(var + eps)).numpy(),
        "m": int(x.numel() // c),
        "mean": mean.reshape(c).numpy(),
        "var": var.reshape(c).numpy(),
    }


def _expect_torch_cache(inputs: dict) -> dict:
    cache = _torch_cache(inputs)
    return {f"cache[{k!r}]": cache[k] for k in ("xhat", "mean", "var")}


def _backward_inputs(shape: tuple[int, ...], eps: float = 1e-5):
    """Forward inputs, an upstream gradient and the cache the backward pass receives."""

    def make(rng: np.random.Generator) -> dict:
        inputs = _forward_inputs(shape, eps)(rng)
        inputs["dout"] = rng.standard_normal(shape)
        inputs["cache"] = _torch_cache(inputs)
        return inputs

    return make


def _backward_call(keep: tuple[str, ...] = ("dx", "dgamma", "dbeta")):
    def call(fn, inputs: dict) -> dict:
        try:
            result = fn(inputs["dout"], inputs["cache"])
        except KeyError as exc:  # a key the student's own forward pass stores, not a documented one
            raise CheckFailure(
                f"raised KeyError: {exc}; the check passes the cache batchnorm_forward's docstring documents "
                f"(keys {', '.join(map(repr, inputs['cache']))}), not your forward pass's, so that a bug in "
                "batchnorm_forward costs forward points only: read only these keys") from None
        return unpack(result, ("dx", "dgamma", "dbeta"), "batchnorm_backward", keep)

    return call


def _expect_finite_differences(inputs: dict) -> dict:
    x, gamma, beta, dout = (np.asarray(inputs[k]) for k in ("x", "gamma", "beta", "dout"))
    f = lambda **kw: _torch_forward({**inputs, **kw})  # noqa: E731
    return {
        "dx": numerical_gradient(lambda v: f(x=v), x, dout),
        "dgamma": numerical_gradient(lambda v: f(gamma=v), gamma, dout),
        "dbeta": numerical_gradient(lambda v: f(beta=v), beta, dout),
    }


def _expect_autograd(inputs: dict) -> dict:
    _, F = _torch()
    x, gamma, beta = (_t(inputs[k]).requires_grad_() for k in ("x", "gamma", "beta"))
    out = F.batch_norm(x, None, None, gamma, beta, training=True, eps=inputs["eps"])
    out.backward(_t(inputs["dout"]))
    return {"dx": x.grad.numpy(), "dgamma": gamma.grad.numpy(), "dbeta": beta.grad.numpy()}


def _expect_reference_backward(inputs: dict) -> dict:
    from solutions.batchnorm import batchnorm_backward, batchnorm_forward

    _, cache = batchnorm_forward(inputs["x"], inputs["gamma"], inputs["beta"], inputs["eps"])
    dx, dgamma, dbeta = batchnorm_backward(inputs["dout"], cache)
    return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def _only(*names: str):
    def pick(expect):
        return lambda inputs: {k: v for k, v in expect(inputs).items() if k in names}

    return pick


# Every channel's input gradient sums to zero (the mean term of the backward pass).
def _dx_channel_sums(outputs: dict, inputs: dict) -> dict:
    dx = outputs["dx"]
    shape = np.shape(inputs["dout"])
    if dx.shape != shape:
        raise CheckFailure(f"dx has shape {dx.shape}, expected {shape}")
    return {"per-channel sum of dx": dx.sum(axis=_axes(dx.ndim))}


def _expect_zero_sums(inputs: dict) -> dict:
    return {"per-channel sum of dx": np.zeros(np.shape(inputs["dout"])[1])}


def _identity_inputs(shape: tuple[int, ...], eps: float = 1e-5):
    forward = _forward_inputs(shape, eps)

    def make(rng: np.random.Generator) -> dict:
        inputs = forward(rng)
        return {"x": inputs["x"], "eps": inputs["eps"]}

    return make


def _bn_with_returned_params(outputs: dict, inputs: dict) -> dict:
    """Run PyTorch's batch norm with the student's gamma and beta."""
    x = np.asarray(inputs["x"])
    for name in ("gamma", "beta"):
        if outputs[name].shape != (x.shape[1],):
            raise CheckFailure(f"{name} has shape {outputs[name].shape}, expected ({x.shape[1]},)")
    out = _torch_forward({"x": x, "gamma": outputs["gamma"], "beta": outputs["beta"], "eps": inputs["eps"]})
    return {"batch norm of x with your gamma and beta": out}


def _expect_input_back(inputs: dict) -> dict:
    return {"batch norm of x with your gamma and beta": np.asarray(inputs["x"])}


def _expect_reference_identity(inputs: dict) -> dict:
    from solutions.batchnorm import identity_affine

    gamma, beta = identity_affine(**inputs)
    return {"gamma": gamma, "beta": beta}


F_ = "batchnorm_forward"
B_ = "batchnorm_backward"
I_ = "identity_affine"
_id = lambda function, name: f"{CHAPTER}_{function}_{name}"  # noqa: E731

CHECKS = [
    # batchnorm_forward: 35 points
    Check(_id(F_, "torch_2d"), F_, 5, "out matches F.batch_norm(training=True) on a (8, 5) input",
          inputs=_forward_inputs((8, 5)), expected=_expect_torch_out, call=_forward_out,
          compare=close(TOL), seed=1),
    Check(_id(F_, "torch_2d_hidden"), F_, 5, "out matches the reference on another 2-D input and eps",
          inputs=_forward_inputs((13, 7), eps=1e-3), expected=_expect_reference_out, call=_forward_out,
          compare=close(TOL), hidden=True, cell=_id(F_, "torch_2d")),
    Check(_id(F_, "torch_4d"), F_, 5, "out matches F.batch_norm(training=True) on a (4, 3, 5, 5) input",
          inputs=_forward_inputs((4, 3, 5, 5)), expected=_expect_torch_out, call=_forward_out,
          compare=close(TOL), seed=2),
    Check(_id(F_, "torch_4d_hidden"), F_, 3, "out matches the reference on another 4-D input",
          inputs=_forward_inputs((3, 4, 3, 6)), expected=_expect_reference_out, call=_forward_out,
          compare=close(TOL), hidden=True, cell=_id(F_, "torch_4d")),
    Check(_id(F_, "torch_3d_hidden"), F_, 2, "out matches the reference on a 3-D input",
          inputs=_forward_inputs((5, 2, 7)), expected=_expect_reference_out, call=_forward_out,
          compare=close(TOL), hidden=True, cell=_id(F_, "torch_4d")),
    Check(_id(F_, "standardizes"), F_, 5,
          "with gamma = 1, beta = 0 every channel has mean 0 and variance 1 (biased)",
          inputs=_forward_inputs((32, 4), affine=False), expected=_expect_standardized,
          call=_forward_out, derive=_channel_moments, compare=_compare_standardized, seed=3),
    Check(_id(F_, "standardizes_hidden"), F_, 5, "per-channel mean 0 and variance 1 on a 4-D input",
          inputs=_forward_inputs((4, 3, 4, 4), affine=False), expected=_expect_standardized,
          call=_forward_out, derive=_channel_moments, compare=_compare_standardized,
          hidden=True, cell=_id(F_, "standardizes")),
    Check(_id(F_, "cache"), F_, 5,
          "the cache holds xhat and the per-channel batch mean and biased variance of a (3, 2, 5) input, eps 1e-3",
          inputs=_forward_inputs((3, 2, 5), eps=1e-3), expected=_expect_torch_cache, call=_forward_cache,
          compare=close(TOL), seed=4),
    # batchnorm_backward: 30 points
    Check(_id(B_, "finite_difference"), B_, 5,
          "dx, dgamma, dbeta match centred finite differences of F.batch_norm on a (6, 4) input",
          inputs=_backward_inputs((6, 4)), expected=_expect_finite_differences, call=_backward_call(),
          compare=close(FD_TOL, atol=FD_ATOL), seed=5),
    Check(_id(B_, "finite_difference_hidden"), B_, 5, "finite differences on a 4-D input",
          inputs=_backward_inputs((2, 3, 3, 3)), expected=_expect_finite_differences, call=_backward_call(),
          compare=close(FD_TOL, atol=FD_ATOL), hidden=True, cell=_id(B_, "finite_difference")),
    Check(_id(B_, "autograd"), B_, 5, "dx, dgamma, dbeta match PyTorch autograd on a (3, 2, 4, 4) input",
          inputs=_backward_inputs((3, 2, 4, 4)), expected=_expect_autograd, call=_backward_call(),
          compare=close(TOL), seed=6),
    Check(_id(B_, "autograd_hidden"), B_, 5, "dx, dgamma, dbeta match the reference on a 3-D input",
          inputs=_backward_inputs((4, 3, 5)), expected=_expect_reference_backward, call=_backward_call(),
          compare=close(TOL), hidden=True, cell=_id(B_, "autograd")),
    Check(_id(B_, "param_grads"), B_, 3, "dgamma and dbeta match PyTorch autograd on a (5, 3, 4) input, eps 1e-3",
          inputs=_backward_inputs((5, 3, 4), eps=1e-3), expected=_only("dgamma", "dbeta")(_expect_autograd),
          call=_backward_call(keep=("dgamma", "dbeta")), compare=close(TOL), seed=7),
    Check(_id(B_, "param_grads_hidden"), B_, 2, "dgamma and dbeta match the reference on a 4-D input",
          inputs=_backward_inputs((2, 4, 3, 5)), expected=_only("dgamma", "dbeta")(_expect_reference_backward),
          call=_backward_call(keep=("dgamma", "dbeta")), compare=close(TOL), hidden=True,
          cell=_id(B_, "param_grads")),
    Check(_id(B_, "dx_sums_to_zero"), B_, 3, "dx sums to zero over every channel",
          inputs=_backward_inputs((9, 4)), expected=_expect_zero_sums, call=_backward_call(keep=("dx",)),
          derive=_dx_channel_sums, compare=close(atol=1e-9), seed=8),
    Check(_id(B_, "dx_sums_to_zero_hidden"), B_, 2, "dx sums to zero over every channel of a 4-D input",
          inputs=_backward_inputs((3, 2, 3, 4)), expected=_expect_zero_sums, call=_backward_call(keep=("dx",)),
          derive=_dx_channel_sums, compare=close(atol=1e-9), hidden=True, cell=_id(B_, "dx_sums_to_zero")),
    # identity_affine: 15 points
    Check(_id(I_, "recovers_input_2d"), I_, 5, "batch norm with the returned gamma, beta gives back a (10, 4) x",
          inputs=_identity_inputs((10, 4)), expected=_expect_input_back, call=returning("gamma", "beta"),
          derive=_bn_with_returned_params, compare=close(TOL), seed=9),
    Check(_id(I_, "recovers_input_2d_hidden"), I_, 5, "gamma and beta match the reference on another 2-D input",
          inputs=_identity_inputs((17, 6)), expected=_expect_reference_identity, call=returning("gamma", "beta"),
          compare=close(TOL), hidden=True, cell=_id(I_, "recovers_input_2d")),
    Check(_id(I_, "recovers_input_4d"), I_, 2, "batch norm with the returned gamma, beta gives back a (2, 3, 4, 4) x",
          inputs=_identity_inputs((2, 3, 4, 4)), expected=_expect_input_back, call=returning("gamma", "beta"),
          derive=_bn_with_returned_params, compare=close(TOL), seed=10),
    Check(_id(I_, "recovers_input_3d"), I_, 1,
          "batch norm with the returned gamma, beta gives back a (5, 2, 7) x, eps 1e-3",
          inputs=_identity_inputs((5, 2, 7), eps=1e-3), expected=_expect_input_back, call=returning("gamma", "beta"),
          derive=_bn_with_returned_params, compare=close(TOL), seed=11),
    Check(_id(I_, "recovers_input_3d_hidden"), I_, 2, "gamma and beta match the reference on a 3-D input",
          inputs=_identity_inputs((4, 5, 3)), expected=_expect_reference_identity, call=returning("gamma", "beta"),
          compare=close(TOL), hidden=True, cell=_id(I_, "recovers_input_3d")),
]


# ---------------------------------------------------------------- kinds of input
def input_kinds(function: str, inputs: dict) -> set[str]:
    """The kinds of input a check of ``function`` uses, read off its inputs (a backward
    check's cache is made from the same x and eps)."""
    kinds = array_kinds(inputs["x"])
    kinds.add("eps = 1e-5 (the default)" if inputs["eps"] == 1e-5 else "eps other than the default")
    if function == "batchnorm_forward":
        identity = np.all(inputs["gamma"] == 1) and np.all(inputs["beta"] == 0)
        kinds.add("gamma = 1, beta = 0" if identity else "gamma and beta other than 1 and 0")
    return kinds


def describe_input(function: str, inputs: dict) -> str:
    """The input in plain words, e.g. "a 3-D (4, 3, 5) input (N, C, L), eps 1e-05"."""
    x = np.asarray(inputs["x"])
    layout = {2: " (N, D)", 3: " (N, C, L)", 4: " (N, C, H, W)"}.get(x.ndim, "")
    return f"a {x.ndim}-D {tuple(x.shape)} input{layout}, eps {inputs['eps']:g}"


CHECKS = describing(CHECKS, describe_input)
