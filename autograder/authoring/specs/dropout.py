"""Notebook spec of the ``dropout`` exercise (inverted, original and Gaussian dropout)."""
from autograder.authoring.notebooks import Chapter, Experiment, Part

INTRO = r"""
You implement dropout in numpy and float64: inverted dropout (what `nn.Dropout` does) with
its backward pass, the original rule of Srivastava et al. (2014), and Gaussian dropout.

**Conventions** (PyTorch's, used throughout the course):

* `p` is the probability of **dropping** a unit (`nn.Dropout(p)`); a unit is kept with
  probability `q = 1 - p`. The 2014 paper and some notes (CS231n) write `p` for the
  probability of *keeping* a unit: translate before you reuse their formulas.
* `0 <= p < 1`, and `p = 0` must return `x` exactly.
* The forward functions take `training` (True or False) and `rng` (None, an int seed or a
  `numpy.random.Generator`; the provided `_inputs` turns it into a Generator). Draw every
  random number from that generator, so that a fixed seed gives a fixed result.
* The keep-mask is a boolean array of the shape of `x`, **True where a unit is kept**. In
  evaluation mode the functions return `None` instead of a mask (or noise).
* Do not modify your inputs.

**How your random functions are tested.** Your random numbers need not match anyone
else's, so the checks test properties of *your* draws: the output agrees with the mask you
return, the share of kept units is `1 - p` up to sampling noise, and over many independent
draws the mean and variance of `out / x` are within 5 standard errors of their exact values.
A correct answer fails such a check with a probability below one in a million.
"""

FORWARD = """
Implement `dropout_forward(x, p, training, rng)`, inverted dropout. `_keep_mask(shape, p, rng)`
is a suggested helper that draws the boolean keep-mask (Part 3 uses it too; only
`dropout_forward` is graded directly). The provided `_inputs(x, p, training, rng)`
validates the four arguments and returns them as float64 `x`, float `p`, bool `training`
and a `numpy.random.Generator`.

Think about `p = 0`: every unit must be kept and `out` must equal `x` bit for bit.
"""

BACKWARD = """
Implement `dropout_backward(dout, mask, p)`: the gradient of `sum(out * dout)` with respect
to `x` for the mask the forward pass returned (`mask` is `None` when the forward pass ran
in evaluation mode). Derive it on paper first: for a fixed mask, what kind of function of
`x` is the forward pass?

The next cell is your own gradient check. An int seed gives the same mask on every call, so
`lambda v: dropout_forward(v, p, rng=7)[0]` is a fixed function of `v` that finite
differences can differentiate (expect a relative error below 1e-7).
"""

SELF_CHECK = """
# Your own gradient check: finite differences of your forward pass (fixed mask) against your backward pass.
rng = np.random.default_rng(0)
x = rng.normal(size=(4, 5))
dout = rng.normal(size=x.shape)
p = 0.4
_, mask = dropout_forward(x, p, rng=7)
dx = dropout_backward(dout, mask, p)
gradient_check(lambda v: dropout_forward(v, p, rng=7)[0], x, dout, dx, name="dx")
"""

VANILLA = """
The original rule (Srivastava et al. 2014) does not rescale during training: a kept unit
passes through unchanged. To match the training-time expectation, at test time every unit
is present and its output is multiplied by its keep probability `1 - p` (the paper scales
the outgoing weights, which is the same thing). Implement `vanilla_dropout_forward`; you may
reuse your `_keep_mask`.
"""

GAUSSIAN = """
Gaussian dropout multiplies every unit by independent noise from a normal distribution
with mean 1 and **variance** `p / (1 - p)`, the variance of inverted dropout's multiplier
`mask / (1 - p)` (so the two have the same mean and variance). At test time it is the
identity. Implement `gaussian_dropout_forward`; it returns the noise it drew, so that a
backward pass could use it. Read the docstring carefully: which argument of numpy's normal
sampler is the standard deviation?
"""

