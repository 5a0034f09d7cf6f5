"""BN between training and inference against nn.BatchNorm1d/2d, update_bn and the fuse functions."""
import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval
from torch.optim.swa_utils import update_bn

from solutions.bn_inference import (
    batchnorm_eval,
    batchnorm_train_step,
    fold_batchnorm,
    population_statistics,
    recalibrate_batchnorm,
)
from solutions.gradcheck import rel_error

TOL = 1e-10
F64 = torch.float64


def as_np(t):
    return t.detach().numpy().copy()


def bn_module(kind, c, momentum, seed):
    torch.manual_seed(seed)
    bn = kind(c, momentum=momentum, dtype=F64)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(c, dtype=F64))
        bn.bias.copy_(torch.randn(c, dtype=F64))
    return bn


# ---------------------------------------------------------------- train step and eval


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
@pytest.mark.parametrize(
    "kind, shape", [(nn.BatchNorm1d, (16, 5)), (nn.BatchNorm1d, (6, 3, 7)), (nn.BatchNorm2d, (4, 3, 5, 5))]
)
def test_train_steps_match_module(kind, shape, momentum):
    bn = bn_module(kind, shape[1], momentum, seed=0)
    gamma, beta = as_np(bn.weight), as_np(bn.bias)
    rm, rv, nbt = as_np(bn.running_mean), as_np(bn.running_var), int(bn.num_batches_tracked)
    rng = np.random.default_rng(1)
    for step in range(4):
        x = rng.standard_normal(shape) * (1 + step) + step
        out, rm, rv, nbt = batchnorm_train_step(x, gamma, beta, rm, rv, nbt, momentum=momentum)
        t_out = bn(torch.tensor(x))
        assert rel_error(out, as_np(t_out)) < TOL
        assert rel_error(rm, as_np(bn.running_mean)) < TOL
        assert rel_error(rv, as_np(bn.running_var)) < TOL
        assert nbt == int(bn.num_batches_tracked) == step + 1
    # Eval with the tracked statistics matches the module in eval mode, batch size 1 included.
    bn.eval()
    for n in (1, 3):
        x = rng.standard_normal((n,) + shape[1:])
        out = batchnorm_eval(x, gamma, beta, rm, rv)
        assert rel_error(out, as_np(bn(torch.tensor(x)))) < TOL


def test_one_step_from_initial_state_reference_fact_3():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 4)) * 3 + 1
    _, rm, rv, nbt = batchnorm_train_step(x, np.ones(4), np.zeros(4), np.zeros(4), np.ones(4), 0)
    assert rel_error(rv, 0.9 * 1 + 0.1 * x.var(axis=0, ddof=1)) < 1e-15
    assert rel_error(rm, 0.1 * x.mean(axis=0)) < 1e-15
    assert nbt == 1
    bn = nn.BatchNorm1d(4, dtype=F64)
    bn(torch.tensor(x))
    assert rel_error(rv, as_np(bn.running_var)) < 1e-15
    assert rel_error(rm, as_np(bn.running_mean)) < 1e-15


def test_momentum_none_is_the_plain_mean_reference_fact_4():
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((8, 3, 2, 2)) * (k + 1) + k for k in range(5)]
    rm, rv, nbt = np.full(3, 7.0), np.full(3, 9.0), 0  # arbitrary: the first step discards them
    for x in batches:
        _, rm, rv, nbt = batchnorm_train_step(x, np.ones(3), np.zeros(3), rm, rv, nbt, momentum=None)
    means = np.mean([b.mean(axis=(0, 2, 3)) for b in batches], axis=0)
    variances = np.mean([b.var(axis=(0, 2, 3), ddof=1) for b in batches], axis=0)
    assert rel_error(rm, means) < 1e-13
    assert rel_error(rv, variances) < 1e-13
    assert nbt == 5


