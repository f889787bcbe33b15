"""Variables inside formulas: Var, their arithmetic, detach (the stop-gradient) and the reductions over the event
(squared_norm, norm, dot). Values and gradients are compared with the same computation in plain torch, the LaTeX
exactly, and every error by its message."""
import re

import pytest
import torch

from pgm._errors import EventShapeError, MissingInputError
from pgm.distributions import Categorical, Normal
from pgm.losses import E, LogProb, Parameter, Var, detach, dot, norm, squared_norm

from loss_nets import Gaussian, Logits

B, D = 5, 3


def leaf(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype, requires_grad=True)


def test_the_printed_terms_of_vq_vae():
    z_e, e = Var("z_e"), Var("e")
    codebook, commitment = squared_norm(detach(z_e) - e), Parameter("beta") * squared_norm(z_e - detach(e))
    assert codebook.latex() == r"\left\|\mathrm{sg}\left[z_{e}\right] - e\right\|_{2}^{2}"
    assert commitment.latex() == r"\beta \left\|z_{e} - \mathrm{sg}\left[e\right]\right\|_{2}^{2}"
    assert str(codebook - commitment) == "||sg[z_e] - e||_2^2 - beta*||z_e - sg[e]||_2^2"
    assert (codebook + commitment).input_var == ["z_e", "e"] and commitment.parameters == ["beta"]


@pytest.mark.parametrize("make, latex", [
    (lambda a, b: norm(2 * a - b / 4), r"\left\|2 a - \frac{b}{4}\right\|_{2}"),
    (lambda a, b: dot(a, -b), r"\left\langle a, - b\right\rangle"),
    (lambda a, b: squared_norm(a + b + a * 0.5), r"\left\|a + b + 0.5 a\right\|_{2}^{2}"),
    (lambda a, b: squared_norm(-(a - b) + a), r"\left\|- (a - b) + a\right\|_{2}^{2}"),
    (lambda a, b: squared_norm(Var("mu") - Var("x_obs")), r"\left\|\mu - x_{obs}\right\|_{2}^{2}"),
])
def test_latex_in_the_order_written(make, latex):
    assert make(Var("a"), Var("b")).latex() == latex


@pytest.mark.parametrize("make, reference", [
    (lambda a, b: squared_norm(a - b), lambda a, b: (a - b).pow(2).sum(-1)),
    (lambda a, b: squared_norm(2 * a + b / 4 - a * 0.5), lambda a, b: (1.5 * a + b / 4).pow(2).sum(-1)),
    (lambda a, b: squared_norm(-(a - b) + a), lambda a, b: (-(a - b) + a).pow(2).sum(-1)),
    (lambda a, b: norm(a - 3 * b), lambda a, b: torch.linalg.vector_norm(a - 3 * b, dim=-1)),
    (lambda a, b: dot(a, b - a), lambda a, b: (a * (b - a)).sum(-1)),
])
def test_values_and_gradients_are_plain_torch(make, reference):
    a, b = leaf(B, D), leaf(B, D)
    value = make(Var("a"), Var("b")).eval({"a": a, "b": b})
    expected = reference(a, b)
    torch.testing.assert_close(value, expected)
    assert value.shape == (B,)
    grads = torch.autograd.grad(value.sum(), (a, b))
    torch.testing.assert_close(grads, torch.autograd.grad(expected.sum(), (a, b)))


def test_gradcheck_in_float64():
    a, b = leaf(B, 2, D, dtype=torch.float64), leaf(B, 2, D, dtype=torch.float64)
    loss = squared_norm(Var("a") - 0.5 * Var("b")) + 3 * dot(Var("a"), Var("b")) + norm(Var("a") + Var("b"))
    assert torch.autograd.gradcheck(lambda a, b: loss.eval({"a": a, "b": b}), (a, b))


