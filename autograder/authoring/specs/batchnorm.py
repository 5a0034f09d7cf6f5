"""Notebook spec of the ``batchnorm`` exercise (training-mode batch normalization)."""
from autograder.authoring.notebooks import Chapter, Experiment, Part

INTRO = r"""
You implement batch normalization in training mode, in numpy and float64, and check it
against PyTorch.

**Conventions** (PyTorch's, used throughout the course):

* `x` has shape `(N, D)` or `(N, C, *spatial)`; axis 1 holds the features (channels).
  Statistics are per channel over **every other axis**: each channel sees
  `m = N * prod(spatial)` values, exactly as `F.batch_norm(x, None, None, gamma, beta, training=True)`.
* The output is normalised with the **biased** batch variance (divide by `m`, not `m - 1`):
  $\hat x = (x - \mu_B) / \sqrt{\sigma_B^2 + \epsilon}$, $y = \gamma \hat x + \beta$, with
  `eps = 1e-5` by default. (The *unbiased* variance only enters the running statistics of
  inference mode, the next chapter.)
* `gamma` and `beta` have shape `(C,)`. Do not modify your inputs.
"""

FORWARD = """
Implement `batchnorm_forward(x, gamma, beta, eps)`. The helper above it is a suggested
structure (only `batchnorm_forward` is graded): `_batch_statistics(x)` returns the
per-channel mean and biased variance with `keepdims=True`, so they broadcast against `x`.
The provided helpers validate the input (`_training_input`), name the axes the statistics
run over (`_reduce_axes`) and give the broadcast shape `(1, C, 1, ..., 1)` (`_channel_shape`).

The `cache` is part of the interface: store the keys the docstring lists. The tests of
Part 2 build such a cache themselves, so a bug here does not cost you points there.
"""

BACKWARD = """
Implement `batchnorm_backward(dout, cache)`: the gradients of `sum(out * dout)` with respect
to `x`, `gamma` and `beta`, in the compact closed form (derive it on paper first; the book
chapter does it step by step). Every sum runs over the same axes as the statistics.

The next cell is your own gradient check: it compares your backward pass with centred finite
differences of your forward pass and prints the relative errors (expect below 1e-7).
"""

SELF_CHECK = """
# Your own gradient check: finite differences of your forward pass against your backward pass.
rng = np.random.default_rng(0)
x = rng.normal(1.0, 2.0, size=(5, 3, 2))
gamma, beta = rng.uniform(0.5, 2.0, 3), rng.normal(size=3)
dout = rng.normal(size=x.shape)
_, cache = batchnorm_forward(x, gamma, beta)
dx, dgamma, dbeta = batchnorm_backward(dout, cache)
gradient_check(lambda v: batchnorm_forward(v, gamma, beta)[0], x, dout, dx, name="dx")
gradient_check(lambda v: batchnorm_forward(x, v, beta)[0], gamma, dout, dgamma, name="dgamma")
gradient_check(lambda v: batchnorm_forward(x, gamma, v)[0], beta, dout, dbeta, name="dbeta")
"""

IDENTITY = """
Batch normalization does not restrict what a layer can represent: some `gamma` and `beta`
undo the normalization exactly. Implement `identity_affine(x, eps)`, which returns them for
a given batch `x`, so that `batchnorm_forward(x, gamma, beta, eps)` returns `x`.
"""

EXPERIMENT_TEXT = """
A 10-layer network of sigmoid units with large random weights, run forward on one batch of
200 random inputs, three times with the same weights: without normalization, with your
batch norm (`gamma = 1`, `beta = 0`) before every sigmoid, and with your batch norm using the
parameters from your `identity_affine`. The cell prints, per layer, how much each unit's
pre-activation varies across the batch and the share of saturated units (|pre-activation| > 3,
where the sigmoid's slope is below 0.05), and plots both. Run it, then answer below.
"""

EXPERIMENT_CODE = r'''
import matplotlib.pyplot as plt

rng = np.random.default_rng(0)
depth, width, batch = 10, 100, 200
weights = [rng.normal(0.0, 4.0 / np.sqrt(width), (width, width)) for _ in range(depth)]
x0 = rng.normal(size=(batch, width))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def pre_activations(mode):
    """Pre-activations of every layer; mode is "none", "bn" or "bn-identity"."""
    h, out = x0, []
    for W in weights:
        z = h @ W
        if mode == "bn":
            z, _ = batchnorm_forward(z, np.ones(width), np.zeros(width))
        elif mode == "bn-identity":
            z, _ = batchnorm_forward(z, *identity_affine(z))
        out.append(z)
        h = sigmoid(z)
    return out


runs = {mode: pre_activations(mode) for mode in ("none", "bn", "bn-identity")}
spread = {m: [z.std(axis=0).mean() for z in zs] for m, zs in runs.items()}
saturated = {m: [np.mean(np.abs(z) > 3) for z in zs] for m, zs in runs.items()}
print("layer  spread across the batch (none / bn / bn-identity)   saturated (none / bn)")
for k in range(depth):
    print(f"{k + 1:5d}  {spread['none'][k]:8.3f} {spread['bn'][k]:8.3f} {spread['bn-identity'][k]:8.3f}"
          f"          {saturated['none'][k]:6.2f} {saturated['bn'][k]:6.2f}")
gap = max(np.max(np.abs(a - b)) for a, b in zip(runs["none"], runs["bn-identity"]))
print(f"largest difference between 'none' and 'bn-identity': {gap:.1e}")
print(f"share of BN outputs outside (-1, 1) in the last layer: {np.mean(np.abs(runs['bn'][-1]) > 1):.2f}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
layers = np.arange(1, depth + 1)
for m, style in (("none", "o-"), ("bn", "s-"), ("bn-identity", "x--")):
    ax1.semilogy(layers, spread[m], style, label=m)
ax1.set(xlabel="layer", ylabel="mean std of a unit across the batch", title="Signal across the batch")
ax1.legend()
ax2.hist(runs["none"][-1].ravel(), bins=60, alpha=0.6, density=True, label="none")
ax2.hist(runs["bn"][-1].ravel(), bins=60, alpha=0.6, density=True, label="bn")
ax2.set(xlabel="pre-activation in layer 10", ylabel="density", title="Last layer's pre-activations")
ax2.legend()
plt.tight_layout()
plt.show()
'''

