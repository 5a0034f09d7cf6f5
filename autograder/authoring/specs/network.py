"""Notebook spec of the ``network`` exercise: assemble and train a network from the course's layers."""
from autograder.authoring.notebooks import Chapter, Experiment, Part

INTRO = r"""
The earlier notebooks built the layers one at a time. Here you put them together: the loss,
the forward and backward passes of a whole network, two optimizers, and a training step,
all in numpy and float64, checked against the same network in PyTorch. The layers are given
in the read-only cell below (the earlier notebooks' answers, taken from the course's
reference code, plus an affine layer, ReLU, a convolution and flatten), so a bug left in an
earlier notebook costs nothing here. Numpy only.

**The layer interface.** Every layer object has

* `layer.params`: a dict of its trainable arrays, named as in `torch.nn` (`"weight"`,
  `"bias"`; for the normalization layers `"weight"` is gamma and `"bias"` is beta);
* `layer.state`: a dict of buffers that are not trained (batch norm's `running_mean`,
  `running_var`, `num_batches_tracked`), empty for the other layers;
* `layer.forward(x, training)` returning `(out, cache)`: `training=True` is training mode
  (batch statistics, running statistics updated, dropout on), `False` is evaluation mode;
* `layer.backward(dout, cache)` returning `(dx, grads)`, `grads` a dict with the keys of
  `layer.params` (empty for layers without parameters).

`Dropout` has a `fixed_mask` attribute: when it holds a boolean keep-mask, training mode uses
it instead of drawing one (the tests use this to give your network PyTorch's masks).

**Conventions** (PyTorch's): `Affine` is `nn.Linear` (`weight` of shape `(out, in)`); BN
momentum weights the new batch statistic; the loss is the **mean** cross-entropy over the
batch, like `F.cross_entropy`. Do not modify your inputs unless a docstring says so.
"""

LOSS = """
Implement `softmax_cross_entropy(logits, y)`: the mean over the batch of
`-log softmax(logits)[y]` and its gradient with respect to the logits,
`(softmax(logits) - onehot(y)) / N`. Subtract each row's maximum before exponentiating: one
test uses logits of size 1000, where `np.exp` overflows.
"""

FORWARD = """
Implement `network_forward(layers, x, training)`: run `x` through the layers in order, each
in the given mode, and return the last output and the list of caches (one per layer, in layer
order) that the backward pass will need. Call each layer's `forward` exactly once: in
training mode every call updates batch norm's running statistics.

The tests build two networks from the provided classes, an MLP
(`Affine → BatchNorm → ReLU → Dropout → Affine → LayerNorm → ReLU → Affine`) and a small CNN
(`Conv2d → BatchNorm → ReLU → MaxPool2d → Conv2d → ReLU → AvgPool2d → Flatten → Dropout →
Affine`), and compare the output and the running statistics afterwards with PyTorch's, in
training mode (where they change) and in evaluation mode (where they must not).
"""

BACKWARD = """
Implement `network_backward(layers, dout, caches)`: given the gradient of the loss with
respect to the network's output and the caches of `network_forward`, return the gradient with
respect to the input and the list of every layer's parameter gradients (one dict per layer,
in layer order, `{}` for layers without parameters).

The tests make the caches with the provided layers themselves, so only your backward pass is
graded. Before the tests, the next cell runs your own end-to-end gradient check: it compares
your gradients of the first and the last layer's weights with centred finite differences of
your `network_forward`, in training mode with a fixed dropout mask.
"""

BACKWARD_CHECK = r'''
# Your end-to-end gradient check (ungraded): finite differences of sum(out * dout).
rng = np.random.default_rng(0)
layers = [Affine(5, 6, bias=False, rng=rng), BatchNorm(6), ReLU(), Dropout(0.3, rng=rng),
          Affine(6, 6, rng=rng), LayerNorm(6), ReLU(), Affine(6, 3, rng=rng)]
x, dout = rng.standard_normal((8, 5)), rng.standard_normal((8, 3))
layers[3].fixed_mask = rng.random((8, 6)) >= 0.3  # the same mask for every evaluation
out, caches = network_forward(layers, x, training=True)
dx, grads = network_backward(layers, dout, caches)
for i in (0, 7):
    weight = layers[i].params["weight"]

    def f(w, i=i):
        layers[i].params["weight"] = w
        return network_forward(layers, x, True)[0]

    gradient_check(f, weight.copy(), dout, grads[i]["weight"], name=f"layer {i} weight")
    layers[i].params["weight"] = weight
gradient_check(lambda z: network_forward(layers, z, True)[0], x, dout, dx, name="dx")
'''

