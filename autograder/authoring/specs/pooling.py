"""Notebook spec of the ``pooling`` exercise (max, average and min pooling, forward and backward)."""
from autograder.authoring.notebooks import Chapter, Experiment, Part

INTRO = r"""
You implement max, average and min pooling over 2-D windows, forward and backward, in numpy
and float64, and check them against PyTorch's `F.max_pool2d` and `F.avg_pool2d`.

**Conventions** (PyTorch's, used throughout the course):

* `x` has shape `(N, C, H, W)`; every channel of every example is pooled on its own.
* `kernel_size`, `stride` and `padding` are an int or a pair `(rows, cols)`; `stride=None`
  means `stride = kernel_size`; `padding` is at most half the kernel. The output has
  `Ho = floor((H + 2 * padding - kernel) / stride) + 1` rows (columns alike).
* Max pooling pads with `-inf`, so padding never wins. When several cells of a window hold
  the maximum, the **first one in row-major window order** wins, and the backward pass sends
  the window's **whole** gradient to that one cell. The winner is stored as a flat index
  `row * W + col` into the unpadded `H x W` plane, exactly what
  `F.max_pool2d(..., return_indices=True)` returns.
* Average pooling pads with zeros. With `count_include_pad=True` (the default) the divisor is
  the whole window, `kh * kw`, padding included; with `False` it is the number of real input
  cells in the window.
* Where windows overlap (stride smaller than the kernel), a cell receives the **sum** of the
  gradients of all the windows it contributes to.
* Not required here: `ceil_mode=True` and NaN inputs. Keep the `ceil_mode` parameter in the
  signatures; the tests never set it and never pass NaN. Do not modify your inputs.
"""

MAX_FORWARD = """
Implement `maxpool2d_forward`. It returns `(out, cache)`; the cache is part of the
interface and must hold the keys the docstring lists: `argmax` (integer flat indices, one
per window) and `x_shape`.

The read-only cell above does the bookkeeping for you (using it is optional):

* `_geometry(x, kernel_size, stride, padding, ceil_mode)` validates the arguments and
  returns a dict `g`: `g["x"]` (float64), the pairs `g["kernel"]`, `g["stride"]`,
  `g["padding"]` and the output size `g["out"] = (Ho, Wo)`.
* `_window_starts(g, a)`: the input coordinate of each window's first cell along axis `a`
  (0 for rows, 1 for columns); negative where the window starts in the padding.
* `_window_cells(g, (H, W))` yields, for every kernel cell `(i, j)` in row-major order,
  `(k, out_index, in_index)` with `k = i * kw + j`: `x[in_index]` holds the value of cell
  `(i, j)` for all the windows `out[out_index]` at once. Windows whose cell `(i, j)` lies in
  the padding are left out.

One loop over the `kh * kw` kernel cells (never over pixels) is enough: keep a running
maximum and the cell `k` where it was found, and let a cell take over only where it is
**strictly** larger, so that the first maximum keeps a tie. Then turn the window's start and
`k` into a flat index. (`np.pad` with `-inf` and strided slices work too.)

The next cell runs your function on a small worked example.
"""

MAX_FORWARD_CHECK = """
# A worked example (ungraded): four overlapping 2x2 windows, stride 1.
x = np.array([[0.0, 5.0, 5.0],
              [5.0, 0.0, 0.0],
              [0.0, 0.0, 0.0]])[None, None]
out, cache = maxpool2d_forward(x, kernel_size=2, stride=1)
print("out:\\n", out[0, 0], "\\nargmax:\\n", cache["argmax"][0, 0])
print("expected out [[5, 5], [5, 0]] and argmax [[1, 1], [3, 4]]: in each window the first "
      "maximum in row-major order wins (the last window is a four-way tie of zeros)")
"""

