"""Tests for solutions/dropout.py.

Dropout is random, so most checks are Monte Carlo estimates compared with their exact
expectation; every tolerance is Z standard errors of the estimate, computed from the sample
size and the exact distribution (seeds are fixed, so the tests are deterministic).
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from solutions.dropout import (
    dropout_backward,
    dropout_forward,
    gaussian_dropout_forward,
    vanilla_dropout_forward,
)
from solutions.gradcheck import numerical_gradient, rel_error

Z = 5.0  # standard errors allowed: a correct implementation fails with probability < 1e-6
X6 = np.array([0.5, -1.0, 2.0, 1.5, -0.25, 3.0])  # one example, six input neurons


def _replicate(x, reps):
    """``reps`` independent draws of the noise on the same input ``x`` (one per row)."""
    return np.tile(x, (reps, 1))


def _mean_z_scores(forward, p, reps=100_000, seed=0):
    """|sample mean - x| in units of its standard error under inverted dropout's variance."""
    out = forward(_replicate(X6, reps), p, rng=seed)[0]
    se = np.abs(X6) * np.sqrt(p / (1 - p) / reps)
    return np.abs(out.mean(axis=0) - X6) / se


# --------------------------------------------------------------------------- inverted dropout

@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_inverted_dropout_is_unbiased(p):
    assert _mean_z_scores(dropout_forward, p).max() < Z


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_no_rescale_bug_is_caught(p):
    """Forgetting the 1 / (1 - p) factor moves the mean to (1 - p) x: far outside tolerance."""
    def no_rescale(x, p, rng=None):
        return vanilla_dropout_forward(x, p, training=True, rng=rng)

    assert _mean_z_scores(no_rescale, p).min() > 10 * Z


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_inverted_dropout_variance(p):
    """Var[out] = x^2 p / (1 - p). The unbiased sample variance S^2 has the exact variance
    mu4 / n - sigma^4 (n - 3) / (n (n - 1)), with mu4 the 4th central moment of the two-point
    distribution {-x w.p. p, x p / (1 - p) w.p. 1 - p} (at p = 0.5 only the 1/n^2 term is left)."""
    n = 100_000
    out = dropout_forward(_replicate(X6, n), p, rng=1)[0]
    q = 1 - p
    var = X6 ** 2 * p / q
    mu4 = X6 ** 4 * (p + p ** 4 / q ** 3)
    se = np.sqrt(mu4 / n - var ** 2 * (n - 3) / (n * (n - 1)))
    assert np.all(np.abs(out.var(axis=0, ddof=1) - var) < Z * se)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_keep_fraction_is_one_minus_p(p):
    n = 1_000_000
    _, mask = dropout_forward(np.ones(n), p, rng=2)
    assert mask.dtype == np.bool_ and mask.shape == (n,)
    assert abs(mask.mean() - (1 - p)) <= Z * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.7])
def test_agrees_in_distribution_with_torch_dropout(p):
    n = 400_000
    rng = np.random.default_rng(3)
    x = rng.uniform(1.0, 2.0, size=n)  # non-zero, so dropped and kept entries are distinct
    torch.manual_seed(0)
    layer = torch.nn.Dropout(p).train()
    t_out = layer(torch.tensor(x, dtype=torch.float64)).numpy()
    out, mask = dropout_forward(x, p, rng=4)
    binomial_se = np.sqrt(p * (1 - p) / n)
    for result in (out, t_out):
        kept = result != 0
        # Same support: every entry is 0 or x / (1 - p).
        assert rel_error(result[kept], x[kept] / (1 - p)) < 1e-10
        assert abs(kept.mean() - (1 - p)) < Z * binomial_se
        # Same mean scaling: E[out] = E[x]; Var of the mean is E[x^2] p / ((1 - p) n).
        assert abs(result.mean() - x.mean()) < Z * np.sqrt(np.mean(x ** 2) * p / (1 - p) / n)
    assert np.array_equal(out != 0, mask)
    assert abs((out != 0).mean() - (t_out != 0).mean()) < Z * np.sqrt(2) * binomial_se
    # Evaluation mode: both are the identity.
    assert np.array_equal(layer.eval()(torch.tensor(x, dtype=torch.float64)).numpy(), x)
    assert np.array_equal(dropout_forward(x, p, training=False)[0], x)


def test_p_zero_is_exact_identity():
    x = np.random.default_rng(5).normal(size=(4, 5)) * 1e3
    out, mask = dropout_forward(x, 0.0, rng=6)
    assert out.tobytes() == x.tobytes() and mask.all()
    assert dropout_backward(x, mask, 0).tobytes() == x.tobytes()


