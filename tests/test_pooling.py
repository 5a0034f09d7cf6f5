"""Max, average and min pooling against F.max_pool2d / F.avg_pool2d and finite differences."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from solutions.gradcheck import numerical_gradient, rel_error
from solutions.pooling import (
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
    minpool2d_backward,
    minpool2d_forward,
)

TOL = 1e-10

# (input shape, kernel_size, stride, padding, ceil_mode)
CASES = [
    ((2, 3, 6, 6), 2, None, 0, False),  # non-overlapping tiling
    ((2, 3, 7, 7), 3, 1, 0, False),  # heavy overlap
    ((2, 3, 7, 8), 3, 2, 1, False),  # overlap + padding (ResNet stem)
    ((1, 2, 7, 9), (3, 2), (2, 1), (1, 0), False),  # rectangular kernel and stride
    ((1, 2, 5, 5), 2, 2, 1, True),  # ceil_mode: the window that would start in the padding is dropped
    ((1, 2, 6, 7), 3, 2, 1, True),  # ceil_mode: a last window runs past the right padding
    ((2, 1, 5, 6), (2, 3), (3, 2), (1, 1), True),
    ((1, 1, 2, 2), 3, 2, 0, True),  # kernel larger than the input, allowed by ceil_mode
]
CASE_IDS = [f"k{c[1]}-s{c[2]}-p{c[3]}-ceil{c[4]}" for c in CASES]


def _torch_max(x, dout, k, s, p, ceil_mode):
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out, idx = F.max_pool2d(t, k, s, p, ceil_mode=ceil_mode, return_indices=True)
    out.backward(torch.tensor(dout, dtype=torch.float64))
    return out.detach().numpy(), idx.numpy(), t.grad.numpy()


def _torch_avg(x, dout, k, s, p, ceil_mode, count_include_pad):
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out = F.avg_pool2d(t, k, s, p, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    out.backward(torch.tensor(dout, dtype=torch.float64))
    return out.detach().numpy(), t.grad.numpy()


def _distinct(shape, seed):
    """Values at least 0.1 apart, so no window has a tie and FD steps never move an argmax."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.1 + rng.uniform(0, 0.01, n)).reshape(shape) - n * 0.05


def _positive(shape, seed):
    """Upstream gradients for FD checks: no sign cancellation leaves a tiny dx entry that
    the finite difference's round-off would swamp."""
    return np.random.default_rng(seed).uniform(0.5, 1.5, shape)


def _check_max(x, k, s, p, ceil_mode, seed=0):
    out, cache = maxpool2d_forward(x, k, s, p, ceil_mode=ceil_mode)
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    t_out, t_idx, t_grad = _torch_max(x, dout, k, s, p, ceil_mode)
    assert out.shape == t_out.shape
    assert rel_error(out, t_out) <= TOL
    np.testing.assert_array_equal(cache["argmax"], t_idx)
    assert rel_error(maxpool2d_backward(dout, cache), t_grad) <= TOL


def _check_avg(x, k, s, p, ceil_mode, count_include_pad, seed=0):
    out, cache = avgpool2d_forward(x, k, s, p, count_include_pad=count_include_pad, ceil_mode=ceil_mode)
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    t_out, t_grad = _torch_avg(x, dout, k, s, p, ceil_mode, count_include_pad)
    assert out.shape == t_out.shape
    assert rel_error(out, t_out) <= TOL
    assert rel_error(avgpool2d_backward(dout, cache), t_grad) <= TOL


# ---------------------------------------------------------------- against torch


@pytest.mark.parametrize("shape, k, s, p, ceil_mode", CASES, ids=CASE_IDS)
def test_maxpool_matches_torch(shape, k, s, p, ceil_mode):
    _check_max(np.random.default_rng(1).standard_normal(shape), k, s, p, ceil_mode)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("shape, k, s, p, ceil_mode", CASES, ids=CASE_IDS)