EXPERIMENT_TEXT = """
A network with two hidden ReLU layers of 128 units, each followed by your `dropout_forward`
(and trained through your `dropout_backward`), fitted by full-batch Adam to only 40 noisy
points of a smooth function of 5 inputs (noise variance 0.09), once without dropout
(`p = 0`) and once with `p = 0.5`, from the same initial weights. Every 20 steps the cell
records the training MSE in evaluation mode, the training MSE the optimiser saw (dropout on)
and the test MSE on 500 fresh points. At the end it evaluates the `p = 0.5` network in two
wrong ways: with dropout left on at test time, and as if it had been trained with the
original rule and deployed without the test-time factor `1 - p`. It takes a few seconds.
Run it, then answer below.
"""

EXPERIMENT_CODE = r'''
import matplotlib.pyplot as plt

# A small regression problem that a wide network can memorise: 40 noisy training points.
rng = np.random.default_rng(0)
n_in, width, n_train, n_test, noise = 5, 128, 40, 500, 0.3
direction = rng.normal(size=n_in) / np.sqrt(n_in)


def target(X):
    return np.sin(2 * X @ direction) + 0.3 * X[:, 0] * X[:, 1]


X_train, X_test = rng.normal(size=(n_train, n_in)), rng.normal(size=(n_test, n_in))
y_train = target(X_train) + noise * rng.normal(size=n_train)
y_test = target(X_test) + noise * rng.normal(size=n_test)


def forward(params, X, p, training, rng=None, scale=1.0):
    """Two ReLU layers, each followed by your dropout, then a linear output unit.

    scale multiplies every dropout output (only used below, to mimic a mistake)."""
    h, cache = X, []
    for W, b in params[:-1]:
        z = h @ W + b
        out, mask = dropout_forward(np.maximum(z, 0.0), p, training=training, rng=rng)
        cache.append((h, z, mask))
        h = scale * out
    W, b = params[-1]
    return (h @ W + b)[:, 0], (cache, h)


def backward(params, cache, dy, p):
    """Gradients of the loss for every (W, b), given dy = dloss / dprediction."""
    cache, h = cache
    dy = dy[:, None]
    grads = [(h.T @ dy, dy.sum(axis=0))]
    dh = dy @ params[-1][0].T
    for (W, _), (h_in, z, mask) in zip(params[-2::-1], cache[::-1]):
        dz = dropout_backward(dh, mask, p) * (z > 0)
        grads.insert(0, (h_in.T @ dz, dz.sum(axis=0)))
        dh = dz @ W.T
    return grads


def mse(params, X, y, p=0.0, training=False, rng=None, scale=1.0):
    return float(np.mean((forward(params, X, p, training, rng, scale)[0] - y) ** 2))


def train(p, steps=800, lr=1e-3, every=20):
    """Full-batch Adam from the same initial weights for every p; dropout masks from rng."""
    init, rng = np.random.default_rng(1), np.random.default_rng(2)
    sizes = [n_in, width, width, 1]
    params = [[init.normal(size=(a, b)) * np.sqrt(2 / a), np.zeros(b)] for a, b in zip(sizes, sizes[1:])]
    m = [[np.zeros_like(a) for a in layer] for layer in params]
    v = [[np.zeros_like(a) for a in layer] for layer in params]
    curves = {"train, dropout on": [], "train, eval mode": [], "test": []}
    for t in range(1, steps + 1):
        pred, cache = forward(params, X_train, p, True, rng)
        grads = backward(params, cache, 2 * (pred - y_train) / n_train, p)
        for layer, g_layer, m_layer, v_layer in zip(params, grads, m, v):
            for i, g in enumerate(g_layer):
                m_layer[i] = 0.9 * m_layer[i] + 0.1 * g
                v_layer[i] = 0.999 * v_layer[i] + 0.001 * g**2
                layer[i] = layer[i] - lr * (m_layer[i] / (1 - 0.9**t)) / (np.sqrt(v_layer[i] / (1 - 0.999**t)) + 1e-8)
        if t % every == 0:
            curves["train, dropout on"].append(float(np.mean((pred - y_train) ** 2)))
            curves["train, eval mode"].append(mse(params, X_train, y_train))
            curves["test"].append(mse(params, X_test, y_test))
    return params, {k: np.array(c) for k, c in curves.items()}


runs = {p: train(p) for p in (0.0, 0.5)}
steps = 20 * np.arange(1, len(runs[0.0][1]["test"]) + 1)
print(f"test MSE of predicting the mean of y_train: {np.mean((y_test - y_train.mean()) ** 2):.3f}")
print("p     train MSE (eval mode)   best test MSE (step)   final test MSE")
for p, (params, c) in runs.items():
    best = int(np.argmin(c["test"]))
    print(f"{p:<5} {c['train, eval mode'][-1]:19.4f} {c['test'][best]:14.3f} ({steps[best]:4d}) {c['test'][-1]:16.3f}")
# Two ways to get test time wrong with the p = 0.5 network.
params = runs[0.5][0]
left_on = [mse(params, X_test, y_test, p=0.5, training=True, rng=np.random.default_rng(s)) for s in range(20)]
print(f"p = 0.5 network, test MSE in eval mode:                  {mse(params, X_test, y_test):.3f}")
print(f"  with dropout left on (mean of 20 single passes):       {np.mean(left_on):.3f}")
# The original rule trained the same function with weights W / (1 - p) after each dropout
# layer; without its test-time factor every dropout output is 1 / (1 - p) times too large.
print(f"  as the original rule without its test-time (1 - p):    {mse(params, X_test, y_test, scale=1 / (1 - 0.5)):.3f}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
for p, color in ((0.0, "C3"), (0.5, "C0")):
    c = runs[p][1]
    ax1.plot(steps, c["train, eval mode"], color=color, label=f"p = {p}, eval mode")
    ax2.plot(steps, c["test"], color=color, label=f"p = {p}")
ax1.plot(steps, runs[0.5][1]["train, dropout on"], ":", color="C0", label="p = 0.5, dropout on")
ax1.set(xlabel="step", ylabel="MSE", ylim=(0, 0.8), title=f"Training loss ({n_train} points)")
ax2.set(xlabel="step", ylabel="MSE", title=f"Test loss ({n_test} points)")
for ax in (ax1, ax2):
    ax.axhline(noise**2, color="gray", ls="--", lw=1, label="noise variance")
    ax.legend()
plt.tight_layout()
plt.show()
'''

