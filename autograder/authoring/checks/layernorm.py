"""Graded checks of the ``layernorm`` exercise: layer norm forward and backward, group norm,
RMS norm.

Released to students as ``coursechecks/layernorm.py``. Visible checks compare with PyTorch
(``F.layer_norm``, ``F.group_norm``, ``F.instance_norm``, ``F.rms_norm`` in float64 and
autograd) or with values derived here (finite differences, per-sample statistics, a sample
normalised alone against the same sample in a batch). Hidden checks import the reference
from ``solutions`` inside ``expected``; students do not have it, and their grading seeds come
from the grader, so nothing in this file gives away an answer.

The backward checks build the ``cache`` themselves (with PyTorch, in the layout that
``layernorm_forward``'s docstring documents), so a bug in the forward pass costs forward
points only.
"""
from __future__ import annotations

import numpy as np

from .core import Check, CheckFailure, array_kinds, close, describing, numerical_gradient, returning, unpack

CHAPTER = "layernorm"
TOL = 1e-8  # float64 against float64: correct code lands near 1e-14, the bugs above 1e-4
# Centred differences with h = 1e-5 are accurate to about 1e-9 in absolute terms here, so an
# element near zero can show a relative error above 1e-6: allow either.
FD_TOL, FD_ATOL = 1e-6, 1e-7
ZERO_ATOL = 1e-9  # for quantities that are zero up to rounding


def _torch():
    import torch
    import torch.nn.functional as F

    return torch, F


def _t(a):
    torch, _ = _torch()
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def _norm_axes(ndim: int, normalized_ndim: int) -> tuple[int, ...]:
    return tuple(range(ndim - normalized_ndim, ndim))


# --------------------------------------------------------------------------- layer norm


def _ln_inputs(shape: tuple[int, ...], normalized_ndim: int, eps: float = 1e-5, affine: bool = True):
    """x with a different offset and spread per sample and a fixed pattern over the
    normalized axes (so statistics over the batch, over too few axes or with the wrong
    divisor all show up), plus gamma, beta, normalized_ndim and eps."""

    def make(rng: np.random.Generator) -> dict:
        k = normalized_ndim
        lead, norm = shape[: len(shape) - k], shape[len(shape) - k:]
        per_sample = lead + (1,) * k
        loc = rng.uniform(-3.0, 3.0, per_sample)
        scale = rng.uniform(1.0, 3.0, per_sample)
        x = loc + scale * (rng.standard_normal(shape) + rng.uniform(-1.5, 1.5, norm))
        if affine:
            gamma, beta = rng.uniform(0.5, 2.0, norm), rng.standard_normal(norm)
        else:
            gamma, beta = np.ones(norm), np.zeros(norm)
        return {"x": x, "gamma": gamma, "beta": beta, "normalized_ndim": normalized_ndim, "eps": eps}

    return make


def _torch_ln(inputs: dict) -> np.ndarray:
    _, F = _torch()
    x = np.asarray(inputs["x"])
    shape = x.shape[x.ndim - inputs["normalized_ndim"]:]
    return F.layer_norm(_t(x), shape, _t(inputs["gamma"]), _t(inputs["beta"]), inputs["eps"]).numpy()


def _expect_torch_ln(inputs: dict) -> dict:
    return {"out": _torch_ln(inputs)}


def _expect_reference_ln(inputs: dict) -> dict:
    from solutions.layernorm import layernorm_forward

    return {"out": layernorm_forward(**inputs)[0]}


_ln_out = returning("out", "cache", keep=("out",))


# With gamma = 1 and beta = 0 every sample has mean 0 and (biased) variance var / (var + eps)
# over its normalized axes, within 1e-4 of 1 for these inputs (m >= 24 values of spread
# >= 1); the unbiased divisor gives (m - 1) / m, at least 3e-2 away.
def _sample_moments(outputs: dict, inputs: dict) -> dict:
    out = outputs["out"]
    x = np.asarray(inputs["x"])
    if out.shape != x.shape:
        raise CheckFailure(f"out has shape {out.shape}, expected {x.shape}")
    axes = _norm_axes(x.ndim, inputs["normalized_ndim"])
    return {"per-sample mean of out": out.mean(axis=axes), "per-sample variance of out": out.var(axis=axes)}


