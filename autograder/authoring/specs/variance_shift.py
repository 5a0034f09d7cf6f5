"""Notebook spec of the ``variance_shift`` exercise (dropout before batch norm, Li et al. 2019)."""
from autograder.authoring.notebooks import Chapter, Experiment, Part

INTRO = r"""
Dropout keeps a unit's mean but not its variance: the variance of a unit differs between
training (dropout on) and testing (dropout off). A batch-norm layer after dropout stores the
training variance in its running statistics and divides by it at test time. You compute
this **variance shift** exactly, check it by Monte Carlo, build the low-variance "Uout"
noise layer, and measure the shift layer by layer in a PyTorch model.

**Conventions** (PyTorch's, used throughout the course):

* `p` is the probability of **dropping** a unit, as in `nn.Dropout(p)`; `q = 1 - p` is the
  retain ratio. Li et al. write `p` for the *retain* ratio: translate before you use a
  formula from the paper.
* Dropout is *inverted*: in training a unit is kept with probability `q` and divided by
  `q`, so its mean is unchanged; at test time the layer is the identity.
* A neuron `x` has mean `c` (`mean`) and variance `v` (`var`) over the data, and the noise
  is independent of `x`. The **shift ratio** is `Var_test / Var_train`, the variance of
  the layer's output at test time divided by its variance in training (below 1 when
  training adds variance).
* Uout (Li et al.'s uniform noise, whose variance shift is small at small `beta` but not
  zero): `X = x + x r` with `r ~ U(-beta, beta)`, a fresh `r` for every element, in
  training only.
* Random functions take `rng`: `None`, an int seed or a `numpy.random.Generator`; turn it
  into a generator with the provided `generator(rng)` and draw every random number from it.
  The checks do not compare your random numbers with anyone else's: they test the
  distribution of what you draw, or compare with a Monte Carlo estimate within a bound.
* Variances of data are the plain (biased) `np.var` in Parts 1 to 4; the BN metric in
  Part 5 uses the **unbiased** variance of the data (divide by `count - 1`), like
  `torch.var`.

The provided helpers validate input (`float_array`, `positive`, `drop_probability`,
`generator`, `_training_flag`, `_real`, `_drop_probabilities`, `_betas`) and unpack what a
noise layer returns (`_output`). Call them first in your functions so that bad input gets
a clear error.
"""

DROPOUT_RATIO = r"""
Implement `dropout_variance_shift(p, mean, var)`: the exact ratio `Var_test / Var_train` of
inverted dropout on a neuron with mean `c` and variance `v`. Derive `Var_train` on paper
first: `E[X]`, then `E[X^2]` using `a^2 = a` for a Bernoulli variable and the independence
of `a` and `x`. Do not assume `c = 0`: units after a ReLU have a positive mean. `p` may be
an array; numpy's elementwise arithmetic handles it.

The checks compare with a Monte Carlo estimate that uses PyTorch's own `F.dropout`, within
six standard errors.
"""

UOUT_FORWARD = r"""
Implement `uout_forward(x, beta, training, rng)`: in training `x + x r` with an independent
`r ~ U(-beta, beta)` per element, drawn from the generator made from `rng`; in evaluation a
copy of `x`.

The checks recover your noise as `r = out / x - 1` and test that it is uniform on
`[-beta, beta]` (a Kolmogorov-Smirnov distance, so any correct way of drawing passes),
that the same seed reproduces the output and another seed does not.
"""

UOUT_RATIO = r"""
Implement `uout_variance_shift(beta, mean, var)`, the exact ratio for Uout. The same
argument as in Part 1 works for any noise `X = x (1 + r)` with `E[r] = 0` independent of
`x`; what you need is `E[r^2]` for `r ~ U(-beta, beta)`. Compute it from the density
rather than from memory.
"""

SIMULATE = r"""
Implement `simulate_variance_shift(noise_fn, mean, var, n, rng)`: a Monte Carlo estimate of
the ratio for any noise layer. Draw one sample `x ~ N(mean, var)` of size `n`, pass that
**same** `x` through `noise_fn(x, training=False, rng=rng)`
and `noise_fn(x, training=True, rng=rng)`, and return the ratio of the two output
variances as a float. A layer may return a tuple whose first element is its output (as
`dropout_forward` does); `_output` unpacks it and checks its shape.

The first check uses a deterministic "noise" layer (`a x + b` in training, `e x + d` in
evaluation) whose ratio is exactly `e^2 / a^2`; a correct estimate reproduces it to
rounding error. The next cell compares your estimate with your formula from Part 3.
"""

