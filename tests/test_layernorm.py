"""Tests for solutions/layernorm.py: PyTorch as the oracle, finite differences for the
backward pass, the invariance table of Ba et al. (with RMSNorm) checked numerically."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from solutions.batchnorm import batchnorm_forward
from solutions.gradcheck import numerical_gradient, rel_error
from solutions.layernorm import (
    groupnorm_backward,
    groupnorm_forward,
    layernorm_backward,
    layernorm_forward,
    rmsnorm_backward,
    rmsnorm_forward,
)

T = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731


def _params(rng, shape):
    return rng.normal(size=shape), rng.normal(size=shape)


def _torch_layernorm(x, gamma, beta, normalized_ndim, eps, dout):
    """F.layer_norm forward and autograd gradients (dx, dgamma, dbeta)."""
    xt, gt, bt = (T(a).requires_grad_() for a in (x, gamma, beta))
    out = F.layer_norm(xt, x.shape[x.ndim - normalized_ndim:], gt, bt, eps)
    out.backward(T(dout))
    return out.detach().numpy(), xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()


# --------------------------------------------------------------------------- layer norm

@pytest.mark.parametrize(
    "shape, normalized_ndim",
    [((4, 7), 1), ((3, 5, 6), 1), ((3, 5, 6), 2), ((2, 3, 4, 5), 3), ((2, 3, 4, 5), 2), ((6,), 1)],
)
def test_layernorm_matches_torch_forward_and_backward(shape, normalized_ndim):
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=shape)
    gamma, beta = _params(rng, shape[len(shape) - normalized_ndim:])
    dout = rng.normal(size=shape)
    out, cache = layernorm_forward(x, gamma, beta, normalized_ndim)
    dx, dgamma, dbeta = layernorm_backward(dout, cache)
    t_out, t_dx, t_dgamma, t_dbeta = _torch_layernorm(x, gamma, beta, normalized_ndim, 1e-5, dout)
    assert rel_error(out, t_out) < 1e-10
    assert rel_error(dx, t_dx) < 1e-10
    assert rel_error(dgamma, t_dgamma) < 1e-10
    assert rel_error(dbeta, t_dbeta) < 1e-10


@pytest.mark.parametrize("eps", [1e-5, 1e-3, 0.5])
def test_layernorm_eps_matches_torch(eps):
    rng = np.random.default_rng(1)
    x = rng.normal(scale=0.05, size=(5, 8))  # small variance so eps matters
    gamma, beta = _params(rng, (8,))
    dout = rng.normal(size=x.shape)
    out, cache = layernorm_forward(x, gamma, beta, eps=eps)
    dx, _, _ = layernorm_backward(dout, cache)
    t_out, t_dx, _, _ = _torch_layernorm(x, gamma, beta, 1, eps, dout)
    assert rel_error(out, t_out) < 1e-10
    assert rel_error(dx, t_dx) < 1e-10


@pytest.mark.parametrize("shape, normalized_ndim", [((3, 6), 1), ((2, 3, 4), 2), ((2, 2, 3, 4), 3)])
def test_layernorm_backward_matches_finite_differences(shape, normalized_ndim):
    rng = np.random.default_rng(2)
    x = rng.normal(size=shape)
    gamma, beta = _params(rng, shape[len(shape) - normalized_ndim:])
    dout = rng.normal(size=shape)
    _, cache = layernorm_forward(x, gamma, beta, normalized_ndim)
    dx, dgamma, dbeta = layernorm_backward(dout, cache)
    fwd = lambda a, g, b: layernorm_forward(a, g, b, normalized_ndim)[0]  # noqa: E731
    assert rel_error(dx, numerical_gradient(lambda a: fwd(a, gamma, beta), x, dout)) < 1e-7
    assert rel_error(dgamma, numerical_gradient(lambda g: fwd(x, g, beta), gamma, dout)) < 1e-7
    assert rel_error(dbeta, numerical_gradient(lambda b: fwd(x, gamma, b), beta, dout)) < 1e-7


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(1e-2, 1e2),
)
def test_layernorm_property_against_torch(shape, data, seed, scale):
    normalized_ndim = data.draw(st.integers(1, len(shape)))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * scale + rng.normal()
    gamma, beta = _params(rng, tuple(shape[len(shape) - normalized_ndim:]))
    dout = rng.normal(size=shape)
    out, cache = layernorm_forward(x, gamma, beta, normalized_ndim)
    dx, dgamma, dbeta = layernorm_backward(dout, cache)
    t_out, t_dx, t_dgamma, t_dbeta = _torch_layernorm(x, gamma, beta, normalized_ndim, 1e-5, dout)
    # Absolute slack for entries that are zero up to rounding (e.g. one-element rows, where
    # x - mu is rounding error of size |x| * 1e-16 amplified by 1 / sqrt(eps) ~ 316).
    atol = 1e-11 * (1 + scale)
    assert np.allclose(out, t_out, rtol=1e-10, atol=atol)
    assert np.allclose(dx, t_dx, rtol=1e-9, atol=1e-9 / scale)
    assert np.allclose(dgamma, t_dgamma, rtol=1e-10, atol=atol)
    assert np.allclose(dbeta, t_dbeta, rtol=1e-10, atol=1e-12)
    # The gradient of a re-centering is orthogonal to the constant direction of each sample.
    axes = tuple(range(len(shape) - normalized_ndim, len(shape)))
    assert np.allclose(dx.sum(axis=axes), 0.0, atol=1e-9 * (1 + np.abs(dx).max()))


def test_layernorm_is_per_sample_and_works_at_batch_size_one():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 6))
    gamma, beta = _params(rng, (6,))
    out, _ = layernorm_forward(x, gamma, beta)
    for i in range(len(x)):  # a single case alone gives the same row: no batch coupling
        single, _ = layernorm_forward(x[i:i + 1], gamma, beta)
        assert rel_error(single[0], out[i]) < 1e-14


def test_layernorm_over_the_batch_axis_bug_is_caught():
    """Normalising each feature over the batch (batch norm by mistake) differs from torch."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(8, 6)) + rng.normal(size=6)
    gamma, beta = np.ones(6), np.zeros(6)
    xc = x - x.mean(axis=0)
    buggy = xc / np.sqrt((xc ** 2).mean(axis=0) + 1e-5)
    expected = F.layer_norm(T(x), (6,), eps=1e-5).numpy()
    assert rel_error(layernorm_forward(x, gamma, beta)[0], expected) < 1e-10
    assert rel_error(buggy, expected) > 1e-2