def test_eval_mode_is_identity_and_returns_a_copy():
    x = np.random.default_rng(7).normal(size=(3, 4))
    out, mask = dropout_forward(x, 0.5, training=False)
    assert mask is None and np.array_equal(out, x) and out is not x
    out[0, 0] = 99.0
    assert x[0, 0] != 99.0
    dout = np.ones_like(x)
    assert np.array_equal(dropout_backward(dout, None, 0.5), dout)


def test_seed_reproducibility_and_generator_use():
    x = np.ones((50, 20))
    a = dropout_forward(x, 0.5, rng=11)[1]
    assert np.array_equal(a, dropout_forward(x, 0.5, rng=11)[1])
    assert np.array_equal(a, dropout_forward(x, 0.5, rng=np.random.default_rng(11))[1])
    gen = np.random.default_rng(11)
    assert not np.array_equal(dropout_forward(x, 0.5, rng=gen)[1], dropout_forward(x, 0.5, rng=gen)[1])


@pytest.mark.parametrize("p", [0.0, 0.3, 0.75])
def test_backward_matches_finite_differences_with_a_fixed_mask(p):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 6))
    dout = rng.normal(size=x.shape)
    _, mask = dropout_forward(x, p, rng=9)
    # The same int seed gives the same mask on every call, so the forward map is fixed.
    numeric = numerical_gradient(lambda a: dropout_forward(a, p, rng=9)[0], x, dout)
    assert rel_error(dropout_backward(dout, mask, p), numeric) < 1e-7
    _, noise = gaussian_dropout_forward(x, p, rng=9)
    # Both maps are linear in x, so a large step loses nothing and avoids round-off.
    numeric = numerical_gradient(lambda a: gaussian_dropout_forward(a, p, rng=9)[0], x, dout, h=0.1)
    assert rel_error(dout * noise, numeric) < 1e-7