def _expect_standardized(inputs: dict) -> dict:
    x = np.asarray(inputs["x"])
    lead = x.shape[: x.ndim - inputs["normalized_ndim"]]
    return {"per-sample mean of out": np.zeros(lead), "per-sample variance of out": np.ones(lead)}


_compare_standardized = close(TOL, atol={"per-sample mean of out": ZERO_ATOL, "per-sample variance of out": 1e-4})


def _each_sample_alone(fn, inputs: dict) -> dict:
    """out for the whole batch, and out for each sample passed as a batch of one."""
    out = unpack(fn(**inputs), ("out", "cache"), "layernorm_forward", ("out",))["out"]
    x = np.asarray(inputs["x"])
    alone = []
    for i in range(x.shape[0]):
        single = unpack(fn(**{**inputs, "x": x[i:i + 1]}), ("out", "cache"), "layernorm_forward", ("out",))
        alone.append(np.asarray(single["out"]))
    try:
        alone = np.concatenate(alone, axis=0)
    except ValueError as exc:
        raise CheckFailure(f"out for a batch of one sample has the wrong shape ({exc})") from None
    return {"out": out, "alone": alone}


def _alone_minus_batch(outputs: dict, inputs: dict) -> dict:
    out, alone = outputs["out"], outputs["alone"]
    shape = np.shape(inputs["x"])
    for name, a in (("out", out), ("out of the samples one at a time", alone)):
        if a.shape != shape:
            raise CheckFailure(f"{name} has shape {a.shape}, expected {shape}")
    return {"out of each sample alone minus its row of the batch output": alone - out}


def _expect_zero_difference(inputs: dict) -> dict:
    return {"out of each sample alone minus its row of the batch output": np.zeros(np.shape(inputs["x"]))}


CACHE_NAMES = ("cache[0] (xhat)", "cache[1] (inv_std)", "cache[2] (gamma)")


def _ln_cache(fn, inputs: dict) -> dict:
    result = fn(**inputs)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CheckFailure("layernorm_forward must return a pair (out, cache)")
    cache = result[1]
    if not isinstance(cache, (tuple, list)) or len(cache) != 4:
        got = type(cache).__name__ + (f" of length {len(cache)}" if isinstance(cache, (tuple, list)) else "")
        raise CheckFailure(f"the cache must be a tuple (xhat, inv_std, gamma, axes), got a {got}")
    ndim = np.ndim(inputs["x"])
    want = _norm_axes(ndim, inputs["normalized_ndim"])
    try:
        axes = tuple(sorted(int(a) % ndim for a in cache[3]))
    except Exception:  # noqa: BLE001 (anything that is not a sequence of axis numbers)
        axes = None
    if axes != want:
        raise CheckFailure(f"cache[3] (axes) must be the normalized axes {want}, got {cache[3]!r}")
    return dict(zip(CACHE_NAMES, cache[:3]))


def _torch_cache(inputs: dict) -> tuple:
    """The cache layernorm_forward documents, computed with PyTorch."""
    torch, F = _torch()
    x, eps, k = _t(inputs["x"]), inputs["eps"], inputs["normalized_ndim"]
    axes = _norm_axes(x.ndim, k)
    var, _ = torch.var_mean(x, dim=axes, correction=0, keepdim=True)
    xhat = F.layer_norm(x, tuple(x.shape[x.ndim - k:]), eps=eps).numpy()
    return xhat, (1.0 / torch.sqrt(var + eps)).numpy(), np.array(inputs["gamma"], dtype=np.float64), axes


def _expect_torch_cache(inputs: dict) -> dict:
    return dict(zip(CACHE_NAMES, _torch_cache(inputs)[:3]))


def _ln_backward_inputs(shape: tuple[int, ...], normalized_ndim: int):
    """Forward inputs, an upstream gradient and the cache the backward pass receives."""

    def make(rng: np.random.Generator) -> dict:
        inputs = _ln_inputs(shape, normalized_ndim)(rng)
        inputs["dout"] = rng.standard_normal(shape)
        inputs["cache"] = _torch_cache(inputs)
        return inputs

    return make


def _ln_backward_call(keep: tuple[str, ...] = ("dx", "dgamma", "dbeta")):
    def call(fn, inputs: dict) -> dict:
        return unpack(fn(inputs["dout"], inputs["cache"]), ("dx", "dgamma", "dbeta"), "layernorm_backward", keep)

    return call


