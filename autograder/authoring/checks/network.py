"""Graded checks of the ``network`` exercise: the loss, the network's forward pass in train and
eval mode, its backward pass, the SGD-with-momentum and Adam updates, and a training step.

Released to students as ``coursechecks/network.py``. The networks are described as plain
data (a list of layers: type, constructor arguments, parameters, running statistics, a fixed
dropout mask), so the grader can ship them into the sandbox. There they are built from the
layer classes the notebook defines in its read-only cell (looked up where the function under
test was defined, i.e. the notebook), so a check grades the assembly and never the layers.
Visible checks compare with the same network in PyTorch (``nn.Linear``, ``nn.Conv2d``,
``nn.BatchNorm1d/2d``, ``nn.LayerNorm``, ``nn.ReLU``, pooling, ``nn.Flatten``, and dropout with
the given mask) and with ``torch.optim.SGD`` / ``torch.optim.Adam``, in float64. Hidden
checks import the reference from ``solutions`` inside ``expected``.

Each test cell aims at one kind of bug: the loss's overflow on large logits; a forward pass
that ignores the mode, or runs a layer twice (running statistics updated twice); a backward
pass that does not chain the gradient or returns the gradients in the wrong order; SGD with
dampening or without the velocity; Adam without bias correction or with ``eps`` in another
place; a training step in the wrong mode or that loses the velocities between steps.
"""
from __future__ import annotations

import numpy as np

from .core import Check, CheckFailure, array_kinds, close, describing, run_check, unpack

CHAPTER = "network"
TOL = 1e-8  # float64 against float64: correct code lands near 1e-13, the bugs above 1e-3
LAYER_TYPES = ("Affine", "Conv2d", "BatchNorm", "LayerNorm", "Dropout", "ReLU", "Flatten", "MaxPool2d", "AvgPool2d")


def _torch():
    import torch

    return torch


def _t(a):
    torch = _torch()
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def _np(t) -> np.ndarray:
    return t.detach().numpy().copy()


# ------------------------------------------------------------------ networks as plain data


def _affine(rng, n_in, n_out, bias=True):
    entry = {"type": "Affine", "args": {"in_features": n_in, "out_features": n_out, "bias": bias},
             "params": {"weight": rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)}}
    if bias:
        entry["params"]["bias"] = 0.1 * rng.standard_normal(n_out)
    return entry


def _conv(rng, c_in, c_out, kernel, padding, bias=True):
    kh, kw = kernel
    entry = {"type": "Conv2d", "args": {"in_channels": c_in, "out_channels": c_out, "kernel_size": kernel,
                                         "stride": 1, "padding": padding, "bias": bias},
             "params": {"weight": rng.standard_normal((c_out, c_in, kh, kw)) / np.sqrt(c_in * kh * kw)}}
    if bias:
        entry["params"]["bias"] = 0.1 * rng.standard_normal(c_out)
    return entry


def _norm_params(rng, shape):
    return {"weight": rng.uniform(0.5, 1.5, shape), "bias": 0.3 * rng.standard_normal(shape)}


def _batchnorm(rng, c, momentum=0.1):
    # Running statistics far from the initial (0, 1), so eval mode visibly uses them.
    return {"type": "BatchNorm", "args": {"num_features": c, "momentum": momentum},
            "params": _norm_params(rng, (c,)),
            "state": {"running_mean": 0.5 * rng.standard_normal(c), "running_var": rng.uniform(0.5, 2.0, c),
                      "num_batches_tracked": int(rng.integers(1, 20))}}


def _layernorm(rng, d):
    return {"type": "LayerNorm", "args": {"normalized_shape": d}, "params": _norm_params(rng, (d,))}


def _dropout(rng, p, shape, steps=None):
    masks = rng.random(shape if steps is None else (steps,) + shape) >= p
    return {"type": "Dropout", "args": {"p": p}, "mask": masks}


def _plain(kind, **args):
    return {"type": kind, "args": args}


def _mlp(rng, n, d_in, width, classes, p, steps=None):
    """Affine -> BN -> ReLU -> Dropout -> Affine -> LN -> ReLU -> Affine."""
    return [_affine(rng, d_in, width, bias=False), _batchnorm(rng, width), _plain("ReLU"),
            _dropout(rng, p, (n, width), steps), _affine(rng, width, width), _layernorm(rng, width),
            _plain("ReLU"), _affine(rng, width, classes)]