SGD = """
Implement `sgd_momentum_step(param, grad, velocity, lr, momentum)`, one update of
`torch.optim.SGD(lr=lr, momentum=momentum)` for one array: the velocity (momentum buffer)
is `momentum * velocity + grad`, except on the first step, where `velocity` is `None` and the
buffer starts as the gradient itself; the parameter moves by `-lr * velocity`. Return the new
parameter and the new velocity as new arrays. (CS231n writes `v = mu * v - lr * g;
p = p + v`, which is the same thing for a constant learning rate. Some libraries also damp the
gradient by `1 - momentum`; PyTorch's default does not.)
"""

ADAM = """
Implement `adam_step(param, grad, m, v, t, lr, beta1, beta2, eps)`, one update of
`torch.optim.Adam` for one array at step `t` (1 for the first step): update the moment
estimates `m` and `v`, correct them for their start at zero (`1 - beta1 ** t`,
`1 - beta2 ** t`), and move the parameter by `lr * m_hat / (sqrt(v_hat) + eps)`, where `eps`
is added **after** the square root of the bias-corrected `v`, as PyTorch does. Return the new
parameter, `m` and `v`. One test uses `eps = 1e-3` with small gradients, where the placement
of `eps` matters.
"""

TRAIN = """
Implement `train_step(layers, x, y, velocities, lr, momentum)`: one step of training with
SGD and momentum. Run the network forward in training mode, compute the loss with your
`softmax_cross_entropy`, backpropagate with your `network_backward`, and update every
parameter of every layer with your `sgd_momentum_step`. Update `layer.params[name]` **in
place** (`layer.params[name][...] = new_value`) or by assignment: the layers read their
parameters from `params` at every call. `velocities` is `None` before the first step; return
the loss (computed before the update) and the velocities for the next step, one dict per layer
keyed like `layer.params`.

The tests train the MLP and the CNN for a few steps, with a new dropout mask each step, and
compare the losses, every parameter and the running statistics with PyTorch trained with
`torch.optim.SGD` on the same batches.
"""

EXPERIMENT_TEXT = """
Train your own network, `2 → 32 → 32 → 3` with ReLU, on three interleaved spirals in the
plane whose two input features have very different scales and offsets, in four variants:
no normalization, batch norm after each affine layer, layer norm there, and no normalization
but dropout (`p = 0.3`) after each ReLU. Each variant trains three times (different initial
weights and batches) for 300 steps of SGD (learning rate 0.1, momentum 0.9, batches of 50)
with your `train_step`. The table gives the final training loss (a moving average over 20
steps) and the accuracies in evaluation mode on the training and on a validation set, and
the training-set accuracy in training mode (batch statistics, dropout switched off); the plot
shows the training losses.
"""

EXPERIMENT_CODE = r'''
import matplotlib.pyplot as plt


def spirals(n_per_class, rng, classes=3):
    """Three interleaved spirals in the plane (CS231n's toy data), badly scaled and offset."""
    X, y = [], []
    for c in range(classes):
        r = np.linspace(0.05, 1.0, n_per_class)
        angle = np.linspace(c * 4.0, (c + 1) * 4.0, n_per_class) + 0.2 * rng.standard_normal(n_per_class)
        X.append(np.column_stack([r * np.sin(angle), r * np.cos(angle)]))
        y.append(np.full(n_per_class, c))
    X, y = np.concatenate(X), np.concatenate(y)
    return X * np.array([10.0, 0.5]) + np.array([5.0, -2.0]), y  # features of very different scales


def make_network(variant, rng, width=32):
    """2 -> width -> width -> 3 with ReLU; variant "none", "BN", "LN" or "dropout"."""
    layers, d_in = [], 2
    for _ in range(2):
        layers.append(Affine(d_in, width, bias=variant != "BN", rng=rng))
        if variant == "BN":
            layers.append(BatchNorm(width))
        elif variant == "LN":
            layers.append(LayerNorm(width))
        layers.append(ReLU())
        if variant == "dropout":
            layers.append(Dropout(0.3, rng=rng))
        d_in = width
    layers.append(Affine(width, 3, rng=rng))
    return layers


def accuracy(layers, X, y, training=False):
    """Accuracy in eval mode, or in train mode (batch statistics; the running statistics are
    saved and restored, so this measurement changes nothing)."""
    saved = [dict(layer.state) for layer in layers]
    out, _ = network_forward(layers, X, training)
    for layer, state in zip(layers, saved):
        layer.state.update(state)
    return float(np.mean(out.argmax(axis=1) == y))


data_rng = np.random.default_rng(0)
X_train, y_train = spirals(200, data_rng)
X_val, y_val = spirals(100, data_rng)
variants = ("none", "BN", "LN", "dropout")
steps, batch, lr, momentum = 300, 50, 0.1, 0.9
results = {v: {"loss": [], "val": [], "train": [], "train mode": []} for v in variants}
for variant in variants:
    for run in range(3):
        rng = np.random.default_rng(100 + run)
        layers = make_network(variant, rng)
        velocities, losses = None, []
        for step in range(steps):
            idx = rng.choice(len(X_train), batch, replace=False)
            loss, velocities = train_step(layers, X_train[idx], y_train[idx], velocities, lr, momentum)
            losses.append(loss)
        results[variant]["loss"].append(np.convolve(losses, np.ones(20) / 20, mode="valid"))
        results[variant]["val"].append(accuracy(layers, X_val, y_val))
        results[variant]["train"].append(accuracy(layers, X_train, y_train))
        for dropout_layer in (item for item in layers if isinstance(item, Dropout)):
            dropout_layer.p = 0.0  # dropout off, so that only batch norm's mode differs
        results[variant]["train mode"].append(accuracy(layers, X_train, y_train, training=True))

print("mean ± std over 3 runs; accuracies in eval mode unless marked")
print(f"{'variant':8s} {'final loss':>15s} {'train acc':>15s} {'val acc':>15s} {'train acc, train mode':>22s}")
for v in variants:
    r = results[v]
    final = [l[-1] for l in r["loss"]]
    cols = [final, r["train"], r["val"], r["train mode"]]
    print(f"{v:8s}" + "".join(f" {np.mean(c):7.3f} ± {np.std(c):5.3f}" for c in cols))

fig, ax = plt.subplots(figsize=(7, 3.8))
for v in variants:
    curves = np.array(results[v]["loss"])
    ax.plot(curves.mean(axis=0), label=v)
    ax.fill_between(np.arange(curves.shape[1]), curves.min(axis=0), curves.max(axis=0), alpha=0.2)
ax.set(xlabel="step", ylabel="training loss (moving average of 20)", yscale="log",
       title="Your network on the spirals, four variants (band: min to max over 3 runs)")
ax.legend()
plt.tight_layout()
plt.show()
'''