def _forward_keys(inputs: dict) -> dict:
    return {k: inputs[k] for k in ("x", "gamma", "beta", "normalized_ndim", "eps")}


def _expect_finite_differences(inputs: dict) -> dict:
    torch, _ = _torch()
    x, gamma, beta, dout = (np.asarray(inputs[k]) for k in ("x", "gamma", "beta", "dout"))
    f = lambda **kw: _torch_ln({**inputs, **kw})  # noqa: E731
    # Hundreds of tiny calls: one thread avoids thread start-up costs on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {
            "dx": numerical_gradient(lambda v: f(x=v), x, dout),
            "dgamma": numerical_gradient(lambda v: f(gamma=v), gamma, dout),
            "dbeta": numerical_gradient(lambda v: f(beta=v), beta, dout),
        }
    finally:
        torch.set_num_threads(threads)


def _expect_autograd(inputs: dict) -> dict:
    _, F = _torch()
    x, gamma, beta = (_t(inputs[k]).requires_grad_() for k in ("x", "gamma", "beta"))
    out = F.layer_norm(x, tuple(gamma.shape), gamma, beta, inputs["eps"])
    out.backward(_t(inputs["dout"]))
    return {"dx": x.grad.numpy(), "dgamma": gamma.grad.numpy(), "dbeta": beta.grad.numpy()}


def _expect_reference_backward(inputs: dict) -> dict:
    from solutions.layernorm import layernorm_backward, layernorm_forward

    _, cache = layernorm_forward(**_forward_keys(inputs))
    dx, dgamma, dbeta = layernorm_backward(inputs["dout"], cache)
    return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def _only(*names: str):
    def pick(expect):
        return lambda inputs: {k: v for k, v in expect(inputs).items() if k in names}

    return pick


# Every sample's input gradient sums to zero over its normalized axes (the mean term).
def _dx_sample_sums(outputs: dict, inputs: dict) -> dict:
    dx = outputs["dx"]
    shape = np.shape(inputs["dout"])
    if dx.shape != shape:
        raise CheckFailure(f"dx has shape {dx.shape}, expected {shape}")
    return {"per-sample sum of dx": dx.sum(axis=_norm_axes(dx.ndim, inputs["normalized_ndim"]))}


def _expect_zero_sums(inputs: dict) -> dict:
    shape = np.shape(inputs["dout"])
    return {"per-sample sum of dx": np.zeros(shape[: len(shape) - inputs["normalized_ndim"]])}


# --------------------------------------------------------------------------- group norm


def _gn_inputs(shape: tuple[int, ...], num_groups: int, affine: bool = True, eps: float = 1e-5):
    """x whose channels have very different offsets and spreads (so a group made of the
    wrong channels, or of one channel, shows up) and a different offset per sample."""

    def make(rng: np.random.Generator) -> dict:
        n, c = shape[:2]
        bcast = (1, c) + (1,) * (len(shape) - 2)
        loc = rng.uniform(-4.0, 4.0, bcast) + rng.uniform(-2.0, 2.0, (n,) + (1,) * (len(shape) - 1))
        scale = rng.uniform(0.5, 3.0, bcast)
        x = loc + scale * rng.standard_normal(shape)
        if affine:
            gamma, beta = rng.uniform(0.5, 2.0, c), rng.standard_normal(c)
        else:
            gamma, beta = np.ones(c), np.zeros(c)
        return {"x": x, "num_groups": num_groups, "gamma": gamma, "beta": beta, "eps": eps}

    return make


def _expect_torch_gn(inputs: dict) -> dict:
    _, F = _torch()
    out = F.group_norm(_t(inputs["x"]), inputs["num_groups"], _t(inputs["gamma"]), _t(inputs["beta"]), inputs["eps"])
    return {"out": out.numpy()}


def _expect_reference_gn(inputs: dict) -> dict:
    from solutions.layernorm import groupnorm_forward

    return {"out": groupnorm_forward(**inputs)}