def test_momentum_none_continues_from_num_batches_tracked():
    # Factor 1 / (k + 1) after k batches: the new batch gets weight 1/3 when 2 were seen.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 2))
    _, rm, rv, nbt = batchnorm_train_step(x, np.ones(2), np.zeros(2), np.ones(2), np.full(2, 4.0), 2, None)
    assert nbt == 3
    assert rel_error(rm, (2 * 1.0 + x.mean(axis=0)) / 3) < 1e-14
    assert rel_error(rv, (2 * 4.0 + x.var(axis=0, ddof=1)) / 3) < 1e-14


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 6),
    c=st.integers(1, 4),
    spatial=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    momentum=st.sampled_from([0.0, 0.1, 0.5, 1.0, None]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_shapes_match_module(n, c, spatial, momentum, seed):
    kind = [nn.BatchNorm1d, nn.BatchNorm1d, nn.BatchNorm2d][len(spatial)]
    shape = (n, c, *spatial)
    bn = bn_module(kind, c, momentum, seed=seed % 1000)
    gamma, beta = as_np(bn.weight), as_np(bn.bias)
    rm, rv, nbt = np.zeros(c), np.ones(c), 0
    rng = np.random.default_rng(seed)
    for _ in range(2):
        x = rng.standard_normal(shape) + 2.0
        _, rm, rv, nbt = batchnorm_train_step(x, gamma, beta, rm, rv, nbt, momentum=momentum)
        bn(torch.tensor(x))
    # Running statistics are positive-ish and far from 0, so rel_error is meaningful.
    assert rel_error(rm, as_np(bn.running_mean)) < TOL
    assert rel_error(rv, as_np(bn.running_var)) < TOL
    bn.eval()
    x = rng.standard_normal(shape) + 2.0
    t_out = as_np(bn(torch.tensor(x)))
    out = batchnorm_eval(x, gamma, beta, rm, rv)
    assert np.max(np.abs(out - t_out)) <= 1e-12 * np.max(np.abs(t_out))


def test_inputs_not_mutated_and_new_arrays_returned():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 3))
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    rm, rv = rng.standard_normal(3), rng.random(3) + 0.5
    args = (x, gamma, beta, rm, rv)
    copies = [a.copy() for a in args]
    out, new_rm, new_rv, _ = batchnorm_train_step(*args, 4)
    batchnorm_eval(*args)
    for a, b in zip(args, copies):
        np.testing.assert_array_equal(a, b)
    for new, old in ((new_rm, rm), (new_rv, rv), (out, x)):
        assert not np.shares_memory(new, old)
    # momentum = 0 keeps the values but still returns fresh arrays.
    _, same_rm, same_rv, _ = batchnorm_train_step(*args, 4, momentum=0.0)
    np.testing.assert_array_equal(same_rm, rm)
    assert not np.shares_memory(same_rm, rm) and not np.shares_memory(same_rv, rv)


def test_biased_running_variance_bug_is_caught():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 4))
    bn = nn.BatchNorm1d(4, dtype=F64)
    bn(torch.tensor(x))
    _, _, rv, _ = batchnorm_train_step(x, np.ones(4), np.zeros(4), np.zeros(4), np.ones(4), 0)
    buggy = 0.9 * 1 + 0.1 * x.var(axis=0)  # biased variance in the running update
    assert rel_error(rv, as_np(bn.running_var)) < TOL
    assert rel_error(buggy, as_np(bn.running_var)) > 1e-3


def test_train_step_bad_inputs():
    x, v = np.ones((4, 3)), np.ones(3)
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\)"):
        batchnorm_train_step(x, v, v, np.ones(2), v, 0)
    with pytest.raises(ValueError, match=r"running_var must have shape \(3,\)"):
        batchnorm_train_step(x, v, v, v, np.ones(4), 0)
    with pytest.raises(ValueError, match="running_var must be non-negative"):
        batchnorm_train_step(x, v, v, v, -v, 0)
    with pytest.raises(TypeError, match="running_mean must be a floating-point array"):
        batchnorm_train_step(x, v, v, np.zeros(3, dtype=int), v, 0)
    for nbt in (-1, 1.0, True, None):
        with pytest.raises(ValueError, match="num_batches_tracked must be a non-negative int"):
            batchnorm_train_step(x, v, v, v, v, nbt)
    for momentum in (-0.1, 1.5, "0.1", True):
        with pytest.raises(ValueError, match="momentum must be None or a number in"):
            batchnorm_train_step(x, v, v, v, v, 0, momentum=momentum)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        batchnorm_train_step(np.ones((1, 3)), v, v, v, v, 0)
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        batchnorm_train_step(x, np.ones(2), v, v, v, 0)


def test_eval_bad_inputs():
    x, v = np.ones((4, 3)), np.ones(3)
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        batchnorm_eval(np.ones((4, 3), dtype=np.int64), v, v, v, v)
    with pytest.raises(ValueError, match="x must have at least 2 dimensions"):
        batchnorm_eval(np.ones(3), v, v, v, v)
    with pytest.raises(ValueError, match=r"beta must have shape \(3,\)"):
        batchnorm_eval(x, v, np.ones(4), v, v)
    with pytest.raises(ValueError, match="running_var must be non-negative"):
        batchnorm_eval(x, v, v, v, -v)
    with pytest.raises(ValueError, match="eps must be a positive number"):
        batchnorm_eval(x, v, v, v, v, eps=0)


