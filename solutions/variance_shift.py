"""Variance shift: why dropout before batch norm hurts at test time (Li et al., CVPR 2019).

A neuron ``x`` with mean ``c`` and variance ``v`` goes through a noise layer. With inverted
dropout (drop probability ``p``, retain ratio ``q = 1 - p``) the training-time variance is
``(c^2 + v) / q - c^2`` while the test-time variance is ``v``. A following BN layer learns
its running variance under the training noise, so at test time it divides by a variance
that is too large. The shift ratio ``Var_test / Var_train`` is ``q`` when ``c = 0``.

Note the convention: the paper writes ``p`` for the retain ratio; here, as in PyTorch, ``p``
is the drop probability. See book/variance_shift.md.
"""
from __future__ import annotations

import numbers

import numpy as np

from solutions._validate import drop_probability, float_array, generator, positive
from solutions.dropout import _training_flag


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def _drop_probabilities(p):
    """A scalar ``p`` as a float, or an array of them, each in [0, 1)."""
    if np.ndim(p) == 0:
        return drop_probability(p.item() if isinstance(p, np.ndarray) else p)
    arr = float_array(p, "p").astype(np.float64, copy=False)
    if not np.all((arr >= 0) & (arr < 1)):
        raise ValueError("p is the probability of dropping a unit and must satisfy 0 <= p < 1 "
                         "for every entry")
    return arr


def _betas(beta):
    """A scalar Uout ``beta`` as a float, or an array of them, each finite and >= 0."""
    if np.ndim(beta) == 0:
        b = beta.item() if isinstance(beta, np.ndarray) else beta
        if isinstance(b, bool) or not isinstance(b, numbers.Real) or not 0 <= b < np.inf:
            raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
        return float(b)
    arr = float_array(beta, "beta").astype(np.float64, copy=False)
    if not np.all((arr >= 0) & (arr < np.inf)):
        raise ValueError("beta must be finite and >= 0 for every entry")
    return arr


def dropout_variance_shift(p, mean=0.0, var=1.0):
    """Analytic ``Var_test / Var_train`` of inverted dropout on a neuron
    with ``mean`` and ``var``.

    Training: ``X = a x / q`` with ``a ~ Bernoulli(q)`` independent of
    ``x``, ``q = 1 - p``; test: ``X = x``. The neuron ``x`` has mean ``c``
    and variance ``v`` over the data.

    Parameters
    ----------
    p : drop probability in [0, 1), a scalar or an array (evaluated
        elementwise).
    mean : finite real, the neuron's mean ``c``.
    var : positive real, the neuron's variance ``v``.

    Returns
    -------
    float, or an array of the shape of ``p``: the exact ratio
    ``Var_test / Var_train`` (1 when ``p = 0``).
    """
    p = _drop_probabilities(p)
    c2 = _real(mean, "mean") ** 2
    v = positive(var, "var")
    # (c^2 + v) / q - c^2 written as v + (c^2 + v) p / q: no cancellation,
    # exactly 1 at p = 0.
    return v / (v + (c2 + v) * (p / (1.0 - p)))


def gaussian_dropout_variance_shift(p, mean=0.0, var=1.0):
    """Analytic ``Var_test / Var_train`` of Gaussian dropout ``X = x + x r``.

    ``r ~ N(0, p / (1 - p))`` independent of ``x``, so
    ``E[X^2] = (c^2 + v)(1 + p / (1 - p))`` and
    ``Var_train = (c^2 + v) / (1 - p) - c^2``: the same as Bernoulli
    dropout, hence the same shift (Gaussian dropout is not variance-stable
    either). Parameters and return value as
    :func:`dropout_variance_shift`.
    """
    p = _drop_probabilities(p)
    c2 = _real(mean, "mean") ** 2
    v = positive(var, "var")
    sigma2 = p / (1.0 - p)
    # Var(x (1 + r)) = v + sigma2 (c^2 + v) for independent x and r.
    return v / (v + sigma2 * (c2 + v))


