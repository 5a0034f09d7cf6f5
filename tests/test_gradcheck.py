"""The gradient checker itself must be right, or every backward test proves nothing."""
import numpy as np
import pytest

from solutions.gradcheck import numerical_gradient, rel_error


def test_rel_error_measure():
    assert rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert rel_error([1.0], [3.0]) == pytest.approx(0.5)
    # Both tiny: the 1e-8 floor keeps noise around zero from looking like a large error.
    assert rel_error([1e-12], [0.0]) == pytest.approx(1e-4)
    assert rel_error(np.empty(0), np.empty(0)) == 0.0
    with pytest.raises(ValueError, match="shapes"):
        rel_error(np.ones(2), np.ones(3))


def test_numerical_gradient_of_known_functions():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    dout = rng.standard_normal((3, 4))
    assert rel_error(numerical_gradient(np.sin, x, dout), np.cos(x) * dout) < 1e-8
    w = rng.standard_normal((4, 2))
    dout2 = rng.standard_normal((3, 2))
    assert rel_error(numerical_gradient(lambda a: a @ w, x, dout2), dout2 @ w.T) < 1e-8


def test_numerical_gradient_restores_input():
    x = np.linspace(-1, 1, 7)
    before = x.copy()
    numerical_gradient(np.tanh, x, np.ones(7))
    assert np.array_equal(x, before)


def test_numerical_gradient_detects_a_wrong_gradient():
    x = np.linspace(0.5, 2, 5)
    wrong = 2 * x  # d/dx of x**3 is 3x**2, not 2x
    assert rel_error(numerical_gradient(lambda a: a**3, x, np.ones(5)), wrong) > 1e-2
