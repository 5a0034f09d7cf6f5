"""Graded checks of the ``variance_shift`` exercise: shift ratios, Uout, Monte Carlo, BN metric.

Released to students as ``coursechecks/variance_shift.py``. Visible checks compare with
values this file derives itself: Monte Carlo estimates drawn with PyTorch (``F.dropout``
and torch's uniform sampler as the noise layers) within a bound of several standard
errors, exact ratios of deterministic noise layers, distribution tests of the noise a
student's layer draws, and the BN metric computed from ``torch.var`` of each BN layer's
input. Hidden checks import the reference from ``solutions`` inside ``expected``; students
do not have it, and their grading seeds come from the grader.

Random functions are never compared with the reference's random stream: a correct answer
may draw its random numbers in any order. Their checks test properties (the distribution
of the noise, reproducibility from a seed, the same sample in both modes) or compare with
a Monte Carlo bound.
"""
from __future__ import annotations

import contextlib
import copy
import functools

import numpy as np

from .core import Check, CheckFailure, array_kinds, close, describing

CHAPTER = "variance_shift"
TOL = 1e-9  # closed forms in float64: a correct answer lands near 1e-15, the bugs above 1e-3
SIGMAS = 6.0  # Monte Carlo bounds in standard errors: a false failure has odds below 1e-8
KS_SCALE = 3.0  # Kolmogorov-Smirnov bound KS_SCALE / sqrt(n): P(false failure) ~ 2 exp(-18)
N_MC = 400_000  # draws per Monte Carlo estimate made by a check


def _torch():
    import torch

    return torch