def test_layernorm_unbiased_variance_bug_is_caught():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 5))
    xc = x - x.mean(axis=1, keepdims=True)
    buggy = xc / np.sqrt(xc.var(axis=1, ddof=1, keepdims=True) + 1e-5)
    expected = F.layer_norm(T(x), (5,), eps=1e-5).numpy()
    assert rel_error(buggy, expected) > 1e-2


def test_layernorm_does_not_mutate_inputs():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 4))
    gamma, beta = _params(rng, (4,))
    dout = rng.normal(size=x.shape)
    copies = [a.copy() for a in (x, gamma, beta, dout)]
    _, cache = layernorm_forward(x, gamma, beta)
    layernorm_backward(dout, cache)
    for a, c in zip((x, gamma, beta, dout), copies):
        assert np.array_equal(a, c)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(x=np.ones((2, 3), dtype=int)), TypeError, "x must be a floating-point"),
        (dict(gamma=np.ones(4)), ValueError, r"gamma must have shape \(3,\)"),
        (dict(beta=np.ones((2, 3))), ValueError, r"beta must have shape \(3,\)"),
        (dict(gamma=np.ones(3, dtype=int)), TypeError, "gamma must be a floating-point"),
        (dict(normalized_ndim=0), ValueError, "normalized_ndim must be a positive integer"),
        (dict(normalized_ndim=True), ValueError, "normalized_ndim must be a positive integer"),
        (dict(normalized_ndim=1.0), ValueError, "normalized_ndim must be a positive integer"),
        (dict(normalized_ndim=3), ValueError, "normalized_ndim must be at most x.ndim = 2"),
        (dict(eps=0.0), ValueError, "eps must be a positive number"),
        (dict(x=np.ones((2, 0))), ValueError, "normalized axes of x must not be empty"),
        (dict(x=np.float64(1.0)), ValueError, "x must have at least 1 dimensions"),
    ],
)
def test_layernorm_bad_inputs(kwargs, error, match):
    args = dict(x=np.ones((2, 3)), gamma=np.ones(3), beta=np.zeros(3))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        layernorm_forward(**args)