QUESTION = """
**Question** (write 5 to 10 sentences in the cell below).
(a) Compare the two networks: what happens to the training MSE (eval mode) and to the test
MSE over the steps? Which network overfits, how do you see it, and how much does dropout
change the test MSE? Quote your numbers.
(b) For the `p = 0.5` network, why does the training loss with dropout on (dotted) stay above
the same network's training loss in evaluation mode? Which of the two does the optimiser
minimise, and how does that keep the network from memorising the 40 points?
(c) Explain the two wrong evaluations: why is the test MSE worse with dropout left on,
although inverted dropout keeps the mean of every unit, and why is forgetting the original
rule's factor `1 - p` so much worse still?
"""

MODEL_ANSWER = """
(a) Without dropout the training MSE falls to essentially 0 within about 100 steps: the
network interpolates the 40 points, noise included (the noise variance is 0.09, so a fit
below that is memorisation). Its test MSE is lowest at the first record (about 0.32 at step
20), then rises to about 0.39 and stays there: overfitting. With p = 0.5 the training MSE
in eval mode stays near 0.12, close to the noise level, and the test MSE falls to about 0.21
(best about 0.20), roughly half the test MSE without dropout and well below its best, early
value; predicting the mean of y_train would give 0.54.
(b) The optimiser minimises the loss of a random sub-network (dotted), whose prediction is
noisy: each kept unit is scaled by 2 and half of them are missing, so the loss is the squared
error of the mean prediction plus a variance term (for a linear layer the variance is
p / (1 - p) times sum w^2 h^2, a data-dependent weight penalty). The eval-mode network uses
every unit, which approximates the average over the sub-networks and has no such variance,
so its loss is lower. Because the optimiser cannot drive the noisy loss to zero by fitting
each point with a few co-adapted units, it settles on a smoother function that fits the
signal and not the noise.
(c) With dropout left on, each test prediction is one random sub-network's: its mean is
about right (inverted dropout keeps E[out] = x per unit; the nonlinearities make it
approximate), but the added variance enters the squared error, about 0.31 against 0.21. The
original rule without its test-time factor is a systematic error instead: every dropout
output is 1 / (1 - p) = 2 times too large, in each of the two layers, so the predictions are
roughly 4 times too large (ReLU is positively homogeneous) and the test MSE explodes to about
2.1, worse than predicting a constant. Inverted dropout makes this mistake impossible: the
test-time network is the plain network.

Rubric: (a) 7 points (train MSE to 0 vs near the noise level, test MSE rises without dropout,
numbers for both, dropout clearly lower), (b) 6 points (optimiser sees the noisy sub-network
loss, variance term / penalty, cannot memorise), (c) 7 points (variance added by leaving
dropout on, mean preserved only approximately, systematic 1 / (1 - p) per layer blow-up).
Numbers within a few hundredths of these are expected: your random numbers differ.
"""