MAX_BACKWARD = """
Implement `maxpool2d_backward(dout, cache)`: the gradient of `sum(out * dout)` with respect
to `x`. Each window sends its whole `dout` to its argmax cell and nothing to the others;
a cell that wins several overlapping windows receives the sum of their gradients. Careful:
a fancy-index assignment such as `dx.flat[idx] = dout` keeps only one of several writes to
the same index; `np.add.at` and `np.bincount(..., weights=...)` add them up.

The tests of this part build the cache with PyTorch (`argmax`, `x_shape`), so a bug in
Part 1 does not cost you points here; any other keys your forward pass stores are kept.
The next cell is your own gradient check against centred finite differences of your
forward pass (its input has no ties, where max pooling is differentiable).
"""

MAX_BACKWARD_CHECK = """
# Your own gradient check (ungraded): overlapping 3x3 windows, stride 1, padding 1.
from coursechecks.pooling import check_forward_output

rng = np.random.default_rng(0)
x = rng.permutation(2 * 3 * 6 * 6).reshape(2, 3, 6, 6) * 0.1  # distinct values: no ties
out, cache = maxpool2d_forward(x, 3, 1, 1)
check_forward_output("max", x, (out, cache), 3, 1, 1)  # stops here, naming the problem, if Part 1's cache is wrong
dout = rng.uniform(0.5, 1.5, size=out.shape)  # positive, so no entry of dx is a near-zero difference
dx = maxpool2d_backward(dout, cache)
gradient_check(lambda v: maxpool2d_forward(v, 3, 1, 1)[0], x, dout, dx, name="dx")
print(f"sum(dx) = {dx.sum():.6f}, sum(dout) = {dout.sum():.6f} (they must agree)")
"""

AVG_FORWARD = """
Implement `avgpool2d_forward`: each window's sum divided by its divisor. Padding cells hold
zeros. With `count_include_pad=True` every window is divided by `kh * kw`; with `False`, by
the number of its cells that lie inside the input, so windows that overlap the padding are
divided by less. Store the keys the docstring lists in the cache: `divisor` (shape
`(Ho, Wo)`), `x_shape` and `geometry` (the dict `_geometry` returns, without `"x"`). The
tests of Part 4 build that cache with PyTorch.
"""

AVG_FORWARD_CHECK = """
# A worked example (ungraded): 3x3 windows, stride 2, padding 1 on the numbers 1..9.
x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
for count_include_pad, expected in ((True, "[[1.3333 1.7778] [2.6667 3.1111]]"), (False, "[[3. 4.] [6. 7.]]")):
    out, cache = avgpool2d_forward(x, 3, 2, 1, count_include_pad=count_include_pad)
    print(f"count_include_pad={count_include_pad}:\\n{np.round(out[0, 0], 4)}\\nexpected {expected}")
"""

AVG_BACKWARD = """
Implement `avgpool2d_backward(dout, cache)`: every cell of a window receives that window's
`dout / divisor`, using the cached divisor (with `count_include_pad=False` it differs from
window to window); overlapping windows add up, and the shares that fall on padding cells are
dropped.
"""

AVG_BACKWARD_CHECK = """
# Your own gradient check (ungraded): overlapping windows, padding not counted.
from coursechecks.pooling import check_forward_output

rng = np.random.default_rng(1)
x = rng.normal(size=(2, 3, 7, 6))
out, cache = avgpool2d_forward(x, 3, 2, 1, count_include_pad=False)
check_forward_output("avg", x, (out, cache), 3, 2, 1)  # stops here, naming the problem, if Part 3's cache is wrong
dout = rng.uniform(0.5, 1.5, size=out.shape)  # positive, so no entry of dx is a near-zero difference
dx = avgpool2d_backward(dout, cache)
gradient_check(lambda v: avgpool2d_forward(v, 3, 2, 1, count_include_pad=False)[0], x, dout, dx, name="dx")
print(f"sum(dx) = {dx.sum():.6f}, sum(dout) = {dout.sum():.6f}")
"""