@contextlib.contextmanager
def _one_thread():
    """Run torch on one thread: the models here are tiny, and on a busy machine the thread
    pool costs far more than it saves. The caller's setting is restored."""
    torch = _torch()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _single_threaded(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _one_thread():
            return fn(*args, **kwargs)

    return wrapper


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def _torch_generator(seed: int):
    torch = _torch()
    return torch.Generator().manual_seed(int(seed))


def _normal_sample(n: int, mean: float, var: float, seed: int):
    """``n`` draws of N(mean, var) as a float64 tensor (torch's sampler, seeded)."""
    torch = _torch()
    z = torch.randn(n, generator=_torch_generator(seed), dtype=torch.float64)
    return mean + float(np.sqrt(var)) * z


def _torch_dropout(x, p: float, seed: int):
    """``F.dropout(x, p, training=True)`` with its own seed; torch's global RNG is left as it was."""
    torch = _torch()
    import torch.nn.functional as F

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return F.dropout(x, p=float(p), training=True)


def _torch_uout(x, beta: float, seed: int):
    noise = _torch().empty_like(x).uniform_(-float(beta), float(beta), generator=_torch_generator(seed))
    return x * (1.0 + noise)


def _ratio_to_true_variance(train_out, var: float) -> tuple[float, float]:
    """``var / var(train_out)`` and its standard error (delta method on the sample variance)."""
    s = np.asarray(train_out, dtype=np.float64)
    sq = (s - s.mean()) ** 2
    s2 = sq.mean()
    ratio = var / s2
    return float(ratio), float(ratio * sq.std() / (s2 * np.sqrt(s.size)))


def _call(names: tuple[str, ...], output: str = "the ratio"):
    """Call the student's function with the named inputs only (other keys belong to the check)."""

    def call(fn, inputs: dict) -> dict:
        return {output: fn(**{k: inputs[k] for k in names})}

    return call


def _within_bound(label: str):
    """Compare outputs with ``(estimate, bound)`` pairs: pass when ``|got - estimate| <= bound``."""

    def compare(actual: dict, expected: dict) -> None:
        for name, (estimate, bound) in expected.items():
            got = actual[name]
            estimate, bound = np.asarray(estimate, dtype=np.float64), np.asarray(bound, dtype=np.float64)
            if got.shape != estimate.shape:
                raise CheckFailure(f"{name} has shape {got.shape}, expected {estimate.shape}")
            excess = np.abs(got - estimate) - bound
            if np.all(excess <= 0):
                continue
            idx = np.unravel_index(int(np.argmax(excess)), got.shape)
            where = f" at index {tuple(int(i) for i in idx)}" if got.ndim else ""
            raise CheckFailure(
                f"{name} is wrong{where}: it differs from {label} by more than the allowed "
                f"{SIGMAS:g} standard errors",
                detail=f"got {float(got[idx]):.6g}, expected {float(estimate[idx]):.6g} "
                       f"+- {float(bound[idx]):.2g}",
            )

    return compare


# ----------------------------------------------------------------- dropout_variance_shift


def _dropout_ratio_inputs(p, mean: float, var: float):
    def make(rng: np.random.Generator) -> dict:
        return {"p": p, "mean": mean, "var": var, "mc_seed": _seed(rng)}

    return make


def _random_dropout_ratio_inputs(size: int, zero_mean: bool):
    def make(rng: np.random.Generator) -> dict:
        mean = 0.0 if zero_mean else float(rng.choice([-1, 1]) * rng.uniform(0.5, 2.5))
        return {"p": np.sort(rng.uniform(0.0, 0.9, size)), "mean": mean, "var": float(rng.uniform(0.3, 3.0))}

    return make


@_single_threaded
def _expect_dropout_monte_carlo(inputs: dict) -> dict:
    """Per drop probability: ``var / var(F.dropout(x))`` over N_MC draws of x ~ N(mean, var)."""
    p = np.asarray(inputs["p"], dtype=np.float64)
    ratios, bounds = np.empty(p.shape), np.empty(p.shape)
    for i, pi in enumerate(p.reshape(-1)):
        x = _normal_sample(N_MC, inputs["mean"], inputs["var"], inputs["mc_seed"] + 2 * i)
        out = _torch_dropout(x, pi, inputs["mc_seed"] + 2 * i + 1).numpy()
        ratio, se = _ratio_to_true_variance(out, inputs["var"])
        ratios.reshape(-1)[i], bounds.reshape(-1)[i] = ratio, SIGMAS * se
    return {"the ratio": (ratios, bounds)}


def _expect_reference_dropout(inputs: dict) -> dict:
    from solutions.variance_shift import dropout_variance_shift

    return {"the ratio": dropout_variance_shift(inputs["p"], inputs["mean"], inputs["var"])}


_ratio_call = _call(("p", "mean", "var"))
_mc_compare = _within_bound(f"a Monte Carlo estimate with PyTorch ({N_MC:,} draws per value)")


# ----------------------------------------------------------------- uout_variance_shift


def _uout_ratio_inputs(beta, mean: float, var: float):
    def make(rng: np.random.Generator) -> dict:
        return {"beta": beta, "mean": mean, "var": var, "mc_seed": _seed(rng)}

    return make


def _random_uout_ratio_inputs(size: int, zero_mean: bool):
    def make(rng: np.random.Generator) -> dict:
        mean = 0.0 if zero_mean else float(rng.choice([-1, 1]) * rng.uniform(0.5, 2.5))
        return {"beta": np.sort(rng.uniform(0.2, 2.0, size)), "mean": mean, "var": float(rng.uniform(0.3, 3.0))}

    return make


@_single_threaded
def _expect_uout_monte_carlo(inputs: dict) -> dict:
    """Per half-width: ``var / var(x + x r)``, r ~ U(-beta, beta), over N_MC draws."""
    beta = np.asarray(inputs["beta"], dtype=np.float64)
    ratios, bounds = np.empty(beta.shape), np.empty(beta.shape)
    for i, b in enumerate(beta.reshape(-1)):
        x = _normal_sample(N_MC, inputs["mean"], inputs["var"], inputs["mc_seed"] + 2 * i)
        out = _torch_uout(x, b, inputs["mc_seed"] + 2 * i + 1).numpy()
        ratio, se = _ratio_to_true_variance(out, inputs["var"])
        ratios.reshape(-1)[i], bounds.reshape(-1)[i] = ratio, SIGMAS * se
    return {"the ratio": (ratios, bounds)}


def _expect_reference_uout(inputs: dict) -> dict:
    from solutions.variance_shift import uout_variance_shift

    return {"the ratio": uout_variance_shift(inputs["beta"], inputs["mean"], inputs["var"])}


_uout_ratio_call = _call(("beta", "mean", "var"))


# ----------------------------------------------------------------- uout_forward


def _away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values with |x| in [0.5, 2] and random signs, so the noise r = out / x - 1 is well defined."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 2.0, size=shape)


def _uout_inputs(shape: tuple[int, ...], beta: float, training: bool, int_seed: bool = False):
    def make(rng: np.random.Generator) -> dict:
        x = _away_from_zero(rng, shape)
        seed = _seed(rng)
        return {"x": x, "beta": beta, "training": training,
                "rng": seed if int_seed else np.random.default_rng(seed)}

    return make


_uout_call = _call(("x", "beta", "training", "rng"), output="out")


def _expect_input_unchanged(inputs: dict) -> dict:
    return {"out": np.asarray(inputs["x"])}


def _ks_to_uniform(outputs: dict, inputs: dict) -> dict:
    """The noise r = out / x - 1 that the layer drew, tested against U(-beta, beta)."""
    out, x, beta = outputs["out"], np.asarray(inputs["x"]), float(inputs["beta"])
    if out.shape != x.shape:
        raise CheckFailure(f"out has shape {out.shape}, expected {x.shape}")
    r = out / x - 1.0
    worst = float(np.max(np.abs(r)))
    if worst > beta * (1 + 1e-9) + 1e-12:
        raise CheckFailure(
            f"the noise r = out / x - 1 must lie in [-beta, beta] = [{-beta:g}, {beta:g}], "
            f"but one |r| is {worst:.4g}"
        )
    u = np.sort((r.reshape(-1) + beta) / (2.0 * beta))  # U(0, 1) if r ~ U(-beta, beta)
    n = u.size
    grid = np.arange(1, n + 1) / n
    ks = float(max(np.max(grid - u), np.max(u - (grid - 1.0 / n))))
    return {"ks": ks, "n": n}


def _nothing_expected(inputs: dict) -> dict:
    return {}


def _compare_ks(actual: dict, expected: dict) -> None:
    ks, n = actual["ks"], actual["n"]
    bound = KS_SCALE / np.sqrt(n)
    if ks > bound:
        raise CheckFailure(
            f"the noise r = out / x - 1 is not distributed as U(-beta, beta): its empirical "
            f"distribution function is {ks:.3f} away from the uniform one "
            f"(Kolmogorov-Smirnov statistic over {n} values; allowed {bound:.3f})"
        )


def _reproducible_inputs(shape: tuple[int, ...], beta: float):
    def make(rng: np.random.Generator) -> dict:
        return {"x": _away_from_zero(rng, shape), "beta": beta, "seed": int(rng.integers(1000))}

    return make


def _reproducible_call(fn, inputs: dict) -> dict:
    x, beta, seed = inputs["x"], inputs["beta"], inputs["seed"]
    return {
        "first": fn(x, beta, training=True, rng=seed),
        "again": fn(x, beta, training=True, rng=seed),
        "other": fn(x, beta, training=True, rng=seed + 1),
        "default": fn(x, beta, training=True),
    }


def _reproducibility(outputs: dict, inputs: dict) -> dict:
    seed, shape = inputs["seed"], np.shape(inputs["x"])
    for name, out in outputs.items():
        if out.shape != shape:
            raise CheckFailure(f"out has shape {out.shape} (call with rng={name}), expected {shape}")
    if not np.array_equal(outputs["first"], outputs["again"]):
        raise CheckFailure(
            f"two calls with rng={seed} returned different outputs: draw the noise from the "
            "generator made from rng, not from numpy's global state"
        )
    if np.array_equal(outputs["first"], outputs["other"]):
        raise CheckFailure(f"the calls with rng={seed} and rng={seed + 1} returned the same output")
    return {}


def _no_comparison(actual: dict, expected: dict) -> None:
    return None


# ----------------------------------------------------------------- simulate_variance_shift


class AffineNoise:
    """A deterministic "noise" layer: ``a x + b`` in training, ``e x + d`` in evaluation.

    Its exact ratio Var_test / Var_train on any sample is ``e^2 / a^2``; an estimate that
    feeds the same x to both modes reproduces it to rounding error.
    """

    def __init__(self, a: float, b: float, e: float, d: float):
        self.a, self.b, self.e, self.d = a, b, e, d

    def __call__(self, x, training=True, rng=None):
        x = np.asarray(x, dtype=np.float64)
        return self.a * x + self.b if training else self.e * x + self.d


class RecordingNoise:
    """Records the input and the ``rng`` of its last call in each mode; doubles x in training."""

    def __init__(self):
        self.seen = {}

    def __call__(self, x, training=True, rng=None):
        x = np.array(x, dtype=np.float64, copy=True)
        self.seen[bool(training)] = (x, rng)
        return 2.0 * x if training else x


class TorchDropout:
    """``F.dropout(p)`` as a noise layer that returns ``(out, keep_mask)`` like ``dropout_forward``.

    It seeds torch from the ``rng`` it is given (torch's global RNG is left as it was).
    """

    def __init__(self, p: float):
        self.p = p

    def __call__(self, x, training=True, rng=None):
        torch = _torch()
        x = np.asarray(x, dtype=np.float64)
        if not training:
            return x.copy(), None
        seed = _seed(rng) if isinstance(rng, np.random.Generator) else 0
        out = _torch_dropout(torch.from_numpy(x.copy()), self.p, seed).numpy()
        return out, out != 0


_simulate_call = _call(("noise_fn", "mean", "var", "n", "rng"))


def _affine_inputs(n: int, int_seed: bool = False):
    def make(rng: np.random.Generator) -> dict:
        a, e = rng.uniform(1.3, 3.0) * rng.choice([-1, 1]), rng.uniform(0.4, 1.2)
        noise = AffineNoise(float(a), float(rng.normal()), float(e), float(rng.normal()))
        seed = _seed(rng)
        return {"noise_fn": noise, "mean": float(rng.uniform(-2, 2)), "var": float(rng.uniform(0.5, 3.0)),
                "n": n, "rng": seed if int_seed else np.random.default_rng(seed)}

    return make


def _expect_affine_ratio(inputs: dict) -> dict:
    noise = inputs["noise_fn"]
    return {"the ratio": noise.e**2 / noise.a**2}


def _recording_inputs(mean: float, var: float, n: int):
    def make(rng: np.random.Generator) -> dict:
        return {"noise_fn": RecordingNoise(), "mean": mean, "var": var, "n": n,
                "rng": np.random.default_rng(_seed(rng))}

    return make


def _recording_call(fn, inputs: dict) -> dict:
    _simulate_call(fn, inputs)
    seen = inputs["noise_fn"].seen  # the copy the student's function used
    for flag, mode in ((True, "training=True"), (False, "training=False")):
        if flag not in seen:
            raise CheckFailure(f"noise_fn was never called with {mode}")
    return {
        "x in training mode": seen[True][0],
        "x in evaluation mode": seen[False][0],
        "generator passed on": float(all(isinstance(seen[f][1], np.random.Generator) for f in seen)),
    }


def _drawn_x(outputs: dict, inputs: dict) -> dict:
    n = inputs["n"]
    x_train, x_eval = outputs["x in training mode"], outputs["x in evaluation mode"]
    for name, x in (("training", x_train), ("evaluation", x_eval)):
        if x.shape != (n,):
            raise CheckFailure(f"noise_fn got x of shape {x.shape} in {name} mode, expected ({n},)")
    if not np.array_equal(x_train, x_eval):
        raise CheckFailure(
            "noise_fn got a different x in training and in evaluation mode: draw x once and "
            "pass the same sample through both modes"
        )
    if outputs["generator passed on"] != 1.0:
        raise CheckFailure("noise_fn was not given a numpy Generator as rng=")
    return {"the mean of x": x_train.mean(), "the variance of x": x_train.var()}


def _expect_drawn_x(inputs: dict) -> dict:
    n, mean, var = inputs["n"], inputs["mean"], inputs["var"]
    return {"the mean of x": (mean, SIGMAS * np.sqrt(var / n)),
            "the variance of x": (var, SIGMAS * var * np.sqrt(2.0 / n))}


def _dropout_noise_inputs(p: float, mean: float, var: float, n: int):
    def make(rng: np.random.Generator) -> dict:
        return {"noise_fn": TorchDropout(p), "mean": mean, "var": var, "n": n,
                "rng": np.random.default_rng(_seed(rng)), "mc_seed": _seed(rng)}

    return make


@_single_threaded
def _simulation_error(inputs: dict) -> tuple[float, float, float]:
    """An independent estimate ``var / var(F.dropout(x))`` over N_MC draws, its standard
    error, and the standard error of a same-x estimate from ``n`` draws (delta method, from
    the same sample)."""
    noise, mean, var, seed = inputs["noise_fn"], inputs["mean"], inputs["var"], inputs["mc_seed"]
    x = _normal_sample(N_MC, mean, var, seed)
    out = _torch_dropout(x, noise.p, seed + 1).numpy()
    x = x.numpy()
    ratio, se_check = _ratio_to_true_variance(out, var)
    influence = (x - x.mean()) ** 2 / x.var() - (out - out.mean()) ** 2 / out.var()
    se_student = ratio * influence.std() / np.sqrt(inputs["n"])
    return ratio, se_check, float(se_student)


def _expect_dropout_simulation(inputs: dict) -> dict:
    ratio, se_check, se_student = _simulation_error(inputs)
    return {"the ratio": (ratio, SIGMAS * np.hypot(se_check, se_student))}


def _expect_reference_dropout_simulation(inputs: dict) -> dict:
    from solutions.variance_shift import dropout_variance_shift

    noise = inputs["noise_fn"]
    _, _, se_student = _simulation_error(inputs)
    return {"the ratio": (dropout_variance_shift(noise.p, inputs["mean"], inputs["var"]), SIGMAS * se_student)}


# ----------------------------------------------------------------- bn_variance_shift


def _bn_layers(model):
    bn_type = _torch().nn.modules.batchnorm._BatchNorm  # BatchNorm1d, 2d and 3d
    return [(i, m) for i, m in enumerate(model) if isinstance(m, bn_type)]


def _bn_inputs(model, batches):
    """Per BN layer of a Sequential: its input over all batches, with the model in eval mode."""
    torch = _torch()
    model = copy.deepcopy(model).eval()
    xs = [b[0] if isinstance(b, (tuple, list)) else b for b in batches]
    with torch.set_grad_enabled(False):
        return [(bn, torch.cat([model[:i](x) for x in xs])) for i, bn in _bn_layers(model)]


def _channel_var(x):
    return x.var(dim=[0] + list(range(2, x.ndim)))  # unbiased, per channel


def _set_running_stats(model, batches, rng: np.random.Generator) -> None:
    """Running statistics that differ from the eval-mode input statistics in both directions:
    per channel the running variance is the real one times a factor in [1.4, 2.7] or its
    inverse (half the channels each way), and the running mean is off by a little."""
    torch = _torch()
    for k, (i, bn) in enumerate(_bn_layers(model)):
        _, x = _bn_inputs(model, batches)[k]
        c = x.shape[1]
        real = _channel_var(x).numpy()
        signs = rng.permutation(np.resize([1.0, -1.0], c))
        factors = np.exp(signs * rng.uniform(0.35, 1.0, c))
        mean = x.mean(dim=[0] + list(range(2, x.ndim))).numpy() + 0.1 * rng.normal(size=c)
        bn.running_var.copy_(torch.from_numpy(real * factors))  # buffers: no autograd involved
        bn.running_mean.copy_(torch.from_numpy(mean))


def _mlp(rng: np.random.Generator, widths: tuple[int, ...], n_batches: int, batch: int):
    """Blocks ``Linear -> Dropout -> BatchNorm1d -> ReLU``; the last block has no ReLU."""
    torch = _torch()
    nn = torch.nn
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(rng))  # the weights are drawn when the layers are made
        layers = []
        for d_in, d_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(d_in, d_out), nn.Dropout(0.3), nn.BatchNorm1d(d_out), nn.ReLU()]
        model = nn.Sequential(*layers[:-1]).double()
    batches = [torch.from_numpy(rng.normal(size=(batch, widths[0]))) for _ in range(n_batches)]
    return model, batches


