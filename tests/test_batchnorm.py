"""Training-mode batch normalization against F.batch_norm(training=True) and finite differences."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from solutions.batchnorm import batchnorm_backward, batchnorm_forward, identity_affine
from solutions.gradcheck import numerical_gradient, rel_error

TOL = 1e-10
SHAPES = [(8, 5), (4, 3, 6), (3, 4, 5, 6), (2, 3, 2, 3, 2), (1, 3, 2, 2)]


def make(shape, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.standard_normal(shape) * 2.0 + 0.5
    gamma = rng.standard_normal(c)
    beta = rng.standard_normal(c)
    dout = rng.standard_normal(shape)
    return x, gamma, beta, dout


def torch_bn(x, gamma, beta, dout, eps=1e-5):
    """Output and autograd gradients of F.batch_norm(training=True) in float64."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    gt = torch.tensor(gamma, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
    out = F.batch_norm(xt, None, None, gt, bt, training=True, eps=eps)
    out.backward(torch.tensor(dout, dtype=torch.float64))
    return out.detach().numpy(), xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()


def reduce_axes(x):
    return (0,) + tuple(range(2, x.ndim))


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_backward_match_torch(shape):
    x, gamma, beta, dout = make(shape)
    out, cache = batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    t_out, t_dx, t_dgamma, t_dbeta = torch_bn(x, gamma, beta, dout)
    assert out.shape == x.shape and dx.shape == x.shape
    assert rel_error(out, t_out) < TOL
    assert rel_error(dx, t_dx) < TOL
    assert rel_error(dgamma, t_dgamma) < TOL
    assert rel_error(dbeta, t_dbeta) < TOL


def test_other_eps_and_float32_input_match_torch():
    x, gamma, beta, dout = make((6, 4, 3))
    out, cache = batchnorm_forward(x, gamma, beta, eps=0.5)
    t_out, t_dx, _, _ = torch_bn(x, gamma, beta, dout, eps=0.5)
    assert rel_error(out, t_out) < TOL
    assert rel_error(batchnorm_backward(dout, cache)[0], t_dx) < TOL
    # float32 input is computed in float64.
    out32, _ = batchnorm_forward(x.astype(np.float32), gamma, beta)
    assert out32.dtype == np.float64


def test_cache_holds_batch_statistics():
    x, gamma, beta, _ = make((5, 3, 4))
    _, cache = batchnorm_forward(x, gamma, beta)
    assert cache["m"] == 20
    np.testing.assert_allclose(cache["mean"], x.mean(axis=(0, 2)), rtol=1e-13)
    np.testing.assert_allclose(cache["var"], x.var(axis=(0, 2)), rtol=1e-13)


@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 5), (2, 3, 3, 2)])
def test_gradients_match_finite_differences(shape):
    x, gamma, beta, dout = make(shape, seed=1)
    _, cache = batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    num_dx = numerical_gradient(lambda v: batchnorm_forward(v, gamma, beta)[0], x.copy(), dout)
    num_dgamma = numerical_gradient(lambda g: batchnorm_forward(x, g, beta)[0], gamma.copy(), dout)
    num_dbeta = numerical_gradient(lambda b: batchnorm_forward(x, gamma, b)[0], beta.copy(), dout)
    assert rel_error(dx, num_dx) < 1e-7
    assert rel_error(dgamma, num_dgamma) < 1e-7
    assert rel_error(dbeta, num_dbeta) < 1e-7


