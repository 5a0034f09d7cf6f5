"""The book's shared data and training loop."""
import pytest
import torch
from torch import nn

from solutions.experiments import accuracy, load_digits_split, minibatches, train


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(seed=0)


def test_split_is_disjoint_standardised_and_complete(digits):
    n_train, n_test = len(digits.X_train), len(digits.X_test)
    assert n_train + n_test == 1797 and n_test == 539
    assert digits.X_train.shape[1] == 64
    mean = digits.X_train.mean(0)
    assert torch.allclose(mean, torch.zeros(64), atol=1e-5)
    assert set(digits.y_test.tolist()) == set(range(10))
    assert digits.images("test").shape == (n_test, 1, 8, 8)


def test_split_depends_on_seed(digits):
    other = load_digits_split(seed=1)
    assert not torch.equal(digits.y_test, other.y_test)


def test_minibatch_orders(digits):
    X, y = digits.X_train[:100], digits.y_train[:100]
    batches = list(minibatches(X, y, 32, order="fixed"))
    assert [len(b[1]) for b in batches] == [32, 32, 32]  # last partial batch dropped
    assert torch.equal(batches[0][1], y[:32])
    sorted_labels = torch.cat([b[1] for b in minibatches(X, y, 10, order="class_sorted")])
    assert torch.equal(sorted_labels, torch.sort(y).values)
    shuffled = torch.cat([b[1] for b in minibatches(X, y, 10, generator=torch.Generator().manual_seed(0))])
    assert not torch.equal(shuffled, y) and torch.equal(torch.sort(shuffled).values, torch.sort(y).values)
    with pytest.raises(ValueError, match="order must be"):
        next(minibatches(X, y, 10, order="random"))
    with pytest.raises(ValueError, match="batch_size"):
        next(minibatches(X, y, 0))


def test_training_learns_and_is_reproducible(digits):
    def run():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        return model, train(model, digits, epochs=3, batch_size=32, lr=0.05, seed=0)

    model, h1 = run()
    _, h2 = run()
    assert h1.train_loss == h2.train_loss
    assert h1.train_loss[-1] < h1.train_loss[0]
    assert h1.test_accuracy[-1] > 0.85
    assert accuracy(model, digits.X_test, digits.y_test) == h1.test_accuracy[-1]


def test_accuracy_restores_mode(digits):
    model = nn.Sequential(nn.Linear(64, 10), nn.Dropout(0.5))
    model.train()
    accuracy(model, digits.X_test, digits.y_test)
    assert model.training
