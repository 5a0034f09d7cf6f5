"""Notebook spec of the ``layernorm`` exercise (layer, group and RMS normalization)."""
from autograder.authoring.notebooks import Chapter, Experiment, Part

INTRO = r"""
You implement layer normalization (forward and backward), group normalization and RMS
normalization in numpy and float64, and check them against PyTorch. Batch norm takes its
statistics per feature **across the samples** of a batch; these methods take them **within
one sample**, so nothing depends on the rest of the batch and training and inference do the
same computation.

**Conventions** (PyTorch's, used throughout the course):

* **Layer norm**, like `F.layer_norm(x, x.shape[-k:], gamma, beta, eps)` with
  `k = normalized_ndim`: every index into the leading axes (a sample, or a sample and a time
  step) is normalised on its own over the **last `k` axes**, with the **biased** variance
  (divide by the number `m` of values normalised together, not `m - 1`):
  $\hat x = (x - \mu) / \sqrt{\sigma^2 + \epsilon}$, $y = \gamma \hat x + \beta$, `eps = 1e-5`.
  `gamma` and `beta` have the shape of the normalized axes (one value per entry).
* **Group norm**, like `F.group_norm(x, num_groups, gamma, beta, eps)`: `x` has shape
  `(N, C, *spatial)`; the `C` channels are split into `num_groups` groups of **consecutive**
  channels, and each (sample, group) is normalised over its channels and all spatial
  positions, biased variance, `eps = 1e-5`. `gamma` and `beta` have shape `(C,)`. One group is
  layer norm over `(C, *spatial)`; `C` groups is instance norm.
* **RMS norm**, like `F.rms_norm(x, x.shape[-1:], weight, eps)`: no mean is subtracted and
  there is no shift; each row is divided by the root mean square of its last axis, with `eps`
  **inside** the square root. Our default is `eps = 1e-6` (PyTorch's `eps=None` means the
  dtype's machine epsilon instead).
* Do not modify your inputs; return float64 arrays.
"""

FORWARD = """
Implement `layernorm_forward(x, gamma, beta, normalized_ndim, eps)`. The provided helpers
validate inputs (`float_array`, `same_shape`, `vector`, `positive`) and positive integers
(`_count`); raise the errors the docstring describes.

The `cache` is part of the interface: return exactly the tuple the docstring lists, in that
order and with those shapes. The tests of Part 2 build such a cache themselves, so a bug here
does not cost you points there.
"""

BACKWARD = """
Implement `layernorm_backward(dout, cache)`: the gradients of `sum(out * dout)` with respect
to `x`, `gamma` and `beta`. It is the batch-norm backward pass with the roles of the axes
swapped: the sums that give `dx` run over the normalized axes of each sample, while `gamma`
and `beta` are shared by every sample, so their gradients sum over all the leading axes.
Derive it on paper first (the book chapter does it).

The next cell is your own gradient check: it compares your backward pass with centred finite
differences of your forward pass and prints the relative errors (expect below 1e-7).
"""

SELF_CHECK = """
# Your own gradient check: finite differences of your forward pass against your backward pass.
rng = np.random.default_rng(0)
x = rng.normal(1.0, 2.0, size=(2, 3, 4))
gamma, beta = rng.uniform(0.5, 2.0, (3, 4)), rng.normal(size=(3, 4))
dout = rng.normal(size=x.shape)
_, cache = layernorm_forward(x, gamma, beta, normalized_ndim=2)
dx, dgamma, dbeta = layernorm_backward(dout, cache)
gradient_check(lambda v: layernorm_forward(v, gamma, beta, 2)[0], x, dout, dx, name="dx")
gradient_check(lambda v: layernorm_forward(x, v, beta, 2)[0], gamma, dout, dgamma, name="dgamma")
gradient_check(lambda v: layernorm_forward(x, gamma, v, 2)[0], beta, dout, dbeta, name="dbeta")
"""

GROUPNORM = """
Implement `groupnorm_forward(x, num_groups, gamma, beta, eps)`. Think about which reshape of
`x` puts the values of one (sample, group of consecutive channels) together; a reshape that
puts channels `c, c + G, c + 2G, ...` together is right with one group and with `C` groups
and wrong in between. The tests check a group count in between and both extremes.
"""

RMSNORM = """
Implement `rmsnorm_forward(x, weight, eps)`. RMSNorm keeps only the re-scaling half of layer
norm: compare the two on rows whose mean is not zero.
"""

EXPERIMENT_TEXT = """
Batch norm in training mode normalises each sample with statistics estimated from the
samples that happen to share its batch; layer, group and RMS norm use only the sample itself.
The cell follows one sample (the *probe*) of a population of 20,000 activation vectors with
32 features through 400 random batches of each size B from 2 to 256 (the probe plus B - 1
random others). It prints how much the probe's batch-norm output varies from batch to batch,
how far it is from the inference-mode output (population statistics), and the same spread
for your layer, group (4 groups) and RMS norm. Training-mode batch norm is computed with your
`layernorm_forward` on the transposed batch. The left plot shows the spread against B on log
scales; the right one shows the probe's batch-norm output for one feature across the 400
batches at B = 2, 8 and 64. Run it, then answer below.
"""