def _cnn(rng: np.random.Generator, channels: tuple[int, ...], n_batches: int, batch: int, size: int):
    """``Conv2d(3x3, padding 1) -> Dropout -> BatchNorm2d -> ReLU -> Conv2d(3x3) -> BatchNorm2d``;
    the batches are ``(image, label)`` pairs, like a DataLoader's."""
    torch = _torch()
    nn = torch.nn
    c0, c1, c2 = channels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(rng))
        model = nn.Sequential(
            nn.Conv2d(c0, c1, 3, padding=1), nn.Dropout(0.2), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3), nn.BatchNorm2d(c2),
        ).double()
    batches = [(torch.from_numpy(rng.normal(size=(batch, c0, size, size))),
                torch.from_numpy(rng.integers(0, 10, size=batch))) for _ in range(n_batches)]
    return model, batches


def _model_inputs(kind: str, mixed_modes: bool = False, **shape):
    """A model in training mode (optionally with its first Dropout in eval mode) whose BN
    layers carry running statistics, and the batches to measure on."""

    @_single_threaded
    def make(rng: np.random.Generator) -> dict:
        model, batches = (_mlp if kind == "mlp" else _cnn)(rng, **shape)
        _set_running_stats(model, batches, rng)
        model.train()
        if mixed_modes:
            model[1].eval()
        return {"model": model, "batches": batches}

    return make