def _cnn(rng, n, c_in, size, classes, p, kernel=(3, 3), padding=(1, 1), steps=None):
    """conv -> BN -> ReLU -> max pool -> conv -> ReLU -> avg pool -> flatten -> dropout -> affine."""
    h, w = size
    h1, w1 = h + 2 * padding[0] - kernel[0] + 1, w + 2 * padding[1] - kernel[1] + 1
    h2, w2 = (h1 // 2) // 2, (w1 // 2) // 2
    features = 4 * h2 * w2
    return [_conv(rng, c_in, 3, kernel, padding, bias=False), _batchnorm(rng, 3, momentum=0.3), _plain("ReLU"),
            _plain("MaxPool2d", kernel_size=2), _conv(rng, 3, 4, (3, 3), (1, 1)), _plain("ReLU"),
            _plain("AvgPool2d", kernel_size=2), _plain("Flatten"), _dropout(rng, p, (n, features), steps),
            _affine(rng, features, classes)]


def _network_inputs(kind: str, n: int, training: bool, steps=None, **sizes):
    """A network, a batch (or ``steps`` batches) ``x`` and labels ``y``."""

    def make(rng: np.random.Generator) -> dict:
        if kind == "mlp":
            d_in, width, classes = sizes.get("d_in", 6), sizes.get("width", 8), sizes.get("classes", 4)
            layers = _mlp(rng, n, d_in, width, classes, 0.3, steps)
            shape = (n, d_in)
        else:
            c_in, size, classes = sizes.get("c_in", 2), sizes.get("size", (8, 8)), sizes.get("classes", 3)
            layers = _cnn(rng, n, c_in, size, classes, 0.25, sizes.get("kernel", (3, 3)),
                          sizes.get("padding", (1, 1)), steps)
            shape = (n, c_in) + tuple(size)
        batch = shape if steps is None else (steps,) + shape
        labels = (n,) if steps is None else (steps, n)
        return {"layers": layers, "x": 1.5 * rng.standard_normal(batch) + 0.5,
                "y": rng.integers(0, classes, labels), "training": training,
                "dout": rng.standard_normal((n, classes))}

    return make


def _build(namespace: dict, spec: list, step: int | None = None) -> list:
    """The network as objects of the notebook's layer classes (``step`` picks the dropout mask
    of one training step)."""
    missing = [k for k in LAYER_TYPES if not callable(namespace.get(k))]
    if missing:
        raise CheckFailure(f"the layer classes {', '.join(missing)} are not defined where your function is: "
                           "run the read-only cell with the provided layers first")
    layers = []
    for entry in spec:
        layer = namespace[entry["type"]](**entry["args"])
        for name, value in entry.get("params", {}).items():
            layer.params[name] = np.array(value, dtype=np.float64)
        for name, value in entry.get("state", {}).items():
            layer.state[name] = np.array(value, dtype=np.float64) if np.ndim(value) else int(value)
        if "mask" in entry:
            mask = np.asarray(entry["mask"], dtype=bool)
            layer.fixed_mask = mask if step is None else mask[step]
        layers.append(layer)
    return layers


def _namespace(fn) -> dict:
    return getattr(fn, "__globals__", {})


def _bn_names(spec: list) -> list[tuple[int, str]]:
    return [(i, name) for i, e in enumerate(spec) if e["type"] == "BatchNorm"
            for name in ("running_mean", "running_var", "num_batches_tracked")]


def _state_outputs(layers, spec: list, torch_modules: bool = False) -> dict:
    """BN's running statistics and counter (as floats: outputs must be float arrays)."""
    values = {}
    for i, name in _bn_names(spec):
        value = _np(getattr(layers[i], name)) if torch_modules else layers[i].state[name]
        values[f"{name} of layer {i}"] = np.asarray(value, dtype=np.float64)
    return values


def _param_outputs(layers_or_modules, spec: list, torch_modules: bool = False) -> dict:
    values = {}
    for i, entry in enumerate(spec):
        for name in entry.get("params", {}):
            value = getattr(layers_or_modules[i], name) if torch_modules else layers_or_modules[i].params[name]
            values[f"{name} of layer {i} ({entry['type']})"] = _np(value) if torch_modules else value
    return values


# ------------------------------------------------------------------ the same network in torch


def _torch_network(spec: list, step: int | None = None):
    torch = _torch()
    nn = torch.nn

    class FixedMaskDropout(nn.Module):
        """What ``nn.Dropout(p)`` computes when it draws ``mask``."""

        def __init__(self, mask, p):
            super().__init__()
            self.mask, self.p = _t(mask), p

        def forward(self, x):
            return x * self.mask / (1 - self.p) if self.training else x

    modules, ndim = [], None
    for entry in spec:
        kind, a = entry["type"], entry["args"]
        if kind == "Affine":
            ndim = 2
            mod = nn.Linear(a["in_features"], a["out_features"], bias=a["bias"])
        elif kind == "Conv2d":
            ndim = 4
            mod = nn.Conv2d(a["in_channels"], a["out_channels"], a["kernel_size"], a["stride"], a["padding"],
                            bias=a["bias"])
        elif kind == "BatchNorm":
            mod = (nn.BatchNorm2d if ndim == 4 else nn.BatchNorm1d)(a["num_features"], momentum=a["momentum"])
        elif kind == "LayerNorm":
            mod = nn.LayerNorm(a["normalized_shape"])
        elif kind == "Dropout":
            mask = np.asarray(entry["mask"])
            mod = FixedMaskDropout(mask if step is None else mask[step], a["p"])
        elif kind == "Flatten":
            ndim = 2
            mod = nn.Flatten()
        elif kind == "MaxPool2d":
            mod = nn.MaxPool2d(a["kernel_size"])
        elif kind == "AvgPool2d":
            mod = nn.AvgPool2d(a["kernel_size"])
        else:
            mod = nn.ReLU()
        modules.append(mod)
    net = nn.Sequential(*modules).to(torch.float64)
    with torch.no_grad():
        for mod, entry in zip(net, spec):
            for name, value in {**entry.get("params", {}), **entry.get("state", {})}.items():
                getattr(mod, name).copy_(torch.as_tensor(np.asarray(value, dtype=np.float64 if np.ndim(value) else
                                                                    np.int64)))
    return net


# ------------------------------------------------------------------ softmax_cross_entropy


def _loss_inputs(n: int, k: int, scale: float):
    def make(rng: np.random.Generator) -> dict:
        logits = scale * rng.standard_normal((n, k))
        y = rng.integers(0, k, n)
        if scale > 100:  # one row dominated by a huge logit, one by a hugely negative one
            logits[0, y[0]] = 3 * scale
            logits[1] -= 3 * scale
        return {"logits": logits, "y": y}

    return make


def _expect_torch_loss(inputs: dict) -> dict:
    torch = _torch()
    logits = _t(inputs["logits"]).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(inputs["y"]))
    loss.backward()
    return {"loss": _np(loss), "dlogits": _np(logits.grad)}