def test_layernorm_backward_bad_dout():
    _, cache = layernorm_forward(np.ones((2, 3)), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 3\)"):
        layernorm_backward(np.ones((3, 2)), cache)
    with pytest.raises(TypeError, match="dout must be a floating-point"):
        layernorm_backward(np.ones((2, 3), dtype=int), cache)


# --------------------------------------------------------------------------- group norm

@pytest.mark.parametrize(
    "shape, groups",
    [((3, 6, 4, 5), 1), ((3, 6, 4, 5), 2), ((3, 6, 4, 5), 3), ((3, 6, 4, 5), 6),
     ((2, 8, 7), 4), ((4, 6), 3), ((2, 4, 2, 3, 2), 2)],
)
def test_groupnorm_matches_torch(shape, groups):
    rng = np.random.default_rng(7)
    x = rng.normal(1.0, 2.0, size=shape)
    gamma, beta = _params(rng, (shape[1],))
    expected = F.group_norm(T(x), groups, T(gamma), T(beta), 1e-5).numpy()
    assert rel_error(groupnorm_forward(x, groups, gamma, beta), expected) < 1e-10


def test_groupnorm_one_group_is_layer_norm_and_c_groups_is_instance_norm():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, 4, 5, 6))
    ones, zeros = np.ones(4), np.zeros(4)
    layer = F.layer_norm(T(x), x.shape[1:], eps=1e-5).numpy()
    instance = F.instance_norm(T(x), eps=1e-5).numpy()
    assert rel_error(groupnorm_forward(x, 1, ones, zeros), layer) < 1e-10
    assert rel_error(groupnorm_forward(x, 4, ones, zeros), instance) < 1e-10
    assert rel_error(groupnorm_forward(x, 2, ones, zeros), layer) > 1e-2


@settings(max_examples=30, deadline=None)
@given(
    # n >= 2: F.group_norm refuses inputs whose N * C / G * prod(spatial) is 1.
    n=st.integers(2, 3), groups=st.integers(1, 4), per_group=st.integers(1, 3),
    spatial=st.lists(st.integers(1, 4), max_size=2), seed=st.integers(0, 2**32 - 1),
)
def test_groupnorm_property_against_torch(n, groups, per_group, spatial, seed):
    rng = np.random.default_rng(seed)
    c = groups * per_group
    x = rng.normal(size=(n, c, *spatial)) * rng.uniform(0.1, 10)
    gamma, beta = _params(rng, (c,))
    expected = F.group_norm(T(x), groups, T(gamma), T(beta), 1e-5).numpy()
    assert np.allclose(groupnorm_forward(x, groups, gamma, beta), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(num_groups=4), ValueError, "C = 6 must be divisible by num_groups = 4"),
        (dict(num_groups=0), ValueError, "num_groups must be a positive integer"),
        (dict(num_groups=True), ValueError, "num_groups must be a positive integer"),
        (dict(gamma=np.ones(3)), ValueError, r"gamma must have shape \(6,\)"),
        (dict(beta=np.ones(7)), ValueError, r"beta must have shape \(6,\)"),
        (dict(x=np.ones(6)), ValueError, "x must have at least 2 dimensions"),
        (dict(x=np.ones((2, 6, 3), dtype=np.int32)), TypeError, "x must be a floating-point"),
        (dict(x=np.ones((2, 6, 0))), ValueError, "each group must contain at least one value"),
        (dict(eps=-1.0), ValueError, "eps must be a positive number"),
    ],
)
def test_groupnorm_bad_inputs(kwargs, error, match):
    args = dict(x=np.ones((2, 6, 3)), num_groups=2, gamma=np.ones(6), beta=np.zeros(6))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        groupnorm_forward(**args)


def _torch_groupnorm(x, groups, gamma, beta, eps, dout):
    """F.group_norm forward and autograd gradients (dx, dgamma, dbeta)."""
    xt, gt, bt = (T(a).requires_grad_() for a in (x, gamma, beta))
    out = F.group_norm(xt, groups, gt, bt, eps)
    out.backward(T(dout))
    return out.detach().numpy(), xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()


