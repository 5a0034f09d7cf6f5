"""Graded checks of the ``bn_inference`` exercise: running statistics, eval mode, exact
population statistics, recalibrating a torch model's BN layers, folding BN into a layer.

Released to students as ``coursechecks/bn_inference.py``. Visible checks compare with
PyTorch (``nn.BatchNorm1d/2d`` stepped in train and eval mode, ``torch.var_mean`` on the
concatenated data, ``torch.optim.swa_utils.update_bn`` on a copy of the model whose dropout
layers are replaced by ``nn.Identity``, the layer followed by BN in eval mode) or with
values derived here. Hidden checks import the reference from ``solutions`` inside
``expected``; students do not have it, and their grading seeds come from the grader.

Every check is aimed at one kind of mistake, so the failing cells tell a student what is
wrong: the variance in ``running_var`` (biased instead of unbiased), the direction of
``momentum`` (Keras' ``running = m * running + (1 - m) * batch``), ``momentum=None`` (the
cumulative average), batch statistics in eval mode, the sum of squares on data with a large
offset, a second pass over a one-shot iterator, dropout left in train mode or modes and
momenta not restored during recalibration, and a folded bias without the layer's bias.
"""
from __future__ import annotations

import numpy as np

from .core import Check, CheckFailure, array_kinds, close, describing, returning, unpack

CHAPTER = "bn_inference"
TOL = 1e-8  # float64 against float64: correct code lands near 1e-14, the bugs above 1e-3


def _torch():
    import torch

    return torch


def _t(a):
    torch = _torch()
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def _np(t) -> np.ndarray:
    return t.detach().numpy().copy()


def _axes(ndim: int) -> tuple[int, ...]:
    return (0,) + tuple(range(2, ndim))


def _channel_data(rng: np.random.Generator, shape: tuple[int, ...], loc: np.ndarray, scale: np.ndarray):
    bcast = (1, shape[1]) + (1,) * (len(shape) - 2)
    return loc.reshape(bcast) + scale.reshape(bcast) * rng.standard_normal(shape)


# ------------------------------------------------------------------ batchnorm_train_step

STEP_OUTPUTS = ("out", "running_mean", "running_var", "num_batches_tracked")


def _steps_inputs(shape: tuple[int, ...], momentum, steps: int, initial: bool = True, eps: float = 1e-5):
    """A few batches with per-channel offsets and spreads that drift between steps (so a
    wrong momentum or variance shows up), gamma, beta, and the state to start from: the
    initial state of a fresh BN layer, or an arbitrary one with some batches already seen."""

    def make(rng: np.random.Generator) -> dict:
        c = shape[1]
        loc, scale = rng.uniform(-3.0, 3.0, c), rng.uniform(1.0, 3.0, c)
        xs = [_channel_data(rng, shape, loc + k, scale * (1 + 0.5 * k)) for k in range(steps)]
        if initial:
            state = {"running_mean": np.zeros(c), "running_var": np.ones(c), "num_batches_tracked": 0}
        else:
            state = {"running_mean": rng.standard_normal(c), "running_var": rng.uniform(0.5, 4.0, c),
                     "num_batches_tracked": int(rng.integers(1, 6))}
        return {"xs": xs, "gamma": rng.uniform(0.5, 2.0, c), "beta": rng.standard_normal(c),
                "momentum": momentum, "eps": eps, **state}

    return make


def _steps_call(keep: tuple[str, ...] = STEP_OUTPUTS):
    """Chain the student's steps, feeding each step the state the previous one returned;
    name every output by its step so a message says where the run went wrong."""

    def call(fn, inputs: dict) -> dict:
        rm, rv, nbt = inputs["running_mean"], inputs["running_var"], inputs["num_batches_tracked"]
        outputs = {}
        for k, x in enumerate(inputs["xs"], 1):
            result = fn(x, inputs["gamma"], inputs["beta"], rm, rv, nbt,
                        momentum=inputs["momentum"], eps=inputs["eps"])
            named = unpack(result, STEP_OUTPUTS, "batchnorm_train_step")
            rm, rv, nbt = named["running_mean"], named["running_var"], named["num_batches_tracked"]
            if isinstance(nbt, (bool, np.bool_)) or not isinstance(nbt, (int, np.integer)):
                raise CheckFailure(f"num_batches_tracked must be an int, got {type(nbt).__name__}")
            named["num_batches_tracked"] = float(nbt)
            outputs.update({f"{name} after step {k}": named[name] for name in keep})
        return outputs

    return call