def _expect_reference_loss(inputs: dict) -> dict:
    from solutions.layers import softmax_cross_entropy

    loss, dlogits = softmax_cross_entropy(inputs["logits"], inputs["y"])
    return {"loss": np.float64(loss), "dlogits": dlogits}


# ------------------------------------------------------------------ network_forward


def _forward_call(fn, inputs: dict) -> dict:
    layers = _build(_namespace(fn), inputs["layers"])
    named = unpack(fn(layers, inputs["x"], inputs["training"]), ("out", "caches"), "network_forward")
    if not isinstance(named["caches"], (list, tuple)) or len(named["caches"]) != len(layers):
        raise CheckFailure(f"caches must be a list with one cache per layer ({len(layers)} layers)")
    return {"out": named["out"], **_state_outputs(layers, inputs["layers"])}


def _expect_torch_forward(inputs: dict) -> dict:
    torch = _torch()
    net = _torch_network(inputs["layers"]).train(inputs["training"])
    with torch.no_grad():
        out = _np(net(_t(inputs["x"])))
    return {"out": out, **_state_outputs(net, inputs["layers"], torch_modules=True)}


def _expect_reference_forward(inputs: dict) -> dict:
    from solutions import network

    layers = _build(vars(network), inputs["layers"])
    out, _ = network.network_forward(layers, inputs["x"], inputs["training"])
    return {"out": out, **_state_outputs(layers, inputs["layers"])}


# ------------------------------------------------------------------ network_backward


