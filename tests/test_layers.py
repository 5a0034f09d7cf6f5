"""Every layer of solutions.layers against torch (forward and backward) and finite differences."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from solutions import layers as L
from solutions.gradcheck import numerical_gradient, rel_error

TOL = 1e-10
FD_TOL = 1e-7


def _t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def _fd_check(layer, x, training=True, seed=0):
    """Centred finite differences of sum(forward * dout) for the input and every parameter."""
    rng = np.random.default_rng(seed)
    out, cache = layer.forward(x, training)
    dout = rng.uniform(0.5, 1.5, out.shape) * rng.choice([-1, 1], out.shape)
    dx, grads = layer.backward(dout, cache)
    f = lambda _: layer.forward(x, training)[0]  # noqa: E731
    assert rel_error(dx, numerical_gradient(f, x, dout)) < FD_TOL
    for name, p in layer.params.items():
        assert rel_error(grads[name], numerical_gradient(f, p, dout)) < FD_TOL, name
    assert grads.keys() == layer.params.keys()


# --- affine ---------------------------------------------------------------------------------------


def test_affine_matches_torch_linear():
    rng = np.random.default_rng(0)
    layer = L.Affine(5, 3, rng=1)
    x, dout = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    ref = nn.Linear(5, 3).double()
    ref.load_state_dict({k: _t(v) for k, v in layer.params.items()})
    xt = _t(x, True)
    out_t = ref(xt)
    out_t.backward(_t(dout))
    out, cache = layer.forward(x, True)
    dx, grads = layer.backward(dout, cache)
    assert rel_error(out, out_t.detach().numpy()) < TOL
    assert rel_error(dx, xt.grad.numpy()) < TOL
    assert rel_error(grads["weight"], ref.weight.grad.numpy()) < TOL
    assert rel_error(grads["bias"], ref.bias.grad.numpy()) < TOL


def test_affine_finite_differences():
    _fd_check(L.Affine(6, 4, rng=2), np.random.default_rng(3).standard_normal((5, 6)))


def test_affine_default_init_is_torchs_distribution():
    w = L.Affine(100, 200, rng=0).params["weight"]
    assert np.abs(w).max() <= 0.1 and np.abs(w).max() > 0.099  # U(-1/sqrt(100), 1/sqrt(100))


def test_affine_refuses_mismatched_input():
    with pytest.raises(ValueError, match="takes 5 input features"):
        L.affine_forward(np.zeros((2, 4)), np.zeros((3, 5)), np.zeros(3))
    with pytest.raises(TypeError, match="floating-point"):
        L.affine_forward(np.zeros((2, 5), dtype=int), np.zeros((3, 5)), np.zeros(3))
    with pytest.raises(ValueError, match="bias must have shape"):
        L.affine_forward(np.zeros((2, 5)), np.zeros((3, 5)), np.zeros(4))


# --- ReLU and flatten ------------------------------------------------------------------------------


def test_relu_matches_torch_including_zero():
    x = np.array([[-1.0, 0.0, 2.0], [3.0, -0.5, 0.0]])
    dout = np.arange(6.0).reshape(2, 3) + 1
    xt = _t(x, True)
    F.relu(xt).backward(_t(dout))
    out, cache = L.ReLU().forward(x, True)
    dx, grads = L.ReLU().backward(dout, cache)
    assert np.array_equal(out, F.relu(_t(x)).numpy())
    assert np.array_equal(dx, xt.grad.numpy()) and grads == {}


def test_relu_finite_differences():
    x = np.random.default_rng(0).standard_normal((4, 7))
    x[np.abs(x) < 0.05] = 0.5  # keep FD steps away from the kink
    _fd_check(L.ReLU(), x)


def test_flatten_round_trip():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    out, cache = L.Flatten().forward(x, True)
    assert np.array_equal(out, nn.Flatten()(_t(x)).numpy())
    dx, _ = L.Flatten().backward(out * 2, cache)
    assert np.array_equal(dx, 2 * x)
    with pytest.raises(ValueError, match="does not match"):
        L.Flatten().backward(np.zeros((2, 5)), cache)


# --- convolution ---------------------------------------------------------------------------------

CONV_CASES = [
    ((2, 3, 7, 7), 4, 3, 1, 0),
    ((2, 3, 8, 8), 4, 3, 1, 1),  # "same" convolution
    ((2, 2, 9, 7), 3, 3, 2, 1),  # stride 2 with padding, odd sizes
    ((1, 2, 7, 9), 3, (3, 2), (2, 1), (1, 0)),  # rectangular kernel, stride, padding
    ((3, 1, 5, 5), 2, 5, 1, 2),  # kernel as large as the input
]


@pytest.mark.parametrize("shape, f, k, s, p", CONV_CASES)
def test_conv2d_matches_torch(shape, f, k, s, p):
    rng = np.random.default_rng(0)
    layer = L.Conv2d(shape[1], f, k, stride=s, padding=p, rng=1)
    ref = nn.Conv2d(shape[1], f, k, stride=s, padding=p).double()
    ref.load_state_dict({n: _t(v) for n, v in layer.params.items()})
    x = rng.standard_normal(shape)
    xt = _t(x, True)
    out_t = ref(xt)
    dout = rng.standard_normal(tuple(out_t.shape))
    out_t.backward(_t(dout))
    out, cache = layer.forward(x, True)
    dx, grads = layer.backward(dout, cache)
    assert out.shape == tuple(out_t.shape)
    assert rel_error(out, out_t.detach().numpy()) < TOL
    assert rel_error(dx, xt.grad.numpy()) < TOL
    assert rel_error(grads["weight"], ref.weight.grad.numpy()) < TOL
    assert rel_error(grads["bias"], ref.bias.grad.numpy()) < TOL


@pytest.mark.parametrize("shape, f, k, s, p", CONV_CASES[1:4])
def test_conv2d_finite_differences(shape, f, k, s, p):
    _fd_check(L.Conv2d(shape[1], f, k, stride=s, padding=p, rng=4),
              np.random.default_rng(5).standard_normal(shape))


def test_conv2d_refuses_bad_input():
    with pytest.raises(ValueError, match="2 input channels"):
        L.conv2d_forward(np.zeros((1, 3, 5, 5)), np.zeros((4, 2, 3, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="does not fit"):
        L.conv2d_forward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)), np.zeros(1))
    with pytest.raises(ValueError, match="stride"):
        L.conv2d_forward(np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 3, 3)), np.zeros(1), stride=0)
    with pytest.raises(ValueError, match="4 dimensions"):
        L.conv2d_forward(np.zeros((5, 5)), np.zeros((1, 1, 3, 3)), np.zeros(1))
    with pytest.raises(TypeError, match="conv2d_forward"):
        L.conv2d_backward(np.zeros((1, 1, 3, 3)), {"weight": 1})


# --- softmax cross-entropy --------------------------------------------------------------------------


def test_softmax_cross_entropy_matches_torch():
    rng = np.random.default_rng(0)
    logits, y = rng.standard_normal((6, 4)) * 3, rng.integers(0, 4, 6)
    lt = _t(logits, True)
    ref = F.cross_entropy(lt, torch.tensor(y))
    ref.backward()
    loss, dlogits = L.softmax_cross_entropy(logits, y)
    assert abs(loss - ref.item()) / ref.item() < TOL
    assert rel_error(dlogits, lt.grad.numpy()) < TOL


def test_softmax_cross_entropy_finite_differences_and_large_logits():
    rng = np.random.default_rng(1)
    logits, y = rng.standard_normal((5, 3)), rng.integers(0, 3, 5)
    _, dlogits = L.softmax_cross_entropy(logits, y)
    num = numerical_gradient(lambda z: np.array(L.softmax_cross_entropy(z, y)[0]), logits, 1.0)
    assert rel_error(dlogits, num) < FD_TOL
    big = np.array([[1000.0, 0.0], [0.0, -1000.0]])
    loss, grad = L.softmax_cross_entropy(big, np.array([0, 0]))
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert abs(loss - F.cross_entropy(_t(big), torch.tensor([0, 0])).item()) < 1e-12


def test_softmax_cross_entropy_refuses_bad_labels():
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        L.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(TypeError, match="integer class labels"):
        L.softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        L.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2]))


# --- the chapters' layers behind the uniform interface ---------------------------------------------


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 3, 3)])
def test_batchnorm_train_and_eval_match_torch(shape):
    rng = np.random.default_rng(0)
    layer = L.BatchNorm(shape[1])
    layer.params["weight"][:] = rng.uniform(0.5, 1.5, shape[1])
    layer.params["bias"][:] = rng.standard_normal(shape[1])
    ref = (nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d)(shape[1]).double()
    with torch.no_grad():
        ref.weight.copy_(_t(layer.params["weight"]))
        ref.bias.copy_(_t(layer.params["bias"]))
    for step in range(3):  # running statistics accumulate over steps
        x, dout = rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape)
        for training in (True, False):
            ref.train(training)
            ref.zero_grad()
            xt = _t(x, True)
            out_t = ref(xt)
            out_t.backward(_t(dout))
            out, cache = layer.forward(x, training)
            dx, grads = layer.backward(dout, cache)
            assert rel_error(out, out_t.detach().numpy()) < TOL
            assert rel_error(dx, xt.grad.numpy()) < TOL
            assert rel_error(grads["weight"], ref.weight.grad.numpy()) < TOL
            assert rel_error(grads["bias"], ref.bias.grad.numpy()) < TOL
        assert rel_error(layer.state["running_mean"], ref.running_mean.numpy()) < TOL
        assert rel_error(layer.state["running_var"], ref.running_var.numpy()) < TOL
        assert layer.state["num_batches_tracked"] == ref.num_batches_tracked.item() == step + 1


def test_batchnorm_eval_does_not_touch_running_statistics():
    layer = L.BatchNorm(3)
    layer.forward(np.random.default_rng(0).standard_normal((5, 3)), False)
    assert np.array_equal(layer.state["running_mean"], np.zeros(3)) and layer.state["num_batches_tracked"] == 0


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_finite_differences(training):
    rng = np.random.default_rng(1)
    layer = L.BatchNorm(3)
    layer.params["weight"][:] = rng.uniform(0.5, 1.5, 3)
    layer.state.update(running_mean=rng.standard_normal(3), running_var=rng.uniform(0.5, 2, 3))
    layer.momentum = 0.0  # finite differences re-run forward: keep the running stats fixed
    _fd_check(layer, rng.standard_normal((4, 3, 2, 2)), training)


def test_layernorm_matches_torch_and_finite_differences():
    rng = np.random.default_rng(0)
    for shape, normalized in [((5, 6), 6), ((2, 3, 4, 4), (3, 4, 4))]:
        layer = L.LayerNorm(normalized)
        layer.params["weight"][...] = rng.uniform(0.5, 1.5, layer.params["weight"].shape)
        layer.params["bias"][...] = rng.standard_normal(layer.params["bias"].shape)
        ref = nn.LayerNorm(normalized).double()
        ref.load_state_dict({k: _t(v) for k, v in layer.params.items()})
        x, dout = rng.standard_normal(shape), rng.standard_normal(shape)
        xt = _t(x, True)
        ref(xt).backward(_t(dout))
        out, cache = layer.forward(x, False)
        dx, grads = layer.backward(dout, cache)
        assert rel_error(out, ref(_t(x)).detach().numpy()) < TOL
        assert rel_error(dx, xt.grad.numpy()) < TOL
        assert rel_error(grads["weight"], ref.weight.grad.numpy()) < TOL
        _fd_check(layer, x)
    with pytest.raises(ValueError, match="does not end with"):
        L.LayerNorm(4).forward(np.zeros((2, 5)), True)


def test_dropout_fixed_mask_matches_torch_and_finite_differences():
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    torch.manual_seed(3)
    xt = _t(x, True)
    out_t = F.dropout(xt, 0.4, training=True)
    out_t.backward(_t(dout))
    layer = L.Dropout(0.4)
    torch.manual_seed(3)  # the same draw, on ones, reveals torch's keep-mask
    layer.fixed_mask = F.dropout(torch.ones(6, 5, dtype=torch.float64), 0.4, training=True).numpy() != 0
    out, cache = layer.forward(x, True)
    dx, _ = layer.backward(dout, cache)
    assert rel_error(out, out_t.detach().numpy()) < TOL
    assert rel_error(dx, xt.grad.numpy()) < TOL
    _fd_check(layer, x)
    assert np.array_equal(layer.forward(x, False)[0], x)  # eval: identity, mask ignored
    layer.fixed_mask = np.ones((2, 2), dtype=bool)
    with pytest.raises(ValueError, match="fixed_mask"):
        layer.forward(x, True)


def test_dropout_draws_from_its_own_generator():
    x = np.ones((50, 40))
    a, b = L.Dropout(0.3, rng=7), L.Dropout(0.3, rng=7)
    out_a, mask = a.forward(x, True)
    assert np.array_equal(out_a, b.forward(x, True)[0])
    assert abs(mask.mean() - 0.7) < 0.05
    assert not np.array_equal(out_a, a.forward(x, True)[0])  # a fresh mask each step


@pytest.mark.parametrize("cls, ref_cls", [(L.MaxPool2d, nn.MaxPool2d), (L.AvgPool2d, nn.AvgPool2d)])
@pytest.mark.parametrize("k, s, p", [(2, None, 0), (3, 2, 1)])
def test_pooling_layers_match_torch(cls, ref_cls, k, s, p):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 7))
    layer, ref = cls(k, s, p), ref_cls(k, s, p)
    xt = _t(x, True)
    out_t = ref(xt)
    dout = rng.standard_normal(tuple(out_t.shape))
    out_t.backward(_t(dout))
    out, cache = layer.forward(x, True)
    dx, grads = layer.backward(dout, cache)
    assert rel_error(out, out_t.detach().numpy()) < TOL
    assert rel_error(dx, xt.grad.numpy()) < TOL and grads == {}
    _fd_check(layer, x)


def test_pooling_layers_refuse_bad_arguments_at_construction():
    with pytest.raises(ValueError, match="padding"):
        L.MaxPool2d(2, 2, 2)
    with pytest.raises(ValueError, match="kernel_size"):
        L.AvgPool2d(0)


def test_layers_refuse_bad_sizes():
    with pytest.raises(ValueError, match="in_features"):
        L.Affine(0, 3)
    with pytest.raises(ValueError, match="p is the probability"):
        L.Dropout(1.0)
    with pytest.raises(ValueError, match="eps"):
        L.BatchNorm(3, eps=0)