def _expect_torch_steps(keep: tuple[str, ...] = STEP_OUTPUTS):
    """Step ``nn.BatchNorm1d/2d`` in train mode from the same state."""

    def torch_steps(inputs: dict) -> dict:
        torch = _torch()
        x0 = np.asarray(inputs["xs"][0])
        kind = torch.nn.BatchNorm2d if x0.ndim == 4 else torch.nn.BatchNorm1d
        bn = kind(x0.shape[1], eps=inputs["eps"], momentum=inputs["momentum"], dtype=torch.float64)
        with torch.set_grad_enabled(False):
            bn.weight.copy_(_t(inputs["gamma"]))
            bn.bias.copy_(_t(inputs["beta"]))
            bn.running_mean.copy_(_t(inputs["running_mean"]))
            bn.running_var.copy_(_t(inputs["running_var"]))
            bn.num_batches_tracked.fill_(inputs["num_batches_tracked"])
            bn.train()
            values = {}
            for k, x in enumerate(inputs["xs"], 1):
                step = {"out": _np(bn(_t(x))), "running_mean": _np(bn.running_mean),
                        "running_var": _np(bn.running_var),
                        "num_batches_tracked": np.float64(bn.num_batches_tracked.item())}
                values.update({f"{name} after step {k}": step[name] for name in keep})
        return values

    return torch_steps


def _expect_reference_steps(keep: tuple[str, ...] = STEP_OUTPUTS):
    def reference_steps(inputs: dict) -> dict:
        from solutions.bn_inference import batchnorm_train_step

        rm, rv, nbt = inputs["running_mean"], inputs["running_var"], inputs["num_batches_tracked"]
        values = {}
        for k, x in enumerate(inputs["xs"], 1):
            out, rm, rv, nbt = batchnorm_train_step(x, inputs["gamma"], inputs["beta"], rm, rv, nbt,
                                                    momentum=inputs["momentum"], eps=inputs["eps"])
            step = {"out": out, "running_mean": rm, "running_var": rv, "num_batches_tracked": np.float64(nbt)}
            values.update({f"{name} after step {k}": step[name] for name in keep})
        return values

    return reference_steps


# At momentum 0.5 PyTorch's and Keras' conventions give the same update, so this check sees
# only which variance goes into running_var: the average of the old value and the unbiased
# batch variance (divide by m - 1), computed here with torch.var(correction=1).
HALF = 0.5
RUNNING = ("running_mean", "running_var")


def _expect_half_step(inputs: dict) -> dict:
    torch = _torch()
    x = _t(inputs["xs"][0])
    var, mean = torch.var_mean(x, dim=_axes(x.ndim), correction=1)
    return {
        "running_mean after step 1": HALF * np.asarray(inputs["running_mean"]) + HALF * _np(mean),
        "running_var after step 1": HALF * np.asarray(inputs["running_var"]) + HALF * _np(var),
    }


# ------------------------------------------------------------------ batchnorm_eval


def _eval_inputs(shape: tuple[int, ...], eps: float = 1e-5):
    """x far from the running statistics' values, so using the batch's own statistics shows."""

    def make(rng: np.random.Generator) -> dict:
        c = shape[1]
        x = _channel_data(rng, shape, rng.uniform(-3.0, 3.0, c), rng.uniform(1.0, 3.0, c))
        return {"x": x, "gamma": rng.uniform(0.5, 2.0, c), "beta": rng.standard_normal(c),
                "running_mean": rng.standard_normal(c), "running_var": rng.uniform(0.2, 3.0, c), "eps": eps}

    return make


def _expect_torch_eval(inputs: dict) -> dict:
    torch = _torch()
    x = np.asarray(inputs["x"])
    kind = torch.nn.BatchNorm2d if x.ndim == 4 else torch.nn.BatchNorm1d
    bn = kind(x.shape[1], eps=inputs["eps"], dtype=torch.float64)
    with torch.set_grad_enabled(False):
        for name in ("running_mean", "running_var"):
            getattr(bn, name).copy_(_t(inputs[name]))
        bn.weight.copy_(_t(inputs["gamma"]))
        bn.bias.copy_(_t(inputs["beta"]))
        return {"out": _np(bn.eval()(_t(x)))}


