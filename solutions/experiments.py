"""Data and a small training loop shared by the book's experiments.

The book trains many small networks (deep sigmoid MLPs, BN vs LN vs GN, dropout before and
after BN). They all use scikit-learn's bundled handwritten digits (1,797 8x8 images, shipped
with the package, so nothing is downloaded) and the loop below, so that a difference between
two curves comes from the layer under study and not from two differently written loops.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn


@dataclass
class Digits:
    """Train/test split of the digits data as torch tensors (images flattened to 64 features)."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor

    def images(self, split: str = "train") -> torch.Tensor:
        """The same data shaped (N, 1, 8, 8) for convolutional models."""
        X = self.X_train if split == "train" else self.X_test
        return X.reshape(-1, 1, 8, 8)

    def subset(self, n_train: int) -> "Digits":
        """The first ``n_train`` training images (a random sample: the split is shuffled),
        with the full test set, for experiments that need a small training set.

        The standardisation is the one fitted on the whole training split; it uses no test
        data either way.
        """
        if not isinstance(n_train, int) or not 1 <= n_train <= len(self.X_train):
            raise ValueError(
                f"n_train must be an integer from 1 to {len(self.X_train)}, got {n_train!r}"
            )
        return Digits(self.X_train[:n_train], self.y_train[:n_train], self.X_test, self.y_test)

    def with_label_noise(self, fraction: float, seed: int = 0) -> "Digits":
        """A copy whose training labels are wrong for ``round(fraction * n_train)`` images.

        The images are chosen at random and each gets a uniformly random *other* class, so
        exactly that fraction of the training labels is wrong. The test labels are untouched:
        the noise models careless annotation of the training set only.
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        gen = torch.Generator().manual_seed(seed)
        n = len(self.y_train)
        flip = torch.randperm(n, generator=gen)[: int(round(fraction * n))]
        y = self.y_train.clone()
        # Adding 1..9 modulo 10 gives each flipped image a different class, uniformly.
        y[flip] = (y[flip] + torch.randint(1, 10, (len(flip),), generator=gen)) % 10
        return Digits(self.X_train, y, self.X_test, self.y_test)


def load_digits_split(test_fraction: float = 0.3, seed: int = 0) -> Digits:
    """Stratified-by-shuffle split of scikit-learn's digits, standardised with train statistics.

    Pixels are scaled per feature to zero mean and unit variance using the training split only
    (a constant pixel keeps scale 1), so the test set never leaks into preprocessing.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    X = data.data.astype(np.float64)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = int(round(test_fraction * len(X)))
    test, train = order[:n_test], order[n_test:]
    mean = X[train].mean(0)
    std = X[train].std(0)
    std[std == 0] = 1.0
    X = (X - mean) / std
    as_x = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.long)  # noqa: E731
    return Digits(as_x(X[train]), as_y(y[train]), as_x(X[test]), as_y(y[test]))


def minibatches(
    X: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    order: str = "shuffle",
    generator: torch.Generator | None = None,
    drop_last: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (X, y) mini-batches.

    ``order`` is ``"shuffle"`` (a fresh permutation each call), ``"fixed"`` (data order) or
    ``"class_sorted"`` (all zeros, then all ones, ...: the pathological order under which a
    batch's statistics describe one class rather than the data). ``drop_last`` avoids a final
    batch of one sample, on which training-mode BN cannot compute a variance.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    n = len(X)
    if order == "shuffle":
        idx = torch.randperm(n, generator=generator)
    elif order == "fixed":
        idx = torch.arange(n)
    elif order == "class_sorted":
        idx = torch.argsort(y, stable=True)
    else:
        raise ValueError(f"order must be 'shuffle', 'fixed' or 'class_sorted', got {order!r}")
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        batch = idx[start : start + batch_size]
        yield X[batch], y[batch]


@dataclass
class History:
    """Per-epoch measurements of one run.

    ``train_loss`` is the mean mini-batch loss the optimiser saw (dropout on, if any);
    the others are measured after each epoch in eval mode. ``train_accuracy`` and
    ``train_eval_loss`` are filled only when ``train(..., eval_train=True)``.
    """

    train_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    train_eval_loss: list[float] = field(default_factory=list)


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, train_mode: bool = False) -> float:
    """Classification accuracy, in eval mode by default; the model's mode is restored."""
    was_training = model.training
    model.train(train_mode)
    try:
        with torch.no_grad():
            return float((model(X).argmax(1) == y).float().mean())
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Eval-mode (cross-entropy loss, accuracy) from one forward pass; the mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(X)
            loss = nn.functional.cross_entropy(logits, y).item()
            return loss, float((logits.argmax(1) == y).float().mean())
    finally:
        model.train(was_training)


def train(
    model: nn.Module,
    data: Digits,
    *,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 0.1,
    optimizer: str = "sgd",
    weight_decay: float = 0.0,
    order: str = "shuffle",
    seed: int = 0,
    images: bool = False,
    on_step: Callable[[nn.Module, int], None] | None = None,
    eval_train: bool = False,
) -> History:
    """Train ``model`` with cross-entropy and record loss and test accuracy per epoch.

    ``optimizer`` is ``"sgd"`` (momentum 0.9) or ``"adam"``; ``weight_decay`` is the
    optimiser's L2 coefficient (it adds ``weight_decay * w`` to every parameter's gradient,
    biases included). ``images=True`` feeds (N, 1, 8, 8) tensors. ``on_step(model, step)`` is
    called after every optimiser step (after ``backward``, so gradients are still
    available), for measurements. ``eval_train=True`` also records the eval-mode loss and
    accuracy on the training set after every epoch.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    X_train = data.images("train") if images else data.X_train
    X_test = data.images("test") if images else data.X_test
    loss_fn = nn.CrossEntropyLoss()
    history = History()
    step = 0
    for _ in range(epochs):
        model.train()
        total, count = 0.0, 0
        for xb, yb in minibatches(X_train, data.y_train, batch_size, order=order, generator=gen):
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            if on_step is not None:
                on_step(model, step)
            step += 1
            total += loss.item() * len(xb)
            count += len(xb)
        history.train_loss.append(total / max(count, 1))
        test_loss, test_acc = evaluate(model, X_test, data.y_test)
        history.test_loss.append(test_loss)
        history.test_accuracy.append(test_acc)
        if eval_train:
            train_loss, train_acc = evaluate(model, X_train, data.y_train)
            history.train_eval_loss.append(train_loss)
            history.train_accuracy.append(train_acc)
    return history