# ---------------------------------------------------------------- population statistics


def test_population_statistics_uneven_batches_including_size_one():
    rng = np.random.default_rng(7)
    sizes = [5, 1, 3, 1, 8, 2]
    batches = [rng.standard_normal((n, 4)) * 2 + 3 for n in sizes]
    data = np.concatenate(batches)
    mean, var = population_statistics(iter(batches))  # a one-shot iterator is enough
    assert rel_error(mean, data.mean(axis=0)) < TOL
    assert rel_error(var, data.var(axis=0, ddof=1)) < TOL


def test_population_statistics_conv_batches_with_varying_sizes():
    rng = np.random.default_rng(8)
    batches = [rng.standard_normal((n, 3, h, h)) + 1 for n, h in [(2, 4), (1, 3), (5, 4), (1, 1)]]
    values = np.concatenate([b.transpose(1, 0, 2, 3).reshape(3, -1) for b in batches], axis=1)
    mean, var = population_statistics(b for b in batches)
    assert rel_error(mean, values.mean(axis=1)) < TOL
    assert rel_error(var, values.var(axis=1, ddof=1)) < TOL


def test_population_statistics_survive_a_huge_offset():
    rng = np.random.default_rng(9)
    batches = [1e8 + rng.standard_normal((n, 3)) for n in (50, 7, 1, 120, 30)]
    data = np.concatenate(batches)
    mean, var = population_statistics(batches)
    exact = data.var(axis=0, ddof=1)  # two-pass on the concatenation
    assert rel_error(mean, data.mean(axis=0)) < 1e-14
    assert np.all(np.abs(var - exact) < 1e-6 * exact)
    # The running sum of squares loses everything: 1e16-sized sums, O(1) spread.
    n = len(data)
    naive = (np.sum([(b**2).sum(axis=0) for b in batches], axis=0) - n * data.mean(axis=0) ** 2) / (n - 1)
    assert np.all(np.abs(naive - exact) > 0.1 * exact)


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 6), min_size=1, max_size=8).filter(lambda s: sum(s) >= 2),
    c=st.integers(1, 3),
    spatial=st.lists(st.integers(1, 2), min_size=0, max_size=2),
    seed=st.integers(0, 2**32 - 1),
)
def test_population_statistics_random_splits(sizes, c, spatial, seed):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((sum(sizes), c, *spatial)) * 2 + 5
    batches = np.split(data, np.cumsum(sizes)[:-1])  # empty batches included
    axes = (0,) + tuple(range(2, data.ndim))
    mean, var = population_statistics(batches)
    assert rel_error(mean, data.mean(axis=axes)) < TOL
    assert rel_error(var, data.var(axis=axes, ddof=1)) < TOL


def test_population_statistics_bad_inputs():
    with pytest.raises(ValueError, match="batches is empty"):
        population_statistics([])
    with pytest.raises(ValueError, match="batch 1 has 2 channels on axis 1, earlier batches have 3"):
        population_statistics([np.ones((2, 3)), np.ones((2, 2))])
    with pytest.raises(ValueError, match="need at least 2 values per channel"):
        population_statistics([np.ones((1, 3)), np.ones((0, 3))])
    with pytest.raises(TypeError, match="batch 0 must be a floating-point array"):
        population_statistics([np.ones((2, 3), dtype=int)])
    with pytest.raises(ValueError, match="batch 0 must have at least 2 dimensions"):
        population_statistics([np.ones(3)])


# ---------------------------------------------------------------- recalibration


def mlp(dropout=0.0):
    torch.manual_seed(10)
    layers = [nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers += [nn.Linear(8, 6), nn.BatchNorm1d(6, momentum=0.3)]
    return nn.Sequential(*layers).to(F64)


def convnet():
    torch.manual_seed(11)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 1), nn.BatchNorm2d(3)
    ).to(F64)


def data(shape, k=4, seed=12):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=F64) * 2 + 1 for _ in range(k)]