@_single_threaded
def _expect_torch_shift(inputs: dict) -> dict:
    """Per BN layer: the channel mean of max(real / running, running / real), real_var from
    ``torch.var`` of the layer's eval-mode input over all batches."""
    torch = _torch()
    shifts = []
    for bn, x in _bn_inputs(inputs["model"], inputs["batches"]):
        real, running = _channel_var(x), bn.running_var
        shifts.append(torch.maximum(real / running, running / real).mean().item())
    return {"shift per BN layer": np.array(shifts)}


@_single_threaded
def _expect_reference_shift(inputs: dict) -> dict:
    from solutions.variance_shift import bn_variance_shift

    return {"shift per BN layer": np.array(bn_variance_shift(inputs["model"], inputs["batches"]))}


_bn_call = _single_threaded(_call(("model", "batches"), output="shift per BN layer"))


def _model_state(model) -> dict:
    stats = [t.detach().numpy().reshape(-1) for _, bn in _bn_layers(model) for t in (bn.running_mean, bn.running_var)]
    return {
        "running statistics": np.concatenate(stats),
        "training flags": np.array([float(m.training) for m in model.modules()]),
    }


@_single_threaded
def _state_call(fn, inputs: dict) -> dict:
    fn(inputs["model"], inputs["batches"])
    return _model_state(inputs["model"])  # the copy the student's function received