def test_avgpool_matches_torch(shape, k, s, p, ceil_mode, count_include_pad):
    _check_avg(np.random.default_rng(2).standard_normal(shape), k, s, p, ceil_mode, count_include_pad)


@pytest.mark.parametrize("shape, k, s, p, ceil_mode", CASES, ids=CASE_IDS)
def test_minpool_is_negated_maxpool_of_negated_input(shape, k, s, p, ceil_mode):
    x = np.random.default_rng(3).integers(0, 3, shape).astype(np.float64)  # many ties
    out, cache = minpool2d_forward(x, k, s, p, ceil_mode=ceil_mode)
    dout = np.random.default_rng(4).standard_normal(out.shape)
    t_out, t_idx, t_grad = _torch_max(-x, -dout, k, s, p, ceil_mode)
    assert rel_error(out, -t_out) <= TOL
    np.testing.assert_array_equal(cache["argmax"], t_idx)  # first minimum wins
    assert rel_error(minpool2d_backward(dout, cache), -t_grad) <= TOL


def test_integer_valued_input_with_ties_matches_torch():
    x = np.random.default_rng(5).integers(0, 3, (3, 4, 9, 9)).astype(np.float64)
    for k, s, p, ceil_mode in [(2, 2, 0, False), (3, 1, 1, False), (3, 2, 1, True), ((2, 3), (1, 2), (1, 1), True)]:
        _check_max(x, k, s, p, ceil_mode)


def test_nan_and_infinity_follow_torch():
    # torch keeps a value if val > max or isnan(val): a NaN is the maximum, the last NaN
    # in a window wins, and a window of -inf points at its first input cell, not padding.
    rng = np.random.default_rng(6)
    x = rng.choice([np.nan, -np.inf, np.inf, 0.0, 1.0], size=(2, 3, 7, 7))
    x[0, 0] = -np.inf
    for k, s, p, ceil_mode in [(2, 2, 0, False), (3, 1, 1, False), (3, 2, 1, True)]:
        out, cache = maxpool2d_forward(x, k, s, p, ceil_mode=ceil_mode)
        t_out, t_idx, _ = _torch_max(x, np.ones(out.shape), k, s, p, ceil_mode)
        np.testing.assert_array_equal(out, t_out)  # NaN == NaN here
        np.testing.assert_array_equal(cache["argmax"], t_idx)


# ------------------------------------------------------- REFERENCE_FACTS checks 6, 7


def test_tie_in_a_window_of_ones_sends_gradient_to_first_cell():
    x = np.ones((1, 1, 2, 2))
    out, cache = maxpool2d_forward(x, 2)
    dx = maxpool2d_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(dx.ravel(), [1.0, 0.0, 0.0, 0.0])


def test_overlapping_windows_accumulate_on_shared_argmax():
    x = np.array([[0.0, 5, 5], [5, 0, 0], [0, 0, 0]]).reshape(1, 1, 3, 3)
    out, cache = maxpool2d_forward(x, 2, stride=1)
    np.testing.assert_array_equal(cache["argmax"].ravel(), [1, 1, 3, 4])
    dx = maxpool2d_backward(np.ones_like(out), cache)
    assert dx.ravel()[1] == 2.0
    _, t_idx, t_grad = _torch_max(x, np.ones(out.shape), 2, 1, 0, False)
    np.testing.assert_array_equal(t_idx.ravel(), [1, 1, 3, 4])
    np.testing.assert_array_equal(dx, t_grad)


@pytest.mark.parametrize(
    "count_include_pad, expected",
    # REFERENCE_FACTS check 7: [1.3333, 1.7778, 2.6667, 3.1111] with padding counted.
    [(True, [12 / 9, 16 / 9, 24 / 9, 28 / 9]), (False, [3.0, 4.0, 6.0, 7.0])],
)
def test_avgpool_count_include_pad(count_include_pad, expected):
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    out, _ = avgpool2d_forward(x, 3, stride=2, padding=1, count_include_pad=count_include_pad)
    np.testing.assert_allclose(out.ravel(), expected, rtol=1e-14)
    t_out = F.avg_pool2d(torch.tensor(x), 3, 2, 1, count_include_pad=count_include_pad)
    assert rel_error(out, t_out.numpy()) <= TOL