def uout_variance_shift(beta, mean=0.0, var=1.0):
    """Analytic ``Var_test / Var_train`` of Uout ``X = x + x r``,
    ``r ~ U(-beta, beta)``.

    ``r`` is drawn independently of ``x`` in training; at test time
    ``X = x``. For a zero-mean neuron the ratio is 0.99668 at beta = 0.1
    and 0.92308 at beta = 0.5.

    Parameters
    ----------
    beta : half-width of the uniform noise, finite and >= 0, a scalar or an
        array.
    mean : finite real; var : positive real.

    Returns
    -------
    float, or an array of the shape of ``beta``.
    """
    beta = _betas(beta)
    c2 = _real(mean, "mean") ** 2
    v = positive(var, "var")
    return 3.0 * v / (3.0 * v + beta ** 2 * (c2 + v))


def uout_forward(x, beta, training=True, rng=None):
    """Uout, the uniform multiplicative noise of Li et al.:
    ``x + x r`` with ``r ~ U(-beta, beta)``.

    Parameters
    ----------
    x : float array of any shape.
    beta : finite scalar >= 0, half-width of the uniform noise (one ``r``
        per element).
    training : bool; at test time the layer is the identity.
    rng : None, an int seed or a ``numpy.random.Generator``.

    Returns
    -------
    out : float64 array of the shape of ``x``.
    """
    x = float_array(x, "x").astype(np.float64, copy=False)
    if np.ndim(beta) != 0:
        raise ValueError("beta must be a scalar, "
                         f"got shape {np.shape(beta)}")
    beta = _betas(beta)
    training = _training_flag(training)
    rng = generator(rng)
    if not training:
        return x.copy()
    return x + x * rng.uniform(-beta, beta, size=x.shape)


def _output(result, name: str, shape) -> np.ndarray:
    out = result[0] if isinstance(result, tuple) else result
    out = np.asarray(out)
    if out.shape != shape:
        raise ValueError(f"noise_fn must return an array of shape {shape} in "
                         f"{name} mode, got {out.shape}")
    return out


def simulate_variance_shift(noise_fn, mean, var, n, rng=None):
    """Monte Carlo estimate of ``Var_test / Var_train`` for a noise layer.

    Draws ``x ~ N(mean, var)`` of size ``n`` once and passes the same ``x``
    through the layer in both modes, which removes most of the sampling
    error of ``x`` from the ratio.

    Parameters
    ----------
    noise_fn : callable, called with keywords as
        ``noise_fn(x, training=flag, rng=generator)`` and returning an array
        of the shape of ``x``, or a tuple whose first element is that array.
        Bind the layer's own parameters beforehand, e.g.
        ``functools.partial(dropout_forward, p=0.5)`` or
        ``partial(uout_forward, beta=0.1)``.
    mean : finite real; var : positive real; n : int >= 2.
    rng : None, an int seed or a ``numpy.random.Generator``; it draws ``x``
        and is passed on to ``noise_fn``.

    Returns
    -------
    float : ``var(test output) / var(train output)``.
    """
    if not callable(noise_fn):
        raise TypeError("noise_fn must be callable, "
                        f"got {type(noise_fn).__name__}")
    mean = _real(mean, "mean")
    var = positive(var, "var")
    if (isinstance(n, bool) or not isinstance(n, numbers.Integral)
            or n < 2):
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    rng = generator(rng)
    x = mean + np.sqrt(var) * rng.standard_normal(int(n))
    test = _output(noise_fn(x, training=False, rng=rng), "evaluation",
                   x.shape)
    train = _output(noise_fn(x, training=True, rng=rng), "training",
                    x.shape)
    return float(np.var(test) / np.var(train))