@pytest.mark.parametrize(
    "shape, groups",
    # No group of two values: there dx is rounding-level cancellation (xhat = +-1 exactly up
    # to eps), which the property test covers with an absolute tolerance.
    [((3, 6, 4, 5), 1), ((3, 6, 4, 5), 2), ((3, 6, 4, 5), 6), ((2, 8, 7), 4), ((4, 6), 2),
     ((2, 4, 2, 3, 2), 2)],
)
@pytest.mark.parametrize("eps", [1e-5, 1e-1])
def test_groupnorm_backward_matches_autograd(shape, groups, eps):
    rng = np.random.default_rng(11)
    x = rng.normal(1.0, 2.0, size=shape) * 0.1  # small variance: eps matters at 1e-1
    gamma, beta = _params(rng, (shape[1],))
    dout = rng.normal(size=shape)
    dx, dgamma, dbeta = groupnorm_backward(dout, x, groups, gamma, eps=eps)
    _, t_dx, t_dgamma, t_dbeta = _torch_groupnorm(x, groups, gamma, beta, eps, dout)
    assert rel_error(dx, t_dx) < 1e-10
    assert rel_error(dgamma, t_dgamma) < 1e-10
    assert rel_error(dbeta, t_dbeta) < 1e-10
    assert dx.dtype == dgamma.dtype == dbeta.dtype == np.float64


def test_groupnorm_backward_uses_its_eps():
    """The default eps is the forward's, and a different eps gives a different gradient."""
    rng = np.random.default_rng(20)
    x, dout = rng.normal(0.0, 0.1, size=(2, 4, 3)), rng.normal(size=(2, 4, 3))
    gamma = rng.normal(size=4)
    default = groupnorm_backward(dout, x, 2, gamma)[0]
    assert np.array_equal(default, groupnorm_backward(dout, x, 2, gamma, eps=1e-5)[0])
    assert rel_error(default, groupnorm_backward(dout, x, 2, gamma, eps=1e-1)[0]) > 1e-2


@pytest.mark.parametrize("shape, groups", [((2, 6, 2, 2), 3), ((3, 4, 5), 2), ((2, 4), 1), ((2, 3, 2, 2), 3)])
def test_groupnorm_backward_matches_finite_differences(shape, groups):
    rng = np.random.default_rng(12)
    x = rng.normal(size=shape)
    gamma, beta = _params(rng, (shape[1],))
    dout = rng.normal(size=shape)
    dx, dgamma, dbeta = groupnorm_backward(dout, x, groups, gamma)
    fwd = lambda a, g, b: groupnorm_forward(a, groups, g, b)  # noqa: E731
    assert rel_error(dx, numerical_gradient(lambda a: fwd(a, gamma, beta), x, dout)) < 1e-7
    assert rel_error(dgamma, numerical_gradient(lambda g: fwd(x, g, beta), gamma, dout)) < 1e-7
    assert rel_error(dbeta, numerical_gradient(lambda b: fwd(x, gamma, b), beta, dout)) < 1e-7


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 3), groups=st.integers(1, 4), per_group=st.integers(1, 3),
    spatial=st.lists(st.integers(1, 4), max_size=2), seed=st.integers(0, 2**32 - 1),
    scale=st.floats(1e-2, 1e2),
)
def test_groupnorm_backward_property_against_autograd(n, groups, per_group, spatial, seed, scale):
    rng = np.random.default_rng(seed)
    c = groups * per_group
    x = rng.normal(size=(n, c, *spatial)) * scale + rng.normal()
    gamma, beta = _params(rng, (c,))
    dout = rng.normal(size=x.shape)
    dx, dgamma, dbeta = groupnorm_backward(dout, x, groups, gamma)
    _, t_dx, t_dgamma, t_dbeta = _torch_groupnorm(x, groups, gamma, beta, 1e-5, dout)
    atol = 1e-11 * (1 + scale)
    assert np.allclose(dx, t_dx, rtol=1e-9, atol=1e-9 / scale)
    assert np.allclose(dgamma, t_dgamma, rtol=1e-10, atol=atol)
    assert np.allclose(dbeta, t_dbeta, rtol=1e-10, atol=1e-12)
    # Each group's re-centering removes the constant direction of the gradient.
    group_sums = dx.reshape(n, groups, -1).sum(axis=2)
    assert np.allclose(group_sums, 0.0, atol=1e-9 * (1 + np.abs(dx).max()))