def _expect_state_unchanged(inputs: dict) -> dict:
    model = inputs["model"]
    names = [f"module {name!r} ({type(m).__name__})" if name else "the model itself" for name, m in model.named_modules()]
    return {**_model_state(model), "module names": names}


def _compare_state(actual: dict, expected: dict) -> None:
    stats, want = actual["running statistics"], expected["running statistics"]
    if stats.shape != want.shape or not np.array_equal(stats, want):
        raise CheckFailure(
            "the call changed the running statistics of the BN layers: measure with the model "
            "in eval mode, where BN neither uses batch statistics nor updates its running ones"
        )
    flags, want = actual["training flags"], expected["training flags"]
    if flags.shape != want.shape:
        raise CheckFailure("the model's modules changed during the call")
    for name, got, was in zip(expected["module names"], flags, want):
        if got != was:
            raise CheckFailure(
                f"{name} was left with training={bool(got)}, but it had "
                f"training={bool(was)} before the call: restore every module's own flag"
            )


D_ = "dropout_variance_shift"
U_ = "uout_variance_shift"
F_ = "uout_forward"
S_ = "simulate_variance_shift"
B_ = "bn_variance_shift"
_id = lambda function, name: f"{CHAPTER}_{function}_{name}"  # noqa: E731

CHECKS = [
    # dropout_variance_shift: 16 points
    Check(_id(D_, "zero_mean"), D_, 5,
          "a zero-mean neuron (var 2): matches a Monte Carlo estimate with F.dropout for p = 0.1, 0.25, 0.5, 0.7",
          inputs=_dropout_ratio_inputs(np.array([0.1, 0.25, 0.5, 0.7]), 0.0, 2.0),
          expected=_expect_dropout_monte_carlo, call=_ratio_call, compare=_mc_compare, seed=1),
    Check(_id(D_, "zero_mean_hidden"), D_, 3, "a zero-mean neuron: matches the reference for other p and var",
          inputs=_random_dropout_ratio_inputs(6, zero_mean=True), expected=_expect_reference_dropout,
          call=_ratio_call, compare=close(TOL), hidden=True, cell=_id(D_, "zero_mean")),
    Check(_id(D_, "nonzero_mean"), D_, 5,
          "a neuron with mean 1.5 and variance 0.8, p = 0.3: matches a Monte Carlo estimate with F.dropout",
          inputs=_dropout_ratio_inputs(0.3, 1.5, 0.8),
          expected=_expect_dropout_monte_carlo, call=_ratio_call, compare=_mc_compare, seed=2),
    Check(_id(D_, "nonzero_mean_hidden"), D_, 3, "a neuron with another non-zero mean: matches the reference",
          inputs=_random_dropout_ratio_inputs(5, zero_mean=False), expected=_expect_reference_dropout,
          call=_ratio_call, compare=close(TOL), hidden=True, cell=_id(D_, "nonzero_mean")),
    # uout_forward: 14 points
    Check(_id(F_, "eval_identity"), F_, 3, "with training=False the output equals a (3, 2, 5, 4) x (beta = 1.2)",
          inputs=_uout_inputs((3, 2, 5, 4), 1.2, training=False), expected=_expect_input_unchanged,
          call=_uout_call, compare=close(TOL), seed=3),
    Check(_id(F_, "eval_identity_hidden"), F_, 1, "with training=False the output equals a 4-D x",
          inputs=_uout_inputs((2, 3, 4, 5), 1.3, training=False, int_seed=True), expected=_expect_input_unchanged,
          call=_uout_call, compare=close(TOL), hidden=True, cell=_id(F_, "eval_identity")),
    Check(_id(F_, "uniform_noise"), F_, 5,
          "in training, r = out / x - 1 is distributed as U(-beta, beta) on a (200, 100) input, beta = 0.3",
          inputs=_uout_inputs((200, 100), 0.3, training=True), expected=_nothing_expected,
          call=_uout_call, derive=_ks_to_uniform, compare=_compare_ks, seed=4),
    Check(_id(F_, "uniform_noise_hidden"), F_, 3, "r is distributed as U(-beta, beta) for a 4-D input, beta > 1",
          inputs=_uout_inputs((3, 4, 20, 20), 1.7, training=True, int_seed=True), expected=_nothing_expected,
          call=_uout_call, derive=_ks_to_uniform, compare=_compare_ks, hidden=True, cell=_id(F_, "uniform_noise")),
    Check(_id(F_, "reproducible"), F_, 2,
          "the same int seed gives the same output, another seed another output, and rng=None works",
          inputs=_reproducible_inputs((30, 20), 0.5), expected=_nothing_expected, call=_reproducible_call,
          derive=_reproducibility, compare=_no_comparison, seed=5),
    # uout_variance_shift: 12 points
    Check(_id(U_, "zero_mean"), U_, 4,
          "a zero-mean neuron: matches a Monte Carlo estimate of x + x r for beta = 0.3, 0.8, 1.5",
          inputs=_uout_ratio_inputs(np.array([0.3, 0.8, 1.5]), 0.0, 1.0),
          expected=_expect_uout_monte_carlo, call=_uout_ratio_call, compare=_mc_compare, seed=6),
    Check(_id(U_, "zero_mean_hidden"), U_, 2, "a zero-mean neuron: matches the reference for other beta and var",
          inputs=_random_uout_ratio_inputs(5, zero_mean=True), expected=_expect_reference_uout,
          call=_uout_ratio_call, compare=close(TOL), hidden=True, cell=_id(U_, "zero_mean")),
    Check(_id(U_, "nonzero_mean"), U_, 4,
          "a neuron with mean -1.2 and variance 0.5, beta = 0.9: matches a Monte Carlo estimate",
          inputs=_uout_ratio_inputs(0.9, -1.2, 0.5),
          expected=_expect_uout_monte_carlo, call=_uout_ratio_call, compare=_mc_compare, seed=7),
    Check(_id(U_, "nonzero_mean_hidden"), U_, 2, "a neuron with another non-zero mean: matches the reference",
          inputs=_random_uout_ratio_inputs(4, zero_mean=False), expected=_expect_reference_uout,
          call=_uout_ratio_call, compare=close(TOL), hidden=True, cell=_id(U_, "nonzero_mean")),
    # simulate_variance_shift: 18 points
    Check(_id(S_, "exact_ratio"), S_, 6,
          "a deterministic layer (a x + b in training, e x + d in evaluation): the estimate is e^2 / a^2 exactly (rng an int seed)",
          inputs=_affine_inputs(10_000, int_seed=True), expected=_expect_affine_ratio, call=_simulate_call,
          compare=close(TOL), seed=8),
    Check(_id(S_, "exact_ratio_hidden"), S_, 3, "another deterministic layer, rng given as an int seed",
          inputs=_affine_inputs(5_000, int_seed=True), expected=_expect_affine_ratio, call=_simulate_call,
          compare=close(TOL), hidden=True, cell=_id(S_, "exact_ratio")),
    Check(_id(S_, "input_draw"), S_, 4,
          "noise_fn gets the same x ~ N(-1.5, 4) of size n in both modes, and the generator",
          inputs=_recording_inputs(-1.5, 4.0, 50_000), expected=_expect_drawn_x, call=_recording_call,
          derive=_drawn_x, compare=_within_bound("the requested value"), seed=9),
    Check(_id(S_, "input_draw_hidden"), S_, 2, "the same x ~ N(2.5, 0.3) in both modes",
          inputs=_recording_inputs(2.5, 0.3, 40_000), expected=_expect_drawn_x, call=_recording_call,
          derive=_drawn_x, compare=_within_bound("the requested value"), hidden=True, cell=_id(S_, "input_draw")),
    Check(_id(S_, "dropout_noise"), S_, 2,
          "F.dropout(p=0.4) returning (out, mask), mean 0.7, var 0.5, n = 200,000: agrees with an independent estimate",
          inputs=_dropout_noise_inputs(0.4, 0.7, 0.5, 200_000), expected=_expect_dropout_simulation,
          call=_simulate_call, compare=_within_bound("an independent Monte Carlo estimate"), seed=10),
    Check(_id(S_, "dropout_noise_hidden"), S_, 1, "F.dropout(p=0.25), another neuron: agrees with the exact ratio",
          inputs=_dropout_noise_inputs(0.25, -1.0, 0.6, 200_000), expected=_expect_reference_dropout_simulation,
          call=_simulate_call, compare=_within_bound("the exact ratio"), hidden=True,
          cell=_id(S_, "dropout_noise")),
    # bn_variance_shift: 20 points
    Check(_id(B_, "mlp"), B_, 6,
          "an MLP (Linear -> Dropout -> BatchNorm1d) x 3 in training mode: matches torch.var of each BN input",
          inputs=_model_inputs("mlp", widths=(6, 8, 5, 4), n_batches=3, batch=7), expected=_expect_torch_shift,
          call=_bn_call, compare=close(TOL), seed=11),
    Check(_id(B_, "mlp_hidden"), B_, 3, "a deeper MLP: matches the reference",
          inputs=_model_inputs("mlp", widths=(5, 9, 4, 6), n_batches=4, batch=6), expected=_expect_reference_shift,
          call=_bn_call, compare=close(TOL), hidden=True, cell=_id(B_, "mlp")),
    Check(_id(B_, "cnn"), B_, 4,
          "a CNN with BatchNorm2d, batches of (image, label) pairs: matches torch.var of each BN input",
          inputs=_model_inputs("cnn", channels=(2, 3, 4), n_batches=2, batch=3, size=5),
          expected=_expect_torch_shift, call=_bn_call, compare=close(TOL), seed=12),
    Check(_id(B_, "cnn_hidden"), B_, 2, "another CNN: matches the reference",
          inputs=_model_inputs("cnn", channels=(3, 2, 5), n_batches=3, batch=2, size=6),
          expected=_expect_reference_shift, call=_bn_call, compare=close(TOL), hidden=True, cell=_id(B_, "cnn")),
    Check(_id(B_, "leaves_model_unchanged"), B_, 3,
          "the running statistics are untouched and every module's training flag is restored",
          inputs=_model_inputs("mlp", mixed_modes=True, widths=(4, 6, 3), n_batches=2, batch=5),
          expected=_expect_state_unchanged, call=_state_call, compare=_compare_state, seed=13),
    Check(_id(B_, "leaves_model_unchanged_hidden"), B_, 2, "the same for a CNN",
          inputs=_model_inputs("cnn", mixed_modes=True, channels=(2, 4, 3), n_batches=2, batch=2, size=5),
          expected=_expect_state_unchanged, call=_state_call, compare=_compare_state, hidden=True,
          cell=_id(B_, "leaves_model_unchanged")),
]


