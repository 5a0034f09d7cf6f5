"""The whole network: end-to-end gradient check, and equality with the same torch network
trained step for step (SGD with momentum, Adam), running statistics and eval predictions."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from solutions import layers as L
from solutions.gradcheck import numerical_gradient, rel_error
from solutions.network import (
    SGD,
    Adam,
    Sequential,
    TorchDropoutMasks,
    accuracy,
    check_gradients,
    fit,
    gradient_errors,
    lockstep_with_torch,
    minibatch_indices,
    torch_twin,
)

EQ_TOL = 1e-9


def small_cnn(seed=0, p=0.2):
    """Every kind of layer: conv -> BN -> ReLU -> max pool, conv -> BN -> ReLU -> avg pool,
    flatten, dropout, affine -> LN -> ReLU -> affine."""
    rng = np.random.default_rng(seed)
    return Sequential(
        L.Conv2d(1, 3, 3, padding=1, bias=False, rng=rng), L.BatchNorm(3), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(3, 4, 3, padding=1, bias=False, rng=rng), L.BatchNorm(4), L.ReLU(), L.AvgPool2d(2),
        L.Flatten(), L.Dropout(p, rng=rng),
        L.Affine(16, 8, rng=rng), L.LayerNorm(8), L.ReLU(), L.Affine(8, 5, rng=rng),
    )


def small_mlp(seed=0, p=0.3, d=64, h=24, k=10):
    rng = np.random.default_rng(seed)
    return Sequential(
        L.Affine(d, h, bias=False, rng=rng), L.BatchNorm(h), L.ReLU(), L.Dropout(p, rng=rng),
        L.Affine(h, h, rng=rng), L.LayerNorm(h), L.ReLU(), L.Dropout(p, rng=rng),
        L.Affine(h, k, rng=rng),
    )


def _randomise_norm_params(model, seed):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, (L.BatchNorm, L.LayerNorm)):
            layer.params["weight"][...] = rng.uniform(0.5, 1.5, layer.params["weight"].shape)
            layer.params["bias"][...] = rng.normal(0, 0.3, layer.params["bias"].shape)


@pytest.fixture(scope="module")
def digits():
    from solutions.experiments import load_digits_split

    d = load_digits_split()
    return (d.X_train.double().numpy(), d.y_train.numpy(), d.X_test.double().numpy(), d.y_test.numpy())


# --- end-to-end gradient check -------------------------------------------------------------------


@pytest.mark.parametrize("build, shape", [(small_cnn, (6, 1, 8, 8)), (small_mlp, (8, 64))])
def test_whole_network_gradient_matches_finite_differences(build, shape):
    """Every parameter, train mode, one fixed dropout mask: the norm measure below 1e-7, and
    every entry within 1e-5 (the worst entries are those near zero, where the finite
    difference's round-off is as large as the gradient)."""
    model = build(seed=1).train()
    _randomise_norm_params(model, 2)
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal(shape), rng.integers(0, 5, shape[0])
    errors = check_gradients(model, X, y)
    assert errors.keys() == model.parameters().keys()
    for name, (norm_error, max_error) in errors.items():
        assert norm_error < 1e-7 and max_error < 1e-5, (name, norm_error, max_error)
    assert all(d.fixed_mask is None for d in model.dropout_layers())


def test_gradient_check_catches_a_wrong_backward():
    model = small_mlp(seed=1)
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((8, 64)), rng.integers(0, 5, 8)
    relu = model.layers[2]
    relu.backward = lambda dout, cache: (dout, {})  # forgets the mask
    errors = check_gradients(model, X, y)
    assert errors["0.weight"][0] > 1e-2 and errors["8.weight"][0] < 1e-7


def test_input_gradient_matches_finite_differences():
    model = small_cnn(seed=4).train()
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((4, 1, 8, 8)), rng.integers(0, 5, 4)
    model.dropout_layers()[0].fixed_mask = rng.random((4, 16)) > 0.2
    _, dlogits = L.softmax_cross_entropy(model.forward(X), y)
    dx, _ = model.backward(dlogits)
    num = numerical_gradient(lambda x: np.array(model.loss(x, y)[0]), X, 1.0)
    norm_error, max_error = gradient_errors(dx, num)
    assert norm_error < 1e-7 and max_error < 1e-5


def test_train_and_eval_modes():
    model = small_mlp(seed=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 64))
    bn = model.layers[1]
    model.eval()
    a, b = model.forward(X), model.forward(X)
    assert np.array_equal(a, b) and bn.state["num_batches_tracked"] == 0  # eval: no state change
    model.train()
    model.forward(X)
    assert bn.state["num_batches_tracked"] == 1
    assert not np.array_equal(bn.state["running_mean"], np.zeros(24))
    assert not np.allclose(model.forward(X), model.forward(X))  # fresh dropout masks