@pytest.mark.parametrize("shape", SHAPES)
def test_dx_sums_to_zero_and_its_xhat_moment_is_of_order_eps(shape):
    x, gamma, beta, dout = make(shape, seed=2)
    eps = 1e-2  # large, so the eps term below is far above round-off
    _, cache = batchnorm_forward(x, gamma, beta, eps=eps)
    dx, dgamma, _ = batchnorm_backward(dout, cache)
    axes = reduce_axes(x)
    scale = np.abs(dx).sum(axis=axes)
    assert np.all(np.abs(dx.sum(axis=axes)) <= 1e-13 * scale)
    # sum(dx * xhat) = gamma * inv_std * dgamma * eps / (var + eps): zero only as eps -> 0.
    moment = (dx * cache["xhat"]).sum(axis=axes)
    var = cache["var"]
    expected = gamma / np.sqrt(var + eps) * dgamma * eps / (var + eps)
    assert rel_error(moment, expected) < 1e-9


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 5),
    c=st.integers(1, 4),
    spatial=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    seed=st.integers(0, 2**32 - 1),
    eps=st.sampled_from([1e-5, 1e-3, 0.1]),
)
def test_random_shapes_match_torch(n, c, spatial, seed, eps):
    # m >= 3: with m = 2 the true dx is of order eps and cancels (see the test below).
    if n * int(np.prod(spatial)) < 3:
        n = 3
    shape = (n, c, *spatial)
    x, gamma, beta, dout = make(shape, seed)
    out, cache = batchnorm_forward(x, gamma, beta, eps=eps)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    t_out, t_dx, t_dgamma, t_dbeta = torch_bn(x, gamma, beta, dout, eps=eps)
    assert rel_error(out, t_out) < TOL
    assert rel_error(dx, t_dx) < TOL
    assert rel_error(dgamma, t_dgamma) < TOL
    assert rel_error(dbeta, t_dbeta) < TOL
    # Normalised output: zero mean, variance var / (var + eps) per channel.
    xhat = cache["xhat"]
    axes = reduce_axes(x)
    assert np.all(np.abs(xhat.mean(axis=axes)) < 1e-12)
    var = cache["var"]
    np.testing.assert_allclose(xhat.var(axis=axes), var / (var + eps), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("shape", [(2, 3), (1, 3, 2), (2, 4, 1, 1)])
def test_two_values_per_channel_gradient_is_of_order_eps(shape):
    # With m = 2, xhat = +-sqrt(var / (var + eps)) and the closed form collapses to
    # dx = gamma * inv_std * (dy - mean dy) * eps / (var + eps): almost no gradient reaches x,
    # and dx is the small difference of O(1) terms, so it is compared on their scale.
    x, gamma, beta, dout = make(shape, seed=7)
    out, cache = batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    t_out, t_dx, t_dgamma, t_dbeta = torch_bn(x, gamma, beta, dout)
    assert rel_error(out, t_out) < TOL
    assert rel_error(dgamma, t_dgamma) < TOL
    assert rel_error(dbeta, t_dbeta) < TOL
    shape_c = (1, shape[1]) + (1,) * (len(shape) - 2)
    var = cache["var"].reshape(shape_c)
    term_scale = np.max(np.abs(gamma.reshape(shape_c) * cache["inv_std"] * dout))
    expected = (
        gamma.reshape(shape_c) * cache["inv_std"]
        * (dout - dout.mean(axis=reduce_axes(x), keepdims=True)) * 1e-5 / (var + 1e-5)
    )
    assert np.max(np.abs(dx - t_dx)) < 1e-14 * term_scale
    assert np.max(np.abs(dx - expected)) < 1e-14 * term_scale
    assert np.max(np.abs(dx)) < 1e-3 * term_scale


@pytest.mark.parametrize("shape", SHAPES)
def test_identity_affine_reproduces_x(shape):
    x, _, _, _ = make(shape, seed=3)
    x = x + 3.0  # keep entries away from 0 so the relative error is meaningful
    gamma, beta = identity_affine(x)
    out, _ = batchnorm_forward(x, gamma, beta)
    assert gamma.shape == beta.shape == (x.shape[1],)
    assert rel_error(out, x) < TOL
    np.testing.assert_allclose(beta, x.mean(axis=reduce_axes(x)), rtol=1e-13)


def test_identity_affine_uses_the_same_eps():
    x, _, _, _ = make((4, 3), seed=4)
    x = x + 3.0
    gamma, beta = identity_affine(x, eps=0.3)
    assert rel_error(batchnorm_forward(x, gamma, beta, eps=0.3)[0], x) < TOL
    # Mismatched eps is no longer the identity.
    assert rel_error(batchnorm_forward(x, gamma, beta)[0], x) > 1e-3


def test_bn_does_not_squash_into_minus_one_one():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1000, 4)) * 0.1  # small inputs: BN blows them up, not down
    out, cache = batchnorm_forward(x, np.ones(4), np.zeros(4))
    outside = np.mean(np.abs(out) > 1)
    assert np.max(np.abs(out)) > 1
    # For Gaussian data about 31.7 % of standardised values fall outside (-1, 1).
    assert 0.25 < outside < 0.40
    var = cache["var"]
    np.testing.assert_allclose(out.std(axis=0), np.sqrt(var / (var + 1e-5)), rtol=1e-10)
    assert np.all(out.std(axis=0) > 0.999)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 12),
    c=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_standardised_values_always_reach_one(n, c, seed, scale):
    # mean(xhat^2) = var / (var + eps), so max|xhat| >= sqrt(var / (var + eps)) for any data:
    # BN cannot map a whole batch inside (-1, 1) (up to eps).
    x = np.random.default_rng(seed).standard_normal((n, c)) * scale
    _, cache = batchnorm_forward(x, np.ones(c), np.zeros(c))
    bound = np.sqrt(cache["var"] / (cache["var"] + 1e-5))
    assert np.all(np.abs(cache["xhat"]).max(axis=0) >= bound * (1 - 1e-12))


