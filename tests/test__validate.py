"""The shared input checks: each bad input gets one clear sentence naming the problem."""
import numpy as np
import pytest

from solutions import _validate as v


def test_float_array_accepts_float_and_lists():
    assert v.float_array([1.0, 2.0], "x").dtype == np.float64
    x = np.ones(3, dtype=np.float32)
    assert v.float_array(x, "x") is x


@pytest.mark.parametrize("bad", [np.arange(3), np.array([True]), np.array([1j]), np.array(["a"])])
def test_float_array_refuses_non_float(bad):
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        v.float_array(bad, "x")


def test_float_array_dimensions():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        v.float_array(np.ones(3), "x", min_ndim=2)
    with pytest.raises(ValueError, match="must have 4 dimensions"):
        v.float_array(np.ones((2, 3)), "x", ndim=4)


def test_vector_and_same_shape():
    assert v.vector(np.ones(4), "gamma", 4).shape == (4,)
    with pytest.raises(ValueError, match=r"gamma must have shape \(4,\)"):
        v.vector(np.ones(3), "gamma", 4)
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 3\)"):
        v.same_shape(np.ones((3, 2)), "dout", (2, 3))


@pytest.mark.parametrize("p", [0.0, 0.5, 0.999])
def test_drop_probability_accepts(p):
    assert v.drop_probability(p) == p


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, True, "0.5", None, float("nan")])
def test_drop_probability_refuses(p):
    with pytest.raises(ValueError, match="probability of dropping"):
        v.drop_probability(p)


@pytest.mark.parametrize("eps", [0, -1e-5, None, False, float("nan")])
def test_positive_refuses(eps):
    with pytest.raises(ValueError, match="eps must be a positive number"):
        v.positive(eps, "eps")


def test_generator():
    g = np.random.default_rng(0)
    assert v.generator(g) is g
    assert v.generator(3).random() == np.random.default_rng(3).random()
    assert isinstance(v.generator(None), np.random.Generator)
    with pytest.raises(TypeError, match="rng must be"):
        v.generator("seed")