# --- step-for-step equality with torch ---------------------------------------------------------------


def _torch_sgd_run(model, X, y, steps, batch_size, lr, momentum, seed, input_ndim):
    """An explicit loop, independent of lockstep_with_torch: torch trains the twin, our model
    is fed the same batches and torch's dropout masks."""
    twin = torch_twin(model.train(), input_ndim)
    opt_t = torch.optim.SGD(twin.parameters(), lr=lr, momentum=momentum)
    opt = SGD(model.parameters(), lr=lr, momentum=momentum)
    rng = np.random.default_rng(seed)
    idx_all = []
    while len(idx_all) < steps:
        idx_all += minibatch_indices(len(X), batch_size, rng)
    losses, losses_t = [], []
    torch.manual_seed(seed)
    with TorchDropoutMasks(twin) as rec:
        for idx in idx_all[:steps]:
            rec.clear()
            opt_t.zero_grad()
            out_t = twin(torch.as_tensor(X[idx]))
            loss_t = F.cross_entropy(out_t, torch.as_tensor(y[idx]))
            loss_t.backward()
            opt_t.step()
            assert len(rec.masks) == len(model.dropout_layers())
            for layer, mask in zip(model.dropout_layers(), rec.masks):
                layer.fixed_mask = mask
            loss, grads = model.loss(X[idx], y[idx])
            opt.step(grads)
            losses.append(loss)
            losses_t.append(loss_t.item())
    return twin, np.array(losses), np.array(losses_t)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_sgd_momentum_training_equals_torch(digits, kind):
    X, y = digits[0][:400], digits[1][:400]
    if kind == "cnn":
        X, model, ndim = X.reshape(-1, 1, 8, 8), small_cnn(seed=7), 4
        y = y % 5
    else:
        model, ndim = small_mlp(seed=7), 2
    twin, losses, losses_t = _torch_sgd_run(model, X, y, 25, 32, 0.05, 0.9, 11, ndim)
    assert rel_error(losses, losses_t) <= EQ_TOL
    assert losses[-5:].mean() < losses[:5].mean()  # it did learn
    state_t = twin.state_dict()
    own = model.state_dict()
    assert own.keys() == state_t.keys()
    for k, v in own.items():
        assert rel_error(v, state_t[k].numpy()) <= EQ_TOL, k
    assert any("running_var" in k for k in own)
    model.eval()
    twin.eval()
    with torch.no_grad():
        logits_t = twin(torch.as_tensor(X)).numpy()
    logits = model.forward(X)
    assert rel_error(logits, logits_t) <= EQ_TOL
    assert np.array_equal(logits.argmax(1), logits_t.argmax(1))