def _expect_reference_eval(inputs: dict) -> dict:
    from solutions.bn_inference import batchnorm_eval

    return {"out": batchnorm_eval(**inputs)}


# ------------------------------------------------------------------ population_statistics


def _population_inputs(shapes: list[tuple[int, ...]], offset: float = 0.0):
    """Batches of uneven sizes (spatial sizes may differ too) of one per-channel distribution."""

    def make(rng: np.random.Generator) -> dict:
        c = shapes[0][1]
        loc = offset + rng.uniform(-3.0, 3.0, c)
        scale = rng.uniform(0.5, 2.0, c) if offset == 0 else np.ones(c)
        return {"batches": [_channel_data(rng, s, loc, scale) for s in shapes]}

    return make


def _population_call(one_shot: bool = False):
    def call(fn, inputs: dict) -> dict:
        batches = inputs["batches"]
        # A generator can be read once: a second pass over it sees nothing.
        result = fn(iter(batches) if one_shot else batches)
        return unpack(result, ("mean", "var"), "population_statistics")

    return call


def _expect_torch_population(inputs: dict) -> dict:
    """Mean and unbiased variance of every value of each channel, concatenated."""
    torch = _torch()
    columns = [_t(b).transpose(0, 1).reshape(b.shape[1], -1) for b in inputs["batches"]]
    var, mean = torch.var_mean(torch.cat(columns, dim=1), dim=1, correction=1)
    return {"mean": _np(mean), "var": _np(var)}


def _expect_reference_population(inputs: dict) -> dict:
    from solutions.bn_inference import population_statistics

    mean, var = population_statistics(inputs["batches"])
    return {"mean": mean, "var": var}


def _compare_offset(actual: dict, expected: dict) -> None:
    # Values near 1e8 carry about 1e-8 absolute rounding each: the variance (about 1) is
    # right to 1e-6 when computed stably; the sum of squares is off by more than 10%.
    close(1e-12)({"mean": actual["mean"]}, {"mean": expected["mean"]})
    close(1e-6)({"var": actual["var"]}, {"var": expected["var"]})


# ------------------------------------------------------------------ recalibrate_batchnorm


def _fork_rng():
    return _torch().random.fork_rng(devices=[])  # the student's global torch seed is untouched


def _mlp(dropout: float, seed: int):
    torch = _torch()
    nn = torch.nn
    with _fork_rng():
        torch.manual_seed(seed)
        layers = [nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers += [nn.Linear(8, 6), nn.BatchNorm1d(6, momentum=0.3)]
        return nn.Sequential(*layers).to(torch.float64)


def _convnet(dropout: float, seed: int):
    torch = _torch()
    nn = torch.nn
    with _fork_rng():
        torch.manual_seed(seed)
        layers = [nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout2d(dropout))
        layers += [nn.Conv2d(4, 3, 1), nn.BatchNorm2d(3, momentum=None)]
        return nn.Sequential(*layers).to(torch.float64)


def _recalibrate_inputs(kind: str, dropout: float = 0.0, tuples: bool = False, mixed_modes: bool = False):
    """A small model whose BN layers hold stale statistics, and four batches on an offset.

    ``tuples`` wraps each batch as ``(input, target)`` like a data loader; ``mixed_modes``
    puts the model in train mode with some submodules in eval mode and varied momenta."""

    def make(rng: np.random.Generator) -> dict:
        torch = _torch()
        make_model, shape = {"mlp": (_mlp, (10, 5)), "conv": (_convnet, (3, 2, 5, 5))}[kind]
        model = make_model(dropout, int(rng.integers(2**31)))
        with torch.set_grad_enabled(False):
            for mod in model.modules():
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                    mod.running_mean.fill_(5.0)
                    mod.running_var.fill_(0.2)
                    mod.num_batches_tracked.fill_(17)
        if mixed_modes:
            model.train()
            model[0].eval()
            model[1].eval()
            model[1].momentum = None
        else:
            model.eval()
        batches = [_t(2.0 * rng.standard_normal(shape) + 1.0) for _ in range(4)]
        if tuples:
            batches = [(b, _t(rng.standard_normal(len(b)))) for b in batches]
        return {"model": model, "batches": batches}

    return make


def _bn_layers(model):
    torch = _torch()
    return [(name, mod) for name, mod in model.named_modules()
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) and mod.track_running_stats]


