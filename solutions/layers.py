"""Layers with one interface, for assembling whole networks (book/network.md).

Every layer is an object with

* ``params``: a dict of float64 arrays named as in the matching ``torch.nn`` module
  (``weight``, ``bias``; for the normalization layers ``weight`` is gamma and ``bias`` beta),
* ``state``: a dict of buffers that are not trained (batch norm's running statistics),
* ``forward(x, training) -> (out, cache)`` and ``backward(dout, cache) -> (dx, grads)``,
  ``grads`` a dict with the keys of ``params``.

The new operations (affine, ReLU, a 2-D convolution by im2col, flatten, softmax
cross-entropy) are written here. Batch norm, layer norm, dropout and pooling are thin
wrappers around the chapters' modules: their math is imported, never retyped.

Conventions are PyTorch's: ``Affine`` is ``nn.Linear`` (``weight`` of shape ``(out, in)``),
``Conv2d`` is ``nn.Conv2d`` (cross-correlation, ``weight`` of shape ``(F, C, kh, kw)``), and the
default initialisation draws weights and biases from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``,
the distribution torch's default initialisation gives both. Everything is float64.
"""
from __future__ import annotations

import numbers

import numpy as np

from solutions._validate import drop_probability, float_array, generator, positive, same_shape
from solutions.batchnorm import batchnorm_backward, batchnorm_forward
from solutions.bn_inference import batchnorm_eval, batchnorm_train_step
from solutions.dropout import dropout_backward, dropout_forward
from solutions.layernorm import _count, layernorm_backward, layernorm_forward
from solutions.pooling import (
    _pair,
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)

__all__ = [
    "affine_forward",
    "affine_backward",
    "relu_forward",
    "relu_backward",
    "conv2d_forward",
    "conv2d_backward",
    "softmax_cross_entropy",
    "Layer",
    "Affine",
    "ReLU",
    "Conv2d",
    "Flatten",
    "BatchNorm",
    "LayerNorm",
    "Dropout",
    "MaxPool2d",
    "AvgPool2d",
]


# --- the new operations -----------------------------------------------------------------------


def affine_forward(x, weight, bias=None):
    """Fully connected layer, exactly ``F.linear``: ``out = x @ weight.T + bias``.

    Args:
        x: float array of shape ``(N, D)``.
        weight: ``(M, D)``; bias: ``(M,)``, or ``None`` for no bias.

    Returns:
        ``(out, cache)`` with ``out`` of shape ``(N, M)``; ``cache = (x, weight)``.
    """
    x = float_array(x, "x", ndim=2).astype(np.float64, copy=False)
    weight = float_array(weight, "weight", ndim=2).astype(np.float64, copy=False)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"weight has shape {weight.shape}: it takes {weight.shape[1]} input features, "
            f"but x has shape {x.shape} ({x.shape[1]} features)"
        )
    out = x @ weight.T
    if bias is not None:
        out += same_shape(bias, "bias", (weight.shape[0],))
    return out, (x, weight)


def affine_backward(dout, cache):
    """Backward of :func:`affine_forward`: ``(dx, dweight, dbias)``."""
    x, weight = cache
    dout = same_shape(dout, "dout", (x.shape[0], weight.shape[0])).astype(np.float64, copy=False)
    return dout @ weight, dout.T @ x, dout.sum(axis=0)


def relu_forward(x):
    """``max(x, 0)`` elementwise; the cache is the boolean mask of positive inputs."""
    x = float_array(x, "x").astype(np.float64, copy=False)
    positive_part = x > 0
    return x * positive_part, positive_part


def relu_backward(dout, cache):
    """Backward of :func:`relu_forward`: the gradient passes where the input was positive
    (at exactly 0 it is 0, torch's choice)."""
    dout = same_shape(dout, "dout", cache.shape).astype(np.float64, copy=False)
    return dout * cache


def _im2col(xp: np.ndarray, kh: int, kw: int, stride: tuple[int, int]) -> np.ndarray:
    """Rows of every receptive field of the padded input ``xp``: ``(N*Ho*Wo, C*kh*kw)``.

    A strided view gives all windows at once; the one copy is the reshape into rows.
    """
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    windows = windows[:, :, :: stride[0], :: stride[1]]  # (N, C, Ho, Wo, kh, kw)
    n, c, ho, wo = windows.shape[:4]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)


