"""Tests for solutions/variance_shift.py: the analytic shift ratios against Monte Carlo, and
the dropout -> BN shift of a small torch network and its repair (REFERENCE_FACTS checks 1, 2, 8).

Monte Carlo tolerances are Z standard errors. The standard error of a ratio of sample
variances is estimated by the delta method from an independent sample: with t the test
outputs and s the training outputs on the same x, log(var(t) / var(s)) has influence
function (t - mean t)^2 / var(t) - (s - mean s)^2 / var(s).
"""
from functools import partial

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from solutions.bn_inference import recalibrate_batchnorm
from solutions.dropout import dropout_forward, gaussian_dropout_forward, vanilla_dropout_forward
from solutions.variance_shift import (
    bn_variance_shift,
    dropout_variance_shift,
    gaussian_dropout_variance_shift,
    simulate_variance_shift,
    uout_forward,
    uout_variance_shift,
)

Z = 5.0
N_MC = 2_000_000


def _ratio_standard_error(noise_fn, mean, var, n, n_pilot=200_000, seed=12345):
    """Delta-method standard error of the variance ratio at sample size ``n``."""
    rng = np.random.default_rng(seed)
    x = mean + np.sqrt(var) * rng.standard_normal(n_pilot)
    outputs = []
    for training in (False, True):
        out = noise_fn(x, training=training, rng=rng)
        outputs.append(out[0] if isinstance(out, tuple) else out)
    t, s = outputs
    psi = (t - t.mean()) ** 2 / t.var() - (s - s.mean()) ** 2 / s.var()
    ratio = t.var() / s.var()
    return ratio * psi.std() / np.sqrt(n)


def _assert_mc_matches(noise_fn, mean, var, expected, n=N_MC, seed=0):
    estimate = simulate_variance_shift(noise_fn, mean, var, n, seed)
    se = _ratio_standard_error(noise_fn, mean, var, n)
    assert abs(estimate - expected) < Z * se, (estimate, expected, se)
    return estimate, se


# --------------------------------------------------------------------------- analytic vs MC

@pytest.mark.parametrize("mean, var, target", [(0.0, 1.0, 0.5), (1.0, 1.0, 1 / 3)])
def test_check_1_dropout_shift(mean, var, target):
    """Dropout(p=0.5) on N(0, 1): 0.5; with c = v = 1: 1/3."""
    assert dropout_variance_shift(0.5, mean, var) == pytest.approx(target, rel=1e-14)
    _assert_mc_matches(partial(dropout_forward, p=0.5), mean, var, target)


@pytest.mark.parametrize("beta, rounded", [(0.1, 0.99668), (0.5, 0.92308)])
def test_check_2_uout_shift(beta, rounded):
    expected = uout_variance_shift(beta)
    assert expected == pytest.approx(3 / (3 + beta ** 2), rel=1e-14)
    assert round(expected, 5) == rounded
    _assert_mc_matches(partial(uout_forward, beta=beta), 0.0, 1.0, expected)


@pytest.mark.parametrize(
    "noise_fn, formula",
    [
        (partial(dropout_forward, p=0.3), partial(dropout_variance_shift, 0.3)),
        (partial(gaussian_dropout_forward, p=0.3), partial(gaussian_dropout_variance_shift, 0.3)),
        (partial(uout_forward, beta=0.4), partial(uout_variance_shift, 0.4)),
    ],
)
@pytest.mark.parametrize("mean, var", [(2.0, 0.5), (-0.7, 3.0)])
def test_formulas_with_non_zero_mean(noise_fn, formula, mean, var):
    expected = formula(mean, var)
    assert expected < 1 - 1e-3  # a real shift, not a trivial ratio
    _assert_mc_matches(noise_fn, mean, var, expected, n=500_000)


def test_the_retain_ratio_convention_bug_is_caught():
    """Plugging p in where the paper's formula wants q = 1 - p gives the wrong shift."""
    mean, var, p = 0.0, 1.0, 0.2
    wrong = var / ((mean ** 2 + var) / p - mean ** 2)
    estimate, se = _assert_mc_matches(partial(dropout_forward, p=p), mean, var,
                                      dropout_variance_shift(p, mean, var), n=500_000)
    assert abs(estimate - wrong) > 100 * Z * se


def test_vanilla_dropout_has_the_same_shift():
    """Scaling by 1 - p at test time instead of 1 / (1 - p) at training time rescales both
    variances by the same factor, so the ratio does not change."""
    _assert_mc_matches(partial(vanilla_dropout_forward, p=0.4), 1.5, 2.0,
                       dropout_variance_shift(0.4, 1.5, 2.0), n=500_000)