QUESTION = """
**Question** (write 5 to 10 sentences in the cell below).
(a) Rank the four variants by final training loss. Why does batch norm help most here? Think
about what the first affine layer receives (look at the scales and offsets of the two input
features) and what each normalization does to the first layer's outputs: batch norm per
hidden unit across the batch, layer norm per example across the hidden units.
(b) For batch norm, compare the training-set accuracy in training mode with the one in
evaluation mode. What explains the gap? Name two remedies.
(c) What does dropout do to training here, and why would you not expect it to help on this
problem?
"""

MODEL_ANSWER = """
(a) Batch norm reaches by far the lowest training loss (about 0.26, against about 0.83 for
layer norm, 0.90 without normalization and 0.94 with dropout). The first feature has about
20 times the scale of the second and both are offset, so the first affine layer's outputs
are dominated by the first feature and by a large constant, and plain SGD with one learning
rate for all weights is badly conditioned. Batch norm standardises each hidden unit over the
batch: it removes each unit's offset and divides by its own spread, which undoes the bad
scaling whatever the input's scale, and later layers see well-conditioned inputs. Layer norm
standardises each example across its hidden units: it removes the common offset and overall
scale of one example but not the per-unit imbalance caused by the input features, so it helps
less (and it is noisier across runs).
(b) With batch norm the network classifies the training set with about 0.93 accuracy in
training mode but only about 0.67 in evaluation mode, with a large spread across runs. The
running statistics are an exponential average over roughly the last 10 batches (momentum
0.1), while with learning rate 0.1 and momentum 0.9 the weights, and hence the statistics of
each layer's input, still change quickly: eval mode normalises with stale statistics. Remedies:
recompute the statistics after training with the weights frozen (precise BN, a pass over the
training data with momentum None), lower the learning rate at the end of training so the
weights settle, or use a larger BN momentum; layer norm avoids the issue altogether.
(c) Dropout adds noise to the hidden units, so training is slower and its loss ends highest.
Dropout is a regularizer against overfitting: it helps when the network fits the training set
much better than the validation set. Here every variant has nearly the same training and
validation accuracy, the networks underfit in 300 steps, so there is nothing for dropout to
fix and it only removes capacity.
Rubric: (a) 8 points (ranking, the scale/offset argument, BN per unit vs LN per example),
(b) 7 points (the train/eval gap, stale running statistics from fast-changing weights, two
remedies), (c) 5 points (slower training, regularizer, underfitting here).
"""