def _bn_statistics(model) -> dict:
    values = {}
    for name, bn in _bn_layers(model):
        label = f"layer {name!r} ({type(bn).__name__})"
        values[f"running_mean of {label}"] = _np(bn.running_mean)
        values[f"running_var of {label}"] = _np(bn.running_var)
        values[f"num_batches_tracked of {label}"] = np.float64(bn.num_batches_tracked.item())
    return values


def _recalibrate_call(fn, inputs: dict) -> dict:
    fn(inputs["model"], inputs["batches"])  # updates the model in place
    return _bn_statistics(inputs["model"])


def _expect_update_bn(inputs: dict) -> dict:
    """``update_bn`` runs the whole model in train mode; with every dropout layer replaced by
    the identity (what dropout does in eval mode) that is the recalibration asked for."""
    torch = _torch()
    from torch.optim.swa_utils import update_bn

    model = inputs["model"]
    for name, mod in list(model.named_modules()):
        if isinstance(mod, torch.nn.modules.dropout._DropoutNd):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, torch.nn.Identity())
    with torch.set_grad_enabled(False):
        update_bn(inputs["batches"], model)
    return _bn_statistics(model)


def _expect_reference_recalibration(inputs: dict) -> dict:
    from solutions.bn_inference import recalibrate_batchnorm

    return _bn_statistics(recalibrate_batchnorm(inputs["model"], inputs["batches"]))


def _momentum_code(momentum) -> float:
    return -1.0 if momentum is None else float(momentum)  # None has no float: -1 stands for it


def _modes_call(fn, inputs: dict) -> dict:
    model = inputs["model"]
    returned = fn(model, inputs["batches"])
    if returned is not model:
        raise CheckFailure("it must return the model it was given (updated in place)")
    return {
        "training": np.array([float(m.training) for m in model.modules()]),
        "momentum": np.array([_momentum_code(bn.momentum) for _, bn in _bn_layers(model)]),
    }


def _expect_modes_before(inputs: dict) -> dict:
    model = inputs["model"]
    return {
        "training": np.array([float(m.training) for m in model.modules()]),
        "momentum": np.array([_momentum_code(bn.momentum) for _, bn in _bn_layers(model)]),
        "modules": [name or "the model" for name, _ in model.named_modules()],
        "bn layers": [name for name, _ in _bn_layers(model)],
    }


def _compare_modes(actual: dict, expected: dict) -> None:
    for name in ("training", "momentum"):
        if actual[name].shape != expected[name].shape:
            raise CheckFailure(f"the model's {name} flags changed shape: were modules added or removed?")
    changed = [expected["modules"][i] for i in np.flatnonzero(actual["training"] != expected["training"])]
    if changed:
        raise CheckFailure(
            f"afterwards the training flag of {', '.join(map(repr, changed))} differs from before the call; "
            "restore every module's mode (model.train(flag) would overwrite its submodules' modes)"
        )
    changed = [expected["bn layers"][i] for i in np.flatnonzero(actual["momentum"] != expected["momentum"])]
    if changed:
        raise CheckFailure(f"afterwards the momentum of BN layer(s) {', '.join(map(repr, changed))} differs "
                           "from before the call")


# ------------------------------------------------------------------ fold_batchnorm


def _fold_inputs(weight_shape: tuple[int, ...], with_bias: bool = True, eps: float = 1e-5):
    """A layer (Linear if the weight is 2-D, else a convolution), BN parameters and statistics
    for its output channels, and a probe input ``x`` on which the pair is compared."""

    def make(rng: np.random.Generator) -> dict:
        out, fan_in = weight_shape[0], weight_shape[1]
        spatial = (6,) * (len(weight_shape) - 2)
        return {
            "weight": rng.standard_normal(weight_shape) / np.sqrt(np.prod(weight_shape[1:])),
            "bias": rng.standard_normal(out) if with_bias else None,
            "gamma": rng.uniform(0.5, 2.0, out), "beta": rng.standard_normal(out),
            "running_mean": rng.standard_normal(out), "running_var": rng.uniform(0.2, 3.0, out), "eps": eps,
            "x": rng.standard_normal((3 + fan_in, fan_in) + spatial),
        }

    return make