def test_ceil_mode_divisor_counts_padding_but_not_overhang():
    # H = W = 6, k=3, s=2, p=1, ceil: 4 windows per axis; the last starts at input row 5 and
    # covers row 5, one padding row (6) and one overhang row (7) beyond the padded input.
    out, cache = avgpool2d_forward(np.ones((1, 1, 6, 6)), 3, 2, 1, ceil_mode=True)
    assert out.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(cache["divisor"][0], [9, 9, 9, 6])
    np.testing.assert_array_equal(cache["divisor"][3], [6, 6, 6, 4])
    assert out[0, 0, 3, 3] == 1 / 4  # one input cell out of 2 x 2 counted cells
    _, cache = avgpool2d_forward(np.ones((1, 1, 6, 6)), 3, 2, 1, count_include_pad=False, ceil_mode=True)
    np.testing.assert_array_equal(cache["divisor"][3], [2, 3, 3, 1])


@pytest.mark.parametrize("H, k, s, p, expected", [(5, 2, 2, 1, 3), (6, 3, 2, 1, 4), (5, 3, 2, 0, 2), (4, 2, 3, 0, 2)])
def test_ceil_mode_output_size_matches_torch(H, k, s, p, expected):
    x = np.zeros((1, 1, H, H))
    assert maxpool2d_forward(x, k, s, p, ceil_mode=True)[0].shape[2:] == (expected, expected)
    assert avgpool2d_forward(x, k, s, p, ceil_mode=True)[0].shape[2:] == (expected, expected)
    assert F.max_pool2d(torch.zeros(1, 1, H, H), k, s, p, ceil_mode=True).shape[2] == expected


# ---------------------------------------------------------------- finite differences


@pytest.mark.parametrize("shape, k, s, p, ceil_mode", CASES[1:6], ids=CASE_IDS[1:6])
def test_max_and_min_backward_match_finite_differences(shape, k, s, p, ceil_mode):
    x = _distinct(shape, seed=7)
    for forward, backward in [(maxpool2d_forward, maxpool2d_backward), (minpool2d_forward, minpool2d_backward)]:
        out, cache = forward(x, k, s, p, ceil_mode=ceil_mode)
        dout = _positive(out.shape, seed=8)
        num = numerical_gradient(lambda z: forward(z, k, s, p, ceil_mode=ceil_mode)[0], x.copy(), dout)
        assert rel_error(backward(dout, cache), num) < 1e-7


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("shape, k, s, p, ceil_mode", CASES[1:6], ids=CASE_IDS[1:6])
def test_avg_backward_matches_finite_differences(shape, k, s, p, ceil_mode, count_include_pad):
    x = np.random.default_rng(9).standard_normal(shape)
    out, cache = avgpool2d_forward(x, k, s, p, count_include_pad, ceil_mode)
    dout = _positive(out.shape, seed=10)
    num = numerical_gradient(lambda z: avgpool2d_forward(z, k, s, p, count_include_pad, ceil_mode)[0], x.copy(), dout)
    assert rel_error(avgpool2d_backward(dout, cache), num) < 1e-7


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("shape, k, s, p, ceil_mode", CASES, ids=CASE_IDS)
def test_gradient_sum_is_preserved(shape, k, s, p, ceil_mode):
    x = np.random.default_rng(11).integers(0, 3, shape).astype(np.float64)
    out, cache = maxpool2d_forward(x, k, s, p, ceil_mode=ceil_mode)
    dout = np.random.default_rng(12).standard_normal(out.shape)
    np.testing.assert_allclose(maxpool2d_backward(dout, cache).sum(), dout.sum(), rtol=1e-12)
    out, cache = minpool2d_forward(x, k, s, p, ceil_mode=ceil_mode)
    np.testing.assert_allclose(minpool2d_backward(dout, cache).sum(), dout.sum(), rtol=1e-12)
    # Average pooling keeps the sum when every share lands on an input cell.
    out, cache = avgpool2d_forward(x, k, s, p, count_include_pad=False, ceil_mode=ceil_mode)
    np.testing.assert_allclose(avgpool2d_backward(dout, cache).sum(), dout.sum(), rtol=1e-12)


