"""Notebook spec of the ``bn_inference`` exercise (BN between training and inference)."""
import numpy as np

from autograder.authoring.notebooks import Chapter, Experiment, Part
from solutions._validate import float_array, positive, vector
from solutions.batchnorm import _channel_shape, _reduce_axes


# Given to students in the read-only cell: the training-mode forward pass is the previous
# exercise's answer, so it is computed here with PyTorch rather than shown in numpy.
def batchnorm_forward(x, gamma, beta, eps: float = 1e-5):
    """Training-mode batch normalization (the answer of the ``batchnorm`` exercise), computed
    with PyTorch so that this notebook does not give that exercise's numpy answer away. You
    may use your own ``batchnorm_forward`` instead.

    Returns ``(out, cache)``: ``out`` is normalised with the per-channel batch mean and
    **biased** variance; ``cache`` holds ``xhat``, ``gamma``, ``inv_std``, ``m`` (values per
    channel), and the batch ``mean`` and biased ``var`` of shape ``(C,)``.
    """
    import torch

    x = np.asarray(float_array(x, "x", min_ndim=2), dtype=np.float64)
    c = x.shape[1]
    m = x.size // c if c else 0
    if m < 2:
        raise ValueError(f"Expected more than 1 value per channel when training, got x of shape {x.shape}")
    g, b = (np.asarray(vector(v, name, c), dtype=np.float64) for v, name in ((gamma, "gamma"), (beta, "beta")))
    bcast = _channel_shape(x.ndim, c)
    var, mean = torch.var_mean(torch.from_numpy(x), dim=_reduce_axes(x.ndim), correction=0, keepdim=True)
    inv_std = (1.0 / torch.sqrt(var + positive(eps, "eps"))).numpy()
    xhat = (x - mean.numpy()) * inv_std
    out = g.reshape(bcast) * xhat + b.reshape(bcast)
    cache = {"xhat": xhat, "gamma": g, "inv_std": inv_std, "m": m,
             "mean": mean.numpy().reshape(c), "var": var.numpy().reshape(c)}
    return out, cache


INTRO = r"""
Batch normalization computes one function while training and another at inference. You
implement both modes with PyTorch's exact bookkeeping, the exact statistics of a whole
dataset ("precise BN"), the recalibration of a trained torch model's BN layers, and the
folding of BN into the layer before it. Parts 1, 2, 3 and 5 are numpy (float64); Part 4 is
about torch modules and uses PyTorch.

**Conventions** (PyTorch's `nn.BatchNorm1d/2d`, used throughout the course):

* `x` has shape `(N, D)` or `(N, C, *spatial)`; statistics are per channel (axis 1) over the
  `m = N * prod(spatial)` values of every other axis.
* **Momentum is the weight of the new batch:**
  `running = (1 - momentum) * running + momentum * batch_statistic`, default `momentum = 0.1`.
  (Keras and the CS231n assignments use the opposite convention, `momentum * running + ...`.)
  `momentum=None` means a cumulative average: the weight is `1 / num_batches_tracked`, counted
  after incrementing, so the running statistics become the plain mean of the batch statistics.
* **Two variances:** the training output is normalised with the **biased** batch variance
  (divide by `m`), but `running_var` is updated with the **unbiased** one (divide by `m - 1`).
* A fresh layer starts with `running_mean = 0`, `running_var = 1`, `num_batches_tracked = 0`.
* In eval mode BN uses the running statistics: `gamma * (x - running_mean) / sqrt(running_var + eps) + beta`,
  `eps = 1e-5` by default. Do not modify your inputs: return new arrays.
"""

TRAIN_STEP = """
Implement `batchnorm_train_step`: one training-mode step of `nn.BatchNorm1d/2d`, returning
the output and the **new** running statistics and counter (as new arrays; the caller's are
untouched). The training-mode forward pass of the previous exercise is provided as
`batchnorm_forward` in the read-only cell above (computed with PyTorch so that it does not
give that exercise away); its `cache` holds the batch `mean`, the biased `var` and `m`. The
provided `_momentum` and `_running_var` validate those arguments.

The tests step your function several times, feeding each step the state the previous one
returned, and compare every step with `nn.BatchNorm1d/2d`.
"""

EVAL = """
Implement `batchnorm_eval`: the eval-mode forward pass, a fixed per-channel affine map that
works for any batch size, including a single example. It must not look at the batch's own
statistics.
"""