def test_detach_stops_the_gradient_of_its_variable_only():
    a, b = leaf(B, D), leaf(B, D)
    codebook = squared_norm(detach(Var("a")) - Var("b")).eval({"a": a, "b": b})
    torch.testing.assert_close(codebook, (a - b).pow(2).sum(-1))  # the value is unchanged
    grad_a, grad_b = torch.autograd.grad(codebook.sum(), (a, b), allow_unused=True)
    assert grad_a is None  # no path reaches a
    torch.testing.assert_close(grad_b, 2 * (b - a).detach())

    both = squared_norm(detach(Var("a") - Var("b"))).eval({"a": a, "b": b}) + dot(Var("a"), Var("b")).eval(
        {"a": a, "b": b})
    grad_a, grad_b = torch.autograd.grad(both.sum(), (a, b))
    torch.testing.assert_close((grad_a, grad_b), (b.detach(), a.detach()))  # only the dot's gradient


def test_an_event_of_several_dims_is_reduced_whole():
    a, b = leaf(B, 4, D), leaf(B, 4, D)  # N = 4 vectors of D dims per example: the event is (4, D)
    value = squared_norm(Var("a") - Var("b")).eval({"a": a, "b": b})
    torch.testing.assert_close(value, (a - b).pow(2).sum((-2, -1)))


def test_inside_an_expectation_the_draws_keep_their_sample_dims():
    q = Normal("q(z|x)", net=Gaussian(D, D))
    x = torch.randn(B, D)
    loss = E(q, squared_norm(Var("z") - 2 * Var("x")) - dot(Var("z"), Var("x")), sample_shape=6)
    assert loss.input_var == ["x"]
    assert loss.latex() == (r"\mathbb{E}_{q(z|x)}\left[\left\|z - 2 x\right\|_{2}^{2} - "
                            r"\left\langle z, x\right\rangle\right]")
    torch.manual_seed(3)
    value = loss.eval({"x": x})
    torch.manual_seed(3)
    z = q.sample({"x": x}, sample_shape=6)["z"]  # the same draws, (6, B, D); x (B, D) broadcasts over the 6
    assert z.shape == (6, B, D)
    expected = ((z - 2 * x).pow(2).sum(-1) - (z * x).sum(-1)).mean(0)
    torch.testing.assert_close(value, expected)
    assert value.shape == (B,)

    # the gradient reaches q's network through the draws, as the plain computation's does
    grads = torch.autograd.grad(value.sum(), list(q.parameters()))
    torch.testing.assert_close(grads, torch.autograd.grad(expected.sum(), list(q.parameters())))


def test_an_enumerated_variable_is_summed_over_its_values():
    # E(..., enumerate=True) holds y's K one-hot values once, (K, 1, K), beside the (B, K) input t
    q = Categorical("q(y|x)", net=Logits(D, 4))
    x, t = torch.randn(B, D), torch.randn(B, 4)
    value = E(q, squared_norm(Var("y") - Var("t")), enumerate=True).eval({"x": x, "t": t})
    probs = q.get_params({"x": x})["logits"].softmax(-1)                       # (B, K)
    distances = (torch.eye(4)[:, None, :] - t).pow(2).sum(-1)                   # (K, B): value k against t
    torch.testing.assert_close(value, (probs * distances.T).sum(-1))


def test_a_variable_and_a_loss_combine_once_reduced():
    q = Normal("q(z|x)", net=Gaussian(D, D))
    p = Normal("p(x|z)", net=Gaussian(D, D))
    x = torch.randn(B, D)
    loss = E(q, LogProb(p) - 0.1 * squared_norm(Var("z"))).mean()
    torch.manual_seed(4)
    value = loss.eval({"x": x})
    torch.manual_seed(4)
    z = q.sample({"x": x})["z"]
    expected = (p.log_prob({"x": x, "z": z}) - 0.1 * z.pow(2).sum(-1)).mean()
    torch.testing.assert_close(value, expected)


# ------------------------------------------------------------------------------------------------ errors
UNREDUCED = re.escape("a - b is a variable with an event (one vector per example), not a per-example loss; reduce "
                      "it over its event first: squared_norm(...) for ||a - b||_2^2, norm(...) for ||a - b||_2, or "
                      "dot(..., other) for an inner product. (A number per example given with the inputs is "
                      "Input('w').)")