FOLD_ARGS = ("weight", "bias", "gamma", "beta", "running_mean", "running_var", "eps")


def _fold_call(fn, inputs: dict) -> dict:
    return unpack(fn(**{k: inputs[k] for k in FOLD_ARGS}), ("weight", "bias"), "fold_batchnorm")


def _layer(x, weight, bias):
    torch = _torch()
    F = torch.nn.functional
    x, weight = _t(x), _t(weight)
    bias = None if bias is None else _t(bias)
    if weight.ndim == 2:
        return F.linear(x, weight, bias)
    conv = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[weight.ndim]
    return conv(x, weight, bias, padding=1)


def _folded_layer_output(outputs: dict, inputs: dict) -> dict:
    """Run the folded layer (your weight and bias) on the probe input."""
    weight_shape = np.shape(inputs["weight"])
    if outputs["weight"].shape != weight_shape:
        raise CheckFailure(f"weight has shape {outputs['weight'].shape}, expected {weight_shape}")
    if outputs["bias"].shape != (weight_shape[0],):
        raise CheckFailure(f"bias has shape {outputs['bias'].shape}, expected ({weight_shape[0]},)")
    return {"the folded layer's output": _np(_layer(inputs["x"], outputs["weight"], outputs["bias"]))}


def _expect_layer_then_bn(inputs: dict) -> dict:
    """The layer followed by ``nn.BatchNorm`` in eval mode."""
    torch = _torch()
    z = _layer(inputs["x"], inputs["weight"], inputs["bias"])
    kind = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d, 5: torch.nn.BatchNorm3d}[z.ndim]
    bn = kind(z.shape[1], eps=inputs["eps"], dtype=torch.float64)
    with torch.set_grad_enabled(False):
        for name, key in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "running_mean"),
                          ("running_var", "running_var")):
            getattr(bn, name).copy_(_t(inputs[key]))
        return {"the folded layer's output": _np(bn.eval()(z))}


def _expect_reference_fold(inputs: dict) -> dict:
    from solutions.bn_inference import fold_batchnorm

    weight, bias = fold_batchnorm(**{k: inputs[k] for k in FOLD_ARGS})
    return {"weight": weight, "bias": bias}


# ------------------------------------------------------------------ the checks

T_ = "batchnorm_train_step"
E_ = "batchnorm_eval"
P_ = "population_statistics"
R_ = "recalibrate_batchnorm"
F_ = "fold_batchnorm"
_id = lambda function, name: f"{CHAPTER}_{function}_{name}"  # noqa: E731