def test_avg_gradient_sum_with_padding_counted_loses_the_padding_shares():
    x = np.ones((1, 1, 3, 3))
    out, cache = avgpool2d_forward(x, 3, stride=2, padding=1)
    dx = avgpool2d_backward(np.ones_like(out), cache)
    # Each corner window has 4 input cells out of 9: the sum is 4 * 4/9, not 4.
    np.testing.assert_allclose(dx.sum(), 16 / 9, rtol=1e-14)


def test_inputs_are_not_mutated():
    x = np.random.default_rng(13).standard_normal((2, 2, 5, 5))
    x0 = x.copy()
    for forward, backward in [
        (maxpool2d_forward, maxpool2d_backward),
        (avgpool2d_forward, avgpool2d_backward),
        (minpool2d_forward, minpool2d_backward),
    ]:
        out, cache = forward(x, 3, 2, 1)
        dout = np.ones_like(out)
        backward(dout, cache)
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(dout, 1.0)


@st.composite
def pooling_configs(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    return shape, (kh, kw), stride, padding, draw(st.booleans()), draw(st.integers(0, 2**16))


@settings(max_examples=40, deadline=None)
@given(pooling_configs(), st.booleans())
def test_random_configurations_match_torch(config, ties):
    shape, k, s, p, ceil_mode, seed = config
    assume(all(shape[2 + a] + 2 * p[a] >= k[a] for a in range(2)))
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, shape).astype(np.float64) if ties else rng.standard_normal(shape)
    _check_max(x, k, s, p, ceil_mode, seed)
    _check_avg(x, k, s, p, ceil_mode, True, seed)
    _check_avg(x, k, s, p, ceil_mode, False, seed)


# ---------------------------------------------------------------- plausible bugs are caught


def _backward_to_every_tied_cell(x, out, dout, k):
    """A classic bug: the mask x == max selects every tied cell of a (k, k, stride k) window."""
    up = lambda a: a.repeat(k, axis=2).repeat(k, axis=3)  # noqa: E731
    return (x == up(out)) * up(dout)


def test_gradient_sent_to_every_tied_element_is_caught():
    x = np.random.default_rng(14).integers(0, 2, (2, 3, 6, 6)).astype(np.float64)
    out, cache = maxpool2d_forward(x, 2)
    dout = np.random.default_rng(15).standard_normal(out.shape)
    _, _, t_grad = _torch_max(x, dout, 2, None, 0, False)
    assert rel_error(maxpool2d_backward(dout, cache), t_grad) <= TOL
    assert rel_error(_backward_to_every_tied_cell(x, out, dout, 2), t_grad) > 0.5


def test_last_maximum_winning_is_caught():
    # Another plausible bug: a tie resolved towards the last maximum (e.g. a >= comparison).
    x = np.random.default_rng(17).integers(0, 2, (2, 3, 6, 6)).astype(np.float64)
    windows = x.reshape(2, 3, 3, 2, 3, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 3, 3, 3, 4)
    last = 3 - windows[..., ::-1].argmax(-1)  # window offset of the last maximum
    rows = np.arange(3)[:, None] * 2 + last // 2
    cols = np.arange(3)[None, :] * 2 + last % 2
    t_idx = _torch_max(x, np.zeros((2, 3, 3, 3)), 2, None, 0, False)[1]
    np.testing.assert_array_equal(maxpool2d_forward(x, 2)[1]["argmax"], t_idx)
    assert np.mean(rows * 6 + cols != t_idx) > 0.3


