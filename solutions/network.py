"""A sequential network of solutions.layers, its loss, and the solvers that train it.

``Sequential`` mirrors ``nn.Sequential``: it has a mode (``train()`` / ``eval()``), its
parameters and state are named ``"<index>.<name>"`` exactly as in the ``state_dict`` of the
same ``nn.Sequential`` (so weights can be copied across in one line), and ``loss`` returns
the mean softmax cross-entropy with the gradient of every parameter. ``SGD`` and ``Adam``
follow ``torch.optim.SGD`` and ``torch.optim.Adam`` update for update; ``fit`` runs
mini-batch training with a seeded shuffle. All of it rests on five plain functions
(``network_forward``, ``network_backward``, ``sgd_momentum_step``, ``adam_step``,
``train_step``), which the network exercise asks students to write. Everything is float64 numpy. See book/network.md.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from solutions._validate import float_array, generator, positive, same_shape
# The layer classes are imported by name: the exercise's checks build networks from the
# classes found beside the function under test (here, or in the student's notebook).
from solutions.layers import (  # noqa: F401
    Affine,
    AvgPool2d,
    BatchNorm,
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    LayerNorm,
    MaxPool2d,
    ReLU,
    softmax_cross_entropy,
)

__all__ = [
    "network_forward", "network_backward", "sgd_momentum_step", "adam_step", "train_step",
    "Sequential", "SGD", "Adam", "History", "fit", "minibatch_indices", "accuracy",
    "gradient_errors", "check_gradients", "torch_twin", "TorchDropoutMasks", "lockstep_with_torch",
]


# --- the functions everything else is built on (graded in the network exercise) ------------------


def network_forward(layers, x, training):
    """Run ``x`` through ``layers`` in order, in training or evaluation mode.

    Args:
        layers: a list of layers with the interface of
            :class:`Layer`.
        x: the input batch, a float array.
        training: True for training mode (batch statistics, running
            statistics updated, dropout on), False for evaluation mode
            (running statistics, dropout off).

    Returns:
        ``(out, caches)``: the last layer's output and the list of every
        layer's cache, in layer order, for :func:`network_backward`.
    """
    if type(training) not in (bool, np.bool_):
        raise TypeError(
            "training must be a bool (True: training mode), "
            f"got {training!r}"
        )
    out = float_array(x, "x", min_ndim=2).astype(np.float64, copy=False)
    caches = []
    for layer in layers:
        out, cache = layer.forward(out, bool(training))
        caches.append(cache)
    return out, caches


def network_backward(layers, dout, caches):
    """Backpropagate ``dout`` (the gradient of the loss with respect to the network's output)
    through ``layers``, last layer first, using the caches of :func:`network_forward`.

    Returns:
        ``(dx, grads)``: the gradient with respect to the network's input, and a list with
        one dict per layer (in layer order) holding the gradients of that layer's parameters,
        keyed like ``layer.params`` (an empty dict for a layer without parameters).
    """
    if len(caches) != len(layers):
        raise ValueError(f"got {len(caches)} caches for {len(layers)} layers")
    grads = [None] * len(layers)
    for i in reversed(range(len(layers))):
        dout, grads[i] = layers[i].backward(dout, caches[i])
    return dout, grads


def sgd_momentum_step(param, grad, velocity, lr, momentum):
    """One update of ``torch.optim.SGD(lr=lr, momentum=momentum)`` for one parameter array.

    ``velocity`` is the momentum buffer, ``None`` before the first step (the buffer then
    starts as the gradient itself, torch's rule). With ``momentum = 0`` this is plain SGD.

    Returns:
        ``(new_param, new_velocity)``: ``velocity = momentum * velocity + grad`` and
        ``param - lr * velocity``, as new arrays (the inputs are not modified).
    """
    param = float_array(param, "param").astype(np.float64, copy=False)
    grad = same_shape(grad, "grad", param.shape).astype(np.float64, copy=False)
    velocity = grad.copy() if velocity is None else momentum * same_shape(velocity, "velocity", param.shape) + grad
    return param - lr * velocity, velocity


def adam_step(param, grad, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """One update of ``torch.optim.Adam(lr, betas=(beta1, beta2), eps)`` for one parameter array.

    Args:
        m, v: the first and second moment estimates (zeros before the first step).
        t: the number of this step, 1 for the first.

    Returns:
        ``(new_param, new_m, new_v)``: ``m = beta1 m + (1 - beta1) g``,
        ``v = beta2 v + (1 - beta2) g^2``, and
        ``param - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``, torch's
        placement of ``eps`` (outside the bias-corrected square root). New arrays.
    """
    param = float_array(param, "param").astype(np.float64, copy=False)
    grad = same_shape(grad, "grad", param.shape).astype(np.float64, copy=False)
    if isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 1:
        raise ValueError(f"t is the step number, an int >= 1, got {t!r}")
    m = beta1 * same_shape(m, "m", param.shape) + (1 - beta1) * grad
    v = beta2 * same_shape(v, "v", param.shape) + (1 - beta2) * grad * grad
    denom = np.sqrt(v) / np.sqrt(1 - beta2**t) + eps
    return param - (lr / (1 - beta1**t)) * m / denom, m, v


def train_step(layers, x, y, velocities, lr, momentum):
    """One training step: forward in training mode, mean softmax cross-entropy, backward,
    and an SGD-with-momentum update of every parameter of every layer, in place.

    Args:
        layers: the network's layers; their ``params`` arrays are updated in place.
        x, y: a mini-batch and its integer labels.
        velocities: the momentum buffers, one dict per layer keyed like ``layer.params``,
            or ``None`` before the first step.
        lr, momentum: as for ``torch.optim.SGD``.

    Returns:
        ``(loss, velocities)``: the loss of this batch before the update, and the buffers
        for the next step (one dict per layer).
    """
    out, caches = network_forward(layers, x, True)
    loss, dout = softmax_cross_entropy(out, y)
    _, grads = network_backward(layers, dout, caches)
    if velocities is None:
        velocities = [{} for _ in layers]
    new_velocities = []
    for layer, layer_grads, layer_velocity in zip(layers, grads, velocities):
        updated = {}
        for name, grad in layer_grads.items():
            new_param, updated[name] = sgd_momentum_step(
                layer.params[name], grad, layer_velocity.get(name), lr, momentum
            )
            layer.params[name][...] = new_param  # in place: whoever holds the array sees it
        new_velocities.append(updated)
    return loss, new_velocities


class Sequential:
    """Layers applied in order, each with the interface of :class:`Layer`."""

    def __init__(self, *layers: Layer):
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} must be a solutions.layers.Layer, got {type(layer).__name__}")
        if not layers:
            raise ValueError("a Sequential needs at least one layer")
        self.layers = list(layers)
        self.training = True
        self._caches: list | None = None

    # --- mode ---------------------------------------------------------------------------------
    def train(self) -> "Sequential":
        """Training mode: batch statistics (and running-statistics updates), dropout on."""
        self.training = True
        return self

    def eval(self) -> "Sequential":
        """Evaluation mode: running statistics, dropout off; state is not updated."""
        self.training = False
        return self

    # --- parameters and state ----------------------------------------------------------------
    def parameters(self) -> dict[str, np.ndarray]:
        """Trainable arrays by name (``"0.weight"``, ...). The arrays are the layers' own:
        updating them in place updates the model."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()}

    def state_dict(self) -> dict[str, np.ndarray | int]:
        """Copies of every parameter and buffer, named as in ``nn.Sequential.state_dict()``."""
        out: dict[str, np.ndarray | int] = {}
        for i, layer in enumerate(self.layers):
            for k, v in {**layer.params, **layer.state}.items():
                out[f"{i}.{k}"] = v.copy() if isinstance(v, np.ndarray) else v
        return out

    def load_state_dict(self, state: dict) -> "Sequential":
        """Set parameters and buffers from a dict of arrays or torch tensors (e.g. a torch
        model's ``state_dict()``); every name must match, and shapes too."""
        own = self.state_dict()
        missing, extra = own.keys() - state.keys(), state.keys() - own.keys()
        if missing or extra:
            raise KeyError(f"state does not match the model: missing {sorted(missing)}, unexpected {sorted(extra)}")
        for i, layer in enumerate(self.layers):
            for store in (layer.params, layer.state):
                for k, old in store.items():
                    value = state[f"{i}.{k}"]
                    value = value.detach().cpu().numpy() if hasattr(value, "detach") else value
                    if isinstance(old, np.ndarray):
                        value = np.array(value, dtype=np.float64)
                        if value.shape != old.shape:
                            raise ValueError(f"{i}.{k} must have shape {old.shape}, got {value.shape}")
                        old[...] = value  # in place: an optimizer holding the array sees it
                    else:
                        store[k] = int(value)
        return self

    def dropout_layers(self) -> list[Dropout]:
        return [layer for layer in self.layers if isinstance(layer, Dropout)]

    # --- forward and backward ----------------------------------------------------------------
    def forward(self, x) -> np.ndarray:
        """Run every layer in the current mode; keep the caches for :meth:`backward`."""
        out, self._caches = network_forward(self.layers, x, self.training)
        return out

    __call__ = forward

    def backward(self, dout) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Gradient of ``sum(out * dout)`` for the last :meth:`forward`: ``(dx, grads)``,
        ``grads`` named like :meth:`parameters`."""
        if self._caches is None:
            raise RuntimeError("backward needs a forward pass first")
        dx, per_layer = network_backward(self.layers, dout, self._caches)
        return dx, {f"{i}.{k}": g for i, layer_grads in enumerate(per_layer) for k, g in layer_grads.items()}

    def loss(self, x, y) -> tuple[float, dict[str, np.ndarray]]:
        """Mean softmax cross-entropy of the logits ``forward(x)`` and the gradient of every
        parameter, in the current mode (train mode updates the running statistics)."""
        loss, dlogits = softmax_cross_entropy(self.forward(x), y)
        _, grads = self.backward(dlogits)
        return loss, grads

    def predict(self, x) -> np.ndarray:
        """Class predictions in the current mode."""
        return self.forward(x).argmax(axis=1)

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"


# --- end-to-end gradient check -------------------------------------------------------------------


def gradient_errors(analytic, numeric) -> tuple[float, float]:
    """Two measures of how far a backward pass is from a finite difference.

    Returns ``(norm_error, max_error)``: ``||a - n|| / max(1e-300, ||a|| + ||n||)`` over the
    whole array, and the course's elementwise ``rel_error``. A loss averaged over a batch
    always has some gradient entries near zero, where the finite difference's round-off
    (about ``1e-16 * loss / h``) is as large as the entry itself; the elementwise measure
    flags those entries however correct the backward pass is, the norm measure does not.
    """
    from solutions.gradcheck import rel_error

    a, n = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    norm = float(np.linalg.norm(a - n) / max(1e-300, np.linalg.norm(a) + np.linalg.norm(n)))
    return norm, rel_error(a, n)


def check_gradients(model: "Sequential", X, y, h: float = 1e-5) -> dict[str, tuple[float, float]]:
    """Compare :meth:`Sequential.loss`'s gradient of every parameter with a centred finite
    difference of the loss, in train mode with one dropout mask held fixed.

    The model runs one forward pass to draw its dropout masks, keeps them for every
    evaluation of the loss, and gets its own masks and mode back afterwards (its running
    statistics do change: every evaluation is a training-mode forward). Returns, per
    parameter name, :func:`gradient_errors` ``(norm_error, max_error)``.
    """
    from solutions.gradcheck import numerical_gradient

    training = model.training
    drops = model.dropout_layers()
    saved = [d.fixed_mask for d in drops]
    try:
        model.train().forward(X)
        for layer, cache in zip(model.layers, model._caches):
            if isinstance(layer, Dropout):
                layer.fixed_mask = cache
        _, grads = model.loss(X, y)
        return {
            name: gradient_errors(grads[name], numerical_gradient(lambda _: np.array(model.loss(X, y)[0]), p, 1.0, h))
            for name, p in model.parameters().items()
        }
    finally:
        for d, mask in zip(drops, saved):
            d.fixed_mask = mask
        model.training = training


# --- solvers --------------------------------------------------------------------------------------


def _rate(value, name: str, low: float = 0.0, high: float = 1.0, closed_high: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and low <= value and (
        value <= high if closed_high else value < high
    )
    if not ok:
        bracket = "]" if closed_high else ")"
        raise ValueError(f"{name} must be a number in [{low}, {high}{bracket}, got {value!r}")
    return float(value)


class _Optimizer:
    def __init__(self, params: dict[str, np.ndarray], lr: float):
        if not isinstance(params, dict) or not params:
            raise ValueError("params must be a non-empty dict of arrays, e.g. model.parameters()")
        self.params = params
        self.lr = positive(lr, "lr")

    def _grads(self, grads: dict) -> dict[str, np.ndarray]:
        if grads.keys() != self.params.keys():
            raise KeyError(
                f"grads must have the keys of params: missing {sorted(self.params.keys() - grads.keys())}, "
                f"unexpected {sorted(grads.keys() - self.params.keys())}"
            )
        for k, g in grads.items():
            if np.shape(g) != self.params[k].shape:
                raise ValueError(f"grads[{k!r}] has shape {np.shape(g)}, the parameter {self.params[k].shape}")
        return grads


class SGD(_Optimizer):
    """``torch.optim.SGD(lr, momentum)``: ``buf = momentum * buf + g`` (``buf = g`` on the
    first step), ``p -= lr * buf``; with ``momentum=0``, plain ``p -= lr * g``. Parameters
    are updated in place."""

    def __init__(self, params, lr: float, momentum: float = 0.0):
        super().__init__(params, lr)
        self.momentum = _rate(momentum, "momentum")
        self.buffers: dict[str, np.ndarray] = {}

    def step(self, grads: dict) -> None:
        for k, g in self._grads(grads).items():
            new, self.buffers[k] = sgd_momentum_step(self.params[k], g, self.buffers.get(k), self.lr, self.momentum)
            self.params[k][...] = new


class Adam(_Optimizer):
    """``torch.optim.Adam(lr, betas, eps)``: moment estimates ``m``, ``v`` with bias
    correction, ``p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``
    (torch's placement of ``eps``). Parameters are updated in place."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}")
        self.beta1, self.beta2 = (_rate(b, f"betas[{i}]") for i, b in enumerate(betas))
        self.eps = positive(eps, "eps")
        self.t = 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, grads: dict) -> None:
        grads = self._grads(grads)
        self.t += 1
        for k, g in grads.items():
            new, self.m[k], self.v[k] = adam_step(self.params[k], g, self.m[k], self.v[k], self.t,
                                                  self.lr, self.beta1, self.beta2, self.eps)
            self.params[k][...] = new


# --- training -------------------------------------------------------------------------------------


def minibatch_indices(n: int, batch_size: int, rng) -> list[np.ndarray]:
    """One epoch of mini-batch indices: a permutation of ``range(n)`` drawn from ``rng``, cut
    into batches of ``batch_size``; a last, smaller batch is dropped (training-mode batch
    norm cannot use a batch of one)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be an int in [1, {n}], got {batch_size!r}")
    order = generator(rng).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


@dataclass
class History:
    """Per-step training losses and per-epoch eval-mode accuracies."""

    losses: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)


def accuracy(model: Sequential, X, y) -> float:
    """Fraction of correct predictions in the model's current mode."""
    return float(np.mean(model.predict(X) == np.asarray(y)))


def fit(model: Sequential, optimizer, X, y, *, epochs: int, batch_size: int, seed: int = 0,
        X_test=None, y_test=None) -> History:
    """Mini-batch training in train mode with a seeded shuffle; after each epoch the model is
    evaluated in eval mode (on the training data and, if given, the test data) and left in
    train mode. Returns the :class:`History`."""
    X = float_array(X, "X", min_ndim=2).astype(np.float64, copy=False)
    y = np.asarray(y)
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} examples but y has {len(y)}")
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    rng = np.random.default_rng(seed)
    history = History()
    for _ in range(epochs):
        model.train()
        for idx in minibatch_indices(len(X), batch_size, rng):
            loss, grads = model.loss(X[idx], y[idx])
            optimizer.step(grads)
            history.losses.append(loss)
        model.eval()
        history.train_accuracy.append(accuracy(model, X, y))
        if X_test is not None:
            history.test_accuracy.append(accuracy(model, X_test, y_test))
        model.train()
    return history


# --- the same network in PyTorch ----------------------------------------------------------------


def torch_twin(model: Sequential, input_ndim: int):
    """The ``nn.Sequential`` made of the matching torch modules, in float64, holding a copy
    of ``model``'s parameters and running statistics and in the same mode.

    ``input_ndim`` is 2 for ``(N, D)`` inputs and 4 for images ``(N, C, H, W)``: it decides
    between ``BatchNorm1d`` and ``BatchNorm2d``.
    """
    import torch
    from torch import nn

    if input_ndim not in (2, 4):
        raise ValueError(f"input_ndim must be 2 or 4, got {input_ndim!r}")
    modules, ndim = [], input_ndim
    for layer in model.layers:
        if isinstance(layer, Affine):
            mod = nn.Linear(layer.in_features, layer.out_features, bias="bias" in layer.params)
        elif isinstance(layer, Conv2d):
            mod = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                            layer.stride, layer.padding, bias="bias" in layer.params)
        elif isinstance(layer, BatchNorm):
            bn = nn.BatchNorm1d if ndim == 2 else nn.BatchNorm2d
            mod = bn(layer.num_features, eps=layer.eps, momentum=layer.momentum)
        elif isinstance(layer, LayerNorm):
            mod = nn.LayerNorm(layer.normalized_shape, eps=layer.eps)
        elif isinstance(layer, Dropout):
            mod = nn.Dropout(layer.p)
        elif isinstance(layer, MaxPool2d):
            mod = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, AvgPool2d):
            mod = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, ReLU):
            mod = nn.ReLU()
        elif isinstance(layer, Flatten):
            mod, ndim = nn.Flatten(), 2
        else:
            raise TypeError(f"no torch module matches {layer!r}")
        modules.append(mod)
    twin = nn.Sequential(*modules).double()
    twin.load_state_dict({k: torch.as_tensor(v) for k, v in model.state_dict().items()})
    return twin.train(model.training)