CHECKS = [
    # batchnorm_train_step: 25 points
    Check(_id(T_, "torch_2d"), T_, 5,
          "3 steps from the initial state on (16, 4) batches match nn.BatchNorm1d (momentum 0.1)",
          inputs=_steps_inputs((16, 4), 0.1, 3), expected=_expect_torch_steps(), call=_steps_call(),
          compare=close(TOL), seed=1),
    Check(_id(T_, "torch_2d_hidden"), T_, 3, "3 steps from another state match the reference (momentum 0.1)",
          inputs=_steps_inputs((9, 5), 0.1, 3, initial=False), expected=_expect_reference_steps(),
          call=_steps_call(), compare=close(TOL), hidden=True, cell=_id(T_, "torch_2d")),
    Check(_id(T_, "torch_4d"), T_, 4,
          "3 steps on (4, 3, 5, 5) batches from a used state match nn.BatchNorm2d (momentum 0.3, eps 1e-3)",
          inputs=_steps_inputs((4, 3, 5, 5), 0.3, 3, initial=False, eps=1e-3), expected=_expect_torch_steps(),
          call=_steps_call(), compare=close(TOL), seed=2),
    Check(_id(T_, "torch_4d_hidden"), T_, 3, "3 steps on 3-D batches match the reference (momentum 0.05)",
          inputs=_steps_inputs((5, 3, 4), 0.05, 3), expected=_expect_reference_steps(),
          call=_steps_call(), compare=close(TOL), hidden=True, cell=_id(T_, "torch_4d")),
    Check(_id(T_, "momentum_none"), T_, 4,
          "momentum=None: 5 steps match nn.BatchNorm1d(momentum=None), the cumulative average",
          inputs=_steps_inputs((6, 3), None, 5), expected=_expect_torch_steps(RUNNING + ("num_batches_tracked",)),
          call=_steps_call(RUNNING + ("num_batches_tracked",)), compare=close(TOL), seed=3),
    Check(_id(T_, "momentum_none_hidden"), T_, 2, "momentum=None continuing from batches already seen",
          inputs=_steps_inputs((3, 2, 3, 3), None, 4, initial=False),
          expected=_expect_reference_steps(RUNNING + ("num_batches_tracked",)),
          call=_steps_call(RUNNING + ("num_batches_tracked",)), compare=close(TOL), hidden=True,
          cell=_id(T_, "momentum_none")),
    Check(_id(T_, "unbiased_running_var"), T_, 2,
          "at momentum 0.5, running_var is the average of the old value and the unbiased batch variance "
          "of a (6, 3, 4) batch",
          inputs=_steps_inputs((6, 3, 4), HALF, 1, initial=False), expected=_expect_half_step,
          call=_steps_call(RUNNING), compare=close(TOL), seed=4),
    Check(_id(T_, "unbiased_running_var_hidden"), T_, 2, "the unbiased batch variance on a 4-D batch",
          inputs=_steps_inputs((2, 3, 2, 2), HALF, 1, initial=False), expected=_expect_half_step,
          call=_steps_call(RUNNING), compare=close(TOL), hidden=True, cell=_id(T_, "unbiased_running_var")),
    # batchnorm_eval: 10 points
    Check(_id(E_, "torch_2d"), E_, 2, "out matches nn.BatchNorm1d in eval mode on a (7, 5) input",
          inputs=_eval_inputs((7, 5)), expected=_expect_torch_eval, call=returning("out"),
          compare=close(TOL), seed=5),
    Check(_id(E_, "torch_2d_hidden"), E_, 2, "out matches the reference on a 3-D input with eps 1e-3",
          inputs=_eval_inputs((4, 3, 6), eps=1e-3), expected=_expect_reference_eval, call=returning("out"),
          compare=close(TOL), hidden=True, cell=_id(E_, "torch_2d")),
    Check(_id(E_, "torch_3d"), E_, 1, "out matches nn.BatchNorm1d in eval mode on a (5, 4, 3) input, eps 1e-3",
          inputs=_eval_inputs((5, 4, 3), eps=1e-3), expected=_expect_torch_eval, call=returning("out"),
          compare=close(TOL), seed=16),
    Check(_id(E_, "batch_of_one"), E_, 3, "a single (1, 3, 4, 4) image matches nn.BatchNorm2d in eval mode",
          inputs=_eval_inputs((1, 3, 4, 4)), expected=_expect_torch_eval, call=returning("out"),
          compare=close(TOL), seed=6),
    Check(_id(E_, "batch_of_one_hidden"), E_, 2, "a single (1, 6) example matches the reference",
          inputs=_eval_inputs((1, 6)), expected=_expect_reference_eval, call=returning("out"),
          compare=close(TOL), hidden=True, cell=_id(E_, "batch_of_one")),
    # population_statistics: 15 points
    Check(_id(P_, "uneven_batches"), P_, 4,
          "batches of 5, 1, 3, 1, 8, 2 rows: mean and unbiased variance of the concatenation (torch.var_mean)",
          inputs=_population_inputs([(n, 4) for n in (5, 1, 3, 1, 8, 2)]), expected=_expect_torch_population,
          call=_population_call(), compare=close(TOL), seed=7),
    Check(_id(P_, "uneven_batches_hidden"), P_, 3, "images of different batch and spatial sizes",
          inputs=_population_inputs([(2, 3, 4, 4), (1, 3, 3, 3), (5, 3, 4, 4), (1, 3, 1, 1)]),
          expected=_expect_reference_population, call=_population_call(), compare=close(TOL), hidden=True,
          cell=_id(P_, "uneven_batches")),
    Check(_id(P_, "large_offset"), P_, 3,
          "data 1e8 + N(0, 1) in five (n, 3, 2) batches: the variance is still right to 1e-6",
          inputs=_population_inputs([(n, 3, 2) for n in (50, 7, 1, 120, 30)], offset=1e8),
          expected=_expect_torch_population, call=_population_call(), compare=_compare_offset, seed=8),
    Check(_id(P_, "large_offset_hidden"), P_, 2, "a large negative offset on 3-D batches",
          inputs=_population_inputs([(n, 2, 5) for n in (20, 3, 40, 9)], offset=-3e7),
          expected=_expect_reference_population, call=_population_call(), compare=_compare_offset,
          hidden=True, cell=_id(P_, "large_offset")),
    Check(_id(P_, "one_shot_iterator"), P_, 3,
          "images of different batch and spatial sizes arrive as a one-shot iterator (a data loader read once)",
          inputs=_population_inputs([(3, 2, 4, 5), (1, 2, 3, 3), (2, 2, 4, 5), (4, 2, 2, 6)]), expected=_expect_torch_population,
          call=_population_call(one_shot=True), compare=close(TOL), seed=9),
    # recalibrate_batchnorm: 15 points
    Check(_id(R_, "matches_update_bn"), R_, 4,
          "Linear-BN-ReLU-Linear-BN without dropout: the statistics update_bn computes",
          inputs=_recalibrate_inputs("mlp"), expected=_expect_update_bn, call=_recalibrate_call,
          compare=close(TOL), seed=10),
    Check(_id(R_, "matches_update_bn_hidden"), R_, 2, "a convolutional model fed (input, target) tuples",
          inputs=_recalibrate_inputs("conv", tuples=True), expected=_expect_reference_recalibration,
          call=_recalibrate_call, compare=close(TOL), hidden=True, cell=_id(R_, "matches_update_bn")),
    Check(_id(R_, "dropout_off"), R_, 4,
          "a CNN with Dropout2d(0.5), fed (input, target) pairs: dropout stays in eval mode during the pass",
          inputs=_recalibrate_inputs("conv", dropout=0.5, tuples=True), expected=_expect_update_bn, call=_recalibrate_call,
          compare=close(TOL), seed=11),
    Check(_id(R_, "dropout_off_hidden"), R_, 2, "a convolutional model with Dropout2d(0.3)",
          inputs=_recalibrate_inputs("conv", dropout=0.3), expected=_expect_reference_recalibration,
          call=_recalibrate_call, compare=close(TOL), hidden=True, cell=_id(R_, "dropout_off")),
    Check(_id(R_, "restores_modes"), R_, 3,
          "returns the model with every module's training flag and every BN momentum as before",
          inputs=_recalibrate_inputs("mlp", dropout=0.2, mixed_modes=True), expected=_expect_modes_before,
          call=_modes_call, compare=_compare_modes, seed=12),
    # fold_batchnorm: 15 points
    Check(_id(F_, "linear"), F_, 4, "Linear(6 -> 4) folded with BN computes what the pair computes in eval mode",
          inputs=_fold_inputs((4, 6)), expected=_expect_layer_then_bn, call=_fold_call,
          derive=_folded_layer_output, compare=close(TOL), seed=13),
    Check(_id(F_, "linear_hidden"), F_, 2, "weight and bias match the reference for another Linear",
          inputs=_fold_inputs((7, 3), eps=1e-3), expected=_expect_reference_fold, call=_fold_call,
          compare=close(TOL), hidden=True, cell=_id(F_, "linear")),
    Check(_id(F_, "conv"), F_, 4, "Conv2d(2 -> 3, 3x3) folded with BatchNorm2d computes what the pair computes",
          inputs=_fold_inputs((3, 2, 3, 3)), expected=_expect_layer_then_bn, call=_fold_call,
          derive=_folded_layer_output, compare=close(TOL), seed=14),
    Check(_id(F_, "conv_hidden"), F_, 2, "weight and bias match the reference for a Conv1d",
          inputs=_fold_inputs((5, 2, 3)), expected=_expect_reference_fold, call=_fold_call,
          compare=close(TOL), hidden=True, cell=_id(F_, "conv")),
    Check(_id(F_, "no_bias"), F_, 3, "a Conv1d(5 -> 3, kernel 2) without bias (bias=None) folded with BN, eps 1e-3",
          inputs=_fold_inputs((3, 5, 2), with_bias=False, eps=1e-3), expected=_expect_layer_then_bn, call=_fold_call,
          derive=_folded_layer_output, compare=close(TOL), seed=15),
]