def _backward_call(fn, inputs: dict) -> dict:
    """The caches come from the provided layers themselves, so only the backward is graded."""
    layers = _build(_namespace(fn), inputs["layers"])
    out, caches = inputs["x"], []
    for provided_layer in layers:
        out, layer_cache = provided_layer.forward(out, inputs["training"])
        caches += [layer_cache]
    result = fn(layers, inputs["dout"], caches)
    named = unpack(result, ("dx", "grads"), "network_backward")
    grads = named["grads"]
    if not isinstance(grads, (list, tuple)) or len(grads) != len(layers):
        raise CheckFailure(f"grads must be a list with one dict per layer ({len(layers)} layers), "
                           f"got {type(grads).__name__}" + (f" of length {len(grads)}" if isinstance(grads, (list, tuple)) else ""))
    outputs = {"dx": named["dx"]}
    for i, (entry, layer_grads) in enumerate(zip(inputs["layers"], grads)):
        wanted = set(entry.get("params", {}))
        if not isinstance(layer_grads, dict) or set(layer_grads) != wanted:
            got = sorted(layer_grads) if isinstance(layer_grads, dict) else type(layer_grads).__name__
            raise CheckFailure(f"grads[{i}] ({entry['type']}) must be a dict with the keys {sorted(wanted)}, got {got}")
        outputs.update({f"d{name} of layer {i} ({entry['type']})": g for name, g in layer_grads.items()})
    return outputs


def _expect_torch_backward(inputs: dict) -> dict:
    torch = _torch()
    net = _torch_network(inputs["layers"]).train(inputs["training"])
    x = _t(inputs["x"]).requires_grad_(True)
    out = net(x)
    out.backward(_t(inputs["dout"]))
    values = {"dx": _np(x.grad)}
    for i, (mod, entry) in enumerate(zip(net, inputs["layers"])):
        for name in entry.get("params", {}):
            values[f"d{name} of layer {i} ({entry['type']})"] = _np(getattr(mod, name).grad)
    return values


def _expect_reference_backward(inputs: dict) -> dict:
    from solutions import network

    layers = _build(vars(network), inputs["layers"])
    out, caches = network.network_forward(layers, inputs["x"], inputs["training"])
    dx, grads = network.network_backward(layers, inputs["dout"], caches)
    values = {"dx": dx}
    for i, (entry, layer_grads) in enumerate(zip(inputs["layers"], grads)):
        values.update({f"d{name} of layer {i} ({entry['type']})": g for name, g in layer_grads.items()})
    return values


# ------------------------------------------------------------------ the solvers


def _solver_inputs(steps: int, shape: tuple[int, ...], **hyper):
    def make(rng: np.random.Generator) -> dict:
        # Gradients of varied sizes (some tiny), so Adam's eps and bias correction both matter.
        scales = 10.0 ** rng.uniform(-4, 0, shape)
        return {"param": rng.standard_normal(shape), "grads": [scales * rng.standard_normal(shape) for _ in range(steps)],
                **hyper}

    return make


def _sgd_call(fn, inputs: dict) -> dict:
    param, velocity, outputs = inputs["param"], None, {}
    for k, g in enumerate(inputs["grads"], 1):
        named = unpack(fn(param, g, velocity, inputs["lr"], inputs["momentum"]), ("param", "velocity"),
                       "sgd_momentum_step")
        param, velocity = named["param"], named["velocity"]
        outputs[f"param after step {k}"] = param
    return outputs


def _adam_call(fn, inputs: dict) -> dict:
    param = inputs["param"]
    m, v, outputs = np.zeros_like(param), np.zeros_like(param), {}
    for t, g in enumerate(inputs["grads"], 1):
        named = unpack(fn(param, g, m, v, t, inputs["lr"], inputs["beta1"], inputs["beta2"], inputs["eps"]),
                       ("param", "m", "v"), "adam_step")
        param, m, v = named["param"], named["m"], named["v"]
        outputs[f"param after step {t}"] = param
    return outputs


def _expect_torch_optimizer(kind: str):
    def expect(inputs: dict) -> dict:
        torch = _torch()
        p = _t(inputs["param"]).requires_grad_(True)
        if kind == "sgd":
            opt = torch.optim.SGD([p], lr=inputs["lr"], momentum=inputs["momentum"])
        else:
            opt = torch.optim.Adam([p], lr=inputs["lr"], betas=(inputs["beta1"], inputs["beta2"]), eps=inputs["eps"])
        values = {}
        for k, g in enumerate(inputs["grads"], 1):
            p.grad = _t(g)
            opt.step()
            values[f"param after step {k}"] = _np(p)
        return values

    return expect


def _expect_reference_sgd(inputs: dict) -> dict:
    from solutions.network import sgd_momentum_step

    param, velocity, values = inputs["param"], None, {}
    for k, g in enumerate(inputs["grads"], 1):
        param, velocity = sgd_momentum_step(param, g, velocity, inputs["lr"], inputs["momentum"])
        values[f"param after step {k}"] = param
    return values


