"""What an evaluation computes once and shares, and the shortcuts a family takes on its hot path, each against
torch.distributions: the torch distribution of a network output is built once per evaluation; Bernoulli scores from
its logits without building one; Normal draws as torch's rsample does; a hook set on a distribution still runs."""
import pytest
import torch
import torch.distributions as td
from torch import nn

from pgm.distributions import Bernoulli, Normal
from pgm.losses import E, KL, LogProb


class Gaussian(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.linear = nn.Linear(i, 2 * o)

    def forward(self, x):
        loc, scale = self.linear(x).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale) + 0.1}


class Logits(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.linear = nn.Linear(i, o)

    def forward(self, z):
        return {"logits": self.linear(z)}


class CountingNormal(Normal):
    """A Normal that counts the torch distributions it builds."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.built = 0

    def torch_distribution_of(self, params):
        self.built += 1
        return super().torch_distribution_of(params)


def test_the_torch_distribution_of_a_network_output_is_built_once_per_evaluation():
    torch.manual_seed(0)
    q = CountingNormal("q(z|x)", net=Gaussian(5, 3))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[3])
    p = Bernoulli("p(x|z)", net=Logits(3, 5))
    loss = (E(q, LogProb(p)) - KL(q, prior)).mean()  # q is sampled by E and read by the closed-form KL
    x = torch.rand(4, 5).round()
    loss.eval({"x": x})
    assert q.built == 1
    loss.eval({"x": x})
    assert q.built == 2  # one per evaluation: nothing outlives it


@pytest.mark.parametrize("parameter", ["logits", "probs"])
def test_bernoulli_scores_as_torch_does_on_every_path(parameter):
    """Same-shape values (scored from the logits directly), values with sample dims in front (torch's broadcasting)
    and probabilities: the log-density and its gradient equal torch's."""
    torch.manual_seed(1)
    net = Logits(3, 6)
    if parameter == "probs":
        p = Bernoulli("p(x|z)", net=lambda z: {"probs": torch.sigmoid(net(z)["logits"])})
    else:
        p = Bernoulli("p(x|z)", net=net)
    z = torch.randn(4, 3)
    for x in (torch.rand(4, 6).round(), torch.rand(2, 4, 6).round(), torch.rand(4, 6)):
        ours = p.log_prob({"z": z, "x": x})  # (2, 4) for the values with a sample dim in front
        logits = net(z)["logits"]
        torch_dist = (td.Bernoulli(logits=logits, validate_args=False) if parameter == "logits"
                      else td.Bernoulli(probs=torch.sigmoid(logits), validate_args=False))
        reference = torch_dist.log_prob(x).sum(-1)
        torch.testing.assert_close(ours, reference)
        (grad,) = torch.autograd.grad(ours.sum(), net.linear.weight)
        (expected,) = torch.autograd.grad(reference.sum(), net.linear.weight)
        torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("sample_shape", [1, 3])
def test_normal_draws_the_numbers_torchs_rsample_draws(sample_shape):
    torch.manual_seed(2)
    net = Gaussian(5, 3)
    q = Normal("q(z|x)", net=net)
    x = torch.randn(4, 5)
    torch.manual_seed(7)
    z = q.sample({"x": x}, sample_shape=sample_shape)["z"]
    params = net(x)
    torch.manual_seed(7)
    expected = td.Normal(params["loc"], params["scale"]).rsample(() if sample_shape == 1 else (sample_shape,))
    torch.testing.assert_close(z, expected, rtol=0, atol=0)
    (grad,) = torch.autograd.grad(z.sum(), net.linear.weight)
    (reference,) = torch.autograd.grad(expected.sum(), net.linear.weight)
    torch.testing.assert_close(grad, reference)


def test_a_hook_set_on_a_distribution_runs_at_each_evaluation():
    """The network is called without nn.Module.__call__ where the distribution has no hook; with one, through it."""
    q = Normal("q(z|x)", net=Gaussian(5, 3))
    seen = []
    pre = q.register_forward_pre_hook(lambda module, args: seen.append(tuple(a.shape for a in args)))
    handle = q.register_forward_hook(lambda module, args, out: seen.append(sorted(out)))
    KL(q, Normal("p(z)", loc=0.0, scale=1.0, features_shape=[3])).eval({"x": torch.randn(4, 5)})
    assert seen == [((4, 5),), ["loc", "scale"]]
    handle.remove()
    seen.clear()
    q.sample({"x": torch.randn(2, 5)})
    assert seen == [((2, 5),)]
    pre.remove()
    # a backward hook on the distribution: the call goes through nn.Module.__call__ as before, which says that a
    # network returning a dict cannot have one
    q.register_full_backward_hook(lambda module, grad_in, grad_out: None)
    with pytest.warns(UserWarning, match="For backward hooks to be called, module output should be a Tensor"):
        q.sample({"x": torch.randn(3, 5)})