# ---------------------------------------------------------------- kinds of input
def _eps_kind(eps) -> str:
    return "eps = 1e-5 (the default)" if eps == 1e-5 else "eps other than the default"


def _model_kinds(model) -> set[str]:
    torch = _torch()
    nn = torch.nn
    mods = list(model.modules())[1:]
    kinds = {"a CNN" if any(isinstance(m, nn.Conv2d) for m in mods) else "an MLP"}
    for m in mods:
        if isinstance(m, nn.Dropout2d):
            kinds.add("a Dropout2d layer")
        elif isinstance(m, nn.Dropout):
            kinds.add("a Dropout layer")
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is None:
            kinds.add("a BN layer with momentum=None")
    modes = {m.training for m in [model, *mods]}
    kinds.add("modules in both train and eval mode" if len(modes) == 2 else
              ("model in train mode" if modes == {True} else "model in eval mode"))
    return kinds


def _batches_kinds(batches) -> set[str]:
    arrays = [np.asarray(b[0] if isinstance(b, (tuple, list)) else b) for b in batches]
    kinds = {f"{arrays[0].ndim}-D batches"}
    if isinstance(batches[0], (tuple, list)):
        kinds.add("batches as (input, target) pairs")
    if len({a.shape[0] for a in arrays}) > 1:
        kinds.add("batches of different sizes")
    if len({a.shape[2:] for a in arrays}) > 1:
        kinds.add("batches of different spatial sizes")
    if any(a.shape[0] == 1 for a in arrays):
        kinds.add("a batch of 1")
    values = np.concatenate([a.ravel() for a in arrays])
    if abs(values.mean()) > 1e3 * values.std():
        kinds.add("a large offset beside a small spread")
    return kinds