# ---------------------------------------------------------------- kinds of input
def _rng_kind(inputs: dict) -> str:
    if "seed" in inputs:  # the reproducibility check passes int seeds and None itself
        return "rng an int seed"
    rng = inputs["rng"]
    return "rng None" if rng is None else ("rng an int seed" if isinstance(rng, (int, np.integer)) else "rng a Generator")


def _ratio_kinds(inputs: dict, name: str, large: float, large_words: str) -> set[str]:
    value = np.asarray(inputs[name])
    kinds = {f"{name} an array" if value.ndim else f"{name} a scalar",
             "zero mean" if inputs["mean"] == 0 else "non-zero mean"}
    if np.any(value >= large):
        kinds.add(large_words)
    return kinds


def _model_kinds(model, batches) -> set[str]:
    torch = _torch()
    nn = torch.nn
    mods = list(model.modules())[1:]
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in mods)
    kinds = {"a CNN" if any(isinstance(m, nn.Conv2d) for m in mods) else "an MLP",
             "more than two BN layers" if n_bn > 2 else "one or two BN layers"}
    modes = {m.training for m in [model, *mods]}
    if len(modes) == 2:
        kinds.add("modules in both train and eval mode")
    if isinstance(batches[0], (tuple, list)):
        kinds.add("batches as (input, target) pairs")
    return kinds