EXPERIMENT_CODE = r'''
import matplotlib.pyplot as plt

rng = np.random.default_rng(0)
D, population, eps = 32, 20000, 1e-5
# Activations of one layer over a population of inputs: every feature has its own offset
# and scale, as in a network.
data = rng.normal(0.0, 2.0, D) + rng.uniform(0.5, 3.0, D) * rng.standard_normal((population, D))
probe = data[0]  # the sample we follow
ones, zeros = np.ones(D), np.zeros(D)


def batch_norm_train(batches):
    """Training-mode batch norm of a stack of batches (trials, B, D), each feature over its
    batch: that is layer norm of the transposed batch, so your layernorm_forward computes it."""
    b = batches.shape[1]
    per_feature = np.swapaxes(batches, 1, 2)  # (trials, D, B)
    return np.swapaxes(layernorm_forward(per_feature, np.ones(b), np.zeros(b))[0], 1, 2)


# Inference-mode batch norm: population statistics instead of batch statistics.
bn_eval = (probe - data.mean(axis=0)) / np.sqrt(data.var(axis=0) + eps)

sizes, trials = [2, 4, 8, 16, 32, 64, 128, 256], 400
noise, gap, spread_other, bn_probe = {}, {}, {}, {}
for b in sizes:
    # `trials` batches of size b, each holding the probe and b - 1 random other samples.
    others = data[rng.integers(1, population, size=(trials, b - 1))]
    batches = np.concatenate([np.broadcast_to(probe, (trials, 1, D)), others], axis=1)
    bn = batch_norm_train(batches)[:, 0]  # the probe's output in each batch: (trials, D)
    ln = layernorm_forward(batches, ones, zeros)[0][:, 0]
    gn = groupnorm_forward(batches.reshape(-1, D), 4, ones, zeros).reshape(trials, b, D)[:, 0]
    rms = rmsnorm_forward(batches, ones)[:, 0]
    bn_probe[b] = bn
    noise[b] = bn.std(axis=0).mean()  # how much the probe's output changes with its batch
    gap[b] = np.sqrt(np.mean((bn - bn_eval) ** 2))  # training-mode output vs inference mode
    spread_other[b] = max(np.ptp(a, axis=0).max() for a in (ln, gn, rms))

slope = np.polyfit(np.log(sizes[2:]), np.log([noise[b] for b in sizes[2:]]), 1)[0]
print("batch size   BN: spread of the probe's output   BN: train vs eval (RMS)   LN/GN/RMS: max - min")
for b in sizes:
    print(f"{b:10d}   {noise[b]:30.4f}   {gap[b]:23.4f}   {spread_other[b]:17.1e}")
print(f"slope of log(spread) against log(batch size), B >= 8: {slope:.2f}")
near_one = np.mean(np.abs(np.abs(bn_probe[2]) - 1) < 0.01)
print(f"share of the probe's BN outputs at B = 2 within 0.01 of +1 or -1: {near_one:.3f}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
ax1.loglog(sizes, [noise[b] for b in sizes], "o-", label="BN: spread across batches")
ax1.loglog(sizes, [gap[b] for b in sizes], "s-", label="BN: train vs eval output")
ax1.loglog(sizes, noise[16] * np.sqrt(16 / np.array(sizes)), "k:", label=r"$\propto 1/\sqrt{B}$")
ax1.set(xlabel="batch size B", ylabel="size of the change", title="The probe's BN output depends on its batch")
ax1.legend()
f = int(np.argmin(np.abs(np.abs(bn_eval) - 0.5)))  # a feature where the probe is not extreme
for b in (2, 8, 64):
    ax2.hist(bn_probe[b][:, f], bins=40, range=(-3, 3), alpha=0.5, density=True, label=f"B = {b}")
ax2.axvline(bn_eval[f], color="k", ls="--", label="inference mode")
ax2.set(xlabel=f"BN output of the probe, feature {f}", ylabel="density", title=f"Across {trials} batches")
ax2.legend()
plt.tight_layout()
plt.show()
'''

QUESTION = """
**Question** (write 4 to 8 sentences in the cell below).
(a) How does the batch-to-batch spread of the probe's batch-norm output change with the batch
size? Give the slope you measured and explain it from how the batch mean and variance are
estimated. What does the train-vs-eval column mean for a network trained with small batches
and then evaluated with running (population) statistics?
(b) What values does the probe's batch-norm output take at B = 2, and why? What information
about the probe survives?
(c) Why is the spread of layer, group and RMS norm zero at every batch size, and what does
that buy them (think of batch size 1, inference, and recurrent networks)? Name one thing
layer norm gives up in exchange.
"""