SIMULATE_SELF_CHECK = """
# Your own check: Monte Carlo against your formula for Uout (expect agreement to a few thousandths).
from functools import partial

for beta, c in [(0.5, 0.0), (1.0, 1.0)]:
    mc = simulate_variance_shift(partial(uout_forward, beta=beta), c, 1.0, 500_000, rng=0)
    print(f"Uout beta = {beta}, c = {c}: Monte Carlo {mc:.4f}, formula {uout_variance_shift(beta, mean=c):.4f}")
"""

BN_SHIFT = r"""
Implement `bn_variance_shift(model, batches)` with PyTorch: for every BN layer of `model`
(in `model.modules()` order), Li et al.'s metric `max(real_var / running_var,
running_var / real_var)` per channel, averaged over the layer's channels.
`running_var` is the layer's stored estimate; `real_var` is the **unbiased** per-channel
variance of the layer's input over all the data, with the model in **eval** mode (dropout
off, BN using its running statistics). Statistics are per channel over every axis except
axis 1, as in BN itself.

Suggested structure: find the BN layers (`isinstance(m, torch.nn.modules.batchnorm._BatchNorm)`),
register a forward pre-hook on each (`bn.register_forward_pre_hook(hook)`; `hook(module,
args)` sees the input as `args[0]`), run every batch through the model under
`torch.no_grad()` in eval mode, remove the hooks, and give every module back its own
`training` flag. A batch may be a tensor or an `(input, target)` pair. Collecting the
inputs and concatenating them is fine here; the reference merges running sums instead so
that memory does not grow with the data.

The checks give you models in training mode, as they are after training, with BN running
statistics that are too large for some channels and too small for others.
"""

EXPERIMENT_TEXT = """
Two views of the shift. **Left:** one neuron with `v = 1`: your formula against your Monte
Carlo estimate (with PyTorch's `F.dropout` as the noise layer) as the drop probability
grows, for a zero-mean neuron and for one with mean 1. **Right:** a network of 8 blocks
`Linear -> Dropout(p) -> BatchNorm1d -> ReLU` with random weights. Its weights are not
trained; only the BN running statistics are estimated, by running data through the
network in training mode, which is exactly where the shift enters. The cell measures the
per-layer metric with your `bn_variance_shift` for `p = 0.1, 0.3, 0.5`, again after
re-estimating the statistics with dropout off ("recalibration"), and for a network with a
single dropout after the last BN. Run it (about 10 seconds), then answer below.
"""