MIN = """
Min pooling keeps each window's minimum; the cache has the same keys as max pooling's, with
`argmax` holding the flat index of each window's (first) **minimum**, and the backward pass
sends each window's gradient there. You have already written almost everything this needs:
express both functions with your max pooling (each fits in a line or two). Make sure the
padding cannot win the minimum either.

The tests of the backward pass build the cache with PyTorch, like those of Part 2.
"""

MIN_CHECK = """
# Your own gradient check (ungraded), on the same kind of input as in Part 2.
from coursechecks.pooling import check_forward_output

rng = np.random.default_rng(2)
x = rng.permutation(2 * 2 * 7 * 7).reshape(2, 2, 7, 7) * 0.1
out, cache = minpool2d_forward(x, 3, 2, 1)
check_forward_output("min", x, (out, cache), 3, 2, 1)  # stops here, naming the problem, if the cache is wrong
dout = rng.uniform(0.5, 1.5, size=out.shape)  # positive, so no entry of dx is a near-zero difference
dx = minpool2d_backward(dout, cache)
gradient_check(lambda v: minpool2d_forward(v, 3, 2, 1)[0], x, dout, dx, name="dx")
print("minimum of the first window:", out[0, 0, 0, 0], "= x[0, 0, :2, :2].min():", x[0, 0, :2, :2].min())
"""

EXPERIMENT_TEXT = """
Where does the gradient of a pooling layer go? The cell below pools a handwritten 5 from
scikit-learn's digits data set (8 x 8 pixels, intensities 0 to 16: a background of zeros
and strokes with several saturated pixels of 16) with your functions and sends back an
upstream gradient of ones, one per window. It shows `dL/dx` for max and average pooling with
non-overlapping 2 x 2 windows (stride 2) and with overlapping 3 x 3 windows (stride 1), and
for comparison the gradient of a common shortcut for max pooling's backward pass, the mask
`x == max of its window`. It prints, for each map, the sum of the gradient and how many of
the 64 pixels receive any. Run it, then answer below.
"""

EXPERIMENT_CODE = r'''
import matplotlib.pyplot as plt

# The first "5" of sklearn.datasets.load_digits() (image 5), copied here.
digit = np.array([
    [0, 0, 12, 10, 0, 0, 0, 0],
    [0, 0, 14, 16, 16, 14, 0, 0],
    [0, 0, 13, 16, 15, 10, 1, 0],
    [0, 0, 11, 16, 16, 7, 0, 0],
    [0, 0, 0, 4, 7, 16, 7, 0],
    [0, 0, 0, 0, 4, 16, 9, 0],
    [0, 0, 5, 4, 12, 16, 4, 0],
    [0, 0, 9, 16, 16, 10, 0, 0],
], dtype=np.float64)[None, None]

POOLS = {"max": (maxpool2d_forward, maxpool2d_backward), "avg": (avgpool2d_forward, avgpool2d_backward)}


def gradient_map(kind, kernel_size, stride):
    """dL/dx of one pooling layer for an upstream gradient of ones."""
    forward, backward = POOLS[kind]
    out, cache = forward(digit, kernel_size, stride)
    return backward(np.ones_like(out), cache)[0, 0]


maps = {
    "max 2x2, stride 2": gradient_map("max", 2, 2),
    "avg 2x2, stride 2": gradient_map("avg", 2, 2),
    "max 3x3, stride 1": gradient_map("max", 3, 1),
    "avg 3x3, stride 1 (x 9)": 9 * gradient_map("avg", 3, 1),
}
pooled, _ = maxpool2d_forward(digit, 2, 2)
window_max = pooled.repeat(2, axis=2).repeat(2, axis=3)
maps["mask x == max, 2x2"] = (digit == window_max)[0, 0].astype(np.float64)

for name, grad in maps.items():
    print(f"{name:24s} sum of dL/dx {grad.sum():6.2f}   pixels with gradient {int((grad != 0).sum()):2d} of 64"
          f"   largest {grad.max():.2f}")

fig, axes = plt.subplots(2, 3, figsize=(10, 6.6))
axes[0, 0].imshow(digit[0, 0], cmap="gray_r")
axes[0, 0].set_title("input digit (0 = background)")
for (i, j), v in np.ndenumerate(digit[0, 0]):
    axes[0, 0].text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="tab:red")
for ax, (name, grad) in zip(axes.ravel()[1:], maps.items()):
    ax.imshow(grad, cmap="Blues", vmin=0, vmax=max(1.0, grad.max()))
    ax.set_title(name)
    if "2x2" in name:  # outline the non-overlapping windows
        for edge in np.arange(0, 9, 2) - 0.5:
            ax.axhline(edge, color="tab:red", lw=0.8)
            ax.axvline(edge, color="tab:red", lw=0.8)
    for (i, j), v in np.ndenumerate(grad):
        if v:
            ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=7,
                    color="white" if v > 0.6 * max(1.0, grad.max()) else "black")
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("dL/dx for an upstream gradient of ones")
plt.tight_layout()
plt.show()
'''