class TorchDropoutMasks:
    """Records the keep-mask every ``nn.Dropout`` of a torch model draws, in call order.

    A forward pre-hook saves torch's random state, draws the mask the module is about to
    draw (dropout of a tensor of ones of the input's shape consumes the generator exactly
    as the real call does), and restores the state, so the real call draws the same mask.
    Use as a context manager; ``masks`` is cleared by :meth:`clear`.
    """

    def __init__(self, torch_model):
        from torch import nn

        self.masks: list[np.ndarray] = []
        self._modules = [m for m in torch_model.modules() if isinstance(m, nn.Dropout)]
        self._handles = []

    def _hook(self, module, inputs):
        import torch
        import torch.nn.functional as F

        if not module.training or module.p == 0:
            return
        state = torch.get_rng_state()
        ones = torch.ones_like(inputs[0])
        self.masks.append(F.dropout(ones, module.p, training=True).numpy() != 0)
        torch.set_rng_state(state)

    def clear(self) -> None:
        self.masks.clear()

    def __enter__(self) -> "TorchDropoutMasks":
        self._handles = [m.register_forward_pre_hook(self._hook) for m in self._modules]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def lockstep_with_torch(model: Sequential, X, y, *, steps: int, batch_size: int, optimizer: str = "sgd",
                        lr: float = 0.05, momentum: float = 0.9, seed: int = 0) -> dict:
    """Train ``model`` and its :func:`torch_twin` side by side on the same batches and the same
    dropout masks (torch draws them, ``model`` is given them) and record how far apart they are.

    Returns a dict: ``loss_ours`` and ``loss_torch`` per step, ``max_param_error`` per step (the
    largest :func:`rel_error` over every parameter), and at the end
    ``state_error`` (every parameter and running statistic) and ``eval_logit_error`` (eval-mode
    logits on all of ``X``). ``model`` is trained in place; ``optimizer`` is ``"sgd"``
    (with ``momentum``) or ``"adam"``.
    """
    import torch

    from solutions.gradcheck import rel_error

    X = float_array(X, "X", min_ndim=2).astype(np.float64, copy=False)
    y = np.asarray(y)
    twin = torch_twin(model.train(), X.ndim)
    if optimizer == "sgd":
        ours, theirs = SGD(model.parameters(), lr, momentum), torch.optim.SGD(twin.parameters(), lr, momentum)
    elif optimizer == "adam":
        ours, theirs = Adam(model.parameters(), lr), torch.optim.Adam(twin.parameters(), lr)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    record: dict = {"loss_ours": [], "loss_torch": [], "max_param_error": []}
    batches: list[np.ndarray] = []
    while len(batches) < steps:
        batches += minibatch_indices(len(X), batch_size, rng)
    with TorchDropoutMasks(twin) as recorder:
        for idx in batches[:steps]:
            recorder.clear()
            theirs.zero_grad()
            loss_t = torch.nn.functional.cross_entropy(twin(torch.as_tensor(X[idx])), torch.as_tensor(y[idx]))
            loss_t.backward()
            theirs.step()
            for layer, mask in zip(model.dropout_layers(), recorder.masks):
                layer.fixed_mask = mask
            loss, grads = model.loss(X[idx], y[idx])
            ours.step(grads)
            record["loss_ours"].append(loss)
            record["loss_torch"].append(loss_t.item())
            twin_state = twin.state_dict()
            record["max_param_error"].append(
                max(rel_error(v, twin_state[k].numpy()) for k, v in model.parameters().items())
            )
    for layer in model.dropout_layers():
        layer.fixed_mask = None
    twin_state = twin.state_dict()
    record["state_error"] = max(
        rel_error(v, twin_state[k].numpy()) for k, v in model.state_dict().items()
    )
    model.eval()
    twin.eval()
    with torch.no_grad():
        record["eval_logit_error"] = rel_error(model.forward(X), twin(torch.as_tensor(X)).numpy())
    model.train()
    return record