def input_kinds(function: str, inputs: dict) -> set[str]:
    """The kinds of input a check of ``function`` uses, read off its inputs."""
    if function == T_:
        kinds = array_kinds(inputs["xs"][0])
        m = inputs["momentum"]
        kinds.add("momentum=None (cumulative average)" if m is None else
                  ("momentum 0.1 (the default)" if m == 0.1 else "momentum other than 0.1"))
        kinds.add(_eps_kind(inputs["eps"]))
        initial = (inputs["num_batches_tracked"] == 0 and np.all(inputs["running_mean"] == 0)
                   and np.all(inputs["running_var"] == 1))
        kinds.add("the initial state" if initial else "a state with batches already seen")
        kinds.add("one step" if len(inputs["xs"]) == 1 else "several steps chained")
        return kinds
    if function == E_:
        return array_kinds(inputs["x"]) | {_eps_kind(inputs["eps"])}
    if function == P_:
        return _batches_kinds(inputs["batches"])
    if function == R_:
        return _model_kinds(inputs["model"]) | _batches_kinds(inputs["batches"])
    if function == F_:
        w = inputs["weight"]
        kinds = {{2: "a Linear weight", 3: "a Conv1d weight", 4: "a Conv2d weight"}[w.ndim], _eps_kind(inputs["eps"])}
        kinds.add("no bias (None)" if inputs["bias"] is None else "a bias")
        return kinds
    raise KeyError(function)


def describe_input(function: str, inputs: dict) -> str:
    """The input in plain words: shapes, momentum, eps, the kind of model; never values."""
    if function == T_:
        xs = inputs["xs"]
        return (f"{len(xs)} step(s) on {tuple(xs[0].shape)} batches, momentum {inputs['momentum']}, "
                f"eps {inputs['eps']:g}, {'; '.join(sorted(input_kinds(function, inputs) & {'the initial state', 'a state with batches already seen'}))}")
    if function == E_:
        return f"a {tuple(inputs['x'].shape)} input, eps {inputs['eps']:g}"
    if function == F_:
        return (f"a {tuple(inputs['weight'].shape)} weight, {'no bias' if inputs['bias'] is None else 'a bias'}, "
                f"eps {inputs['eps']:g}")
    return ", ".join(sorted(input_kinds(function, inputs)))


CHECKS = describing(CHECKS, describe_input)