def bn_buffers(model):
    return [
        (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]


def scramble(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.fill_(5.0)
                m.running_var.fill_(0.2)
                m.num_batches_tracked.fill_(17)


@pytest.mark.parametrize("make_model, shape", [(mlp, (10, 5)), (convnet, (3, 2, 5, 5))])
@pytest.mark.parametrize("as_tuples", [False, True])
def test_recalibrate_matches_update_bn_without_dropout(make_model, shape, as_tuples):
    model = make_model()
    scramble(model)
    model.eval()
    batches = data(shape)
    if as_tuples:
        batches = [(b, torch.zeros(len(b)), "extra") if i % 2 else [b, None] for i, b in enumerate(batches)]
    reference = copy.deepcopy(model)
    update_bn(batches, reference)
    assert recalibrate_batchnorm(model, batches) is model
    for ours, theirs in zip(bn_buffers(model), bn_buffers(reference)):
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b)
    assert bn_buffers(model)[0][2].item() == len(batches)


def test_recalibrate_runs_dropout_in_eval_mode_unlike_update_bn():
    model = mlp(dropout=0.5)
    batches = data((20, 5))
    reference = copy.deepcopy(model)
    torch.manual_seed(0)
    update_bn(batches, reference)
    recalibrate_batchnorm(model, batches)
    # First BN (before dropout): same. Second BN (after dropout): differs.
    ours, theirs = bn_buffers(model), bn_buffers(reference)
    assert torch.equal(ours[0][0], theirs[0][0]) and torch.equal(ours[0][1], theirs[0][1])
    assert rel_error(ours[1][1].numpy(), theirs[1][1].numpy()) > 1e-2
    # What the second BN saw: the first BN on batch statistics, dropout off (identity).
    with torch.no_grad():
        bn1 = model[1]
        feats = [
            model[4](torch.relu(torch.nn.functional.batch_norm(
                model[0](b), None, None, bn1.weight, bn1.bias, training=True, eps=bn1.eps
            ))).numpy()
            for b in batches
        ]
    assert rel_error(ours[1][0].numpy(), np.mean([f.mean(axis=0) for f in feats], axis=0)) < TOL
    assert rel_error(ours[1][1].numpy(), np.mean([f.var(axis=0, ddof=1) for f in feats], axis=0)) < TOL


def test_recalibration_repairs_the_dropout_variance_shift_reference_fact_8():
    torch.manual_seed(13)
    d = 64
    model = nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(d, momentum=None, affine=False)).to(F64)
    batches = [torch.randn(256, d, dtype=F64) for _ in range(20)]
    model.train()
    with torch.no_grad():
        for b in batches:
            model(b)
    test = torch.randn(4096, d, dtype=F64)

    def eval_var(m):
        m.eval()
        with torch.no_grad():
            return m(test).var().item()

    shifted = eval_var(model)
    after_update_bn = copy.deepcopy(model)
    update_bn(batches, after_update_bn)
    recalibrate_batchnorm(model, batches)
    assert abs(shifted - 0.5) < 0.03  # running_var learned under dropout is about 2
    assert abs(eval_var(after_update_bn) - 0.5) < 0.03  # update_bn keeps the shift
    assert abs(eval_var(model) - 1.0) < 0.03


def test_recalibrate_restores_every_module_mode_and_momentum():
    model = mlp(dropout=0.2)
    model.train()
    model[0].eval()  # a Linear in eval
    model[1].eval()  # a BN in eval
    model[1].momentum = None
    model[-1].momentum = 0.3
    before = {name: m.training for name, m in model.named_modules()}
    seen = []
    model[1].register_forward_hook(lambda m, i, o: seen.append((m.training, torch.is_grad_enabled())))
    model[3].register_forward_hook(lambda m, i, o: seen.append((m.training, torch.is_grad_enabled())))
    recalibrate_batchnorm(model, data((10, 5), k=2))
    assert {name: m.training for name, m in model.named_modules()} == before
    assert model[1].momentum is None and model[-1].momentum == 0.3
    # During the pass: BN in train mode, dropout in eval mode, no autograd graph.
    assert seen == [(True, False), (False, False)] * 2


def test_recalibrate_skips_bn_without_running_stats():
    torch.manual_seed(14)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.BatchNorm1d(4))
    model = model.to(F64)
    reference = copy.deepcopy(model)
    batches = data((6, 3), k=3)
    update_bn(batches, reference)
    recalibrate_batchnorm(model, batches)
    assert model[1].running_mean is None
    assert torch.equal(model[2].running_var, reference[2].running_var)