def _expect_reference_adam(inputs: dict) -> dict:
    from solutions.network import adam_step

    param = inputs["param"]
    m, v, values = np.zeros_like(param), np.zeros_like(param), {}
    for t, g in enumerate(inputs["grads"], 1):
        param, m, v = adam_step(param, g, m, v, t, inputs["lr"], inputs["beta1"], inputs["beta2"], inputs["eps"])
        values[f"param after step {t}"] = param
    return values


# ------------------------------------------------------------------ train_step


EARLIER = ("network_forward", "softmax_cross_entropy", "network_backward", "sgd_momentum_step")
DISAGREE = "earlier parts that disagree on this input"


_DIAGNOSED: dict = {}  # earlier function -> whether it fails a visible check (kept alive: no id reuse)


def _earlier_problems(fn, inputs: dict) -> list[str]:
    """Which of the functions train_step builds on (found where train_step was defined, i.e.
    the notebook) fail their own visible checks: the same PyTorch oracles the notebook runs,
    so nothing here computes an answer. Each function is judged once per process. Where
    PyTorch is not importable (the grader runs this chapter's sandbox without it) there is
    no diagnosis: the earlier parts' own failures are in the same feedback."""
    namespace = _namespace(fn)
    problems = []
    for name in EARLIER:
        f = namespace.get(name)
        if not callable(f):
            continue
        if f not in _DIAGNOSED:
            try:
                _DIAGNOSED[f] = any(not run_check(c, f).passed for c in CHECKS if c.function == name and not c.hidden)
            except Exception:  # noqa: BLE001 (no PyTorch, as in the grader's numpy sandbox: no diagnosis)
                _DIAGNOSED[f] = False
        if _DIAGNOSED[f]:
            problems.append(name)
    return problems


def _blame(names) -> str:
    listed = ", ".join(names)
    return (f"train_step builds on your {listed}, which {'fails its' if len(names) == 1 else 'fail their'} own "
            f"visible checks: fix {listed} first (its own checks above say more)")


def _train_call(fn, inputs: dict) -> dict:
    spec, steps = inputs["layers"], len(inputs["x"])
    layers = _build(_namespace(fn), spec, step=0)
    velocities, losses = None, []
    try:
        for k in range(steps):
            for layer, entry in zip(layers, spec):
                if "mask" in entry:
                    layer.fixed_mask = np.asarray(entry["mask"], dtype=bool)[k]
            named = unpack(fn(layers, inputs["x"][k], inputs["y"][k], velocities, inputs["lr"], inputs["momentum"]),
                           ("loss", "velocities"), "train_step")
            losses.append(named["loss"])
            velocities = named["velocities"]
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 (CheckFailure too: a wrong return value)
        problems = _earlier_problems(fn, inputs)
        if problems:
            text = exc.message if isinstance(exc, CheckFailure) else f"raised {type(exc).__name__}: {exc}"
            raise CheckFailure(f"{text}; {_blame(problems)}") from None
        raise
    flags = np.array([float(name in _earlier_problems(fn, inputs)) for name in EARLIER])
    return {"losses": np.array([np.asarray(v, dtype=np.float64) for v in losses]),
            **_param_outputs(layers, spec), **_state_outputs(layers, spec), DISAGREE: flags}


def _compare_training(actual: dict, expected: dict) -> None:
    """The oracle decides; if it finds a difference, the message says which earlier part
    the call found disagreeing on this input (the flags only ever change the words)."""
    try:
        close(TOL)(actual, expected)
    except CheckFailure as exc:
        flags = actual.get(DISAGREE)
        names = [n for n, f in zip(EARLIER, np.ravel(flags)) if f] if flags is not None and np.size(flags) == 4 else []
        if names:
            raise CheckFailure(f"{exc.message}; {_blame(names)}", exc.detail) from None
        raise


def _expect_torch_training(inputs: dict) -> dict:
    torch = _torch()
    spec = inputs["layers"]
    net = _torch_network(spec, step=0).train()
    opt = torch.optim.SGD(net.parameters(), lr=inputs["lr"], momentum=inputs["momentum"])
    losses = []
    for k in range(len(inputs["x"])):
        for mod, entry in zip(net, spec):
            if "mask" in entry:
                mod.mask = _t(np.asarray(entry["mask"])[k])
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(_t(inputs["x"][k])), torch.as_tensor(inputs["y"][k]))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return {"losses": np.array(losses), **_param_outputs(net, spec, torch_modules=True),
            **_state_outputs(net, spec, torch_modules=True)}