def test_groupnorm_backward_per_channel_statistics_bug_is_caught():
    """A backward pass that treats each channel as its own group (instance norm's gradient)
    differs from autograd once a group holds more than one channel."""
    rng = np.random.default_rng(14)
    x, dout = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 4, 3))
    gamma, beta = _params(rng, (4,))
    xg = x.reshape(2, 2, 6)
    s = 1 / np.sqrt(xg.var(axis=2, keepdims=True) + 1e-5)  # (2, 2, 1), per group
    xhat = ((xg - xg.mean(axis=2, keepdims=True)) * s).reshape(x.shape)
    g = dout * gamma[None, :, None]
    wrong_s = np.repeat(s, 2, axis=1)  # (2, 4, 1), one value per channel
    buggy = wrong_s * (g - g.mean(axis=2, keepdims=True)
                       - xhat * np.mean(g * xhat, axis=2, keepdims=True))
    _, t_dx, _, _ = _torch_groupnorm(x, 2, gamma, beta, 1e-5, dout)
    assert rel_error(groupnorm_backward(dout, x, 2, gamma)[0], t_dx) < 1e-10
    assert rel_error(buggy, t_dx) > 1e-2


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(dout=np.ones((2, 3, 6))), ValueError, r"dout must have shape \(2, 6, 3\)"),
        (dict(dout=np.ones((2, 6, 3), dtype=int)), TypeError, "dout must be a floating-point"),
        (dict(num_groups=4), ValueError, "C = 6 must be divisible by num_groups = 4"),
        (dict(num_groups=0), ValueError, "num_groups must be a positive integer"),
        (dict(num_groups=2.0), ValueError, "num_groups must be a positive integer"),
        (dict(gamma=np.ones(3)), ValueError, r"gamma must have shape \(6,\)"),
        (dict(x=np.ones(6)), ValueError, "x must have at least 2 dimensions"),
        (dict(x=np.ones((2, 6, 3), dtype=np.int32)), TypeError, "x must be a floating-point"),
        (dict(x=np.ones((2, 6, 0)), dout=np.ones((2, 6, 0))), ValueError,
         "each group must contain at least one value"),
        (dict(eps=0.0), ValueError, "eps must be a positive number"),
    ],
)
def test_groupnorm_backward_bad_inputs(kwargs, error, match):
    args = dict(dout=np.ones((2, 6, 3)), x=np.ones((2, 6, 3)) + np.arange(3.0), num_groups=2,
                gamma=np.ones(6))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        groupnorm_backward(**args)


# --------------------------------------------------------------------------- RMS norm

@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 5), (6,)])
@pytest.mark.parametrize("eps", [1e-6, 1e-2])
def test_rmsnorm_matches_torch(shape, eps):
    rng = np.random.default_rng(9)
    x = rng.normal(0.5, 0.3, size=shape)
    weight = rng.normal(size=shape[-1])
    layer = torch.nn.RMSNorm(shape[-1:], eps=eps, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(T(weight))
        expected = layer(T(x)).numpy()
    assert rel_error(rmsnorm_forward(x, weight, eps=eps), expected) < 1e-10


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), seed=st.integers(0, 2**32 - 1))
def test_rmsnorm_equals_layernorm_on_zero_mean_rows_only(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    d = shape[-1]
    centred = x - x.mean(axis=-1, keepdims=True)
    ln, _ = layernorm_forward(centred, np.ones(d), np.zeros(d), eps=1e-6)
    assert np.allclose(rmsnorm_forward(centred, np.ones(d), eps=1e-6), ln, rtol=1e-10, atol=1e-12)
    if d > 1:  # on shifted rows the two differ: RMSNorm does not re-center
        shifted = x + 3.0
        ln_shifted, _ = layernorm_forward(shifted, np.ones(d), np.zeros(d), eps=1e-6)
        assert np.abs(rmsnorm_forward(shifted, np.ones(d), eps=1e-6) - ln_shifted).max() > 0.5


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(weight=np.ones(3)), ValueError, r"weight must have shape \(4,\)"),
        (dict(weight=np.ones(4, dtype=int)), TypeError, "weight must be a floating-point"),
        (dict(x=np.ones((2, 4), dtype=bool)), TypeError, "x must be a floating-point"),
        (dict(x=np.float64(2.0)), ValueError, "x must have at least 1 dimensions"),
        (dict(eps=0), ValueError, "eps must be a positive number"),
    ],
)
def test_rmsnorm_bad_inputs(kwargs, error, match):
    args = dict(x=np.ones((2, 4)), weight=np.ones(4))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        rmsnorm_forward(**args)


def _torch_rmsnorm(x, weight, eps, dout):
    """F.rms_norm forward and autograd gradients (dx, dweight)."""
    xt, wt = T(x).requires_grad_(), T(weight).requires_grad_()
    out = F.rms_norm(xt, x.shape[-1:], wt, eps)
    out.backward(T(dout))
    return out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()