MODEL_ANSWER = """
(a) The spread falls like 1/sqrt(B): about 0.74 at B = 2, 0.30 at B = 16 and 0.08 at B = 256,
a fitted slope of about -0.5 on log scales. The batch mean and variance are estimates from B
samples, and their standard errors shrink like 1/sqrt(B), so the probe's normalised value
carries noise of that size from its companions. The training-mode output is also that far
from the inference-mode output (about 0.9 at B = 2, 0.3 at B = 16): a network trained with
tiny batches learns on inputs that differ systematically from what its layers see at test
time with running statistics, one reason batch norm degrades at small batch sizes.
(b) At B = 2 each feature's batch has two values, so after centring they are +d and -d and
dividing by sqrt(d^2 + eps) gives about +1 or -1 (98% of the outputs lie within 0.01 of
+-1): only the sign survives, i.e. whether the probe is above or below its single companion.
The magnitude is lost, and the sign itself is random, depending on the companion.
(c) Layer, group and RMS norm compute their statistics from the probe's own features, so its
output is identical in every batch (max - min exactly 0). They work at batch size 1, need no
running statistics, do the same thing in training and inference, and apply unchanged to each
time step of a variable-length sequence. In exchange, layer norm mixes features of different
scales in one mean and variance (in a conv net, channels with very different statistics),
and it is not invariant to re-scaling one unit's weights or to re-centering the data
(Ba et al.'s table); RMSNorm does not even remove a shared offset.

Rubric: (a) 8 points (1/sqrt(B) with the measured slope, the estimation argument, the train/
eval mismatch), (b) 6 points (+-1 values, why, only the sign survives), (c) 6 points (no
dependence on the batch, the consequences, one price of per-sample statistics).
"""

CHAPTER = Chapter(
    name="layernorm",
    title="Layer normalization and its relatives",
    intro=INTRO,
    solutions_module="solutions.layernorm",
    provided=(
        ("solutions._validate", "float_array"),
        ("solutions._validate", "vector"),
        ("solutions._validate", "same_shape"),
        ("solutions._validate", "positive"),
        ("solutions.layernorm", "_count"),
    ),
    provided_imports="import numbers\n\nimport numpy as np",
    parts=(
        Part("layer norm, forward", FORWARD, section="which-axes-each-method-normalises", functions=("layernorm_forward",),
             tests=("layernorm_layernorm_forward_torch_2d", "layernorm_layernorm_forward_torch_nd",
                    "layernorm_layernorm_forward_standardizes", "layernorm_layernorm_forward_per_sample",
                    "layernorm_layernorm_forward_cache")),
        Part("layer norm, backward", BACKWARD, section="implementation", functions=("layernorm_backward",),
             tests=("layernorm_layernorm_backward_finite_difference", "layernorm_layernorm_backward_autograd",
                    "layernorm_layernorm_backward_param_grads", "layernorm_layernorm_backward_dx_sums_to_zero"),
             self_check=SELF_CHECK),
        Part("group norm", GROUPNORM, section="which-axes-each-method-normalises", functions=("groupnorm_forward",),
             tests=("layernorm_groupnorm_forward_torch", "layernorm_groupnorm_forward_consecutive_groups",
                    "layernorm_groupnorm_forward_one_group")),
        Part("RMS norm", RMSNORM, section="rmsnorm", functions=("rmsnorm_forward",),
             tests=("layernorm_rmsnorm_forward_torch", "layernorm_rmsnorm_forward_rescales_rows",
                    "layernorm_rmsnorm_forward_eps")),
    ),
    experiments=(
        Experiment("layernorm_experiment_small_batches", "one sample's output as the batch shrinks",
                   EXPERIMENT_TEXT, EXPERIMENT_CODE, QUESTION, MODEL_ANSWER, points=20),
    ),
    # Grading seeds of the hidden checks (the grader may choose others).
    hidden_seeds={
        "layernorm_layernorm_forward_torch_2d_hidden": 4011,
        "layernorm_layernorm_forward_torch_nd_hidden": 4012,
        "layernorm_layernorm_forward_standardizes_hidden": 4013,
        "layernorm_layernorm_forward_per_sample_hidden": 4014,
        "layernorm_layernorm_backward_finite_difference_hidden": 4021,
        "layernorm_layernorm_backward_autograd_hidden": 4022,
        "layernorm_layernorm_backward_param_grads_hidden": 4023,
        "layernorm_layernorm_backward_dx_sums_to_zero_hidden": 4024,
        "layernorm_groupnorm_forward_torch_hidden": 4031,
        "layernorm_groupnorm_forward_consecutive_groups_hidden": 4032,
        "layernorm_groupnorm_forward_one_group_hidden": 4033,
        "layernorm_rmsnorm_forward_torch_hidden": 4041,
        "layernorm_rmsnorm_forward_rescales_rows_hidden": 4042,
        "layernorm_rmsnorm_forward_eps_hidden": 4043,
    },
)
