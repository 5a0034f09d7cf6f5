"""The book's shared data and training loop."""
import pytest
import torch
from torch import nn

from solutions.experiments import accuracy, evaluate, load_digits_split, minibatches, train


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


def test_subset_takes_the_first_training_images(digits):
    small = digits.subset(50)
    assert torch.equal(small.X_train, digits.X_train[:50])
    assert torch.equal(small.y_train, digits.y_train[:50])
    assert small.X_test is digits.X_test and small.y_test is digits.y_test
    for bad in (0, len(digits.X_train) + 1, 2.5):
        with pytest.raises(ValueError, match="n_train"):
            digits.subset(bad)


def test_label_noise_flips_exactly_the_fraction_to_other_classes(digits):
    noisy = digits.with_label_noise(0.3, seed=1)
    wrong = noisy.y_train != digits.y_train
    assert int(wrong.sum()) == round(0.3 * len(digits.y_train))
    assert noisy.y_train.min() >= 0 and noisy.y_train.max() <= 9
    assert torch.equal(noisy.y_test, digits.y_test) and torch.equal(noisy.X_train, digits.X_train)
    assert torch.equal(noisy.y_train, digits.with_label_noise(0.3, seed=1).y_train)
    assert not torch.equal(noisy.y_train, digits.with_label_noise(0.3, seed=2).y_train)
    # Every wrong class is drawn: with 377 flips, each of the 9 offsets appears.
    offsets = ((noisy.y_train - digits.y_train) % 10)[wrong]
    assert set(offsets.tolist()) == set(range(1, 10))
    assert torch.equal(digits.with_label_noise(0.0).y_train, digits.y_train)
    with pytest.raises(ValueError, match="fraction"):
        digits.with_label_noise(1.5)


def test_history_records_eval_losses_and_train_accuracy(digits):
    small = digits.subset(100)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))
    h = train(model, small, epochs=3, batch_size=25, lr=0.05, seed=0, eval_train=True)
    assert len(h.test_loss) == len(h.train_accuracy) == len(h.train_eval_loss) == 3
    loss, acc = evaluate(model, small.X_train, small.y_train)
    assert (loss, acc) == (h.train_eval_loss[-1], h.train_accuracy[-1])
    assert evaluate(model, small.X_test, small.y_test) == (h.test_loss[-1], h.test_accuracy[-1])
    # eval mode: dropout off, so the measurement is deterministic and the mode is restored
    model.train()
    assert evaluate(model, small.X_test, small.y_test) == (h.test_loss[-1], h.test_accuracy[-1])
    assert model.training
    # without eval_train the training-set measurements are skipped
    h2 = train(model, small, epochs=1, batch_size=25, seed=0)
    assert h2.train_accuracy == [] and len(h2.test_loss) == 1


def test_weight_decay_shrinks_the_weights(digits):
    small = digits.subset(200)

    def weight_norm(wd, optimizer):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        train(model, small, epochs=5, batch_size=50, lr=0.01 if optimizer == "adam" else 0.05,
              optimizer=optimizer, weight_decay=wd, seed=0)
        return sum(float((p.detach() ** 2).sum()) for p in model.parameters())

    for optimizer in ("sgd", "adam"):
        assert weight_norm(0.1, optimizer) < 0.9 * weight_norm(0.0, optimizer)
    with pytest.raises(ValueError, match="weight_decay"):
        train(nn.Linear(64, 10), small, epochs=1, weight_decay=-1.0)