def bn_variance_shift(model, batches):
    """The per-layer variance-shift metric of Li et al. for every BN layer
    of a torch model.

    The model is put in eval mode (dropout off, BN using its running
    statistics) and the data are run through it once. For each BN layer,
    forward pre-hooks accumulate the exact per-channel mean and unbiased
    variance of the layer's input over all the data (``real_var``; a
    streaming Chan et al. merge in float64, so memory does not grow with the
    dataset). Per channel the shift is
    ``max(real_var / running_var, running_var / real_var)`` (>= 1, and 1
    means no shift); the value reported for the layer is the **mean over its
    channels**. Channels whose two variances are both zero count as 1.

    Parameters
    ----------
    model : ``torch.nn.Module``; every ``_BatchNorm`` submodule
        (``BatchNorm1d/2d/3d``, in ``model.modules()`` order) must track
        running statistics.
    batches : iterable of input tensors, or of ``(input, target, ...)``
        tuples/lists whose first element is the input (as in
        ``torch.optim.swa_utils.update_bn``); inputs must already be on the
        model's device.

    Returns
    -------
    list of float, one per BN layer in module order (empty if there is
    none).

    Every module's ``training`` flag is restored and every hook removed,
    even on error.
    """
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    if not isinstance(model, torch.nn.Module):
        raise TypeError("model must be a torch.nn.Module, "
                        f"got {type(model).__name__}")
    bns = [(name, mod) for name, mod in model.named_modules()
           if isinstance(mod, _BatchNorm)]
    for name, bn in bns:
        if bn.running_var is None:
            raise ValueError(
                f"BN layer {name!r} has no running statistics "
                "(track_running_stats=False), so there is no shift to "
                "measure")
    if not bns:
        return []

    # Per BN layer: count, per-channel mean, per-channel M2.
    stats = [[0, None, None] for _ in bns]

    def make_hook(acc):
        def hook(module, args):
            x = args[0].detach().to(torch.float64)
            axes = (0,) + tuple(range(2, x.ndim))
            n_b = x.numel() // x.shape[1]
            if n_b == 0:
                return
            mean_b = x.mean(dim=axes)
            shape = (1, -1) + (1,) * (x.ndim - 2)
            m2_b = (x - mean_b.reshape(shape)).square().sum(dim=axes)
            count, mean, m2 = acc
            if count == 0:
                acc[:] = [n_b, mean_b, m2_b]
                return
            # Chan et al.: merge the batch's (n, mean, M2) into the total.
            total = count + n_b
            delta = mean_b - mean
            acc[:] = [total,
                      mean + delta * (n_b / total),
                      m2 + m2_b + delta.square() * (count * n_b / total)]
        return hook

    training = {mod: mod.training for mod in model.modules()}
    handles = []
    try:
        for (_, bn), acc in zip(bns, stats):
            handles.append(bn.register_forward_pre_hook(make_hook(acc)))
        model.eval()
        seen = False
        with torch.no_grad():
            for i, batch in enumerate(batches):
                if isinstance(batch, (tuple, list)):
                    if not batch:
                        raise TypeError(f"batch {i} is an empty "
                                        f"{type(batch).__name__}")
                    batch = batch[0]
                if not isinstance(batch, torch.Tensor):
                    raise TypeError(
                        f"batch {i} must be a tensor or a tuple/list whose "
                        "first element is a tensor, "
                        f"got {type(batch).__name__}")
                model(batch)
                seen = True
    finally:
        for handle in handles:
            handle.remove()
        # Per module: model.train(flag) would overwrite submodules that
        # were in another mode.
        for mod, flag in training.items():
            mod.training = flag
    if not seen:
        raise ValueError("batches is empty: nothing to measure the variance "
                         "on")

    shifts = []
    for (name, bn), (count, _, m2) in zip(bns, stats):
        if count < 2:
            raise ValueError(f"BN layer {name!r} saw {count} value(s) per "
                             "channel; need at least 2 for a variance")
        real = (m2 / (count - 1)).cpu().numpy()
        running = bn.running_var.detach().to(torch.float64).cpu().numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.maximum(real / running, running / real)
        ratio[(real == 0) & (running == 0)] = 1.0
        shifts.append(float(ratio.mean()))
    return shifts