POPULATION = """
After training, the weights are fixed and the statistics each BN layer sees are well defined,
so they can be computed exactly instead of by a moving average ("precise BN"). Implement
`population_statistics(batches)`: the mean and the **unbiased** variance of every value of
each channel over all batches, as if they were concatenated, **in one pass** and without
storing the data (`batches` may be a generator or a data loader that can be read only once).

Summarise each batch by a few numbers per channel and merge the summaries. The obvious
summary, the sums of `x` and of `x**2`, gives `E[x^2] - E[x]^2`, which fails when the data
sit on a large offset (`1e8 + N(0, 1)` has `x**2` near `1e16`, where float64 rounds to whole
units); one test uses exactly such data. The book chapter derives a merge rule that stays
accurate.
"""

RECALIBRATE = """
Implement `recalibrate_batchnorm(model, batches)` for a `torch.nn.Module`: re-estimate the
running statistics of every BN layer (every `torch.nn.modules.batchnorm._BatchNorm` with
`track_running_stats`; the provided `_bn_layers(model)` lists them) from the data, as the
plain mean of its per-batch statistics, while **every other layer, dropout included, stays
in eval mode**. Run the data under `torch.no_grad()`. Read the docstring for the details:
afterwards every module's mode and every BN layer's momentum must be what they were.

`torch.optim.swa_utils.update_bn` computes the same statistics for a model without
dropout (the visible tests use it as the oracle, on a copy of the model whose dropout layers
are replaced by `nn.Identity`), but it runs dropout in training mode, which shifts the
statistics of the layers after it.
"""

FOLD = """
In eval mode BN is a fixed affine map per channel, so it can be merged into the Linear or
convolution layer before it: one layer then computes what the pair computed. Implement
`fold_batchnorm`: given the layer's `weight` (output channels first) and `bias` (or `None`)
and the BN layer's parameters and running statistics, return the folded `weight` and `bias`.
Derive the formula first (write BN's eval map as `scale * z + shift` with `z = W x + b`).
The visible tests run your folded layer with PyTorch and compare it with the layer followed
by `nn.BatchNorm1d/2d` in eval mode.
"""

EXPERIMENT_TEXT = """
Two measurements with your `batchnorm_train_step` and `batchnorm_eval` on one feature drawn
from N(3, 2²), so the true variance is 4.

1. **Running estimates.** 400 training steps on fresh batches of 2 and of 64 values, from
   the initial state, with momentum 0.1, 0.01 and `None`. The table shows `running_var`
   after 20 and after 400 steps and how much it still moves over the last 200 steps; the
   left plot shows it step by step for batches of 2. The last line prints the average of
   the **biased** variance `x.var()` of a batch.
2. **The train/eval gap.** With the running statistics set to the true mean and variance,
   fresh batches of sizes 2 to 256 are normalised both ways; the right plot shows the
   root-mean-square difference between an example's training-mode and eval-mode outputs.
"""