def _group_moments(outputs: dict, inputs: dict) -> dict:
    """Mean and biased variance of out over each (sample, group of consecutive channels)."""
    out = outputs["out"]
    x = np.asarray(inputs["x"])
    if out.shape != x.shape:
        raise CheckFailure(f"out has shape {out.shape}, expected {x.shape}")
    groups = out.reshape(x.shape[0], inputs["num_groups"], -1)
    return {"mean of out over each group": groups.mean(axis=2), "variance of out over each group": groups.var(axis=2)}


def _expect_group_standardized(inputs: dict) -> dict:
    shape = (np.shape(inputs["x"])[0], inputs["num_groups"])
    return {"mean of out over each group": np.zeros(shape), "variance of out over each group": np.ones(shape)}


_compare_group_standardized = close(
    TOL, atol={"mean of out over each group": ZERO_ATOL, "variance of out over each group": 1e-4}
)


def _expect_layer_norm_over_chw(inputs: dict) -> dict:
    """One group: F.layer_norm over (C, *spatial) with gamma, beta broadcast per channel."""
    _, F = _torch()
    x = np.asarray(inputs["x"])
    bcast = (x.shape[1],) + (1,) * (x.ndim - 2)
    gamma = np.broadcast_to(np.reshape(inputs["gamma"], bcast), x.shape[1:])
    beta = np.broadcast_to(np.reshape(inputs["beta"], bcast), x.shape[1:])
    return {"out": F.layer_norm(_t(x), x.shape[1:], _t(gamma), _t(beta), inputs["eps"]).numpy()}


def _expect_instance_norm(inputs: dict) -> dict:
    """C groups: F.instance_norm with gamma and beta per channel."""
    _, F = _torch()
    out = F.instance_norm(_t(inputs["x"]), weight=_t(inputs["gamma"]), bias=_t(inputs["beta"]), eps=inputs["eps"])
    return {"out": out.numpy()}


# --------------------------------------------------------------------------- RMS norm


def _rms_inputs(shape: tuple[int, ...], eps: float = 1e-6, scale: float = 1.0, centred: bool = False):
    """x with a different offset per row (so re-centering shows up) unless ``centred``, in
    which case every row has mean zero (RMSNorm and LN then agree up to the affine part,
    and only eps and the divisor matter); weight bounded away from zero."""

    def make(rng: np.random.Generator) -> dict:
        x = rng.standard_normal(shape) * rng.uniform(0.5, 2.0, shape[:-1] + (1,))
        if centred:
            x = x - x.mean(axis=-1, keepdims=True)
        else:
            x = x + rng.uniform(1.0, 3.0, shape[:-1] + (1,)) * rng.choice([-1.0, 1.0], shape[:-1] + (1,))
        return {"x": scale * x, "weight": rng.uniform(0.5, 2.0, shape[-1]), "eps": eps}

    return make


def _expect_torch_rms(inputs: dict) -> dict:
    _, F = _torch()
    x = np.asarray(inputs["x"])
    return {"out": F.rms_norm(_t(x), x.shape[-1:], _t(inputs["weight"]), inputs["eps"]).numpy()}


def _expect_reference_rms(inputs: dict) -> dict:
    from solutions.layernorm import rmsnorm_forward

    return {"out": rmsnorm_forward(**inputs)}


# RMSNorm only rescales: out = weight * x * s with one factor s per row. Subtracting the
# row mean (layer norm) or adding a shift breaks that.
def _row_factors(outputs: dict, inputs: dict) -> dict:
    out = outputs["out"]
    x = np.asarray(inputs["x"])
    if out.shape != x.shape:
        raise CheckFailure(f"out has shape {out.shape}, expected {x.shape}")
    factor = out / (np.asarray(inputs["weight"]) * x)
    return {"out / (weight * x) relative to its row mean, minus 1": factor / factor.mean(axis=-1, keepdims=True) - 1}


def _expect_constant_factors(inputs: dict) -> dict:
    return {"out / (weight * x) relative to its row mean, minus 1": np.zeros(np.shape(inputs["x"]))}


_out = returning("out")


F_ = "layernorm_forward"
B_ = "layernorm_backward"
G_ = "groupnorm_forward"
R_ = "rmsnorm_forward"
_id = lambda function, name: f"{CHAPTER}_{function}_{name}"  # noqa: E731

