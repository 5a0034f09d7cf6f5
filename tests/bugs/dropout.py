"""Typical student bugs in the dropout exercise, as source text and as functions.

Each entry is complete numpy code (independent of the reference's helpers) that redefines one
graded function, plus the test cells that must fail because of it; every other cell must
keep its points. The unit tests call the functions directly; the end-to-end tests append the
source to the student's answer cell, where it replaces the reference definition.
"""
from __future__ import annotations

BUGS = {
    # The survivors are not divided by 1 - p: E[out] = (1 - p) x in training.
    "no_rescale": dict(
        answer_cell="dropout_dropout_forward_answer",
        fails={"dropout_dropout_forward_values", "dropout_dropout_forward_moments"},
        source='''
def dropout_forward(x, p, training=True, rng=None):
    rng = np.random.default_rng(rng)
    if not training:
        return np.array(x, dtype=np.float64), None
    mask = rng.random(np.shape(x)) >= p
    return x * mask, mask
'''),
    # p read as the keep probability when drawing the mask (the survivors are still divided
    # by 1 - p, and the output agrees with the mask): p of the units survive instead of 1 - p.
    "p_as_keep_probability": dict(
        answer_cell="dropout_dropout_forward_answer",
        fails={"dropout_dropout_forward_keep_fraction", "dropout_dropout_forward_moments",
               "dropout_dropout_forward_p_zero"},
        source='''
def dropout_forward(x, p, training=True, rng=None):
    rng = np.random.default_rng(rng)
    if not training:
        return np.array(x, dtype=np.float64), None
    mask = rng.random(np.shape(x)) < p
    return x * mask / (1 - p), mask
'''),
    # Rescaling in evaluation mode as well (mixing the original rule into inverted dropout).
    "rescale_at_test_time": dict(
        answer_cell="dropout_dropout_forward_answer",
        fails={"dropout_dropout_forward_eval_identity"},
        source='''
def dropout_forward(x, p, training=True, rng=None):
    rng = np.random.default_rng(rng)
    if not training:
        return x / (1 - p), None
    mask = rng.random(np.shape(x)) >= p
    return x * mask / (1 - p), mask
'''),
    # A tiny eps "against division by zero" makes p = 0 an inexact identity (relative 1e-9,
    # far below the tolerance of the other checks).
    "p_zero_not_exact": dict(
        answer_cell="dropout_dropout_forward_answer",
        fails={"dropout_dropout_forward_p_zero"},
        source='''
def dropout_forward(x, p, training=True, rng=None):
    rng = np.random.default_rng(rng)
    if not training:
        return np.array(x, dtype=np.float64), None
    mask = rng.random(np.shape(x)) >= p
    return x * mask / (1 - p + 1e-9), mask
'''),
    # The backward pass forgets the mask: dropped units receive gradient.
    "backward_ignores_mask": dict(
        answer_cell="dropout_dropout_backward_answer",
        fails={"dropout_dropout_backward_torch"},
        source='''
def dropout_backward(dout, mask, p):
    if mask is None:
        return np.array(dout, dtype=np.float64)
    return dout / (1 - p)
'''),
    # The backward pass forgets the 1 / (1 - p) factor of the forward pass.
    "backward_ignores_scale": dict(
        answer_cell="dropout_dropout_backward_answer",
        fails={"dropout_dropout_backward_torch"},
        source='''
def dropout_backward(dout, mask, p):
    if mask is None:
        return np.array(dout, dtype=np.float64)
    return dout * mask
'''),
    # Evaluation mode (mask None) is not handled: dout * None raises a TypeError.
    "backward_without_eval_mode": dict(
        answer_cell="dropout_dropout_backward_answer",
        fails={"dropout_dropout_backward_eval"},
        source='''
def dropout_backward(dout, mask, p):
    return dout * mask / (1 - p)
'''),
    # The original rule without its test-time factor: test activations 1 / (1 - p) too large.
    "vanilla_without_test_scaling": dict(
        answer_cell="dropout_vanilla_dropout_forward_answer",
        fails={"dropout_vanilla_dropout_forward_eval_scaling", "dropout_vanilla_dropout_forward_expectations_match"},
        source='''
def vanilla_dropout_forward(x, p, training=True, rng=None):
    rng = np.random.default_rng(rng)
    if not training:
        return np.array(x, dtype=np.float64), None
    mask = rng.random(np.shape(x)) >= p
    return x * mask, mask
'''),
    # Scaling in training and at test time: the two expectations differ by 1 / (1 - p).
    "vanilla_rescales_in_training": dict(
        answer_cell="dropout_vanilla_dropout_forward_answer",
        fails={"dropout_vanilla_dropout_forward_train", "dropout_vanilla_dropout_forward_expectations_match"},
        source='''
def vanilla_dropout_forward(x, p, training=True, rng=None):
    rng = np.random.default_rng(rng)
    if not training:
        return x * (1 - p), None
    mask = rng.random(np.shape(x)) >= p
    return x * mask / (1 - p), mask
'''),
    # The standard deviation set to p / (1 - p), the variance: wrong for every p but 0.5.
    "gaussian_std_instead_of_variance": dict(
        answer_cell="dropout_gaussian_dropout_forward_answer",
        fails={"dropout_gaussian_dropout_forward_moments"},
        source='''
def gaussian_dropout_forward(x, p, training=True, rng=None):
    rng = np.random.default_rng(rng)
    if not training:
        return np.array(x, dtype=np.float64), None
    noise = rng.normal(1.0, p / (1 - p), size=np.shape(x))
    return x * noise, noise
'''),
    # Bernoulli noise mask / (1 - p) returned as "Gaussian": same mean and variance, wrong law.
    "gaussian_with_bernoulli_noise": dict(
        answer_cell="dropout_gaussian_dropout_forward_answer",
        fails={"dropout_gaussian_dropout_forward_normal"},
        source='''
def gaussian_dropout_forward(x, p, training=True, rng=None):
    rng = np.random.default_rng(rng)
    if not training:
        return np.array(x, dtype=np.float64), None
    noise = (rng.random(np.shape(x)) >= p) / (1 - p)
    return x * noise, noise
'''),
}


# Submissions graded end to end by real nbgrader (kernel starts are the cost, so a few).
# The first also has every visible test cell replaced by `pass`; the last must make the
# release command refuse.
E2E = ("no_rescale", "backward_ignores_scale", "gaussian_std_instead_of_variance")