EXPERIMENT_CODE = r'''
import matplotlib.pyplot as plt

rng = np.random.default_rng(0)
mu, sigma = 3.0, 2.0  # the feature's true mean and standard deviation (variance 4)
steps = 400
gamma, beta = np.ones(1), np.zeros(1)


def running_var_trace(batch_size, momentum):
    """running_var after each of `steps` training steps on fresh batches from N(mu, sigma^2)."""
    rm, rv, nbt = np.zeros(1), np.ones(1), 0
    trace = []
    for _ in range(steps):
        x = rng.normal(mu, sigma, size=(batch_size, 1))
        _, rm, rv, nbt = batchnorm_train_step(x, gamma, beta, rm, rv, nbt, momentum=momentum)
        trace.append(rv[0])
    return np.array(trace)


momenta = (0.1, 0.01, None)
traces = {(n, m): running_var_trace(n, m) for n in (2, 64) for m in momenta}
print("running_var (true variance 4)")
print("batch  momentum  after 20  after 400  std over the last 200 steps")
for (n, m), trace in traces.items():
    print(f"{n:5d}  {str(m):>8s}  {trace[19]:8.3f}  {trace[-1]:9.3f}  {trace[200:].std():8.3f}")
biased = {n: np.mean([rng.normal(mu, sigma, n).var() for _ in range(20000)]) for n in (2, 64)}
print(f"average biased variance x.var() of a batch: {biased[2]:.3f} (batches of 2), {biased[64]:.3f} (of 64)")

# The train/eval gap, with the running statistics equal to the true mean and variance.
rm, rv = np.array([mu]), np.array([sigma**2])
sizes = [2, 4, 8, 16, 32, 64, 128, 256]
gap = []
for n in sizes:
    diffs = []
    for _ in range(200):
        x = rng.normal(mu, sigma, size=(n, 1))
        train_out = batchnorm_train_step(x, gamma, beta, rm, rv, 0)[0]
        diffs.append(train_out - batchnorm_eval(x, gamma, beta, rm, rv))
    gap.append(np.sqrt(np.mean(np.square(diffs))))
print("batch size:                 " + " ".join(f"{n:6d}" for n in sizes))
print("RMS(train out - eval out):  " + " ".join(f"{g:6.3f}" for g in gap))
x = rng.normal(mu, sigma, size=(2, 1))
print("one batch of two in training mode:", batchnorm_train_step(x, gamma, beta, rm, rv, 0)[0].ravel().round(4),
      "  in eval mode:", batchnorm_eval(x, gamma, beta, rm, rv).ravel().round(4))

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
for m in momenta:
    ax1.plot(traces[(2, m)], lw=1, label=f"momentum {m}")
ax1.axhline(sigma**2, color="k", ls="--", lw=1, label="true variance")
ax1.set(xlabel="training step", ylabel="running_var", title="Running variance, batches of 2", ylim=(0, 12))
ax1.legend(fontsize=8)
ax2.loglog(sizes, gap, "o-", label="measured")
ax2.loglog(sizes, gap[-1] * np.sqrt(sizes[-1] / np.array(sizes)), "k--", lw=1, label="slope -1/2")
ax2.set(xlabel="batch size", ylabel="RMS(train out - eval out)", title="Train/eval gap")
ax2.legend(fontsize=8)
plt.tight_layout()
plt.show()
'''

QUESTION = """
**Question** (write 4 to 8 sentences in the cell below).
(a) Compare the three momenta. How noisy is `running_var` late in the run at batch size 2,
and how quickly does it leave the initial value 1 (look at batches of 64 after 20 steps)?
Explain both with the number of batches each setting effectively averages. What is the
price of `momentum=None` while the weights (and hence the features) still change during
training?
(b) Where would `running_var` settle at batch sizes 2 and 64 if the update used the biased
batch variance? Why does PyTorch use the unbiased one, and why does the difference matter
mostly for small batches?
(c) How does the train/eval gap scale with the batch size? What values does the
training-mode output take at batch size 2, and what does that mean for a network trained
with batches of 2 and then evaluated?
"""

MODEL_ANSWER = """
(a) Momentum 0.1 effectively averages the last (2 - m)/m = 19 batches, only 38 values at
batch size 2, so `running_var` jumps around: its std over the last 200 steps is about 1.2
(30 % of the true 4), with spikes, because the variance of two values is very skewed.
Momentum 0.01 averages about 200 batches and is about 3.4 times steadier (std 0.35), but it
forgets the initial value slowly: with batches of 64 it is still 1.58 after 20 steps
(0.99^20 = 0.82 of the weight still on the initial 1), against 3.53 for momentum 0.1
(weight 0.12) and 3.78 for `None`. `momentum=None` weighs every batch equally: it discards
the initial value at once and barely moves late in the run (std 0.06), its error being that
of one mean over all batches (4.30 after 400 batches of 2). During training the features
drift as the weights change, and a cumulative average keeps the stale statistics of the
early batches for ever, so `None` suits a pass with frozen weights (precise BN,
recalibration), not training.
(b) The biased variance of n values averages (n - 1)/n of the true variance: 2.03 instead of
4 for n = 2, 3.94 for n = 64 (as printed). The unbiased variance averages to the true
variance, so a running average of unbiased batch variances converges to the population
variance that eval mode needs. The factor (n - 1)/n is far from 1 only for small n (for a
conv layer n = N*H*W per channel is usually large).
(c) The root-mean-square gap falls like 1/sqrt(n): 0.92 at n = 2, 0.16 at n = 64, 0.08 at
n = 256, slope -1/2 on the log-log plot, because the batch mean and variance have sampling
errors of order 1/sqrt(n). At n = 2 the training-mode output is always -1 and +1 whatever
the two inputs (up to eps), while eval mode gives graded values (-0.04 and 0.78 in the
printed batch): a network trained with batches of 2 learns from a crudely quantised signal
and is evaluated on a different, smooth function, so its eval behaviour can differ a lot
from what training suggested.

Rubric: (a) 8 points (noise against momentum, slow warm-up from the initial value, effective
window of about 1/m batches, drift makes `None` unsuitable during training), (b) 5 points
((n - 1)/n: about 2 and 3.94, unbiased averages converge to the true variance, matters for
small n), (c) 7 points (1/sqrt(n) scaling, outputs of +-1 at n = 2, consequence for
train/eval consistency).
"""