def test_dropout_masks_recorded_are_the_ones_torch_used():
    twin = nn.Sequential(nn.Dropout(0.5)).double()
    x = torch.randn(7, 9, dtype=torch.float64)
    torch.manual_seed(0)
    with TorchDropoutMasks(twin) as rec:
        out = twin(x)
    assert torch.equal(out, x * torch.as_tensor(rec.masks[0]) / 0.5)
    torch.manual_seed(0)
    assert torch.equal(twin(x), out)  # the recorder did not consume random numbers


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_lockstep_with_torch(digits, optimizer):
    model = small_cnn(seed=2)
    X, y = digits[0][:300].reshape(-1, 1, 8, 8), digits[1][:300] % 5
    rec = lockstep_with_torch(model, X, y, steps=20, batch_size=30, optimizer=optimizer,
                              lr=0.01 if optimizer == "adam" else 0.05)
    assert len(rec["loss_ours"]) == 20
    assert rel_error(np.array(rec["loss_ours"]), np.array(rec["loss_torch"])) <= EQ_TOL
    assert max(rec["max_param_error"]) <= EQ_TOL
    assert rec["state_error"] <= EQ_TOL and rec["eval_logit_error"] <= EQ_TOL
    assert all(layer.fixed_mask is None for layer in model.dropout_layers())


# --- the solvers on their own --------------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda p, q: (SGD(p, lr=0.1), torch.optim.SGD(q, lr=0.1)),
    lambda p, q: (SGD(p, lr=0.1, momentum=0.9), torch.optim.SGD(q, lr=0.1, momentum=0.9)),
    lambda p, q: (Adam(p, lr=0.01), torch.optim.Adam(q, lr=0.01)),
    lambda p, q: (Adam(p, lr=0.003, betas=(0.5, 0.9), eps=1e-6),
                  torch.optim.Adam(q, lr=0.003, betas=(0.5, 0.9), eps=1e-6)),
], ids=["sgd", "sgd-momentum", "adam", "adam-betas"])
def test_optimizer_matches_torch(make):
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    tparams = [torch.tensor(v, requires_grad=True) for v in params.values()]
    ours, theirs = make(params, tparams)
    for _ in range(30):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        for t, g in zip(tparams, grads.values()):
            t.grad = torch.tensor(g)
        ours.step(grads)
        theirs.step()
    for v, t in zip(params.values(), tparams):
        assert rel_error(v, t.detach().numpy()) <= 1e-12


def test_optimizers_refuse_bad_arguments():
    params = {"w": np.zeros(3)}
    with pytest.raises(ValueError, match="lr"):
        SGD(params, lr=0)
    with pytest.raises(ValueError, match="momentum"):
        SGD(params, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="betas"):
        Adam(params, betas=(0.9,))
    with pytest.raises(KeyError, match="missing"):
        SGD(params, lr=0.1).step({})
    with pytest.raises(ValueError, match="shape"):
        Adam(params).step({"w": np.zeros(4)})


# --- training and plumbing ------------------------------------------------------------------------------