def conv2d_forward(x, weight, bias=None, stride=1, padding=0):
    """2-D convolution (cross-correlation), exactly
    ``F.conv2d(x, weight, bias, stride, padding)``.

    Args:
        x: float array ``(N, C, H, W)``.
        weight: ``(F, C, kh, kw)``; bias: ``(F,)``, or ``None`` for no bias.
        stride: int >= 1 or a pair; padding: int >= 0 or a pair (zero
            padding).

    Returns:
        ``(out, cache)``: ``out`` of shape ``(N, F, Ho, Wo)`` with
        ``Ho = (H + 2 * padding - kh) // stride + 1`` (columns alike).
        Computed as one matrix product of the im2col rows with the flattened
        filters.
    """
    x = float_array(x, "x", ndim=4).astype(np.float64, copy=False)
    weight = float_array(weight, "weight", ndim=4)
    weight = weight.astype(np.float64, copy=False)
    n_filters, channels, kh, kw = weight.shape
    if channels != x.shape[1]:
        raise ValueError(
            f"weight has shape {weight.shape} ({channels} input channels), "
            f"but x has shape {x.shape} ({x.shape[1]} channels)"
        )
    if bias is not None:
        bias = same_shape(bias, "bias", (n_filters,))
        bias = bias.astype(np.float64, copy=False)
    s = _pair(stride, "stride", 1)
    p = _pair(padding, "padding", 0)
    N, _, H, W = x.shape
    ho, wo = (H + 2 * p[0] - kh) // s[0] + 1, (W + 2 * p[1] - kw) // s[1] + 1
    if ho < 1 or wo < 1 or kh == 0 or kw == 0:
        raise ValueError(
            f"kernel {kh}x{kw} does not fit the padded input "
            f"{H + 2 * p[0]}x{W + 2 * p[1]} (x of shape {x.shape}, "
            f"padding {p})"
        )
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    cols = _im2col(xp, kh, kw, s)
    out = cols @ weight.reshape(n_filters, -1).T
    if bias is not None:
        out += bias
    out = out.reshape(N, ho, wo, n_filters).transpose(0, 3, 1, 2)
    cache = {
        "cols": cols,
        "weight": weight,
        "x_shape": x.shape,
        "stride": s,
        "padding": p,
    }
    return out, cache


def conv2d_backward(dout, cache):
    """Backward of :func:`conv2d_forward`: ``(dx, dweight, dbias)``.

    ``dweight`` and ``dbias`` are matrix products with the im2col rows; ``dx`` scatters each
    row's gradient back onto the input (col2im), one kernel cell at a time for all windows
    at once, so overlapping windows add up.
    """
    if not isinstance(cache, dict) or not {"cols", "weight", "x_shape"} <= cache.keys():
        raise TypeError("cache must be the dict returned by conv2d_forward")
    weight, (N, C, H, W) = cache["weight"], cache["x_shape"]
    s, p = cache["stride"], cache["padding"]
    n_filters, _, kh, kw = weight.shape
    ho, wo = (H + 2 * p[0] - kh) // s[0] + 1, (W + 2 * p[1] - kw) // s[1] + 1
    dout = same_shape(dout, "dout", (N, n_filters, ho, wo)).astype(np.float64, copy=False)
    rows = dout.transpose(0, 2, 3, 1).reshape(-1, n_filters)
    dweight = (rows.T @ cache["cols"]).reshape(weight.shape)
    dbias = rows.sum(axis=0)
    dcols = (rows @ weight.reshape(n_filters, -1)).reshape(N, ho, wo, C, kh, kw)
    dxp = np.zeros((N, C, H + 2 * p[0], W + 2 * p[1]))
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i : i + s[0] * ho : s[0], j : j + s[1] * wo : s[1]] += dcols[
                :, :, :, :, i, j
            ].transpose(0, 3, 1, 2)
    return dxp[:, :, p[0] : p[0] + H, p[1] : p[1] + W], dweight, dbias


def softmax_cross_entropy(logits, y):
    """Mean softmax cross-entropy and its gradient, exactly ``F.cross_entropy(logits, y)``.

    Args:
        logits: float array ``(N, K)``.
        y: integer class labels ``(N,)`` in ``[0, K)``.

    Returns:
        ``(loss, dlogits)``: the mean over the batch of ``-log softmax(logits)[y]``, and its
        gradient ``(softmax(logits) - onehot(y)) / N``. The log-sum-exp is shifted by each
        row's maximum, so large logits do not overflow.
    """
    logits = float_array(logits, "logits", ndim=2).astype(np.float64, copy=False)
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    n, k = logits.shape
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match logits {logits.shape}, got {y.shape}")
    if n == 0:
        raise ValueError("logits must hold at least one example")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"labels must lie in [0, {k}), got values from {y.min()} to {y.max()}")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(n)
    loss = -log_probs[rows, y].mean()
    dlogits = np.exp(log_probs)
    dlogits[rows, y] -= 1.0
    return float(loss), dlogits / n


# --- the uniform interface --------------------------------------------------------------------


def _uniform(rng: np.random.Generator, fan_in: int, shape: tuple[int, ...]) -> np.ndarray:
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape)