QUESTION = """
**Question** (write 4 to 8 sentences in the cell below).
(a) Without normalization, what happens with depth to how much a unit's pre-activation varies
across the batch, and to the share of saturated units? What does that mean for the
information a deep layer carries and for the gradients through its sigmoids?
(b) With batch norm, which values do the pre-activations take? Are they confined to (-1, 1)?
(c) Why does the `bn-identity` run reproduce the run without normalization, and what does
that tell you about why `gamma` and `beta` exist?
"""

MODEL_ANSWER = """
(a) Without normalization the spread of a unit across the batch shrinks by roughly a factor
1.7 per layer (about 4 in layer 1, 0.03 in layer 10), while each unit keeps a large
input-independent offset: deep layers output almost the same value for every input, so they
carry little information about it, and about a quarter of the units sit where the sigmoid is
flat (|z| > 3), so the gradient through them is multiplied by a slope below 0.05 and vanishes.
(b) With batch norm every unit has mean 0 and variance 1 over the batch in every layer, no
unit is saturated, and the spread does not decay. The values are standardised, not squashed:
about a third of them lie outside (-1, 1).
(c) `identity_affine` returns gamma = sqrt(var + eps) and beta = mean, which undo the
normalization exactly (differences of order 1e-15). Because gamma and beta are learned, a
network with batch norm can represent everything the network without it can; batch norm
changes the parametrisation (and the optimisation), not the set of functions.

Rubric: (a) 8 points (spread collapses, saturation, consequence for information and
gradients), (b) 6 points (mean 0 / variance 1, not confined to (-1, 1)), (c) 6 points
(exact inverse, representational power kept).
"""

CHAPTER = Chapter(
    name="batchnorm",
    title="Batch normalization",
    intro=INTRO,
    solutions_module="solutions.batchnorm",
    provided=(
        ("solutions._validate", "float_array"),
        ("solutions._validate", "vector"),
        ("solutions._validate", "same_shape"),
        ("solutions._validate", "positive"),
        ("solutions.batchnorm", "_reduce_axes"),
        ("solutions.batchnorm", "_channel_shape"),
        ("solutions.batchnorm", "_training_input"),
    ),
    provided_imports="import numbers\n\nimport numpy as np",
    parts=(
        Part("the forward pass", FORWARD, section="the-forward-pass",
             functions=("_batch_statistics", "batchnorm_forward"),
             tests=("batchnorm_batchnorm_forward_torch_2d", "batchnorm_batchnorm_forward_torch_4d",
                    "batchnorm_batchnorm_forward_standardizes", "batchnorm_batchnorm_forward_cache")),
        Part("the backward pass", BACKWARD, section="the-backward-pass", functions=("batchnorm_backward",),
             tests=("batchnorm_batchnorm_backward_finite_difference", "batchnorm_batchnorm_backward_autograd",
                    "batchnorm_batchnorm_backward_param_grads", "batchnorm_batchnorm_backward_dx_sums_to_zero"),
             self_check=SELF_CHECK),
        Part("parameters that make batch norm the identity", IDENTITY, section="batchnorm-gamma-beta", functions=("identity_affine",),
             tests=("batchnorm_identity_affine_recovers_input_2d", "batchnorm_identity_affine_recovers_input_4d",
                    "batchnorm_identity_affine_recovers_input_3d")),
    ),
    experiments=(
        Experiment("batchnorm_experiment_sigmoid_depth", "a deep sigmoid network with and without batch norm",
                   EXPERIMENT_TEXT, EXPERIMENT_CODE, QUESTION, MODEL_ANSWER, points=20),
    ),
    # Grading seeds of the hidden checks (the grader may choose others).
    hidden_seeds={
        "batchnorm_batchnorm_forward_torch_2d_hidden": 3011,
        "batchnorm_batchnorm_forward_torch_4d_hidden": 3012,
        "batchnorm_batchnorm_forward_torch_3d_hidden": 3013,
        "batchnorm_batchnorm_forward_standardizes_hidden": 3014,
        "batchnorm_batchnorm_backward_finite_difference_hidden": 3021,
        "batchnorm_batchnorm_backward_autograd_hidden": 3022,
        "batchnorm_batchnorm_backward_param_grads_hidden": 3023,
        "batchnorm_batchnorm_backward_dx_sums_to_zero_hidden": 3024,
        "batchnorm_identity_affine_recovers_input_2d_hidden": 3031,
        "batchnorm_identity_affine_recovers_input_3d_hidden": 3032,
    },
)