def _buggy_unbiased(x, gamma, beta, eps=1e-5):
    axes = reduce_axes(x)
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, ddof=1, keepdims=True)
    return gamma.reshape(shape) * (x - mean) / np.sqrt(var + eps) + beta.reshape(shape)


def _buggy_axis0_only(x, gamma, beta, eps=1e-5):
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=0, keepdims=True)
    var = x.var(axis=0, keepdims=True)
    return gamma.reshape(shape) * (x - mean) / np.sqrt(var + eps) + beta.reshape(shape)


@pytest.mark.parametrize("bug", [_buggy_unbiased, _buggy_axis0_only])
def test_named_bugs_are_caught(bug):
    x, gamma, beta, dout = make((4, 3, 5, 5), seed=6)
    t_out = torch_bn(x, gamma, beta, dout)[0]
    assert rel_error(batchnorm_forward(x, gamma, beta)[0], t_out) < TOL
    assert rel_error(bug(x, gamma, beta), t_out) > 1e-3


def test_bad_inputs():
    x, gamma, beta, dout = make((4, 3))
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        batchnorm_forward(np.arange(12).reshape(4, 3), gamma, beta)
    with pytest.raises(ValueError, match="x must have at least 2 dimensions"):
        batchnorm_forward(np.ones(4), gamma, beta)
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        batchnorm_forward(x, np.ones(4), beta)
    with pytest.raises(ValueError, match=r"beta must have shape \(3,\)"):
        batchnorm_forward(x, gamma, np.ones((3, 1)))
    with pytest.raises(TypeError, match="gamma must be a floating-point array"):
        batchnorm_forward(x, np.ones(3, dtype=int), beta)
    for eps in (0.0, -1e-5, "1e-5"):
        with pytest.raises(ValueError, match="eps must be a positive number"):
            batchnorm_forward(x, gamma, beta, eps=eps)
    with pytest.raises(ValueError, match="at least one channel"):
        batchnorm_forward(np.ones((4, 0)), np.ones(0), np.ones(0))


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1)])
def test_single_value_per_channel_is_refused_like_torch(shape):
    x = np.ones(shape)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        batchnorm_forward(x, np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        identity_affine(x)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        F.batch_norm(torch.ones(shape), None, None, training=True)


def test_backward_bad_inputs():
    x, gamma, beta, dout = make((4, 3, 2))
    _, cache = batchnorm_forward(x, gamma, beta)
    with pytest.raises(ValueError, match=r"dout must have shape \(4, 3, 2\)"):
        batchnorm_backward(dout[:, :, :1], cache)
    with pytest.raises(TypeError, match="dout must be a floating-point array"):
        batchnorm_backward(np.ones((4, 3, 2), dtype=int), cache)
    with pytest.raises(TypeError, match="cache must be the dict returned by batchnorm_forward"):
        batchnorm_backward(dout, (x, gamma))


def test_inputs_not_mutated():
    x, gamma, beta, dout = make((4, 3, 2))
    copies = [a.copy() for a in (x, gamma, beta, dout)]
    _, cache = batchnorm_forward(x, gamma, beta)
    batchnorm_backward(dout, cache)
    identity_affine(x)
    for a, b in zip((x, gamma, beta, dout), copies):
        np.testing.assert_array_equal(a, b)