CHAPTER = Chapter(
    name="bn_inference",
    title="Batch normalization at inference time",
    intro=INTRO,
    solutions_module="solutions.bn_inference",
    provided=(
        ("solutions._validate", "float_array"),
        ("solutions._validate", "vector"),
        ("solutions._validate", "positive"),
        ("solutions.batchnorm", "_reduce_axes"),
        ("solutions.batchnorm", "_channel_shape"),
        ("autograder.authoring.specs.bn_inference", "batchnorm_forward"),
        ("solutions.bn_inference", "_momentum"),
        ("solutions.bn_inference", "_running_var"),
        ("solutions.bn_inference", "_bn_layers"),
    ),
    provided_imports="import numbers\n\nimport numpy as np",
    parts=(
        Part("one training step with running statistics", TRAIN_STEP, section="running-estimates-momentum-and-the-unbiased-variance", functions=("batchnorm_train_step",),
             tests=("bn_inference_batchnorm_train_step_torch_2d", "bn_inference_batchnorm_train_step_torch_4d",
                    "bn_inference_batchnorm_train_step_momentum_none",
                    "bn_inference_batchnorm_train_step_unbiased_running_var")),
        Part("the eval-mode forward pass", EVAL, section="why-training-and-inference-differ", functions=("batchnorm_eval",),
             tests=("bn_inference_batchnorm_eval_torch_2d", "bn_inference_batchnorm_eval_torch_3d",
                    "bn_inference_batchnorm_eval_batch_of_one")),
        Part("exact population statistics in one pass", POPULATION, section="exact-population-statistics-in-one-streaming-pass", functions=("population_statistics",),
             tests=("bn_inference_population_statistics_uneven_batches",
                    "bn_inference_population_statistics_large_offset",
                    "bn_inference_population_statistics_one_shot_iterator")),
        Part("recalibrating a torch model's BN layers", RECALIBRATE, section="recalibrating-a-model", functions=("recalibrate_batchnorm",),
             tests=("bn_inference_recalibrate_batchnorm_matches_update_bn",
                    "bn_inference_recalibrate_batchnorm_dropout_off",
                    "bn_inference_recalibrate_batchnorm_restores_modes")),
        Part("folding BN into the previous layer", FOLD, section="folding-bn-into-the-previous-layer", functions=("fold_batchnorm",),
             tests=("bn_inference_fold_batchnorm_linear", "bn_inference_fold_batchnorm_conv",
                    "bn_inference_fold_batchnorm_no_bias")),
    ),
    experiments=(
        Experiment("bn_inference_experiment_momentum_and_gap", "running estimates and the train/eval gap",
                   EXPERIMENT_TEXT, EXPERIMENT_CODE, QUESTION, MODEL_ANSWER, points=20),
    ),
    # Grading seeds of the hidden checks (the grader may choose others).
    hidden_seeds={
        "bn_inference_batchnorm_train_step_torch_2d_hidden": 4011,
        "bn_inference_batchnorm_train_step_torch_4d_hidden": 4012,
        "bn_inference_batchnorm_train_step_momentum_none_hidden": 4013,
        "bn_inference_batchnorm_train_step_unbiased_running_var_hidden": 4014,
        "bn_inference_batchnorm_eval_torch_2d_hidden": 4021,
        "bn_inference_batchnorm_eval_batch_of_one_hidden": 4022,
        "bn_inference_population_statistics_uneven_batches_hidden": 4031,
        "bn_inference_population_statistics_large_offset_hidden": 4032,
        "bn_inference_recalibrate_batchnorm_matches_update_bn_hidden": 4041,
        "bn_inference_recalibrate_batchnorm_dropout_off_hidden": 4042,
        "bn_inference_fold_batchnorm_linear_hidden": 4051,
        "bn_inference_fold_batchnorm_conv_hidden": 4052,
    },
)