def _expect_reference_training(inputs: dict) -> dict:
    from solutions import network

    spec = inputs["layers"]
    layers = _build(vars(network), spec, step=0)
    velocities, losses = None, []
    for k in range(len(inputs["x"])):
        for layer, entry in zip(layers, spec):
            if "mask" in entry:
                layer.fixed_mask = np.asarray(entry["mask"], dtype=bool)[k]
        loss, velocities = network.train_step(layers, inputs["x"][k], inputs["y"][k], velocities, inputs["lr"],
                                              inputs["momentum"])
        losses.append(loss)
    return {"losses": np.array(losses), **_param_outputs(layers, spec), **_state_outputs(layers, spec)}


def _training_inputs(kind: str, steps: int, n: int, lr: float, momentum: float, **sizes):
    base = _network_inputs(kind, n, True, steps=steps, **sizes)

    def make(rng: np.random.Generator) -> dict:
        return {**base(rng), "lr": lr, "momentum": momentum}

    return make


# ------------------------------------------------------------------ the checks

C_ = "softmax_cross_entropy"
F_ = "network_forward"
B_ = "network_backward"
S_ = "sgd_momentum_step"
A_ = "adam_step"
T_ = "train_step"
_id = lambda function, name: f"{CHAPTER}_{function}_{name}"  # noqa: E731