class Layer:
    """Base class: no parameters, no state; subclasses define forward and backward."""

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.state: dict[str, np.ndarray | int] = {}

    def forward(self, x, training: bool):  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, dout, cache):  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Affine(Layer):
    """``nn.Linear(in_features, out_features, bias)``. A layer followed by batch norm needs
    no bias: BN subtracts the batch mean, so the bias's gradient is exactly zero."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None):
        super().__init__()
        self.in_features = _count(in_features, "in_features")
        self.out_features = _count(out_features, "out_features")
        rng = generator(rng)
        self.params["weight"] = _uniform(rng, self.in_features, (self.out_features, self.in_features))
        if bias:
            self.params["bias"] = _uniform(rng, self.in_features, (self.out_features,))

    def forward(self, x, training):
        return affine_forward(x, self.params["weight"], self.params.get("bias"))

    def backward(self, dout, cache):
        dx, dweight, dbias = affine_backward(dout, cache)
        return dx, ({"weight": dweight, "bias": dbias} if "bias" in self.params else {"weight": dweight})

    def __repr__(self) -> str:
        return f"Affine({self.in_features}, {self.out_features}, bias={'bias' in self.params})"


class ReLU(Layer):
    """``nn.ReLU()``."""

    def forward(self, x, training):
        return relu_forward(x)

    def backward(self, dout, cache):
        return relu_backward(dout, cache), {}


class Conv2d(Layer):
    """``nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, rng=None):
        super().__init__()
        self.in_channels = _count(in_channels, "in_channels")
        self.out_channels = _count(out_channels, "out_channels")
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        rng = generator(rng)
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        shape = (self.out_channels, self.in_channels) + self.kernel_size
        self.params["weight"] = _uniform(rng, fan_in, shape)
        if bias:
            self.params["bias"] = _uniform(rng, fan_in, (self.out_channels,))

    def forward(self, x, training):
        return conv2d_forward(x, self.params["weight"], self.params.get("bias"), self.stride, self.padding)

    def backward(self, dout, cache):
        dx, dweight, dbias = conv2d_backward(dout, cache)
        return dx, ({"weight": dweight, "bias": dbias} if "bias" in self.params else {"weight": dweight})

    def __repr__(self) -> str:
        return (
            f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={'bias' in self.params})"
        )


class Flatten(Layer):
    """``nn.Flatten()``: ``(N, ...) -> (N, prod(...))``."""

    def forward(self, x, training):
        x = float_array(x, "x", min_ndim=2).astype(np.float64, copy=False)
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, dout, cache):
        dout = float_array(dout, "dout", ndim=2)
        if dout.size != int(np.prod(cache)):
            raise ValueError(f"dout of shape {dout.shape} does not match the input shape {cache}")
        return dout.reshape(cache), {}


class BatchNorm(Layer):
    """``nn.BatchNorm1d(C)`` on ``(N, C)`` and ``nn.BatchNorm2d(C)`` on
    ``(N, C, H, W)``.

    Training mode normalises with the batch statistics (the batch norm
    chapter) and updates the running statistics (the BN-at-inference
    chapter, torch's momentum and unbiased-variance rule); eval mode is the
    fixed affine map of the running statistics.
    """

    def __init__(self, num_features: int, momentum=0.1, eps: float = 1e-5):
        super().__init__()
        self.num_features = _count(num_features, "num_features")
        self.momentum = momentum
        self.eps = positive(eps, "eps")
        self.params["weight"] = np.ones(self.num_features)
        self.params["bias"] = np.zeros(self.num_features)
        self.state.update(
            running_mean=np.zeros(self.num_features),
            running_var=np.ones(self.num_features),
            num_batches_tracked=0,
        )

    def forward(self, x, training):
        gamma, beta = self.params["weight"], self.params["bias"]
        st = self.state
        if not training:
            out = batchnorm_eval(
                x, gamma, beta, st["running_mean"], st["running_var"],
                self.eps,
            )
            return out, ("eval", np.asarray(x, dtype=np.float64))
        # The train step returns the new running statistics but no cache;
        # the forward of the batchnorm chapter gives the cache. Both are
        # the chapters' code; BN is cheap.
        out, mean, var, tracked = batchnorm_train_step(
            x, gamma, beta, st["running_mean"], st["running_var"],
            st["num_batches_tracked"], self.momentum, self.eps,
        )
        _, cache = batchnorm_forward(x, gamma, beta, self.eps)
        st.update(
            running_mean=mean, running_var=var, num_batches_tracked=tracked
        )
        return out, ("train", cache)

    def backward(self, dout, cache):
        mode, inner = cache
        if mode == "train":
            dx, dgamma, dbeta = batchnorm_backward(dout, inner)
            return dx, {"weight": dgamma, "bias": dbeta}
        # Eval mode is y = gamma * xhat + beta with xhat a fixed affine
        # function of x.
        x = inner
        dout = same_shape(dout, "dout", x.shape)
        dout = dout.astype(np.float64, copy=False)
        shape = (1, self.num_features) + (1,) * (x.ndim - 2)
        running_var = self.state["running_var"].reshape(shape)
        inv_std = 1.0 / np.sqrt(running_var + self.eps)
        xhat = (x - self.state["running_mean"].reshape(shape)) * inv_std
        axes = (0,) + tuple(range(2, x.ndim))
        dx = dout * self.params["weight"].reshape(shape) * inv_std
        grads = {
            "weight": (dout * xhat).sum(axis=axes),
            "bias": dout.sum(axis=axes),
        }
        return dx, grads

    def __repr__(self) -> str:
        return (
            f"BatchNorm({self.num_features}, momentum={self.momentum}, "
            f"eps={self.eps})"
        )