EXPERIMENT_CODE = r'''
from functools import partial

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

torch.set_num_threads(1)  # the networks are tiny: one thread is fastest


def torch_dropout(x, training=True, rng=None, p=0.5):
    """F.dropout as a noise layer for simulate_variance_shift, seeded from rng."""
    torch.manual_seed(int(rng.integers(2**31)))
    return F.dropout(torch.from_numpy(x), p=p, training=training).numpy()


# (a) One neuron: the formula against Monte Carlo as p grows.
ps = np.linspace(0.05, 0.9, 12)
p_fine = np.linspace(0.0, 0.9, 200)
mc_curves = {}
for c in (0.0, 1.0):
    mc_curves[c] = np.array([simulate_variance_shift(partial(torch_dropout, p=p), c, 1.0, 200_000, rng=i)
                             for i, p in enumerate(ps)])
    gap = np.max(np.abs(mc_curves[c] / dropout_variance_shift(ps, mean=c) - 1))
    print(f"c = {c:g}: largest relative gap between Monte Carlo and formula: {gap:.4f}")

# (b) A deep network whose BN statistics were estimated with dropout on.
depth, width = 8, 32
torch.manual_seed(0)
train_data = [torch.randn(128, width, dtype=torch.float64) for _ in range(30)]
test_data = [torch.randn(500, width, dtype=torch.float64) for _ in range(4)]


def network(p, placement="before"):
    torch.manual_seed(1)  # the same weights for every network
    layers = []
    for _ in range(depth):
        layers.append(nn.Linear(width, width))
        if placement == "before":
            layers.append(nn.Dropout(p))
        layers += [nn.BatchNorm1d(width, momentum=None), nn.ReLU()]
    if placement == "after":
        layers.append(nn.Dropout(p))
    return nn.Sequential(*layers).double()


@torch.no_grad()
def estimate_statistics(model, data, dropout_on):
    """Reset every BN layer's running statistics and estimate them again from the data
    (momentum=None: the plain average over the batches)."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.reset_running_stats()
        if isinstance(m, nn.Dropout) and not dropout_on:
            m.eval()
    for xb in data:
        model(xb)


shifts = {}
for p in (0.1, 0.3, 0.5):
    model = network(p)
    estimate_statistics(model, train_data, dropout_on=True)   # what training leaves behind
    shifts[f"p = {p}"] = bn_variance_shift(model, test_data)
    estimate_statistics(model, train_data, dropout_on=False)  # recalibration
    shifts[f"p = {p}, recalibrated"] = bn_variance_shift(model, test_data)
model = network(0.5, placement="after")
estimate_statistics(model, train_data, dropout_on=True)
shifts["p = 0.5 after the last BN"] = bn_variance_shift(model, test_data)

print("\nper-layer shift max(real/running, running/real); BN layer 1 to", depth)
for label, values in shifts.items():
    print(f"{label:27s}" + " ".join(f"{s:7.2f}" for s in values))

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for c, style in ((0.0, "-"), (1.0, "--")):
    ax1.plot(p_fine, dropout_variance_shift(p_fine, mean=c), "k" + style, label=f"formula, c = {c:g}")
    ax1.plot(ps, mc_curves[c], "o", mfc="none", label=f"Monte Carlo, c = {c:g}")
ax1.set(xlabel="drop probability p", ylabel="Var_test / Var_train", title="One neuron, v = 1")
ax1.legend()
layers = np.arange(1, depth + 1)
for i, p in enumerate((0.1, 0.3, 0.5)):
    ax2.semilogy(layers, shifts[f"p = {p}"], "o-", color=f"C{i}", label=f"dropout before BN, p = {p}")
    ax2.semilogy(layers, shifts[f"p = {p}, recalibrated"], "x:", color=f"C{i}", label=f"p = {p}, recalibrated")
ax2.semilogy(layers, shifts["p = 0.5 after the last BN"], "s--", color="k", mfc="none",
             label="p = 0.5, dropout after the last BN")
ax2.set(xlabel="BN layer", ylabel="shift metric (1 = no shift)", title="Per-layer shift, 8 blocks")
ax2.legend(fontsize=8)
plt.tight_layout()
plt.show()
'''

QUESTION = """
**Question** (write 5 to 10 sentences in the cell below).
(a) Left panel: how does the ratio depend on `p`, and how does a non-zero mean change it?
Explain the effect of the mean from your derivation. How closely do Monte Carlo and
formula agree, and what limits the agreement?
(b) Right panel: compare the first BN layer's shift for each `p` with what a single
zero-mean neuron predicts. Why does the shift grow with depth instead of staying at the
first layer's value?
(c) What do recalibration and moving dropout after the last BN do to the shift? Why are
those curves not exactly at 1? Name one cost or limitation of each remedy.
"""

MODEL_ANSWER = """
(a) The ratio falls as p grows: for a zero-mean neuron it is q = 1 - p (a straight line from
1 to 0.1 at p = 0.9). A non-zero mean makes it smaller still (1/3 at p = 0.5 for c = v = 1),
because dropout's multiplicative noise scales the whole second moment c^2 + v, not only v:
Var_train = (c^2 + v)/q - c^2 = v + (p/q)(c^2 + v), so the mean adds (p/q) c^2 to the
training variance while the test variance stays v. Monte Carlo and formula agree to within
about 1 to 2 % with 200,000 draws; the gap is sampling error, shrinking like 1/sqrt(n), and is
largest at large p, where the dropout output is heavy-tailed.
(b) The first BN layer shows about 1/q: 1.14, 1.48 and 2.07 for p = 0.1, 0.3, 0.5, against
1.11, 1.43 and 2 for a single zero-mean Dropout -> BN pair (the metric is the inverse of the
ratio); slightly more, because the linear layer's bias gives the units a non-zero mean (see
(a)) and because of sampling noise. Deeper layers show far more (for p = 0.5 a factor of
about 2 to 3 per layer, several hundred by layer 8): at test time each BN divides by a
running variance that is too large, so its output is shrunk; after the ReLU and the next
linear layer the next BN sees an input whose variance (and mean) is smaller than in
training, while its own dropout had inflated its running variance. The mismatches multiply
through the layers. (These networks are random and untrained; the numbers of a trained
network differ, but the mechanism is the same.)
(c) Recalibration (running statistics re-estimated with dropout off, weights untouched)
and a single dropout after the last BN both bring every layer to about 1.03 to 1.07: no BN
layer has learned its statistics under dropout noise. The curves coincide because with
dropout off all these networks compute the same function with the same weights. The residual
above 1 is sampling noise: real_var comes from 2,000 test inputs and running_var from other
data, and the metric max(r, 1/r) is >= 1, so any noise pushes it up. Costs: recalibration
needs an extra pass over training data after training (and again after every change of the
weights); dropout after the last BN regularises only the last layer, and Uout-like weak
noise regularises much less.

Rubric: (a) 6 points (ratio decreases with p, q at c = 0; mean lowers it, with the reason
from the derivation; sampling error explains the gap), (b) 8 points (first layer about 1/q,
compounding with depth and the mechanism), (c) 6 points (both remedies bring the metric near
1 and why; residual from sampling; one cost each).
"""