def test_gaussian_dropout_has_the_training_variance_of_bernoulli_dropout():
    p = np.linspace(0.0, 0.95, 20)
    for mean, var in [(0.0, 1.0), (1.0, 1.0), (-2.0, 0.3)]:
        assert np.allclose(gaussian_dropout_variance_shift(p, mean, var),
                           dropout_variance_shift(p, mean, var), rtol=1e-13, atol=0)
    # Measured: the training-mode variances of the two layers on the same x agree.
    rng = np.random.default_rng(1)
    x = 1.0 + rng.standard_normal(N_MC)
    bern = dropout_forward(x, 0.5, rng=rng)[0]
    gauss = gaussian_dropout_forward(x, 0.5, rng=rng)[0]
    expected = (1.0 + 1.0) / 0.5 - 1.0  # (c^2 + v) / q - c^2
    for out in (bern, gauss):
        se = np.sqrt(np.var((out - out.mean()) ** 2) / N_MC)  # SE of a sample variance
        assert abs(out.var() - expected) < Z * se


@settings(max_examples=40, deadline=None)
@given(
    p=st.floats(0.0, 0.99), beta=st.floats(0.0, 3.0),
    mean=st.floats(-3.0, 3.0), var=st.floats(1e-2, 1e2),
)
def test_formulas_property(p, beta, mean, var):
    """The REFERENCE_FACTS forms v / ((c^2 + v) / q - c^2) and 3 v / (3 v + beta^2 (c^2 + v));
    every ratio lies in (0, 1] and is largest at c = 0 (a mean only adds training variance)."""
    q = 1 - p
    bernoulli = var / ((mean ** 2 + var) / q - mean ** 2)
    uout = 3 * var / (3 * var + beta ** 2 * (mean ** 2 + var))
    for fn, param, expected in [(dropout_variance_shift, p, bernoulli),
                                (gaussian_dropout_variance_shift, p, bernoulli),
                                (uout_variance_shift, beta, uout)]:
        ratio = fn(param, mean, var)
        assert ratio == pytest.approx(expected, rel=1e-11)
        assert 0 < ratio <= 1
        assert ratio <= fn(param, 0.0, var)
    assert dropout_variance_shift(p, 0.0, var) == pytest.approx(q, rel=1e-14)
    assert dropout_variance_shift(0.0, mean, var) == 1.0


def test_vectorized_over_p_and_beta():
    p = np.array([[0.0, 0.1], [0.5, 0.9]])
    beta = np.array([0.0, 0.1, 0.5, 2.0])
    for fn in (dropout_variance_shift, gaussian_dropout_variance_shift):
        out = fn(p, 0.5, 2.0)
        assert out.shape == p.shape
        assert np.allclose(out, [[fn(float(v), 0.5, 2.0) for v in row] for row in p], rtol=1e-15)
        assert fn(0.0, 3.0, 2.0) == pytest.approx(1.0, rel=1e-15)
    assert np.allclose(dropout_variance_shift(p), 1 - p, rtol=1e-14)  # q when c = 0
    assert np.allclose(uout_variance_shift(beta), 3 / (3 + beta ** 2), rtol=1e-15)
    assert isinstance(dropout_variance_shift(np.float64(0.5)), float)
    assert isinstance(uout_variance_shift(np.array(0.5)), float)


def test_uout_forward_moments_and_test_mode():
    reps = 200_000
    x = np.array([1.0, -2.0, 0.5])
    beta = 0.5
    out = uout_forward(np.tile(x, (reps, 1)), beta, rng=2)
    var = x ** 2 * beta ** 2 / 3  # Var of x r for fixed x, r ~ U(-beta, beta)
    assert np.all(np.abs(out.mean(axis=0) - x) < Z * np.sqrt(var / reps))
    # U(-b, b): 4th central moment b^4 / 5, so Var of the sample variance is (mu4 - var^2) / n.
    assert np.all(np.abs(out.var(axis=0) - var) < Z * np.sqrt((x ** 4 * beta ** 4 / 5 - var ** 2) / reps))
    assert np.all(np.abs(out - x) <= beta * np.abs(x))
    test = uout_forward(x, beta, training=False)
    assert np.array_equal(test, x) and test is not x
    assert np.array_equal(uout_forward(x, 0.0, rng=3), x)
    x_copy = x.copy()
    uout_forward(x, beta, rng=4)
    assert np.array_equal(x, x_copy)