def test_fixed_divisor_is_caught():
    # Dividing every window by kh * kw is right only without padding (or with it counted).
    x = np.random.default_rng(16).standard_normal((1, 2, 5, 5))
    t_out, _ = _torch_avg(x, np.zeros((1, 2, 3, 3)), 3, 2, 1, False, False)
    ours, _ = avgpool2d_forward(x, 3, 2, 1, count_include_pad=False)
    fixed, _ = avgpool2d_forward(x, 3, 2, 1, count_include_pad=True)
    assert rel_error(ours, t_out) <= TOL < rel_error(fixed, t_out)


# ---------------------------------------------------------------- bad input


FORWARDS = [maxpool2d_forward, avgpool2d_forward, minpool2d_forward]


@pytest.mark.parametrize("forward", FORWARDS)
def test_refuses_bad_input(forward):
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        forward(np.zeros((1, 4, 4)), 2)
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        forward(np.zeros((1, 1, 4, 4), dtype=np.int64), 2)
    with pytest.raises(ValueError, match="larger than the padded input"):
        forward(x, 5)
    with pytest.raises(ValueError, match="larger than the padded input"):
        forward(x, (2, 7), padding=(0, 1))
    with pytest.raises(ValueError, match="padding .* at most half of kernel_size"):
        forward(x, 3, padding=2)
    with pytest.raises(ValueError, match="padding .* at most half of kernel_size"):
        forward(x, (2, 3), padding=(2, 1))
    for bad in [0, -1, 2.5, True, (2, 2, 2), "2"]:
        with pytest.raises(ValueError, match="kernel_size must be an int >= 1"):
            forward(x, bad)
    with pytest.raises(ValueError, match="stride must be an int >= 1"):
        forward(x, 2, stride=0)
    with pytest.raises(ValueError, match="padding must be an int >= 0"):
        forward(x, 2, padding=-1)
    with pytest.raises(TypeError, match="ceil_mode must be a bool"):
        forward(x, 2, ceil_mode="yes")


def test_torch_refuses_the_same_geometry():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(RuntimeError, match="pad should be at most half"):
        F.max_pool2d(x, 3, padding=2)
    with pytest.raises(RuntimeError, match="too small"):
        F.max_pool2d(x, 5)


@pytest.mark.parametrize(
    "forward, backward",
    [(maxpool2d_forward, maxpool2d_backward), (avgpool2d_forward, avgpool2d_backward), (minpool2d_forward, minpool2d_backward)],
)
def test_backward_refuses_bad_dout_and_cache(forward, backward):
    out, cache = forward(np.zeros((1, 2, 4, 4)), 2)
    with pytest.raises(ValueError, match=r"dout must have shape \(1, 2, 2, 2\)"):
        backward(np.zeros((1, 2, 2, 3)), cache)
    with pytest.raises(TypeError, match="dout must be a floating-point array"):
        backward(np.zeros(out.shape, dtype=np.int32), cache)
    with pytest.raises(TypeError, match="cache must be the dict returned by"):
        backward(np.zeros(out.shape), (out,))


def test_avgpool_refuses_non_bool_count_include_pad():
    with pytest.raises(TypeError, match="count_include_pad must be a bool"):
        avgpool2d_forward(np.zeros((1, 1, 4, 4)), 2, count_include_pad=1)


def test_float32_and_non_contiguous_inputs():
    base = np.random.default_rng(18).standard_normal((2, 3, 8, 7))
    x = base.transpose(0, 1, 3, 2)  # a strided view, shape (2, 3, 7, 8)
    _check_max(x, [3, 2], 2, 1, True)
    _check_avg(x, 3, [2, 1], 1, False, False)
    out, _ = maxpool2d_forward(x.astype(np.float32), 2)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, maxpool2d_forward(x.astype(np.float32).astype(np.float64), 2)[0])