@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 5), (6,), (3, 1)])
@pytest.mark.parametrize("eps", [1e-6, 1e-2])
def test_rmsnorm_backward_matches_autograd(shape, eps):
    rng = np.random.default_rng(16)
    x = rng.normal(0.5, 0.3, size=shape)
    weight = rng.normal(size=shape[-1])
    dout = rng.normal(size=shape)
    dx, dweight = rmsnorm_backward(dout, x, weight, eps=eps)
    _, t_dx, t_dweight = _torch_rmsnorm(x, weight, eps, dout)
    assert rel_error(dx, t_dx) < 1e-10
    assert rel_error(dweight, t_dweight) < 1e-10
    assert dx.dtype == dweight.dtype == np.float64


@pytest.mark.parametrize("shape", [(3, 6), (2, 3, 4), (5,)])
def test_rmsnorm_backward_matches_finite_differences(shape):
    rng = np.random.default_rng(17)
    x = rng.normal(1.0, 1.0, size=shape)
    weight = rng.normal(size=shape[-1])
    dout = rng.normal(size=shape)
    dx, dweight = rmsnorm_backward(dout, x, weight)
    assert rel_error(dx, numerical_gradient(lambda a: rmsnorm_forward(a, weight), x, dout)) < 1e-7
    assert rel_error(dweight, numerical_gradient(lambda w: rmsnorm_forward(x, w), weight, dout)) < 1e-7


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(1e-1, 1e2),
)
def test_rmsnorm_backward_property_against_autograd(shape, seed, scale):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=shape) + rng.normal()) * scale
    weight = rng.normal(size=shape[-1])
    dout = rng.normal(size=shape)
    dx, dweight = rmsnorm_backward(dout, x, weight)
    _, t_dx, t_dweight = _torch_rmsnorm(x, weight, 1e-6, dout)
    assert np.allclose(dx, t_dx, rtol=1e-9, atol=1e-9 / scale)
    assert np.allclose(dweight, t_dweight, rtol=1e-10, atol=1e-11)


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(2, 5), min_size=1, max_size=3), seed=st.integers(0, 2**32 - 1))
def test_rmsnorm_gradient_is_orthogonal_to_the_input_as_eps_vanishes(shape, seed):
    """out is invariant to re-scaling each row, so dx . x = 0 per row when eps -> 0 (of order
    eps / mean(x^2) otherwise), while dx does not sum to zero: nothing was re-centred."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) + 2.0
    dout = rng.normal(size=shape)
    weight = rng.normal(size=shape[-1])
    dx, _ = rmsnorm_backward(dout, x, weight, eps=1e-14)
    scale = np.abs(dx * x).sum(axis=-1)
    assert np.all(np.abs((dx * x).sum(axis=-1)) <= 1e-10 * (1 + scale))
    dx, _ = rmsnorm_backward(dout, x, weight, eps=1e-1)
    assert np.abs((dx * x).sum(axis=-1)).max() > 1e-6


def test_rmsnorm_backward_layernorm_gradient_bug_is_caught():
    """Reusing layer norm's backward (with its - mean(g) term) is wrong for RMSNorm."""
    rng = np.random.default_rng(18)
    x, dout = rng.normal(2.0, 1.0, size=(4, 6)), rng.normal(size=(4, 6))
    weight = rng.normal(size=6)
    s = 1 / np.sqrt((x**2).mean(axis=-1, keepdims=True) + 1e-6)
    xhat = x * s
    g = dout * weight
    buggy = s * (g - g.mean(axis=-1, keepdims=True) - xhat * np.mean(g * xhat, axis=-1, keepdims=True))
    _, t_dx, _ = _torch_rmsnorm(x, weight, 1e-6, dout)
    assert rel_error(rmsnorm_backward(dout, x, weight)[0], t_dx) < 1e-10
    assert rel_error(buggy, t_dx) > 1e-2


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(dout=np.ones((2, 4))), ValueError, r"dout must have shape \(2, 3, 4\)"),
        (dict(dout=np.ones((2, 3, 4), dtype=np.int64)), TypeError, "dout must be a floating-point"),
        (dict(weight=np.ones(3)), ValueError, r"weight must have shape \(4,\)"),
        (dict(weight=np.ones(4, dtype=int)), TypeError, "weight must be a floating-point"),
        (dict(x=np.ones((2, 3, 4), dtype=bool)), TypeError, "x must be a floating-point"),
        (dict(x=np.float64(2.0), dout=np.float64(1.0)), ValueError,
         "x must have at least 1 dimensions"),
        (dict(x=np.ones((2, 0)), dout=np.ones((2, 0))), ValueError,
         "the last axis of x must not be empty"),
        (dict(eps=-1e-6), ValueError, "eps must be a positive number"),
    ],
)
def test_rmsnorm_backward_bad_inputs(kwargs, error, match):
    args = dict(dout=np.ones((2, 3, 4)), x=np.ones((2, 3, 4)), weight=np.ones(4))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        rmsnorm_backward(**args)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_backward_passes_do_not_modify_their_inputs(dtype):
    """float64 inputs are used without a copy (astype(copy=False)), so an in-place update
    inside a backward pass would show up here; float32 exercises the converted path."""
    rng = np.random.default_rng(15)
    x, dout = rng.normal(size=(2, 4, 3)).astype(dtype), rng.normal(size=(2, 4, 3)).astype(dtype)
    gamma, weight = rng.normal(size=4).astype(dtype), rng.normal(size=3).astype(dtype)
    copies = [a.copy() for a in (x, dout, gamma, weight)]
    groupnorm_backward(dout, x, 2, gamma)
    rmsnorm_backward(dout, x, weight)
    for a, c in zip((x, dout, gamma, weight), copies):
        assert a.dtype == dtype and np.array_equal(a, c)


