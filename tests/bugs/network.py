"""Typical student bugs in the network exercise, as source text.

Each entry is complete numpy code that redefines one graded function; it may call the
notebook's other answers (``network_forward``, ``network_backward``, ``softmax_cross_entropy``,
``sgd_momentum_step``) and the provided layers, as a student's code would. ``fails`` lists the
test cells that must fail because of it, including the training-step cells when the bug sits
in a function the training step calls; every other cell must keep its points.
"""
from __future__ import annotations

_P = "network_"
LOSS = {_P + "softmax_cross_entropy_torch", _P + "softmax_cross_entropy_large_logits"}
TRAIN = {_P + "train_step_torch_mlp", _P + "train_step_torch_cnn"}
BACKWARD = {_P + "network_backward_torch_mlp", _P + "network_backward_torch_cnn"}

BUGS = {
    # exp without subtracting the row maximum: overflows to inf/nan on large logits.
    "loss_without_max_shift": dict(
        answer_cell=_P + "softmax_cross_entropy_answer",
        fails={_P + "softmax_cross_entropy_large_logits"},
        source='''
def softmax_cross_entropy(logits, y):
    n = logits.shape[0]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    loss = -np.log(probs[np.arange(n), y]).mean()
    dlogits = probs.copy()
    dlogits[np.arange(n), y] -= 1
    return float(loss), dlogits / n
'''),
    # The loss summed over the batch (and its gradient not divided by N): every step of
    # training is N times too large.
    "loss_summed": dict(
        answer_cell=_P + "softmax_cross_entropy_answer",
        fails=LOSS | TRAIN,
        source='''
def softmax_cross_entropy(logits, y):
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    loss = -np.log(probs[np.arange(n), y]).sum()
    dlogits = probs.copy()
    dlogits[np.arange(n), y] -= 1
    return float(loss), dlogits
'''),
    # The mode is ignored: evaluation runs with batch statistics, updates the running
    # statistics and applies dropout.
    "forward_always_training": dict(
        answer_cell=_P + "network_forward_answer",
        fails={_P + "network_forward_eval_cnn"},
        source='''
def network_forward(layers, x, training):
    out, caches = x, []
    for layer in layers:
        out, cache = layer.forward(out, True)
        caches.append(cache)
    return out, caches
'''),
    # Each layer run twice, once for the output and once for the cache: the output is right,
    # but in training mode batch norm updates its running statistics twice per step.
    "forward_runs_layers_twice": dict(
        answer_cell=_P + "network_forward_answer",
        fails={_P + "network_forward_train_mlp"} | TRAIN,
        source='''
def network_forward(layers, x, training):
    out, caches = x, []
    for layer in layers:
        caches.append(layer.forward(out, training)[1])
        out = layer.forward(out, training)[0]
    return out, caches
'''),
    # The upstream gradient is not chained: every layer receives the network's dout.
    "backward_not_chained": dict(
        answer_cell=_P + "network_backward_answer",
        fails=BACKWARD | TRAIN,
        source='''
def network_backward(layers, dout, caches):
    grads = [None] * len(layers)
    dx = dout
    for i in reversed(range(len(layers))):
        try:
            dx, grads[i] = layers[i].backward(dout, caches[i])
        except ValueError:  # shapes no longer match: keep going with zeros
            grads[i] = {k: np.zeros_like(v) for k, v in layers[i].params.items()}
    return dx, grads
'''),
    # Gradients appended while walking backwards and never reversed: layer i gets the
    # gradients of layer len - 1 - i.
    "backward_grads_reversed": dict(
        answer_cell=_P + "network_backward_answer",
        fails=BACKWARD | TRAIN,
        source='''
def network_backward(layers, dout, caches):
    grads = []
    for layer, cache in zip(reversed(layers), reversed(caches)):
        dout, layer_grads = layer.backward(dout, cache)
        grads.append(layer_grads)
    return dout, grads
'''),
    # Momentum with dampening: velocity = momentum * velocity + (1 - momentum) * grad.
    "sgd_dampening": dict(
        answer_cell=_P + "sgd_momentum_step_answer",
        fails={_P + "sgd_momentum_step_torch"} | TRAIN,
        source='''
def sgd_momentum_step(param, grad, velocity, lr, momentum):
    if velocity is None:
        velocity = np.zeros_like(param)
    velocity = momentum * velocity + (1 - momentum) * grad
    return param - lr * velocity, velocity
'''),
    # No bias correction of the moments: the first steps are far too small.
    "adam_no_bias_correction": dict(
        answer_cell=_P + "adam_step_answer",
        fails={_P + "adam_step_torch", _P + "adam_step_betas_eps"},
        source='''
def adam_step(param, grad, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    return param - lr * m / (np.sqrt(v) + eps), m, v
'''),
    # eps inside the square root: sqrt(v_hat + eps) instead of sqrt(v_hat) + eps.
    "adam_eps_inside_sqrt": dict(
        answer_cell=_P + "adam_step_answer",
        fails={_P + "adam_step_torch", _P + "adam_step_betas_eps"},
        source='''
def adam_step(param, grad, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
    return param - lr * m_hat / np.sqrt(v_hat + eps), m, v
'''),
    # The training step runs the network in evaluation mode: running statistics instead of
    # batch statistics, no dropout, no update of the running statistics.
    "train_step_eval_mode": dict(
        answer_cell=_P + "train_step_answer",
        fails=TRAIN,
        source='''
def train_step(layers, x, y, velocities, lr, momentum):
    out, caches = network_forward(layers, x, False)
    loss, dout = softmax_cross_entropy(out, y)
    _, grads = network_backward(layers, dout, caches)
    new_velocities = []
    for i, layer in enumerate(layers):
        updated = {}
        for name, grad in grads[i].items():
            velocity = None if velocities is None else velocities[i].get(name)
            layer.params[name], updated[name] = sgd_momentum_step(layer.params[name], grad, velocity, lr, momentum)
        new_velocities.append(updated)
    return loss, new_velocities
'''),
    # The velocities are not carried to the next step: momentum never builds up.
    "train_step_forgets_velocities": dict(
        answer_cell=_P + "train_step_answer",
        fails=TRAIN,
        source='''
def train_step(layers, x, y, velocities, lr, momentum):
    out, caches = network_forward(layers, x, True)
    loss, dout = softmax_cross_entropy(out, y)
    _, grads = network_backward(layers, dout, caches)
    for layer, layer_grads in zip(layers, grads):
        for name, grad in layer_grads.items():
            layer.params[name], _ = sgd_momentum_step(layer.params[name], grad, None, lr, momentum)
    return loss, None
'''),
}

# Submitted to real nbgrader by the end-to-end tests (each costs a kernel start).
E2E = ("forward_always_training", "backward_not_chained", "adam_no_bias_correction")