CHECKS = [
    # softmax_cross_entropy: 8 points
    Check(_id(C_, "torch"), C_, 4, "loss and dlogits of (7, 5) logits match F.cross_entropy and its gradient",
          inputs=_loss_inputs(7, 5, 3.0), expected=_expect_torch_loss, call=lambda fn, i: unpack(
              fn(i["logits"], i["y"]), ("loss", "dlogits"), C_), compare=close(TOL), seed=1),
    Check(_id(C_, "torch_hidden"), C_, 2, "another batch and number of classes",
          inputs=_loss_inputs(12, 3, 5.0), expected=_expect_reference_loss, call=lambda fn, i: unpack(
              fn(i["logits"], i["y"]), ("loss", "dlogits"), C_), compare=close(TOL), hidden=True,
          cell=_id(C_, "torch")),
    Check(_id(C_, "large_logits"), C_, 2, "logits of size 1e3 (exp would overflow) give a finite, exact loss",
          inputs=_loss_inputs(6, 4, 1000.0), expected=_expect_torch_loss, call=lambda fn, i: unpack(
              fn(i["logits"], i["y"]), ("loss", "dlogits"), C_), compare=close(TOL), seed=2),
    # network_forward: 12 points
    Check(_id(F_, "train_mlp"), F_, 4,
          "train mode, Affine-BN-ReLU-Dropout-Affine-LN-ReLU-Affine: out and BN's running statistics match torch",
          inputs=_network_inputs("mlp", 10, True), expected=_expect_torch_forward, call=_forward_call,
          compare=close(TOL), seed=3),
    Check(_id(F_, "train_cnn_hidden"), F_, 2, "train mode, a small CNN with a rectangular kernel",
          inputs=_network_inputs("cnn", 4, True, kernel=(3, 2), padding=(1, 0), size=(8, 9)),
          expected=_expect_reference_forward, call=_forward_call, compare=close(TOL), hidden=True,
          cell=_id(F_, "train_mlp")),
    Check(_id(F_, "eval_cnn"), F_, 4,
          "eval mode, conv(2x3, padding (0, 1))-BN-ReLU-maxpool-conv-ReLU-avgpool-flatten-dropout-affine on one "
          "(1, 2, 9, 8) image: out matches torch, running statistics unchanged",
          inputs=_network_inputs("cnn", 1, False, kernel=(2, 3), padding=(0, 1), size=(9, 8)), expected=_expect_torch_forward, call=_forward_call,
          compare=close(TOL), seed=4),
    Check(_id(F_, "eval_mlp_hidden"), F_, 2, "eval mode, the MLP on a single example",
          inputs=_network_inputs("mlp", 1, False, d_in=5, width=7), expected=_expect_reference_forward,
          call=_forward_call, compare=close(TOL), hidden=True, cell=_id(F_, "eval_cnn")),
    # network_backward: 20 points
    Check(_id(B_, "torch_mlp"), B_, 7, "train mode MLP: dx and every parameter's gradient match torch autograd",
          inputs=_network_inputs("mlp", 10, True), expected=_expect_torch_backward, call=_backward_call,
          compare=close(TOL), seed=5),
    Check(_id(B_, "torch_mlp_hidden"), B_, 3, "a wider MLP with more classes",
          inputs=_network_inputs("mlp", 9, True, d_in=7, width=11, classes=6),
          expected=_expect_reference_backward, call=_backward_call, compare=close(TOL), hidden=True,
          cell=_id(B_, "torch_mlp")),
    Check(_id(B_, "torch_cnn"), B_, 7,
          "train mode CNN, first conv 2x3 with padding (0, 1) on (4, 2, 9, 8) images: dx and every parameter's "
          "gradient match torch autograd",
          inputs=_network_inputs("cnn", 4, True, kernel=(2, 3), padding=(0, 1), size=(9, 8)), expected=_expect_torch_backward, call=_backward_call,
          compare=close(TOL), seed=6),
    Check(_id(B_, "torch_cnn_hidden"), B_, 3, "a CNN with a rectangular kernel and no padding on one axis",
          inputs=_network_inputs("cnn", 3, True, kernel=(3, 2), padding=(1, 0), size=(8, 9), c_in=1),
          expected=_expect_reference_backward, call=_backward_call, compare=close(TOL), hidden=True,
          cell=_id(B_, "torch_cnn")),
    # sgd_momentum_step: 8 points
    Check(_id(S_, "torch"), S_, 4, "6 steps with momentum 0.9 match torch.optim.SGD",
          inputs=_solver_inputs(6, (4, 3), lr=0.1, momentum=0.9), expected=_expect_torch_optimizer("sgd"),
          call=_sgd_call, compare=close(TOL), seed=7),
    Check(_id(S_, "torch_hidden"), S_, 2, "5 steps with momentum 0.5 and another learning rate",
          inputs=_solver_inputs(5, (6,), lr=0.3, momentum=0.5), expected=_expect_reference_sgd,
          call=_sgd_call, compare=close(TOL), hidden=True, cell=_id(S_, "torch")),
    Check(_id(S_, "no_momentum"), S_, 2, "momentum 0 is plain SGD (torch.optim.SGD without momentum), a (5,) parameter",
          inputs=_solver_inputs(3, (5,), lr=0.05, momentum=0.0), expected=_expect_torch_optimizer("sgd"),
          call=_sgd_call, compare=close(TOL), seed=8),
    # adam_step: 12 points
    Check(_id(A_, "torch"), A_, 5, "8 steps match torch.optim.Adam (lr 0.01, default betas and eps)",
          inputs=_solver_inputs(8, (5, 2), lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8),
          expected=_expect_torch_optimizer("adam"), call=_adam_call, compare=close(TOL), seed=9),
    Check(_id(A_, "torch_hidden"), A_, 2, "Adam with another learning rate and shape",
          inputs=_solver_inputs(6, (7,), lr=0.003, beta1=0.9, beta2=0.999, eps=1e-8),
          expected=_expect_reference_adam, call=_adam_call, compare=close(TOL), hidden=True, cell=_id(A_, "torch")),
    Check(_id(A_, "betas_eps"), A_, 3, "betas (0.5, 0.8) and eps 1e-3, where eps's placement matters, a (6,) parameter",
          inputs=_solver_inputs(5, (6,), lr=0.02, beta1=0.5, beta2=0.8, eps=1e-3),
          expected=_expect_torch_optimizer("adam"), call=_adam_call, compare=close(TOL), seed=10),
    Check(_id(A_, "betas_eps_hidden"), A_, 2, "other betas and eps",
          inputs=_solver_inputs(4, (4,), lr=0.05, beta1=0.7, beta2=0.9, eps=1e-4),
          expected=_expect_reference_adam, call=_adam_call, compare=close(TOL), hidden=True,
          cell=_id(A_, "betas_eps")),
    # train_step: 20 points
    Check(_id(T_, "torch_mlp"), T_, 7,
          "4 steps on the MLP (new dropout mask each step): losses, parameters and running statistics "
          "match torch with torch.optim.SGD(momentum=0.9)",
          inputs=_training_inputs("mlp", 4, 10, lr=0.1, momentum=0.9), expected=_expect_torch_training,
          call=_train_call, compare=_compare_training, seed=11),
    Check(_id(T_, "torch_mlp_hidden"), T_, 3, "5 steps on another MLP with momentum 0.5",
          inputs=_training_inputs("mlp", 5, 8, lr=0.2, momentum=0.5, d_in=4, width=9, classes=3),
          expected=_expect_reference_training, call=_train_call, compare=_compare_training, hidden=True,
          cell=_id(T_, "torch_mlp")),
    Check(_id(T_, "torch_cnn"), T_, 7,
          "3 steps on the CNN with a 2x3 first kernel, padding (0, 1): losses, parameters and running statistics "
          "match torch",
          inputs=_training_inputs("cnn", 3, 4, lr=0.05, momentum=0.9, kernel=(2, 3), padding=(0, 1), size=(9, 8)), expected=_expect_torch_training,
          call=_train_call, compare=_compare_training, seed=12),
    Check(_id(T_, "torch_cnn_hidden"), T_, 3, "4 steps on a CNN with a rectangular kernel",
          inputs=_training_inputs("cnn", 4, 3, lr=0.1, momentum=0.8, kernel=(3, 2), padding=(1, 0), size=(8, 9)),
          expected=_expect_reference_training, call=_train_call, compare=_compare_training, hidden=True,
          cell=_id(T_, "torch_cnn")),
]