CHAPTER = Chapter(
    name="dropout",
    title="Dropout",
    intro=INTRO,
    solutions_module="solutions.dropout",
    provided=(
        ("solutions._validate", "float_array"),
        ("solutions._validate", "drop_probability"),
        ("solutions._validate", "generator"),
        ("solutions.dropout", "_training_flag"),
        ("solutions.dropout", "_inputs"),
    ),
    provided_imports="import numbers\n\nimport numpy as np",
    parts=(
        Part("inverted dropout", FORWARD, section="two-ways-to-match-the-expectations", functions=("_keep_mask", "dropout_forward"),
             tests=("dropout_dropout_forward_values", "dropout_dropout_forward_keep_fraction",
                    "dropout_dropout_forward_moments", "dropout_dropout_forward_eval_identity",
                    "dropout_dropout_forward_p_zero")),
        Part("the backward pass", BACKWARD, section="the-backward-pass", functions=("dropout_backward",),
             tests=("dropout_dropout_backward_torch", "dropout_dropout_backward_eval"),
             self_check=SELF_CHECK),
        Part("the original rule", VANILLA, section="two-ways-to-match-the-expectations", functions=("vanilla_dropout_forward",),
             tests=("dropout_vanilla_dropout_forward_train", "dropout_vanilla_dropout_forward_eval_scaling",
                    "dropout_vanilla_dropout_forward_expectations_match")),
        Part("Gaussian dropout", GAUSSIAN, section="gaussian-dropout", functions=("gaussian_dropout_forward",),
             tests=("dropout_gaussian_dropout_forward_moments", "dropout_gaussian_dropout_forward_normal",
                    "dropout_gaussian_dropout_forward_identity", "dropout_gaussian_dropout_forward_p_zero")),
    ),
    experiments=(
        Experiment("dropout_experiment_overfitting", "overfitting 40 points with and without dropout",
                   EXPERIMENT_TEXT, EXPERIMENT_CODE, QUESTION, MODEL_ANSWER, points=20),
    ),
    # Grading seeds of the hidden checks (the grader may choose others).
    hidden_seeds={
        "dropout_dropout_forward_values_hidden": 4011,
        "dropout_dropout_forward_keep_fraction_hidden": 4012,
        "dropout_dropout_forward_moments_hidden": 4013,
        "dropout_dropout_forward_eval_identity_hidden": 4014,
        "dropout_dropout_forward_p_zero_hidden": 4015,
        "dropout_dropout_backward_torch_hidden": 4021,
        "dropout_dropout_backward_eval_hidden": 4022,
        "dropout_vanilla_dropout_forward_train_hidden": 4031,
        "dropout_vanilla_dropout_forward_eval_scaling_hidden": 4032,
        "dropout_vanilla_dropout_forward_expectations_match_hidden": 4033,
        "dropout_gaussian_dropout_forward_moments_hidden": 4041,
        "dropout_gaussian_dropout_forward_normal_hidden": 4042,
        "dropout_gaussian_dropout_forward_identity_hidden": 4043,
    },
)