# --------------------------------------------------------------------------- BN in torch

C = 16
N_BATCHES, BATCH = 50, 256
N_TRAIN = N_BATCHES * BATCH
N_EVAL = 4096
P = 0.5


def _train_passes(model, batches):
    """'Training' with frozen weights: forward passes in train mode update the BN statistics."""
    model.train()
    with torch.no_grad():
        for b in batches:
            model(b)
    return model.eval()


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(0)
    train = [torch.randn(BATCH, C, dtype=torch.float64) for _ in range(N_BATCHES)]
    return train, torch.randn(N_EVAL, C, dtype=torch.float64)


def _dropout_then_bn():
    return torch.nn.Sequential(torch.nn.Dropout(P),
                               torch.nn.BatchNorm1d(C, momentum=None)).double()


def _relative_se(kurtosis_term_train):
    """Relative SE of the channel-averaged eval output variance s^2 / running_var.

    running_var is a mean over N_TRAIN values of X^2-type terms with relative variance
    ``kurtosis_term_train`` per value; the eval-data sample variance of N(0, 1) has
    relative variance 2 per value; C independent channels are averaged."""
    return np.sqrt((kurtosis_term_train / N_TRAIN + 2 / N_EVAL) / C)


def test_check_8_dropout_then_bn_variance_shift_and_recalibration(data):
    train, test = data
    model = _train_passes(_dropout_then_bn(), train)
    with torch.no_grad():
        shifted = model(test).var(dim=0).mean().item()
    q = 1 - P
    # X = a x / q on N(0, 1): E[X^2] = 1/q, E[X^4] = 3/q^3, relative variance 3/q - 1.
    expected = dropout_variance_shift(P)
    assert abs(shifted - expected) < Z * expected * _relative_se(3 / q - 1)

    recalibrate_batchnorm(model, train)
    assert not model.training
    with torch.no_grad():
        repaired = model(test).var(dim=0).mean().item()
    assert abs(repaired - 1.0) < Z * _relative_se(2.0)  # x^2 has relative variance 2


def _tolerance_near_one():
    """Both variances estimate the same quantity from N_TRAIN N(0, 1) values per channel."""
    return Z * np.sqrt(2 * 2 / N_TRAIN / C)


def test_bn_variance_shift_detects_and_clears_the_shift(data):
    train, _ = data
    model = _train_passes(_dropout_then_bn(), train)
    before = bn_variance_shift(model, train)
    q = 1 - P
    # running_var ~ 1/q, real_var ~ 1: the metric is about 1/q.
    rel = np.sqrt(((3 / q - 1) + 2) / N_TRAIN / C)
    assert len(before) == 1 and abs(before[0] - 1 / q) < Z * rel / q
    recalibrate_batchnorm(model, train)
    after = bn_variance_shift(model, train)
    assert 1.0 <= after[0] < 1 + _tolerance_near_one()

    bn_first = torch.nn.Sequential(torch.nn.BatchNorm1d(C, momentum=None),
                                   torch.nn.Dropout(P)).double()
    _train_passes(bn_first, train)
    assert 1.0 <= bn_variance_shift(bn_first, train)[0] < 1 + _tolerance_near_one()


def _conv_net():
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Dropout(0.3), torch.nn.Conv2d(4, 5, 3), torch.nn.BatchNorm2d(5),
    ).double()


def test_bn_variance_shift_matches_a_direct_computation():
    model = _conv_net()
    torch.manual_seed(2)
    xs = [torch.randn(n, 3, 6, 6, dtype=torch.float64) * 2 + 1 for n in (5, 7, 3)]
    # Arbitrary running variances, some above and some below the real ones.
    with torch.no_grad():
        model[1].running_var.copy_(torch.tensor([0.2, 1.0, 5.0, 0.7]))
        model[5].running_var.copy_(torch.tensor([0.05, 0.3, 2.0, 9.0, 1.0]))
        model[1].running_mean.copy_(torch.tensor([0.5, -0.5, 0.0, 1.0]))
    shifts = bn_variance_shift(model, [(x, torch.zeros(len(x))) for x in xs])

    model.eval()
    with torch.no_grad():
        inputs = [torch.cat([model[0](x) for x in xs]),
                  torch.cat([model[:5](x) for x in xs])]
    for shift, bn, h in zip(shifts, (model[1], model[5]), inputs):
        real = h.transpose(0, 1).reshape(h.shape[1], -1).var(dim=1)  # unbiased, per channel
        ratio = real / bn.running_var
        expected = torch.maximum(ratio, 1 / ratio).mean().item()
        assert shift == pytest.approx(expected, rel=1e-10)
        # One-sided variants of the metric (only real / running) would differ.
        assert abs(ratio.mean().item() - expected) > 1e-2


