"""Terms that see the evaluation: ParametersOf / TorchDistributionOf give a term what the evaluation computed,
without running a network again; a Shared network runs once per evaluation for the same inputs."""
import math

import pytest
import torch
from torch import nn

import pgm
from pgm.distributions import Normal
from pgm.losses import E, KL, LogProb, ParametersOf, Term, TorchDistributionOf


class Counting(nn.Module):
    """A linear encoder (D -> 2D: loc and log-scale) that counts its runs."""

    def __init__(self, d=2):
        super().__init__()
        self.linear, self.runs = nn.Linear(d, 2 * d), 0

    def forward(self, x):
        self.runs += 1
        loc, log_scale = self.linear(x).chunk(2, -1)
        return {"loc": loc, "scale": log_scale.exp()}


def test_parameters_of_gives_the_encoder_output_without_running_it_again():
    encoder = Counting()
    q = Normal("q(z|x)", net=encoder)
    prior = Normal("p(z)", loc=torch.zeros(2), scale=torch.ones(2))

    def log_q_z(z, q_params):  # minibatch-weighted log q(z): every draw under every example's posterior
        pairs = torch.distributions.Normal(q_params["loc"], q_params["scale"]).log_prob(z.unsqueeze(-2))
        return torch.logsumexp(pairs.sum(-1), -1) - math.log(z.shape[-2])
    term = Term(log_q_z, r"\log q(z)", inputs={"q_params": ParametersOf(q)})
    loss = (E(q, LogProb(q) - term, sample_shape=3) + KL(q, prior)).mean()
    x = torch.randn(5, 2)
    torch.manual_seed(0)
    value = loss.eval({"x": x})
    assert encoder.runs == 1  # one run for the draw, log q(z|x), the KL and the term
    # the same by hand
    out = encoder(x)
    torch.manual_seed(0)
    z = out["loc"] + out["scale"] * torch.randn(3, 5, 2)
    posterior = torch.distributions.Normal(out["loc"], out["scale"])
    pairs = torch.distributions.Normal(out["loc"], out["scale"]).log_prob(z.unsqueeze(-2)).sum(-1)  # (3, 5, 5)
    mws = torch.logsumexp(pairs, -1) - math.log(5)
    kl = torch.distributions.kl_divergence(posterior, torch.distributions.Normal(0.0, 1.0)).sum(-1)
    expected = ((posterior.log_prob(z).sum(-1) - mws).mean(0) + kl).mean()
    torch.testing.assert_close(value, expected)
    assert loss.distributions == [q, prior]


def test_torch_distribution_of_is_the_evaluation_s_independent_distribution():
    encoder = Counting()
    q = Normal("q(z|x)", net=encoder)
    entropy = Term(lambda q_dist: q_dist.entropy(), r"\mathcal{H}", inputs={"q_dist": TorchDistributionOf(q)})
    x = torch.randn(4, 2)
    value = (E(q, LogProb(q)) + entropy).eval({"x": x})
    assert encoder.runs == 1 and value.shape == (4,)
    out = encoder(x)
    torch.testing.assert_close(entropy.eval({"x": x}),
                               torch.distributions.Normal(out["loc"], out["scale"]).entropy().sum(-1))
    assert entropy.input_var == ["x"]


def test_evaluated_sources_take_one_family():
    q = Normal("q(z|x)", net=Counting())
    with pytest.raises(TypeError, match=r"ParametersOf takes a distribution of one family \(Normal, Categorical, "
                                        r"\.\.\.\); got JointDistribution"):
        ParametersOf(q * Normal("p(x)", loc=torch.zeros(2), scale=torch.ones(2)))
    with pytest.raises(TypeError, match=r"Term t: inputs\['a'\] must be a variable's name, a distribution, "
                                        r"ParametersOf\(q\) or TorchDistributionOf\(q\); got int"):
        Term(lambda a: a, "t", inputs={"a": 3})


def test_a_shared_network_runs_once_per_evaluation_for_the_same_inputs():
    # a ladder VAE's top-down pass feeds the prior p(z1|z2) and the posterior q(z1|x,z2)
    top_down = Counting()
    shared = pgm.Shared(top_down)
    bottom_up = nn.Linear(2, 2)
    prior = Normal("p(z1|z2)", net=shared)

    def posterior(x, z2):  # the precision-weighted merge of the bottom-up and top-down Gaussians
        d = shared(z2)
        precision = 1 + d["scale"] ** -2
        return {"loc": (bottom_up(x) + d["loc"] * d["scale"] ** -2) / precision, "scale": precision.rsqrt()}
    q = Normal("q(z1|x,z2)", net=posterior)
    loss = KL(q, prior).mean()
    x, z2 = torch.randn(6, 2), torch.randn(6, 2)
    value = loss.eval({"x": x, "z2": z2})
    assert top_down.runs == 1
    loss.eval({"x": x, "z2": z2})
    assert top_down.runs == 2  # once per evaluation: nothing is kept from one evaluation to the next
    d = top_down(z2)
    precision = 1 + d["scale"] ** -2
    merged = torch.distributions.Normal((bottom_up(x) + d["loc"] * d["scale"] ** -2) / precision, precision.rsqrt())
    expected = torch.distributions.kl_divergence(merged, torch.distributions.Normal(d["loc"], d["scale"])).sum(-1)
    torch.testing.assert_close(value, expected.mean())
    shared(z2)
    shared(z2)
    assert top_down.runs == 5  # outside an evaluation it is the plain network
    assert [n for n, _ in shared.named_parameters()] == ["module.linear.weight", "module.linear.bias"]


def test_a_shared_network_runs_again_for_other_tensors():
    top_down = Counting()
    shared = pgm.Shared(top_down)
    p1 = Normal("p(a|z)", net=shared)
    p2 = Normal("p(b|y)", net=shared)
    z = torch.randn(3, 2)
    inputs = {"z": z, "y": z.clone(), "a": torch.randn(3, 2), "b": torch.randn(3, 2)}
    (LogProb(p1) + LogProb(p2)).eval(inputs)
    assert top_down.runs == 2  # equal values, other tensors: no sharing (an input is matched by identity)
    with pytest.raises(TypeError, match="Shared takes a network \\(an nn.Module or a function\\); got int"):
        pgm.Shared(3)