def test_backward_matches_torch_autograd_through_the_same_mask():
    rng = np.random.default_rng(10)
    x, dout, p = rng.normal(size=(5, 7)), rng.normal(size=(5, 7)), 0.4
    _, mask = dropout_forward(x, p, rng=12)
    xt = torch.tensor(x, requires_grad=True)
    (xt * torch.tensor(mask) / (1 - p)).backward(torch.tensor(dout))
    assert rel_error(dropout_backward(dout, mask, p), xt.grad.numpy()) < 1e-10


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(0, 6), max_size=3),
    p=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**32 - 1),
)
def test_dropout_property(shape, p, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    dout = rng.normal(size=shape)
    out, mask = dropout_forward(x, p, rng=rng)
    assert out.shape == x.shape and mask.shape == x.shape
    assert np.array_equal(out[~mask], np.zeros((~mask).sum()))
    assert np.allclose(out[mask], x[mask] / (1 - p), rtol=1e-15, atol=0)
    dx = dropout_backward(dout, mask, p)
    assert np.array_equal(dx == 0, ~mask | (dout == 0))
    # <dx, x> = <dout, out>: the forward map is linear in x and the backward is its transpose.
    assert np.isclose(np.sum(dx * x), np.sum(dout * out), rtol=1e-12, atol=1e-12)


def test_does_not_mutate_inputs():
    x = np.random.default_rng(13).normal(size=(3, 4))
    dout = np.ones_like(x)
    copies = x.copy(), dout.copy()
    for forward in (dropout_forward, vanilla_dropout_forward, gaussian_dropout_forward):
        forward(x, 0.5, rng=0)
        forward(x, 0.5, training=False)
    _, mask = dropout_forward(x, 0.5, rng=0)
    mask_copy = mask.copy()
    dropout_backward(dout, mask, 0.5)
    assert np.array_equal(x, copies[0]) and np.array_equal(dout, copies[1])
    assert np.array_equal(mask, mask_copy)


# --------------------------------------------------------------------------- vanilla dropout

def test_six_neuron_example():
    """p = 0.5 on six inputs: on average 3 survive. Vanilla dropout's expected training sum
    is half the full sum, so a test-time pass without the (1 - p) rule is twice too large;
    with the rule (or with inverted dropout) train and test expectations agree."""
    p, reps = 0.5, 200_000
    x = _replicate(X6, reps)
    out, mask = vanilla_dropout_forward(x, p, rng=14)
    survivors = mask.sum(axis=1)
    assert abs(survivors.mean() - 3.0) < Z * np.sqrt(6 * p * (1 - p) / reps)

    full_sum = X6.sum()
    se_sum = np.sqrt(np.sum(X6 ** 2) * p * (1 - p) / reps)  # SE of the mean of sum(x * mask)
    train_sum = out.sum(axis=1).mean()
    assert abs(train_sum - 0.5 * full_sum) < Z * se_sum
    assert abs(train_sum - full_sum) > 10 * Z * se_sum  # test time without the rule: mismatch
    test_out, test_mask = vanilla_dropout_forward(X6, p, training=False)
    assert test_mask is None and np.allclose(test_out.sum(), (1 - p) * full_sum, rtol=1e-15)
    assert abs(train_sum - test_out.sum()) < Z * se_sum

    inverted_train_sum = dropout_forward(x, p, rng=15)[0].sum(axis=1).mean()
    assert abs(inverted_train_sum - full_sum) < Z * se_sum / (1 - p)


@pytest.mark.parametrize("p", [0.0, 0.25, 0.6])
def test_vanilla_dropout_train_and_test(p):
    x = np.random.default_rng(16).normal(size=(3, 5))
    out, mask = vanilla_dropout_forward(x, p, rng=17)
    assert np.array_equal(out, np.where(mask, x, 0.0))
    assert np.array_equal(mask, dropout_forward(x, p, rng=17)[1])  # same mask for the same seed
    test_out, _ = vanilla_dropout_forward(x, p, training=False)
    assert np.array_equal(test_out, x * (1 - p))


# --------------------------------------------------------------------------- Gaussian dropout

@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_gaussian_dropout_matches_bernoulli_mean_and_variance(p):
    reps = 100_000
    out, noise = gaussian_dropout_forward(_replicate(X6, reps), p, rng=18)
    var = X6 ** 2 * p / (1 - p)  # the inverted-dropout variance
    assert np.all(np.abs(out.mean(axis=0) - X6) < Z * np.sqrt(var / reps))
    # Normal samples: Var of the sample variance is 2 sigma^4 / reps.
    assert np.all(np.abs(out.var(axis=0) - var) < Z * np.sqrt(2 * var ** 2 / reps))
    assert np.allclose(out, _replicate(X6, reps) * noise, rtol=0, atol=0)
    test_out, test_noise = gaussian_dropout_forward(X6, p, training=False)
    assert test_noise is None and np.array_equal(test_out, X6)


def test_gaussian_dropout_p_zero_is_identity():
    x = np.random.default_rng(19).normal(size=10)
    out, noise = gaussian_dropout_forward(x, 0.0, rng=20)
    assert out.tobytes() == x.tobytes() and np.all(noise == 1.0)


# --------------------------------------------------------------------------- bad inputs

FORWARDS = [dropout_forward, vanilla_dropout_forward, gaussian_dropout_forward]


@pytest.mark.parametrize("forward", FORWARDS)
@pytest.mark.parametrize("p", [1, 1.0, -0.1, True, float("nan"), "0.5", None, 1.5])
def test_bad_p(forward, p):
    with pytest.raises(ValueError, match="p is the probability of dropping a unit"):
        forward(np.ones(3), p)
    with pytest.raises(ValueError, match="p is the probability of dropping a unit"):
        forward(np.ones(3), p, training=False)


@pytest.mark.parametrize("forward", FORWARDS)
def test_bad_x_training_rng(forward):
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        forward(np.ones(3, dtype=int), 0.5)
    with pytest.raises(TypeError, match="training must be True or False"):
        forward(np.ones(3), 0.5, training="yes")
    with pytest.raises(TypeError, match="rng must be None, an int seed or a numpy Generator"):
        forward(np.ones(3), 0.5, rng=0.5)


def test_backward_bad_inputs():
    dout = np.ones((2, 3))
    with pytest.raises(ValueError, match="p is the probability of dropping a unit"):
        dropout_backward(dout, np.ones((2, 3), bool), 1.0)
    with pytest.raises(TypeError, match="mask must be the boolean keep-mask"):
        dropout_backward(dout, np.ones((2, 3)), 0.5)
    with pytest.raises(ValueError, match=r"mask must have the shape of dout \(2, 3\)"):
        dropout_backward(dout, np.ones((3, 2), bool), 0.5)
    with pytest.raises(TypeError, match="dout must be a floating-point array"):
        dropout_backward(np.ones((2, 3), dtype=int), np.ones((2, 3), bool), 0.5)