class LayerNorm(Layer):
    """``nn.LayerNorm(normalized_shape)``: the same computation in train and eval mode
    (the layer norm chapter)."""

    def __init__(self, normalized_shape, eps: float = 1e-5):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else tuple(normalized_shape)
        if not shape:
            raise ValueError("normalized_shape must not be empty")
        self.normalized_shape = tuple(_count(s, "normalized_shape") for s in shape)
        self.eps = positive(eps, "eps")
        self.params["weight"] = np.ones(self.normalized_shape)
        self.params["bias"] = np.zeros(self.normalized_shape)

    def forward(self, x, training):
        x = float_array(x, "x", min_ndim=len(self.normalized_shape))
        if x.shape[x.ndim - len(self.normalized_shape):] != self.normalized_shape:
            raise ValueError(
                f"x of shape {x.shape} does not end with normalized_shape {self.normalized_shape}"
            )
        return layernorm_forward(
            x, self.params["weight"], self.params["bias"], len(self.normalized_shape), self.eps
        )

    def backward(self, dout, cache):
        dx, dgamma, dbeta = layernorm_backward(dout, cache)
        return dx, {"weight": dgamma, "bias": dbeta}

    def __repr__(self) -> str:
        return f"LayerNorm({self.normalized_shape}, eps={self.eps})"


class Dropout(Layer):
    """``nn.Dropout(p)``, inverted dropout (the dropout chapter); ``p`` is
    the drop probability.

    Masks are drawn from the layer's own generator. Assign a boolean
    keep-mask to ``fixed_mask`` to use it instead at every training-mode
    forward (a gradient check needs the same mask on every evaluation; a
    comparison with torch needs torch's mask).
    """

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        self.p = drop_probability(p)
        self.rng = generator(rng)
        self.fixed_mask: np.ndarray | None = None

    def forward(self, x, training):
        if not training or self.fixed_mask is None:
            return dropout_forward(x, self.p, training, self.rng)
        x = float_array(x, "x").astype(np.float64, copy=False)
        mask = np.asarray(self.fixed_mask)
        if mask.dtype != np.bool_ or mask.shape != x.shape:
            raise ValueError(
                "fixed_mask must be a boolean array of the input's shape "
                f"{x.shape}, got dtype {mask.dtype} and shape {mask.shape}"
            )
        # Applying a given keep-mask is the linear map
        # x -> x * mask / (1 - p), which is exactly what the chapter's
        # backward computes: reuse it rather than retype it.
        return dropout_backward(x, mask, self.p), mask

    def backward(self, dout, cache):
        return dropout_backward(dout, cache, self.p), {}

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


class MaxPool2d(Layer):
    """``nn.MaxPool2d(kernel_size, stride, padding)`` (the pooling
    chapter)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        maxpool2d_forward(np.zeros((1, 1) + (2 * max(_pair(kernel_size, "kernel_size", 1)),) * 2),
                          kernel_size, stride, padding)  # validate the arguments now

    def forward(self, x, training):
        return maxpool2d_forward(x, self.kernel_size, self.stride, self.padding)

    def backward(self, dout, cache):
        return maxpool2d_backward(dout, cache), {}

    def __repr__(self) -> str:
        return f"MaxPool2d({self.kernel_size}, stride={self.stride}, padding={self.padding})"


class AvgPool2d(Layer):
    """``nn.AvgPool2d(kernel_size, stride, padding)`` (the pooling
    chapter, ``count_include_pad=True``)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        avgpool2d_forward(np.zeros((1, 1) + (2 * max(_pair(kernel_size, "kernel_size", 1)),) * 2),
                          kernel_size, stride, padding)

    def forward(self, x, training):
        return avgpool2d_forward(x, self.kernel_size, self.stride, self.padding)

    def backward(self, dout, cache):
        return avgpool2d_backward(dout, cache), {}

    def __repr__(self) -> str:
        return f"AvgPool2d({self.kernel_size}, stride={self.stride}, padding={self.padding})"