CHECKS = [
    # layernorm_forward: 25 points
    Check(_id(F_, "torch_2d"), F_, 4, "out matches F.layer_norm on a (6, 8) input",
          inputs=_ln_inputs((6, 8), 1), expected=_expect_torch_ln, call=_ln_out, compare=close(TOL), seed=1),
    Check(_id(F_, "torch_2d_hidden"), F_, 3, "out matches the reference on another 2-D input and eps",
          inputs=_ln_inputs((9, 5), 1, eps=1e-3), expected=_expect_reference_ln, call=_ln_out,
          compare=close(TOL), hidden=True, cell=_id(F_, "torch_2d")),
    Check(_id(F_, "torch_nd"), F_, 4, "out matches F.layer_norm over the last 3 axes of a (2, 3, 4, 5) input",
          inputs=_ln_inputs((2, 3, 4, 5), 3), expected=_expect_torch_ln, call=_ln_out, compare=close(TOL), seed=2),
    Check(_id(F_, "torch_nd_hidden"), F_, 3, "out matches the reference over the last 3 axes of a 4-D input",
          inputs=_ln_inputs((3, 2, 3, 4), 3), expected=_expect_reference_ln, call=_ln_out,
          compare=close(TOL), hidden=True, cell=_id(F_, "torch_nd")),
    Check(_id(F_, "standardizes"), F_, 3,
          "with gamma = 1, beta = 0 every row of a (2, 5, 24) input has mean 0 and variance 1 (biased)",
          inputs=_ln_inputs((2, 5, 24), 1, affine=False), expected=_expect_standardized, call=_ln_out,
          derive=_sample_moments, compare=_compare_standardized, seed=3),
    Check(_id(F_, "standardizes_hidden"), F_, 2, "per-sample mean 0 and variance 1 on a 3-D input",
          inputs=_ln_inputs((3, 4, 30), 1, affine=False), expected=_expect_standardized, call=_ln_out,
          derive=_sample_moments, compare=_compare_standardized, hidden=True, cell=_id(F_, "standardizes")),
    Check(_id(F_, "per_sample"), F_, 2,
          "each sample of a (4, 6) batch, normalised alone, gives its row of the batch output",
          inputs=_ln_inputs((4, 6), 1), expected=_expect_zero_difference, call=_each_sample_alone,
          derive=_alone_minus_batch, compare=close(atol=ZERO_ATOL), seed=4),
    Check(_id(F_, "per_sample_hidden"), F_, 1, "batch independence on a 3-D input over its last 2 axes",
          inputs=_ln_inputs((3, 4, 5), 2), expected=_expect_zero_difference, call=_each_sample_alone,
          derive=_alone_minus_batch, compare=close(atol=ZERO_ATOL), hidden=True, cell=_id(F_, "per_sample")),
    Check(_id(F_, "cache"), F_, 3,
          "the cache is (xhat, inv_std with the normalized axes kept, gamma, axes) for a (3, 4, 5) input over 2 axes, "
          "eps 1e-3",
          inputs=_ln_inputs((3, 4, 5), 2, eps=1e-3), expected=_expect_torch_cache, call=_ln_cache, compare=close(TOL), seed=5),
    # layernorm_backward: 25 points
    Check(_id(B_, "finite_difference"), B_, 5,
          "dx, dgamma, dbeta match centred finite differences of F.layer_norm on a (4, 6) input",
          inputs=_ln_backward_inputs((4, 6), 1), expected=_expect_finite_differences, call=_ln_backward_call(),
          compare=close(FD_TOL, atol=FD_ATOL), seed=6),
    Check(_id(B_, "finite_difference_hidden"), B_, 3, "finite differences over the last 2 axes of a 3-D input",
          inputs=_ln_backward_inputs((2, 3, 4), 2), expected=_expect_finite_differences, call=_ln_backward_call(),
          compare=close(FD_TOL, atol=FD_ATOL), hidden=True, cell=_id(B_, "finite_difference")),
    Check(_id(B_, "autograd"), B_, 5,
          "dx, dgamma, dbeta match PyTorch autograd over the last 2 axes of a (3, 4, 5) input",
          inputs=_ln_backward_inputs((3, 4, 5), 2), expected=_expect_autograd, call=_ln_backward_call(),
          compare=close(TOL), seed=7),
    Check(_id(B_, "autograd_hidden"), B_, 3, "dx, dgamma, dbeta match the reference on a 2-D input",
          inputs=_ln_backward_inputs((7, 9), 1), expected=_expect_reference_backward, call=_ln_backward_call(),
          compare=close(TOL), hidden=True, cell=_id(B_, "autograd")),
    Check(_id(B_, "param_grads"), B_, 3,
          "dgamma and dbeta match PyTorch autograd on a (3, 2, 5, 4) input (three leading axes)",
          inputs=_ln_backward_inputs((3, 2, 5, 4), 1), expected=_only("dgamma", "dbeta")(_expect_autograd),
          call=_ln_backward_call(keep=("dgamma", "dbeta")), compare=close(TOL), seed=8),
    Check(_id(B_, "param_grads_hidden"), B_, 2, "dgamma and dbeta match the reference on a 4-D input",
          inputs=_ln_backward_inputs((2, 3, 2, 4), 2), expected=_only("dgamma", "dbeta")(_expect_reference_backward),
          call=_ln_backward_call(keep=("dgamma", "dbeta")), compare=close(TOL), hidden=True,
          cell=_id(B_, "param_grads")),
    Check(_id(B_, "dx_sums_to_zero"), B_, 2, "dx sums to zero over the features of every sample",
          inputs=_ln_backward_inputs((5, 7), 1), expected=_expect_zero_sums, call=_ln_backward_call(keep=("dx",)),
          derive=_dx_sample_sums, compare=close(atol=ZERO_ATOL), seed=9),
    Check(_id(B_, "dx_sums_to_zero_hidden"), B_, 2, "dx sums to zero over the last 2 axes of every sample",
          inputs=_ln_backward_inputs((3, 3, 4), 2), expected=_expect_zero_sums, call=_ln_backward_call(keep=("dx",)),
          derive=_dx_sample_sums, compare=close(atol=ZERO_ATOL), hidden=True, cell=_id(B_, "dx_sums_to_zero")),
    # groupnorm_forward: 15 points
    Check(_id(G_, "torch"), G_, 4,
          "out matches F.group_norm with 6 groups of one channel (instance norm) on a (2, 6, 3, 3) input, eps 1e-3",
          inputs=_gn_inputs((2, 6, 3, 3), 6, eps=1e-3), expected=_expect_torch_gn, call=_out, compare=close(TOL), seed=10),
    Check(_id(G_, "torch_hidden"), G_, 3, "out matches the reference on a 3-D input with 4 groups",
          inputs=_gn_inputs((3, 8, 5), 4), expected=_expect_reference_gn, call=_out,
          compare=close(TOL), hidden=True, cell=_id(G_, "torch")),
    Check(_id(G_, "consecutive_groups"), G_, 3,
          "with gamma = 1, beta = 0 each group of consecutive channels of a (2, 6, 16) sample has mean 0, variance 1",
          inputs=_gn_inputs((2, 6, 16), 3, affine=False), expected=_expect_group_standardized, call=_out,
          derive=_group_moments, compare=_compare_group_standardized, seed=11),
    Check(_id(G_, "consecutive_groups_hidden"), G_, 2, "group statistics of a 3-D input with 2 groups",
          inputs=_gn_inputs((3, 8, 6), 2, affine=False), expected=_expect_group_standardized, call=_out,
          derive=_group_moments, compare=_compare_group_standardized, hidden=True,
          cell=_id(G_, "consecutive_groups")),
    Check(_id(G_, "one_group"), G_, 2, "one group is F.layer_norm over (C, H, W) on a (3, 4, 2, 2) input",
          inputs=_gn_inputs((3, 4, 2, 2), 1), expected=_expect_layer_norm_over_chw, call=_out,
          compare=close(TOL), seed=12),
    Check(_id(G_, "one_group_hidden"), G_, 1, "C groups are F.instance_norm on a 4-D input",
          inputs=_gn_inputs((2, 3, 3, 4), 3), expected=_expect_instance_norm, call=_out,
          compare=close(TOL), hidden=True, cell=_id(G_, "one_group")),
    # rmsnorm_forward: 15 points
    Check(_id(R_, "torch"), R_, 4, "out matches F.rms_norm (eps = 1e-6) on a (4, 8) input",
          inputs=_rms_inputs((4, 8)), expected=_expect_torch_rms, call=_out, compare=close(TOL), seed=13),
    Check(_id(R_, "torch_hidden"), R_, 3, "out matches the reference on a 3-D input",
          inputs=_rms_inputs((2, 3, 6)), expected=_expect_reference_rms, call=_out,
          compare=close(TOL), hidden=True, cell=_id(R_, "torch")),
    Check(_id(R_, "rescales_rows"), R_, 2, "out is weight * x times one factor per row of a (2, 5, 7) input (no re-centering)",
          inputs=_rms_inputs((2, 5, 7)), expected=_expect_constant_factors, call=_out,
          derive=_row_factors, compare=close(atol=ZERO_ATOL), seed=14),
    Check(_id(R_, "rescales_rows_hidden"), R_, 2, "one factor per row of a 3-D input",
          inputs=_rms_inputs((3, 2, 9)), expected=_expect_constant_factors, call=_out,
          derive=_row_factors, compare=close(atol=ZERO_ATOL), hidden=True, cell=_id(R_, "rescales_rows")),
    Check(_id(R_, "eps"), R_, 2,
          "eps = 1e-5 inside the square root: out matches F.rms_norm on zero-mean rows of size 1e-3",
          inputs=_rms_inputs((4, 10), eps=1e-5, scale=1e-3, centred=True), expected=_expect_torch_rms, call=_out,
          compare=close(TOL), seed=15),
    Check(_id(R_, "eps_hidden"), R_, 2, "out matches the reference with eps = 1e-2 on small zero-mean rows",
          inputs=_rms_inputs((3, 6), eps=1e-2, scale=0.1, centred=True), expected=_expect_reference_rms,
          call=_out, compare=close(TOL), hidden=True, cell=_id(R_, "eps")),
]