def test_bn_variance_shift_restores_modes_and_removes_hooks():
    model = _conv_net()
    model.train()
    model[3].eval()  # a submodule in another mode must keep it
    flags = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    gen = (b for b in [x, x + 1])  # any iterable, consumed once
    assert len(bn_variance_shift(model, gen)) == 2
    assert [m.training for m in model.modules()] == flags
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    for k, v in model.state_dict().items():  # eval mode: running statistics untouched
        assert torch.equal(v, state[k])

    bad = torch.randn(4, 2, 6, 6, dtype=torch.float64)  # wrong channel count: conv fails
    with pytest.raises(RuntimeError):
        bn_variance_shift(model, [x, bad])
    assert [m.training for m in model.modules()] == flags
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


def test_bn_variance_shift_edge_cases_and_bad_inputs():
    assert bn_variance_shift(torch.nn.Sequential(torch.nn.Linear(2, 2)), [torch.randn(3, 2)]) == []
    bn = torch.nn.BatchNorm1d(3)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        bn_variance_shift(lambda x: x, [torch.randn(3, 3)])
    with pytest.raises(ValueError, match="batches is empty"):
        bn_variance_shift(bn, [])
    with pytest.raises(TypeError, match="batch 0 must be a tensor"):
        bn_variance_shift(bn, [np.ones((3, 3))])
    with pytest.raises(ValueError, match="need at least 2"):
        bn_variance_shift(bn, [torch.randn(1, 3)])
    with pytest.raises(ValueError, match="track_running_stats=False"):
        bn_variance_shift(torch.nn.BatchNorm1d(3, track_running_stats=False), [torch.randn(4, 3)])
    # float32 models work; the statistics are accumulated in float64.
    assert bn_variance_shift(bn, [torch.randn(64, 3)])[0] >= 1.0


# --------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("fn", [dropout_variance_shift, gaussian_dropout_variance_shift])
def test_shift_formulas_bad_p(fn):
    for p in (1.0, -0.1, True, float("nan")):
        with pytest.raises(ValueError, match="p is the probability of dropping a unit"):
            fn(p)
    with pytest.raises(ValueError, match="for every entry"):
        fn(np.array([0.1, 1.0]))
    with pytest.raises(TypeError, match="p must be a floating-point array"):
        fn(np.array([0, 1]))
    with pytest.raises(ValueError, match="var must be a positive number"):
        fn(0.5, 0.0, 0.0)
    with pytest.raises(ValueError, match="mean must be a finite real number"):
        fn(0.5, float("inf"))


def test_uout_bad_inputs():
    for beta in (-0.1, float("nan"), float("inf"), True, "0.1"):
        with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
            uout_variance_shift(beta)
        with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
            uout_forward(np.ones(3), beta)
    with pytest.raises(ValueError, match="beta must be finite and >= 0 for every entry"):
        uout_variance_shift(np.array([0.1, -1.0]))
    with pytest.raises(ValueError, match="beta must be a scalar"):
        uout_forward(np.ones(3), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        uout_forward(np.ones(3, dtype=int), 0.1)
    with pytest.raises(TypeError, match="training must be True or False"):
        uout_forward(np.ones(3), 0.1, training=1)
    with pytest.raises(TypeError, match="rng must be None"):
        uout_forward(np.ones(3), 0.1, rng="seed")


def test_simulate_bad_inputs():
    fn = partial(dropout_forward, p=0.5)
    with pytest.raises(TypeError, match="noise_fn must be callable"):
        simulate_variance_shift(0.5, 0.0, 1.0, 100, 0)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        simulate_variance_shift(fn, 0.0, 1.0, 1, 0)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        simulate_variance_shift(fn, 0.0, 1.0, 1e3, 0)
    with pytest.raises(ValueError, match="var must be a positive number"):
        simulate_variance_shift(fn, 0.0, -1.0, 100, 0)
    with pytest.raises(ValueError, match=r"noise_fn must return an array of shape \(100,\)"):
        simulate_variance_shift(lambda x, training, rng: x[:10], 0.0, 1.0, 100, 0)
    # A plain array return value is accepted as well as a tuple.
    assert simulate_variance_shift(lambda x, training, rng: x, 0.0, 1.0, 100, 0) == 1.0