CHAPTER = Chapter(
    name="variance_shift",
    title="Variance shift: dropout before batch norm",
    intro=INTRO,
    solutions_module="solutions.variance_shift",
    provided=(
        ("solutions._validate", "float_array"),
        ("solutions._validate", "positive"),
        ("solutions._validate", "drop_probability"),
        ("solutions._validate", "generator"),
        ("solutions.dropout", "_training_flag"),
        ("solutions.variance_shift", "_real"),
        ("solutions.variance_shift", "_drop_probabilities"),
        ("solutions.variance_shift", "_betas"),
        ("solutions.variance_shift", "_output"),
    ),
    provided_imports="import numbers\n\nimport numpy as np",
    parts=(
        Part("the shift ratio of dropout", DROPOUT_RATIO, section="deriving-the-shift", functions=("dropout_variance_shift",),
             tests=("variance_shift_dropout_variance_shift_zero_mean",
                    "variance_shift_dropout_variance_shift_nonzero_mean")),
        Part("Uout, a layer with uniform multiplicative noise", UOUT_FORWARD, section="deriving-the-shift", functions=("uout_forward",),
             tests=("variance_shift_uout_forward_eval_identity", "variance_shift_uout_forward_uniform_noise",
                    "variance_shift_uout_forward_reproducible")),
        Part("the shift ratio of Uout", UOUT_RATIO, section="deriving-the-shift", functions=("uout_variance_shift",),
             tests=("variance_shift_uout_variance_shift_zero_mean",
                    "variance_shift_uout_variance_shift_nonzero_mean")),
        Part("a Monte Carlo estimate of the ratio", SIMULATE, section="experiment-analytic-and-monte-carlo-shift-ratios", functions=("simulate_variance_shift",),
             tests=("variance_shift_simulate_variance_shift_exact_ratio",
                    "variance_shift_simulate_variance_shift_input_draw",
                    "variance_shift_simulate_variance_shift_dropout_noise"),
             self_check=SIMULATE_SELF_CHECK),
        Part("the shift of every BN layer of a PyTorch model", BN_SHIFT, section="why-batch-norm-turns-the-shift-into-an-error", functions=("bn_variance_shift",),
             tests=("variance_shift_bn_variance_shift_mlp", "variance_shift_bn_variance_shift_cnn",
                    "variance_shift_bn_variance_shift_leaves_model_unchanged")),
    ),
    experiments=(
        Experiment("variance_shift_experiment_depth", "the ratio as p grows, and the shift through depth",
                   EXPERIMENT_TEXT, EXPERIMENT_CODE, QUESTION, MODEL_ANSWER, points=20),
    ),
    # Grading seeds of the hidden checks (the grader may choose others).
    hidden_seeds={
        "variance_shift_dropout_variance_shift_zero_mean_hidden": 5011,
        "variance_shift_dropout_variance_shift_nonzero_mean_hidden": 5012,
        "variance_shift_uout_forward_eval_identity_hidden": 5021,
        "variance_shift_uout_forward_uniform_noise_hidden": 5022,
        "variance_shift_uout_variance_shift_zero_mean_hidden": 5031,
        "variance_shift_uout_variance_shift_nonzero_mean_hidden": 5032,
        "variance_shift_simulate_variance_shift_exact_ratio_hidden": 5041,
        "variance_shift_simulate_variance_shift_input_draw_hidden": 5042,
        "variance_shift_simulate_variance_shift_dropout_noise_hidden": 5043,
        "variance_shift_bn_variance_shift_mlp_hidden": 5051,
        "variance_shift_bn_variance_shift_cnn_hidden": 5052,
        "variance_shift_bn_variance_shift_leaves_model_unchanged_hidden": 5053,
    },
)