def input_kinds(function: str, inputs: dict) -> set[str]:
    """The kinds of input a check of ``function`` uses, read off its inputs."""
    if function == D_:
        return _ratio_kinds(inputs, "p", 0.7, "p of 0.7 or more")
    if function == U_:
        return _ratio_kinds(inputs, "beta", 1.0, "beta of 1 or more")
    if function == F_:
        kinds = array_kinds(inputs["x"]) | {_rng_kind(inputs)}
        kinds.add("beta of 1 or more" if inputs["beta"] >= 1 else "beta below 1")
        if "training" in inputs:
            kinds.add("training mode" if inputs["training"] else "evaluation mode")
        return kinds
    if function == S_:
        return {f"noise_fn a {type(inputs['noise_fn']).__name__}", _rng_kind(inputs),
                "zero mean" if inputs["mean"] == 0 else "non-zero mean"}
    if function == B_:
        return _model_kinds(inputs["model"], inputs["batches"])
    raise KeyError(function)


def describe_input(function: str, inputs: dict) -> str:
    """The input in plain words: shapes, kinds of parameters and model; never values."""
    if function == F_:
        return (f"a {tuple(inputs['x'].shape)} input, beta = {inputs['beta']:g}, "
                + ", ".join(sorted(input_kinds(function, inputs) - array_kinds(inputs["x"]))))
    return ", ".join(sorted(input_kinds(function, inputs)))


CHECKS = describing(CHECKS, describe_input)