@pytest.mark.parametrize("combine", [
    lambda loss, v: loss + v,
    lambda loss, v: v - loss,
    lambda loss, v: Parameter("beta") * v,
    lambda loss, v: v * loss,
    lambda loss, v: E(loss.p, v),
    lambda loss, v: v.mean(),
], ids=["loss + v", "v - loss", "beta * v", "v * loss", "E(q, v)", "v.mean()"])
def test_a_variable_is_no_loss_until_reduced(combine):
    q = Normal("q(z|x)", net=Gaussian(D, D))
    with pytest.raises(TypeError, match=UNREDUCED):
        combine(LogProb(q), Var("a") - Var("b"))


def test_the_event_shapes_of_a_sum_must_agree():
    loss = squared_norm(Var("z_e") - detach(Var("e")))
    message = ("z_e - sg[e]: z_e has event shape (3,) (a tensor of shape (5, 3)) and sg[e] has (4,) (shape (5, 4)); "
               "a sum or difference of variables needs one event shape. Give both the same event shape (the size "
               "of a network's output, or features_shape=[...]).")
    with pytest.raises(EventShapeError, match=re.escape(message)):
        loss.eval({"z_e": torch.randn(B, 3), "e": torch.randn(B, 4)})
    with pytest.raises(EventShapeError, match=re.escape("dot(a, b): a has event shape (3,) (a tensor of shape (5, 3)) "
                                                        "and b has (2, 3) (shape (5, 2, 3)); an inner product needs "
                                                        "one event shape.")):
        dot(Var("a"), Var("b")).eval({"a": torch.randn(B, 3), "b": torch.randn(B, 2, 3)})


def test_a_missing_variable_is_named_with_its_use():
    loss = squared_norm(Var("z_e") - Var("e"))
    with pytest.raises(MissingInputError, match=re.escape("the loss needs input `e` (`e` is used by Var('e')); got "
                                                          "['z_e']. Pass every input it needs: loss.eval({'z_e': ..., "
                                                          "'e': ...}).")):
        loss.eval({"z_e": torch.randn(B, D)})


@pytest.mark.parametrize("make, error, message", [
    (lambda a, b: a * b, TypeError, "(a) * (b): the elementwise product of two variables is not offered; their "
                                    "inner product over the event is dot(a, b)."),
    (lambda a, b: a / b, TypeError, "(a) / (b): the elementwise quotient of two variables is not offered; their "
                                    "inner product over the event is dot(a, b)."),
    (lambda a, b: a + 1, TypeError, "a + 1: only variables of the same event shape add to a variable; multiply it "
                                    "by a number (2 * z) or add the number to a reduced term (squared_norm(z) + 1)."),
    (lambda a, b: a - torch.ones(3), TypeError, "a - Tensor: a variable adds to other variables of its event shape "
                                                "only; give the tensor with the inputs and name it: a - Var('name')."),
    (lambda a, b: a * torch.ones(3), TypeError, "a * Tensor: a variable is scaled by numbers only; scale its reduced "
                                                "term instead, e.g. Parameter('beta') * squared_norm(z)."),
    (lambda a, b: 1 / a, TypeError, "1 / (a): a number divided by a variable is not a linear expression; reduce the "
                                    "variable first, e.g. 1 / norm(a)."),
    (lambda a, b: a / 0, ZeroDivisionError, "a / 0: a variable divided by zero."),
    (lambda a, b: squared_norm(LogProb(Normal("p(a)", loc=0.0, scale=1.0, features_shape=[]))), TypeError,
     "squared_norm takes a variable expression such as Var('z') - Var('e'); it is already a per-example loss."),
    (lambda a, b: dot(a, "b"), TypeError, "dot takes a variable expression such as Var('z') - Var('e'); got str."),
    (lambda a, b: Var("z-e"), ValueError, "a Var's name must be an identifier, the name of an input or of a drawn "
                                          "variable such as 'z_e'; got 'z-e'."),
])
def test_misuses_say_what_to_write(make, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make(Var("a"), Var("b"))