# ---------------------------------------------------------------- kinds of input
_DEFAULT_EPS = {"rmsnorm_forward": 1e-6}


def input_kinds(function: str, inputs: dict) -> set[str]:
    """The kinds of input a check of ``function`` uses, read off its inputs (a backward
    check's cache is made from the same x, normalized_ndim and eps)."""
    x = np.asarray(inputs["x"])
    kinds = array_kinds(x)
    default = _DEFAULT_EPS.get(function, 1e-5)
    kinds.add(f"eps = {default:g} (the default)" if inputs["eps"] == default else "eps other than the default")
    if function.startswith("layernorm"):
        k = inputs["normalized_ndim"]
        kinds.add(f"normalized over the last {k} axes" if k > 1 else "normalized over the last axis")
        if x.ndim - k > 1:
            kinds.add("more than one leading axis")
    if function == "groupnorm_forward":
        g, c = inputs["num_groups"], x.shape[1]
        kinds.add("one group (layer norm)" if g == 1 else ("one group per channel (instance norm)" if g == c
                                                           else "between 1 and C groups"))
    if "gamma" in inputs and function != "layernorm_backward":
        identity = np.all(inputs["gamma"] == 1) and np.all(inputs["beta"] == 0)
        kinds.add("gamma = 1, beta = 0" if identity else "gamma and beta other than 1 and 0")
    if function == "rmsnorm_forward":
        rms = np.sqrt(np.mean(x**2, axis=-1))
        if np.all(np.abs(x.mean(axis=-1)) < 1e-9 * (1 + rms)):
            kinds.add("zero-mean rows")
        if np.any(rms**2 < 100 * inputs["eps"]):
            kinds.add("rows small enough for eps to matter")
    return kinds


def describe_input(function: str, inputs: dict) -> str:
    """The input in plain words, e.g. "a (3, 2, 3, 4) input normalized over its last 3 axes, eps 1e-05"."""
    x = np.asarray(inputs["x"])
    words = f"a {tuple(x.shape)} input"
    if "normalized_ndim" in inputs:
        k = inputs["normalized_ndim"]
        words += f" normalized over its last {k} ax{'es' if k > 1 else 'is'}"
    if "num_groups" in inputs:
        words += f" in {inputs['num_groups']} group(s) of {x.shape[1] // inputs['num_groups']} channel(s)"
    words += f", eps {inputs['eps']:g}"
    extra = input_kinds(function, inputs) & {"zero-mean rows", "rows small enough for eps to matter"}
    return ", ".join([words, *sorted(extra)])


CHECKS = describing(CHECKS, describe_input)