# ---------------------------------------------------------------- kinds of input
def _network_kinds(inputs: dict) -> set[str]:
    layers = inputs["layers"]
    x = np.asarray(inputs["x"])
    image = x.shape[-4:] if any(e["type"] == "Conv2d" for e in layers) else x.shape[-2:]
    kinds = array_kinds(x[0] if "lr" in inputs else x)  # train_step: x holds one batch per step
    kinds.add("training mode" if inputs["training"] else "evaluation mode")
    convs = [e["args"] for e in layers if e["type"] == "Conv2d"]
    kinds.add("a CNN" if convs else "an MLP")
    for a in convs:
        k, pad = tuple(np.broadcast_to(a["kernel_size"], 2)), tuple(np.broadcast_to(a["padding"], 2))
        if k[0] != k[1]:
            kinds.add("a rectangular conv kernel")
        if pad[0] != pad[1]:
            kinds.add("conv padding that differs between the axes")
    if convs and image[-1] != image[-2]:
        kinds.add("non-square images")
    return kinds


def input_kinds(function: str, inputs: dict) -> set[str]:
    """The kinds of input a check of ``function`` uses, read off its inputs."""
    if function == C_:
        logits = np.asarray(inputs["logits"])
        return array_kinds(logits, "logits") | {
            "logits large enough to overflow exp" if np.abs(logits).max() > 700 else "moderate logits"}
    if function in (S_, A_):
        kinds = array_kinds(inputs["param"], "param") | {"several steps" if len(inputs["grads"]) > 1 else "one step"}
        if function == S_:
            kinds.add("momentum 0" if inputs["momentum"] == 0 else "momentum above 0")
        else:
            default = (inputs["beta1"], inputs["beta2"], inputs["eps"]) == (0.9, 0.999, 1e-8)
            kinds.add("default betas and eps" if default else "other betas and eps")
        return kinds
    kinds = _network_kinds(inputs)
    if function == T_:
        kinds.add("several steps" if np.asarray(inputs["x"]).shape[0] > 1 else "one step")
    return kinds


def describe_input(function: str, inputs: dict) -> str:
    """The input in plain words: shapes, kind of network, conv geometry; never values."""
    if function == C_:
        return f"{tuple(np.shape(inputs['logits']))} logits, " + ", ".join(
            sorted(input_kinds(function, inputs) - array_kinds(inputs["logits"], "logits")))
    if function in (S_, A_):
        return f"a {tuple(np.shape(inputs['param']))} parameter, {len(inputs['grads'])} steps"
    words = [f"x of shape {tuple(np.shape(inputs['x']))}"]
    for e in inputs["layers"]:
        if e["type"] == "Conv2d":
            a = e["args"]
            k, pad = tuple(np.broadcast_to(a["kernel_size"], 2)), tuple(np.broadcast_to(a["padding"], 2))
            words.append(f"a {k[0]}x{k[1]} conv with padding ({pad[0]}, {pad[1]})")
    words.append("training mode" if inputs["training"] else "evaluation mode")
    words.append("a CNN" if len(words) > 2 else "an MLP")
    return ", ".join(words)


CHECKS = describing(CHECKS, describe_input)
