"""Graded checks of the ``dropout`` exercise: inverted dropout forward and backward, the
original (vanilla) rule and Gaussian dropout.

Released to students as ``coursechecks/dropout.py``. The forward functions are random and a
correct answer may draw its random numbers in any order, so no check compares values with a
particular random stream. Instead the checks test properties of the student's own draws, from
a seeded generator (``rng`` is passed as an int seed):

* consistency: ``out`` agrees with the returned mask (or noise) exactly, to rounding;
* the share of kept units is within Z binomial standard errors of ``1 - p``;
* over many independent draws on the same input, the mean and variance of ``out / x`` are
  within Z standard errors of their exact values (computed here from the distribution);
* evaluation mode and ``p = 0`` are the identity (or the ``1 - p`` scaling of the original
  rule).

Inputs are bounded away from zero, so a zero output means a dropped unit. Deterministic
outputs (backward passes, evaluation mode) are compared with PyTorch (visible) or with the
reference (hidden checks, which import ``solutions`` inside ``expected``).
"""
from __future__ import annotations

import math

import numpy as np

from .core import Check, CheckFailure, array_kinds, close, describing, unpack

CHAPTER = "dropout"
TOL = 1e-8  # deterministic float64 results: correct code lands near 1e-16, the bugs above 1e-2
# Standard errors allowed for Monte Carlo statistics: a correct answer fails one statistic
# with probability below 1e-6, while every targeted bug lies dozens of standard errors away.
Z = 5.0
ONE_SIGMA = math.erf(1 / math.sqrt(2))  # P(|N(0, 1)| < 1) = 0.6827


def _torch():
    import torch
    import torch.nn.functional as F

    return torch, F