def test_recalibrate_bad_inputs_leave_the_model_as_found():
    model = mlp()
    scramble(model)
    model.train()
    before = bn_buffers(model)
    cases = [
        ([], ValueError, "batches is empty"),
        ([np.ones((4, 5))], TypeError, "batch 0 must be a tensor or a tuple/list"),
        (data((4, 5), k=1) + [()], TypeError, "batch 1 is an empty tuple"),
        (data((4, 7), k=1), RuntimeError, "shapes cannot be multiplied"),
    ]
    for batches, err, msg in cases:
        with pytest.raises(err, match=msg):
            recalibrate_batchnorm(model, batches)
        for ours, saved in zip(bn_buffers(model), before):
            for a, b in zip(ours, saved):
                assert torch.equal(a, b)
        assert all(m.training for m in model.modules())
        assert model[1].momentum == 0.1 and model[-1].momentum == 0.3
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        recalibrate_batchnorm(lambda x: x, data((4, 5)))
    # update_bn silently returns on a model without BN; here that is reported.
    with pytest.raises(ValueError, match="model has no BatchNorm layer with running statistics"):
        recalibrate_batchnorm(nn.Sequential(nn.Linear(5, 2), nn.LayerNorm(2)).to(F64), data((4, 5)))


# ---------------------------------------------------------------- folding


def bn_eval_module(kind, c, seed):
    bn = bn_module(kind, c, 0.1, seed)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, dtype=F64))
        bn.running_var.copy_(torch.rand(c, dtype=F64) + 0.2)
    return bn.eval()


def bn_arrays(bn):
    return [as_np(t) for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var)]


@pytest.mark.parametrize("bias", [True, False])
def test_fold_linear_matches_torch(bias):
    torch.manual_seed(15)
    linear = nn.Linear(6, 4, bias=bias).to(F64).eval()
    bn = bn_eval_module(nn.BatchNorm1d, 4, seed=16)
    b0 = as_np(linear.bias) if bias else None
    weight, b = fold_batchnorm(as_np(linear.weight), b0, *bn_arrays(bn), eps=bn.eps)
    fused = fuse_linear_bn_eval(linear, bn)
    assert rel_error(weight, as_np(fused.weight)) < TOL
    assert rel_error(b, as_np(fused.bias)) < TOL
    x = torch.randn(10, 6, dtype=F64)
    with torch.no_grad():
        expected = bn(linear(x)).numpy()
    assert rel_error(x.numpy() @ weight.T + b, expected) < TOL


@pytest.mark.parametrize("bias", [True, False])
def test_fold_conv_matches_torch(bias):
    torch.manual_seed(17)
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=bias).to(F64).eval()
    bn = bn_eval_module(nn.BatchNorm2d, 5, seed=18)
    bn.eps = 1e-3
    b0 = as_np(conv.bias) if bias else None
    weight, b = fold_batchnorm(as_np(conv.weight), b0, *bn_arrays(bn), eps=bn.eps)
    fused = fuse_conv_bn_eval(conv, bn)
    assert weight.shape == (5, 3, 3, 3)
    assert rel_error(weight, as_np(fused.weight)) < TOL
    assert rel_error(b, as_np(fused.bias)) < TOL
    x = torch.randn(2, 3, 6, 6, dtype=F64)
    with torch.no_grad():
        expected = bn(conv(x))
        got = torch.nn.functional.conv2d(x, torch.tensor(weight), torch.tensor(b), padding=1)
    assert torch.max(torch.abs(got - expected)) <= 1e-12 * torch.max(torch.abs(expected))


def test_fold_equals_eval_affine_map():
    rng = np.random.default_rng(19)
    gamma, beta, rm = rng.standard_normal((3, 4))
    rv = rng.random(4) + 0.1
    # Folding into the identity layer gives BN(eval) itself: weight = diag(scale).
    weight, b = fold_batchnorm(np.eye(4), None, gamma, beta, rm, rv)
    x = rng.standard_normal((7, 4))
    expected = batchnorm_eval(x, gamma, beta, rm, rv)
    np.testing.assert_allclose(x @ weight.T + b, expected, rtol=1e-12, atol=1e-14)


def test_fold_bad_inputs():
    w, v = np.ones((4, 6)), np.ones(4)
    with pytest.raises(ValueError, match="weight must have at least 2 dimensions"):
        fold_batchnorm(np.ones(4), None, v, v, v, v)
    with pytest.raises(TypeError, match="weight must be a floating-point array"):
        fold_batchnorm(np.ones((4, 6), dtype=int), None, v, v, v, v)
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        fold_batchnorm(w, np.ones(6), v, v, v, v)
    with pytest.raises(ValueError, match=r"gamma must have shape \(4,\)"):
        fold_batchnorm(w, None, np.ones(6), v, v, v)
    with pytest.raises(ValueError, match="running_var must be non-negative"):
        fold_batchnorm(w, None, v, v, v, -v)
    with pytest.raises(ValueError, match="eps must be a positive number"):
        fold_batchnorm(w, None, v, v, v, v, eps=-1.0)
