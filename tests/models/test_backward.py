"""The training step's backward pass: a plain ``backward()`` where the loss's graph reaches only the objective's
parameters (no pass over the graph to find them), else ``backward(inputs=parameters)``; the same update either way,
and no gradient written into a tensor the model does not train."""
import copy

import torch
from torch import nn

from pgm.distributions import Bernoulli, Normal
from pgm.losses import E, KL, LogProb
from pgm.models import Model

from model_nets import Encoder


class Logits(nn.Module):
    """Logits from a layer of its own and, where given, a layer it uses without owning it (not registered, so a
    Model given this network does not train it)."""

    def __init__(self, i, o, borrowed=None):
        super().__init__()
        self.linear = nn.Linear(i, o)
        object.__setattr__(self, "borrowed", borrowed)

    def forward(self, z):
        logits = self.linear(z)
        return {"logits": logits if self.borrowed is None else logits + self.borrowed(z)}


def vae(borrowed=None):
    torch.manual_seed(0)
    q, p = Normal("q(z|x)", net=Encoder(6, 2)), Bernoulli("p(x|z)", net=Logits(2, 6, borrowed))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    return (KL(q, prior) - E(q, LogProb(p))).mean(), [q, p]


def parameters(distributions):
    return [t.detach().clone() for d in distributions for t in d.parameters()]


def test_an_input_that_requires_a_gradient_gets_none_and_the_update_is_the_same():
    loss, distributions = vae()
    other_loss, other = copy.deepcopy((loss, distributions))
    x = torch.rand(8, 6).round()
    watched = x.clone().requires_grad_()  # e.g. a user's input kept for an adversarial attack
    model, reference = Model(loss, distributions), Model(other_loss, other)
    for step in range(3):  # the first step on x itself, then on the input that requires a gradient
        torch.manual_seed(1)
        a = model.train({"x": x})
        torch.manual_seed(1)
        b = reference.train({"x": x if step == 0 else watched})
        assert a == b
    assert watched.grad is None
    for mine, theirs in zip(parameters(distributions), parameters(other)):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


def test_a_tensor_the_loss_reaches_but_the_model_does_not_train_gets_no_gradient():
    borrowed = nn.Linear(2, 6)
    loss, distributions = vae(borrowed)
    model = Model(loss, distributions)
    before = borrowed.weight.detach().clone()
    x = torch.rand(8, 6).round()
    for _ in range(3):
        model.train({"x": x})
    assert borrowed.weight.grad is None and borrowed.bias.grad is None
    assert torch.equal(borrowed.weight, before)
    assert all(t.grad is not None for d in distributions for t in d.parameters())