def _t(a):
    torch, _ = _torch()
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def _nonzero(rng: np.random.Generator, shape) -> np.ndarray:
    """Values of both signs with |x| in [0.5, 2]: a zero output can only mean a dropped unit."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 2.0, size=shape)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


# --------------------------------------------------------------------------- inputs

def _forward_inputs(shape, p: float, training: bool = True):
    def make(rng):
        return {"x": _nonzero(rng, shape), "p": p, "training": training, "rng": _seed(rng)}

    return make


def _draws_inputs(k: int, reps: int, p: float):
    """One row of ``k`` values repeated ``reps`` times: each row is an independent draw."""

    def make(rng):
        row = _nonzero(rng, k)
        return {"x": np.tile(row, (reps, 1)), "p": p, "training": True, "rng": _seed(rng)}

    return make


def _train_and_test_inputs(k: int, reps: int, p: float):
    def make(rng):
        inputs = _draws_inputs(k, reps, p)(rng)
        inputs["x_test"] = inputs["x"][0].copy()
        return inputs

    return make


# --------------------------------------------------------------------------- calling

def _as_mask(value, shape) -> np.ndarray:
    """The student's keep-mask as float 0/1 (outputs must be float arrays), after checking
    that it is a boolean array of the input's shape, as the docstrings require."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # a hostile __array__ or a ragged sequence
        raise CheckFailure(f"mask could not be read as an array ({type(exc).__name__}: {exc})")
    if arr.dtype != np.bool_:
        raise CheckFailure(f"mask must be a boolean array (True = kept), got {type(value).__name__} "
                           f"with dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise CheckFailure(f"mask has shape {arr.shape}, expected {tuple(shape)}")
    return np.array(arr, dtype=np.float64)


def _forward_call(fname: str, second: str = "mask"):
    """Call a forward function; return ``out`` and, in training, the mask or the noise.

    In evaluation mode the second value must be ``None``.
    """

    def call(fn, inputs: dict) -> dict:
        args = {k: inputs[k] for k in ("x", "p", "training", "rng")}
        out, extra = unpack(fn(**args), ("out", second), fname).values()
        if not inputs["training"]:
            if extra is not None:
                raise CheckFailure(f"in evaluation mode {second} must be None, got {type(extra).__name__}")
            return {"out": out}
        if second == "mask":
            extra = _as_mask(extra, np.shape(inputs["x"]))
        return {"out": out, second: extra}

    return call


def _train_and_test_call(fname: str):
    """Training on many draws of one row, then evaluation mode on that row."""

    def call(fn, inputs: dict) -> dict:
        train = unpack(fn(x=inputs["x"], p=inputs["p"], training=True, rng=inputs["rng"]),
                       ("out", "mask"), fname, keep=("out",))["out"]
        test = unpack(fn(x=inputs["x_test"], p=inputs["p"], training=False, rng=inputs["rng"]),
                      ("out", "mask"), fname, keep=("out",))["out"]
        return {"training outputs": train, "test output": test}

    return call


def _backward_call(fn, inputs: dict) -> dict:
    return {"dx": fn(inputs["dout"], inputs["mask"], inputs["p"])}


# --------------------------------------------------------------------------- derived quantities

def _shapes(outputs: dict, inputs: dict, names=None) -> None:
    shape = np.shape(inputs["x"])
    for name in names or outputs:
        if outputs[name].shape != shape:
            raise CheckFailure(f"{name} has shape {outputs[name].shape}, expected {shape}")


def _consistent(outputs: dict, inputs: dict, scaled: bool) -> None:
    """``out`` must be ``x / (1 - p)`` (inverted) or ``x`` (vanilla) where the mask is True, 0 elsewhere."""
    _shapes(outputs, inputs)
    x, p = np.asarray(inputs["x"]), inputs["p"]
    kept = x / (1.0 - p) if scaled else x
    name = ("out (compared with x / (1 - p) where your mask is True, 0 elsewhere)" if scaled
            else "out (compared with x where your mask is True, 0 elsewhere)")
    close(TOL)({name: outputs["out"]}, {name: np.where(outputs["mask"] > 0.5, kept, 0.0)})


def _derive_inverted_values(outputs: dict, inputs: dict) -> dict:
    _consistent(outputs, inputs, scaled=True)
    return {}


def _nonzero_share(outputs: dict, inputs: dict) -> dict:
    _shapes(outputs, inputs, ["out"])
    return {"share of nonzero entries of out": np.mean(outputs["out"] != 0)}


def _derive_vanilla_train(outputs: dict, inputs: dict) -> dict:
    _consistent(outputs, inputs, scaled=False)
    return _nonzero_share(outputs, inputs)


def _ratio_moments(outputs: dict, inputs: dict) -> dict:
    """Mean and (unbiased) variance of out / x over the draws (rows), per column."""
    _shapes(outputs, inputs, ["out"])
    ratio = outputs["out"] / np.asarray(inputs["x"])
    return {"mean of out / x over the draws": ratio.mean(axis=0),
            "variance of out / x over the draws": ratio.var(axis=0, ddof=1)}


def _derive_gaussian_moments(outputs: dict, inputs: dict) -> dict:
    _shapes(outputs, inputs)
    name = "out (compared with x * noise for your noise)"
    close(TOL)({name: outputs["out"]}, {name: np.asarray(inputs["x"]) * outputs["noise"]})
    return _ratio_moments(outputs, inputs)


def _one_sigma_share(outputs: dict, inputs: dict) -> dict:
    """Share of the multipliers out / x within one (sample) standard deviation of their mean:
    0.6827 for any normal distribution, whatever its mean and variance."""
    _shapes(outputs, inputs, ["out"])
    ratio = outputs["out"] / np.asarray(inputs["x"])
    inside = np.abs(ratio - ratio.mean()) < ratio.std()
    return {"share of out / x within one standard deviation of its mean": np.mean(inside)}


def _train_test_gap(outputs: dict, inputs: dict) -> dict:
    x = np.asarray(inputs["x"])
    train, test = outputs["training outputs"], outputs["test output"]
    if train.shape != x.shape:
        raise CheckFailure(f"out has shape {train.shape} in training, expected {x.shape}")
    if test.shape != x.shape[1:]:
        raise CheckFailure(f"out has shape {test.shape} in evaluation mode, expected {x.shape[1:]}")
    return {"(mean training output - test output) / |x|": (train.mean(axis=0) - test) / np.abs(x[0])}


def _exact_identity(outputs: dict, inputs: dict) -> dict:
    _shapes(outputs, inputs)
    return outputs


# --------------------------------------------------------------------------- expectations

def _expect_nothing(inputs: dict) -> dict:
    return {}


def _expect_keep_share(inputs: dict) -> dict:
    return {"share of nonzero entries of out": 1.0 - inputs["p"]}


def _expect_unit_mean_and_variance(inputs: dict) -> dict:
    k, p = np.shape(inputs["x"])[1], inputs["p"]
    return {"mean of out / x over the draws": np.ones(k),
            "variance of out / x over the draws": np.full(k, p / (1.0 - p))}


def _expect_input(inputs: dict) -> dict:
    return {"out": np.asarray(inputs["x"])}


def _expect_input_and_full_mask(inputs: dict) -> dict:
    return {"out": np.asarray(inputs["x"]), "mask": np.ones(np.shape(inputs["x"]))}


def _expect_input_and_unit_noise(inputs: dict) -> dict:
    return {"out": np.asarray(inputs["x"]), "noise": np.ones(np.shape(inputs["x"]))}


def _expect_one_sigma(inputs: dict) -> dict:
    return {"share of out / x within one standard deviation of its mean": ONE_SIGMA}


def _expect_zero_gap(inputs: dict) -> dict:
    return {"(mean training output - test output) / |x|": np.zeros(np.shape(inputs["x"])[1])}


def _expect_scaled_input(inputs: dict) -> dict:
    """The original rule at test time: every unit present, scaled by its keep probability."""
    return {"out": (1.0 - inputs["p"]) * np.asarray(inputs["x"])}


def _expect_torch_eval(inputs: dict) -> dict:
    _, F = _torch()
    return {"out": F.dropout(_t(inputs["x"]), inputs["p"], training=False).numpy()}


def _expect_reference_eval(name: str):
    def expect(inputs: dict) -> dict:
        import solutions.dropout as ref

        return {"out": getattr(ref, name)(inputs["x"], inputs["p"], training=False)[0]}

    return expect


# --------------------------------------------------------------------------- tolerances

def _keep_share_atol(p: float, n: int) -> float:
    return Z * math.sqrt(p * (1.0 - p) / n)


def _moments_atol(p: float, reps: int, gaussian: bool) -> dict:
    """Z standard errors of the sample mean and the unbiased sample variance of out / x.

    Inverted dropout's multiplier takes the values -1 and p / q about its mean 1 (q = 1 - p),
    with probabilities p and q: variance p / q, fourth central moment p + p^4 / q^3. The
    Gaussian multiplier has fourth central moment 3 (p / q)^2. Var(S^2) = (mu4 - var^2) / n
    up to a term of order 1 / n^2.
    """
    q = 1.0 - p
    var = p / q
    mu4 = 3 * var**2 if gaussian else p + p**4 / q**3
    return {"mean of out / x over the draws": Z * math.sqrt(var / reps),
            "variance of out / x over the draws": Z * math.sqrt((mu4 - var**2) / reps + 2 * var**2 / reps**2)}


def _one_sigma_atol(n: int) -> float:
    # Using the sample mean and standard deviation moves the share by O(1 / n) only.
    return Z * math.sqrt(ONE_SIGMA * (1 - ONE_SIGMA) / n) + 10.0 / n


def _gap_atol(p: float, reps: int) -> float:
    # out / x in training is a Bernoulli(1 - p) variable: variance p (1 - p).
    return Z * math.sqrt(p * (1.0 - p) / reps)


# --------------------------------------------------------------------------- backward

def _torch_backward_inputs(shape, p: float):
    """An upstream gradient and the mask that PyTorch's own dropout drew (read off its output)."""

    def make(rng):
        torch, F = _torch()
        x, dout, seed = _nonzero(rng, shape), rng.standard_normal(shape), _seed(rng)
        torch.manual_seed(seed)
        out = F.dropout(_t(x), p, training=True)
        return {"x": x, "dout": dout, "mask": (out != 0).numpy(), "p": p, "torch_seed": seed}

    return make


def _expect_torch_autograd(inputs: dict) -> dict:
    """PyTorch's gradient through F.dropout, replayed with the same seed and hence the same mask."""
    torch, F = _torch()
    x = _t(inputs["x"]).requires_grad_()
    torch.manual_seed(inputs["torch_seed"])
    out = F.dropout(x, inputs["p"], training=True)
    if not np.array_equal((out != 0).detach().numpy(), inputs["mask"]):
        raise RuntimeError("PyTorch drew a different mask on replay")
    out.backward(_t(inputs["dout"]))
    return {"dx": x.grad.numpy()}


def _numpy_mask_inputs(shape, p: float):
    def make(rng):
        return {"dout": rng.standard_normal(shape), "mask": rng.random(shape) < 1.0 - p, "p": p}

    return make


def _eval_backward_inputs(shape, p: float):
    def make(rng):
        return {"dout": rng.standard_normal(shape), "mask": None, "p": p}

    return make


def _expect_dout(inputs: dict) -> dict:
    """Evaluation-mode dropout is the identity, so its gradient passes dout through."""
    return {"dx": np.asarray(inputs["dout"])}


def _expect_reference_backward(inputs: dict) -> dict:
    from solutions.dropout import dropout_backward

    return {"dx": dropout_backward(inputs["dout"], inputs["mask"], inputs["p"])}


# --------------------------------------------------------------------------- the checks

F_ = "dropout_forward"
B_ = "dropout_backward"
V_ = "vanilla_dropout_forward"
G_ = "gaussian_dropout_forward"
_id = lambda function, name: f"{CHAPTER}_{function}_{name}"  # noqa: E731
_inv, _van, _gau = _forward_call(F_), _forward_call(V_), _forward_call(G_, "noise")


def _keep_check(grade_id, points, description, shape, p, **kw):
    n = int(np.prod(shape))
    return Check(grade_id, F_, points, description, inputs=_forward_inputs(shape, p), expected=_expect_keep_share,
                 call=_inv, derive=_nonzero_share, compare=close(0.0, atol=_keep_share_atol(p, n)), **kw)


def _moments_check(grade_id, function, points, description, k, reps, p, **kw):
    gaussian = function == G_
    return Check(grade_id, function, points, description, inputs=_draws_inputs(k, reps, p),
                 expected=_expect_unit_mean_and_variance, call=_gau if gaussian else _inv,
                 derive=_derive_gaussian_moments if gaussian else _ratio_moments,
                 compare=close(0.0, atol=_moments_atol(p, reps, gaussian)), **kw)


def _vanilla_train_check(grade_id, points, description, shape, p, **kw):
    n = int(np.prod(shape))
    return Check(grade_id, V_, points, description, inputs=_forward_inputs(shape, p), expected=_expect_keep_share,
                 call=_van, derive=_derive_vanilla_train, compare=close(0.0, atol=_keep_share_atol(p, n)), **kw)


def _gap_check(grade_id, points, description, k, reps, p, **kw):
    return Check(grade_id, V_, points, description, inputs=_train_and_test_inputs(k, reps, p),
                 expected=_expect_zero_gap, call=_train_and_test_call(V_), derive=_train_test_gap,
                 compare=close(0.0, atol=_gap_atol(p, reps)), **kw)


def _one_sigma_check(grade_id, points, description, shape, p, **kw):
    n = int(np.prod(shape))
    return Check(grade_id, G_, points, description, inputs=_forward_inputs(shape, p), expected=_expect_one_sigma,
                 call=_gau, derive=_one_sigma_share, compare=close(0.0, atol=_one_sigma_atol(n)), **kw)


CHECKS = [
    # dropout_forward: 32 points
    Check(_id(F_, "values"), F_, 5,
          "out is x / (1 - p) where the mask is True and 0 elsewhere (p = 0.8, a (4, 6, 5) input)",
          inputs=_forward_inputs((4, 6, 5), 0.8), expected=_expect_nothing, call=_inv,
          derive=_derive_inverted_values, seed=1),
    Check(_id(F_, "values_hidden"), F_, 3, "out agrees with the mask on a 3-D input (p = 0.75)",
          inputs=_forward_inputs((4, 5, 6), 0.75), expected=_expect_nothing, call=_inv,
          derive=_derive_inverted_values, hidden=True, cell=_id(F_, "values")),
    _keep_check(_id(F_, "keep_fraction"), 4, "the share of kept units is 1 - p (p = 0.3, 200,000 units)",
                (400, 500), 0.3, seed=2),
    _keep_check(_id(F_, "keep_fraction_hidden"), 3, "the share of kept units is 1 - p (p = 0.8)",
                (200, 10, 50), 0.8, hidden=True, cell=_id(F_, "keep_fraction")),
    _moments_check(_id(F_, "moments"), F_, 4,
                   "over 25,000 draws out / x has mean 1 and variance p / (1 - p) (p = 0.3)",
                   8, 25_000, 0.3, seed=3),
    _moments_check(_id(F_, "moments_hidden"), F_, 3, "mean 1 and variance p / (1 - p) over the draws (p = 0.6)",
                   6, 30_000, 0.6, hidden=True, cell=_id(F_, "moments")),
    Check(_id(F_, "eval_identity"), F_, 3, "in evaluation mode out is x, like F.dropout(training=False), and the mask is None",
          inputs=_forward_inputs((6, 7), 0.5, training=False), expected=_expect_torch_eval, call=_inv,
          compare=close(TOL), seed=4),
    Check(_id(F_, "eval_identity_hidden"), F_, 2, "evaluation mode on a 3-D input (p = 0.2)",
          inputs=_forward_inputs((3, 4, 5), 0.2, training=False), expected=_expect_reference_eval(F_),
          call=_inv, compare=close(TOL), hidden=True, cell=_id(F_, "eval_identity")),
    Check(_id(F_, "p_zero"), F_, 3, "p = 0 in training returns x exactly and keeps every unit",
          inputs=_forward_inputs((10, 12), 0.0), expected=_expect_input_and_full_mask, call=_inv,
          derive=_exact_identity, compare=close(0.0), seed=5),
    Check(_id(F_, "p_zero_hidden"), F_, 2, "p = 0 returns x exactly on a 3-D input",
          inputs=_forward_inputs((5, 3, 7), 0.0), expected=_expect_input_and_full_mask, call=_inv,
          derive=_exact_identity, compare=close(0.0), hidden=True, cell=_id(F_, "p_zero")),
    # dropout_backward: 15 points
    Check(_id(B_, "torch"), B_, 6,
          "dx matches PyTorch autograd through F.dropout, given PyTorch's mask (p = 0.75, a (3, 4, 5) input)",
          inputs=_torch_backward_inputs((3, 4, 5), 0.75), expected=_expect_torch_autograd, call=_backward_call,
          compare=close(TOL), seed=6),
    Check(_id(B_, "torch_hidden"), B_, 4, "dx matches the reference for another mask (p = 0.7)",
          inputs=_numpy_mask_inputs((5, 4, 6), 0.7), expected=_expect_reference_backward, call=_backward_call,
          compare=close(TOL), hidden=True, cell=_id(B_, "torch")),
    Check(_id(B_, "eval"), B_, 3, "with mask None (evaluation mode) dx is dout",
          inputs=_eval_backward_inputs((6, 5), 0.5), expected=_expect_dout, call=_backward_call,
          compare=close(TOL), seed=7),
    Check(_id(B_, "eval_hidden"), B_, 2, "with mask None dx matches the reference on a 3-D input",
          inputs=_eval_backward_inputs((2, 3, 4), 0.3), expected=_expect_reference_backward, call=_backward_call,
          compare=close(TOL), hidden=True, cell=_id(B_, "eval")),
    # vanilla_dropout_forward: 15 points
    _vanilla_train_check(_id(V_, "train"), 4,
                         "in training out is x where the mask is True and 0 elsewhere; 1 - p of the units are kept",
                         (400, 500), 0.3, seed=8),
    _vanilla_train_check(_id(V_, "train_hidden"), 2, "training on a 3-D input (p = 0.6)",
                         (100, 20, 50), 0.6, hidden=True, cell=_id(V_, "train")),
    Check(_id(V_, "eval_scaling"), V_, 3, "in evaluation mode out is (1 - p) x and the mask is None (a (2, 5, 6) input)",
          inputs=_forward_inputs((2, 5, 6), 0.25, training=False), expected=_expect_scaled_input, call=_van,
          compare=close(TOL), seed=9),
    Check(_id(V_, "eval_scaling_hidden"), V_, 2, "evaluation mode on a 3-D input (p = 0.6)",
          inputs=_forward_inputs((3, 4, 5), 0.6, training=False), expected=_expect_reference_eval(V_),
          call=_van, compare=close(TOL), hidden=True, cell=_id(V_, "eval_scaling")),
    _gap_check(_id(V_, "expectations_match"), 2,
               "the mean training output over 20,000 draws matches the test output (p = 0.5)",
               6, 20_000, 0.5, seed=10),
    _gap_check(_id(V_, "expectations_match_hidden"), 2, "training and test expectations match (p = 0.2)",
               5, 30_000, 0.2, hidden=True, cell=_id(V_, "expectations_match")),
    # gaussian_dropout_forward: 18 points
    _moments_check(_id(G_, "moments"), G_, 5,
                   "out = x * noise; over 25,000 draws out / x has mean 1 and variance p / (1 - p) (p = 0.75)",
                   8, 25_000, 0.75, seed=11),
    _moments_check(_id(G_, "moments_hidden"), G_, 3, "mean 1 and variance p / (1 - p) over the draws (p = 0.7)",
                   6, 30_000, 0.7, hidden=True, cell=_id(G_, "moments")),
    _one_sigma_check(_id(G_, "normal"), 3,
                     "the noise is normal: 68.3 % of out / x lies within one standard deviation of its mean",
                     (400, 500), 0.2, seed=12),
    _one_sigma_check(_id(G_, "normal_hidden"), 2, "the noise is normal (p = 0.6)",
                     (200, 1000), 0.6, hidden=True, cell=_id(G_, "normal")),
    Check(_id(G_, "identity"), G_, 2, "in evaluation mode out is x and the noise is None",
          inputs=_forward_inputs((6, 7), 0.4, training=False), expected=_expect_torch_eval, call=_gau,
          compare=close(TOL), seed=13),
    Check(_id(G_, "p_zero"), G_, 1, "p = 0 in training: the noise is 1 and out is x exactly",
          inputs=_forward_inputs((5, 8), 0.0), expected=_expect_input_and_unit_noise, call=_gau,
          derive=_exact_identity, compare=close(TOL), seed=14),
    Check(_id(G_, "identity_hidden"), G_, 2, "p = 0 in training: the noise is 1 and out is x",
          inputs=_forward_inputs((4, 9), 0.0), expected=_expect_input_and_unit_noise, call=_gau,
          derive=_exact_identity, compare=close(TOL), hidden=True, cell=_id(G_, "identity")),
]


# ---------------------------------------------------------------- kinds of input
def input_kinds(function: str, inputs: dict) -> set[str]:
    """The kinds of input a check of ``function`` uses, read off its inputs."""
    backward = function == "dropout_backward"
    kinds = array_kinds(inputs["dout"], "dout") if backward else array_kinds(inputs["x"])
    p = inputs["p"]
    kinds.add("p = 0" if p == 0 else ("p of 0.7 or more (most units dropped)" if p >= 0.7 else "0 < p < 0.7"))
    if "training" in inputs:
        kinds.add("training mode" if inputs["training"] else "evaluation mode")
    if "mask" in inputs:
        kinds.add("mask None (evaluation mode)" if inputs["mask"] is None else "a boolean mask")
    rng = inputs.get("rng")
    if "rng" in inputs:
        kinds.add("rng None" if rng is None else ("rng an int seed" if isinstance(rng, (int, np.integer))
                                                   else "rng a Generator"))
    return kinds


def describe_input(function: str, inputs: dict) -> str:
    """The input in plain words, e.g. "a (4, 5, 6) input, p = 0.75, training mode"."""
    backward = function == "dropout_backward"
    arr = inputs["dout"] if backward else inputs["x"]
    words = [f"a {tuple(arr.shape)} {'dout' if backward else 'input'}", f"p = {inputs['p']:g}"]
    if "training" in inputs:
        words.append("training mode" if inputs["training"] else "evaluation mode")
    if "mask" in inputs and inputs["mask"] is None:
        words.append("mask None")
    return ", ".join(words)


CHECKS = describing(CHECKS, describe_input)