def test_fit_learns_digits_and_is_reproducible(digits):
    X, y, Xt, yt = digits
    runs = []
    for _ in range(2):
        model = small_mlp(seed=0, p=0.1)
        hist = fit(model, Adam(model.parameters(), lr=0.01), X, y, epochs=3, batch_size=64, seed=5,
                   X_test=Xt, y_test=yt)
        runs.append(hist)
    assert runs[0].losses == runs[1].losses
    assert runs[0].test_accuracy[-1] > 0.9 and len(runs[0].losses) == 3 * (len(X) // 64)
    assert model.training


def test_minibatch_indices_cover_the_data_once():
    batches = minibatch_indices(10, 3, 0)
    assert [len(b) for b in batches] == [3, 3, 3]
    assert len(set(np.concatenate(batches))) == 9
    with pytest.raises(ValueError, match="batch_size"):
        minibatch_indices(10, 11, 0)


def test_state_dict_round_trip_and_errors():
    a, b = small_mlp(seed=0), small_mlp(seed=1)
    a.train().forward(np.random.default_rng(0).standard_normal((5, 64)))
    b.load_state_dict(a.state_dict())
    for k, v in a.state_dict().items():
        assert np.array_equal(v, b.state_dict()[k])
    with pytest.raises(KeyError, match="missing"):
        b.load_state_dict({})
    bad = a.state_dict()
    bad["0.weight"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="shape"):
        b.load_state_dict(bad)
    with pytest.raises(TypeError, match="Layer"):
        Sequential(nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="forward"):
        Sequential(L.ReLU()).backward(np.zeros((1, 1)))


def test_accuracy_uses_the_current_mode():
    model = small_mlp(seed=0).eval()
    X = np.random.default_rng(0).standard_normal((6, 64))
    assert accuracy(model, X, model.predict(X)) == 1.0


# --- the plain functions of the exercise -------------------------------------------------------------


def test_train_step_equals_torch_with_fixed_masks():
    from solutions.network import train_step

    model = small_mlp(seed=3, d=12, h=10, k=4)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((6, 16, 12)), rng.integers(0, 4, (6, 16))
    twin = torch_twin(model, 2)
    opt_t = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.8)
    velocities = None
    for step in range(6):
        masks = [rng.random((16, 10)) > 0.3 for _ in model.dropout_layers()]
        for layer, mask in zip(model.dropout_layers(), masks):
            layer.fixed_mask = mask
        for mod, mask in zip([m for m in twin if isinstance(m, nn.Dropout)], masks):
            mod.register_forward_hook(lambda mod, inp, out, mask=mask: inp[0] * torch.as_tensor(mask) / 0.7)
        opt_t.zero_grad()
        loss_t = F.cross_entropy(twin(torch.as_tensor(X[step])), torch.as_tensor(y[step]))
        loss_t.backward()
        opt_t.step()
        for mod in twin:
            mod._forward_hooks.clear()
        loss, velocities = train_step(model.layers, X[step], y[step], velocities, 0.1, 0.8)
        assert abs(loss - loss_t.item()) <= EQ_TOL * loss
    state_t = twin.state_dict()
    for k, v in model.state_dict().items():
        assert rel_error(v, state_t[k].numpy()) <= EQ_TOL, k
    assert [sorted(v) for v in velocities] == [sorted(layer.params) for layer in model.layers]


def test_step_functions_do_not_modify_their_inputs():
    from solutions.network import adam_step, sgd_momentum_step

    p, g, vel = np.ones(3), np.full(3, 2.0), np.full(3, 0.5)
    new, new_vel = sgd_momentum_step(p, g, vel, 0.1, 0.9)
    assert np.allclose(new_vel, 0.9 * 0.5 + 2) and np.allclose(new, 1 - 0.1 * new_vel)
    assert np.array_equal(p, np.ones(3)) and np.array_equal(vel, np.full(3, 0.5))
    new, m, v = adam_step(p, g, np.zeros(3), np.zeros(3), 1, lr=0.1)
    assert np.allclose(new, 1 - 0.1 * 2 / (2 + 1e-8))  # first Adam step moves by about lr
    with pytest.raises(ValueError, match="step number"):
        adam_step(p, g, m, v, 0)
    with pytest.raises(TypeError, match="training must be a bool"):
        from solutions.network import network_forward

        network_forward([], np.zeros((2, 2)), "yes")


def test_torch_twin_and_lockstep_refuse_what_they_cannot_do():
    with pytest.raises(ValueError, match="input_ndim"):
        torch_twin(small_mlp(), 3)

    class Odd(L.Layer):
        def forward(self, x, training):
            return x, None

    with pytest.raises(TypeError, match="no torch module"):
        torch_twin(Sequential(Odd()), 2)
    with pytest.raises(ValueError, match="optimizer"):
        lockstep_with_torch(small_mlp(), np.zeros((4, 64)), np.zeros(4, dtype=int), steps=1, batch_size=2,
                            optimizer="rmsprop")


def test_twin_starts_in_the_same_mode_and_state():
    model = small_cnn(seed=0)
    model.train().forward(np.random.default_rng(0).standard_normal((4, 1, 8, 8)))  # running stats move
    twin = torch_twin(model.eval(), 4)
    assert not twin.training
    for k, v in model.state_dict().items():
        assert rel_error(v, twin.state_dict()[k].numpy()) == 0.0, k
    assert "Conv2d(1, 3" in repr(model) and "Dropout(p=0.2)" in repr(model)