# --------------------------------------------------------------------------- invariances

# Ba et al. (2016) Table 1 with the RMSNorm row of Zhang & Sennrich (2019). Summed inputs
# a = x W^T for a batch x of shape (N, D_in) and a weight matrix W of shape (H, D_in); each
# normaliser is applied to a without affine parameters and with a negligible eps so
# invariances hold to rounding.
EPS = 1e-14
INVARIANT = {
    "LayerNorm": dict(weight_matrix_rescale=True, weight_matrix_recenter=True,
                      weight_vector_rescale=False, dataset_rescale=True,
                      dataset_recenter=False, single_case_rescale=True),
    "RMSNorm": dict(weight_matrix_rescale=True, weight_matrix_recenter=False,
                    weight_vector_rescale=False, dataset_rescale=True,
                    dataset_recenter=False, single_case_rescale=True),
    "BatchNorm": dict(weight_matrix_rescale=True, weight_matrix_recenter=False,
                      weight_vector_rescale=True, dataset_rescale=True,
                      dataset_recenter=True, single_case_rescale=False),
}


def _normalise(kind, a):
    h = a.shape[1]
    if kind == "LayerNorm":
        return layernorm_forward(a, np.ones(h), np.zeros(h), eps=EPS)[0]
    if kind == "RMSNorm":
        return rmsnorm_forward(a, np.ones(h), eps=EPS)
    return batchnorm_forward(a, np.ones(h), np.zeros(h), eps=EPS)[0]


def _transform(name, x, w, rng):
    delta = 2.5
    x, w = x.copy(), w.copy()
    if name == "weight_matrix_rescale":
        w *= delta
    elif name == "weight_matrix_recenter":  # the same vector added to every row of W
        w += rng.normal(size=w.shape[1])
    elif name == "weight_vector_rescale":  # one hidden unit's incoming weights
        w[1] *= delta
    elif name == "dataset_rescale":
        x *= delta
    elif name == "dataset_recenter":  # the same vector added to every training case
        x += rng.normal(size=x.shape[1])
    elif name == "single_case_rescale":
        x[2] *= delta
    return x, w


@pytest.mark.parametrize("kind", list(INVARIANT))
@pytest.mark.parametrize("transformation", list(INVARIANT["LayerNorm"]))
def test_invariance_table(kind, transformation):
    rng = np.random.default_rng(10)
    x, w = rng.normal(size=(8, 5)), rng.normal(size=(6, 5))
    before = _normalise(kind, x @ w.T)
    x2, w2 = _transform(transformation, x, w, rng)
    after = _normalise(kind, x2 @ w2.T)
    change = np.abs(after - before).max()
    if INVARIANT[kind][transformation]:
        assert change < 1e-9, f"{kind} should be invariant to {transformation}"
    else:
        assert change > 1e-2, f"{kind} should not be invariant to {transformation}"