QUESTION = """
**Question** (write 5 to 10 sentences in the cell below).
(a) Non-overlapping 2 x 2 windows: how many of the 64 pixels receive gradient from max
pooling and from average pooling, and what is the sum of `dL/dx` in each case? In a window of
background zeros, which pixel gets the gradient, and why that one?
(b) What does the mask `x == max` do instead, what is its gradient sum, and why is it wrong?
(c) Overlapping 3 x 3 windows, stride 1: what is the largest gradient a single pixel receives
from max pooling, what does that number mean, and how many pixels get none although every
pixel lies in some window? What does the (x 9) average-pooling map count? Why must the
backward pass add the contributions of overlapping windows rather than overwrite them?
(d) In one or two sentences: what does this mean for learning, i.e. which inputs does a
max-pooling layer's gradient reach, compared with average pooling?
"""

MODEL_ANSWER = """
(a) With 2 x 2 windows and stride 2 there are 16 windows. Max pooling lights exactly one
pixel per window: 16 of the 64 pixels receive gradient 1 and the other 48 receive 0; the sum
is 16, the sum of the upstream gradient. Average pooling gives every pixel 1/4: all 64
pixels receive gradient and the sum is again 16. In an all-zero background window the four
pixels tie, and the gradient goes to the top-left pixel, the first maximum in row-major
order: the forward pass keeps a running maximum that only moves on a strictly larger value
(PyTorch's rule), and the backward pass follows the stored argmax.
(b) The mask gives the full gradient to every tied maximum: each background window
contributes 4 instead of 1, and a window with two 16s contributes 2. Its sum is 34, not 16,
so the gradient no longer matches the function's derivative (a finite-difference check or
torch's autograd disagree): max pooling's output depends on one cell of the window, and the
gradient must be routed to that one cell only (torch.amax, by contrast, splits it evenly).
(c) With 3 x 3 windows and stride 1 there are 36 windows; one pixel (the first 16 of the
stroke, row 1, column 3) wins 6 of them and receives gradient 6, the number of windows it
is the maximum of. 49 of the 64 pixels receive nothing although every pixel lies in at
least one window; the total is still 36. The (x 9) average map counts the windows covering
each pixel (1 in the corners, up to 9 in the middle), total 36 x 9 = 324. A pixel that
contributes to several windows affects the loss through each of them, so by the chain rule
its gradient is the sum; overwriting keeps only the last window's share and loses the rest
(the sum would drop below 36).
(d) Max pooling's gradient is sparse: only the winning input of each window (a quarter of
the inputs for 2 x 2 windows, fewer with overlap) learns from it, typically the strongest
activation, so the unit that detected a feature is the one adjusted. Average pooling's
gradient is dense and smooth: every input in the window receives an equal share.

Rubric: (a) 6 points (16 vs 64 pixels, both sums 16, top-left pixel by the first-maximum
rule), (b) 4 points (every tie gets the gradient, sum 34, wrong derivative), (c) 6 points
(6 windows won, 49 pixels without gradient, covering count, sum over windows by the chain
rule), (d) 4 points (sparse vs dense gradient and what it means).
"""