CHAPTER = Chapter(
    name="network",
    title="A network from your own layers",
    intro=INTRO,
    solutions_module="solutions.network",
    provided=(
        # input checks
        ("solutions._validate", "float_array"),
        ("solutions._validate", "vector"),
        ("solutions._validate", "same_shape"),
        ("solutions._validate", "positive"),
        ("solutions._validate", "drop_probability"),
        ("solutions._validate", "generator"),
        # batch norm (batchnorm and bn_inference notebooks)
        ("solutions.batchnorm", "_reduce_axes"),
        ("solutions.batchnorm", "_channel_shape"),
        ("solutions.batchnorm", "_training_input"),
        ("solutions.batchnorm", "_batch_statistics"),
        ("solutions.batchnorm", "batchnorm_forward"),
        ("solutions.batchnorm", "batchnorm_backward"),
        ("solutions.bn_inference", "_momentum"),
        ("solutions.bn_inference", "_running_var"),
        ("solutions.bn_inference", "batchnorm_train_step"),
        ("solutions.bn_inference", "batchnorm_eval"),
        # layer norm
        ("solutions.layernorm", "_count"),
        ("solutions.layernorm", "layernorm_forward"),
        ("solutions.layernorm", "layernorm_backward"),
        # dropout
        ("solutions.dropout", "_training_flag"),
        ("solutions.dropout", "_inputs"),
        ("solutions.dropout", "_keep_mask"),
        ("solutions.dropout", "dropout_forward"),
        ("solutions.dropout", "dropout_backward"),
        # pooling
        ("solutions.pooling", "_pair"),
        ("solutions.pooling", "_output_size"),
        ("solutions.pooling", "_geometry"),
        ("solutions.pooling", "_axis_cells"),
        ("solutions.pooling", "_window_cells"),
        ("solutions.pooling", "_window_starts"),
        ("solutions.pooling", "maxpool2d_forward"),
        ("solutions.pooling", "maxpool2d_backward"),
        ("solutions.pooling", "avgpool2d_forward"),
        ("solutions.pooling", "avgpool2d_backward"),
        # the layers with one interface
        ("solutions.layers", "affine_forward"),
        ("solutions.layers", "affine_backward"),
        ("solutions.layers", "relu_forward"),
        ("solutions.layers", "relu_backward"),
        ("solutions.layers", "_im2col"),
        ("solutions.layers", "conv2d_forward"),
        ("solutions.layers", "conv2d_backward"),
        ("solutions.layers", "_uniform"),
        ("solutions.layers", "Layer"),
        ("solutions.layers", "Affine"),
        ("solutions.layers", "ReLU"),
        ("solutions.layers", "Conv2d"),
        ("solutions.layers", "Flatten"),
        ("solutions.layers", "BatchNorm"),
        ("solutions.layers", "LayerNorm"),
        ("solutions.layers", "Dropout"),
        ("solutions.layers", "MaxPool2d"),
        ("solutions.layers", "AvgPool2d"),
    ),
    provided_imports="import numbers\n\nimport numpy as np",
    provided_note="Provided: the course's layers with one interface, and the functions they use (read-only).",
    parts=(
        Part("the loss", LOSS, section="the-layers-the-chapters-did-not-need", functions=("softmax_cross_entropy",),
             tests=("network_softmax_cross_entropy_torch", "network_softmax_cross_entropy_large_logits")),
        Part("the forward pass, in train and eval mode", FORWARD, section="assembling-the-network", functions=("network_forward",),
             tests=("network_network_forward_train_mlp", "network_network_forward_eval_cnn")),
        Part("the backward pass through the whole network", BACKWARD, section="network-gradcheck", functions=("network_backward",),
             tests=("network_network_backward_torch_mlp", "network_network_backward_torch_cnn"),
             self_check=BACKWARD_CHECK),
        Part("SGD with momentum", SGD, section="assembling-the-network", functions=("sgd_momentum_step",),
             tests=("network_sgd_momentum_step_torch", "network_sgd_momentum_step_no_momentum")),
        Part("Adam", ADAM, section="assembling-the-network", functions=("adam_step",),
             tests=("network_adam_step_torch", "network_adam_step_betas_eps")),
        Part("a training step", TRAIN, section="training-on-the-digits", functions=("train_step",),
             tests=("network_train_step_torch_mlp", "network_train_step_torch_cnn")),
    ),
    experiments=(
        Experiment("network_experiment_normalization", "normalization and dropout in your own network",
                   EXPERIMENT_TEXT, EXPERIMENT_CODE, QUESTION, MODEL_ANSWER, points=20),
    ),
    # Grading seeds of the hidden checks (the grader may choose others).
    hidden_seeds={
        "network_softmax_cross_entropy_torch_hidden": 7011,
        "network_network_forward_train_cnn_hidden": 7021,
        "network_network_forward_eval_mlp_hidden": 7022,
        "network_network_backward_torch_mlp_hidden": 7031,
        "network_network_backward_torch_cnn_hidden": 7032,
        "network_sgd_momentum_step_torch_hidden": 7041,
        "network_adam_step_torch_hidden": 7051,
        "network_adam_step_betas_eps_hidden": 7052,
        "network_train_step_torch_mlp_hidden": 7061,
        "network_train_step_torch_cnn_hidden": 7062,
    },
)