CHAPTER = Chapter(
    name="pooling",
    title="Backpropagation through pooling",
    intro=INTRO,
    solutions_module="solutions.pooling",
    provided=(
        ("solutions._validate", "float_array"),
        ("solutions._validate", "same_shape"),
        ("solutions.pooling", "_pair"),
        ("solutions.pooling", "_output_size"),
        ("solutions.pooling", "_geometry"),
        ("solutions.pooling", "_axis_cells"),
        ("solutions.pooling", "_window_cells"),
        ("solutions.pooling", "_window_starts"),
    ),
    provided_imports="import numbers\n\nimport numpy as np",
    parts=(
        Part("max pooling, forward", MAX_FORWARD, section="forward-max-average-and-min-pooling", functions=("maxpool2d_forward",),
             tests=("pooling_maxpool2d_forward_torch", "pooling_maxpool2d_forward_padding",
                    "pooling_maxpool2d_forward_ties"),
             self_check=MAX_FORWARD_CHECK),
        Part("max pooling, backward", MAX_BACKWARD, section="backward-where-the-gradient-goes", functions=("maxpool2d_backward",),
             tests=("pooling_maxpool2d_backward_finite_difference", "pooling_maxpool2d_backward_overlap",
                    "pooling_maxpool2d_backward_ties"),
             self_check=MAX_BACKWARD_CHECK),
        Part("average pooling, forward", AVG_FORWARD, section="forward-max-average-and-min-pooling", functions=("avgpool2d_forward",),
             tests=("pooling_avgpool2d_forward_torch", "pooling_avgpool2d_forward_padding",
                    "pooling_avgpool2d_forward_count_include_pad"),
             self_check=AVG_FORWARD_CHECK),
        Part("average pooling, backward", AVG_BACKWARD, section="backward-where-the-gradient-goes", functions=("avgpool2d_backward",),
             tests=("pooling_avgpool2d_backward_finite_difference", "pooling_avgpool2d_backward_overlap",
                    "pooling_avgpool2d_backward_count_include_pad"),
             self_check=AVG_BACKWARD_CHECK),
        Part("min pooling", MIN, section="forward-max-average-and-min-pooling", functions=("minpool2d_forward", "minpool2d_backward"),
             tests=("pooling_minpool2d_forward_torch", "pooling_minpool2d_backward_autograd"),
             self_check=MIN_CHECK),
    ),
    experiments=(
        Experiment("pooling_experiment_gradient_maps", "gradient maps of max and average pooling on a digit",
                   EXPERIMENT_TEXT, EXPERIMENT_CODE, QUESTION, MODEL_ANSWER, points=20),
    ),
    # Grading seeds of the hidden checks (the grader may choose others).
    hidden_seeds={
        "pooling_maxpool2d_forward_torch_hidden": 6011,
        "pooling_maxpool2d_forward_padding_hidden": 6012,
        "pooling_maxpool2d_forward_ties_hidden": 6013,
        "pooling_maxpool2d_backward_finite_difference_hidden": 6021,
        "pooling_maxpool2d_backward_overlap_hidden": 6022,
        "pooling_maxpool2d_backward_ties_hidden": 6023,
        "pooling_avgpool2d_forward_torch_hidden": 6031,
        "pooling_avgpool2d_forward_padding_hidden": 6032,
        "pooling_avgpool2d_forward_count_include_pad_hidden": 6033,
        "pooling_avgpool2d_backward_finite_difference_hidden": 6041,
        "pooling_avgpool2d_backward_overlap_hidden": 6042,
        "pooling_avgpool2d_backward_count_include_pad_hidden": 6043,
        "pooling_minpool2d_forward_torch_hidden": 6051,
        "pooling_minpool2d_backward_autograd_hidden": 6052,
    },
)
