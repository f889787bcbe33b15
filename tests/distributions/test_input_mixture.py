"""Mixture.at: one distribution mixed over K values of its inputs (the VampPrior). Its density equals the
logsumexp over the K components computed in plain torch, draws pick components in proportion to the weights and
are reparameterized given the component, the encoder's network runs once for the K inputs, it trains (the
pseudo-inputs move), and bad use is named."""
import math

import pytest
import torch
import torch.distributions as td
from torch import nn

from pgm.distributions import Bernoulli, InputMixture, Mixture, Normal
from pgm.losses import KL, E, LogProb
from pgm.models import Model

DX, DZ, K = 6, 2, 5


class Encoder(nn.Module):
    def __init__(self, inputs=DX):
        super().__init__()
        self.linear, self.calls = nn.Linear(inputs, 2 * DZ, dtype=torch.float64), []

    def forward(self, *x):
        self.calls.append(tuple(v.shape for v in x))
        loc, scale = self.linear(torch.cat(x, -1)).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale) + 0.1}


def reference(encoder, u, z, log_pi):
    """log sum_k pi_k q(z|u_k) in plain torch: z (..., DZ) -> (...)."""
    p = encoder(u)
    components = td.Normal(p["loc"], p["scale"]).log_prob(z.unsqueeze(-2)).sum(-1)  # (..., K)
    return torch.logsumexp(components + log_pi, -1)


def test_the_density_is_the_mixture_of_the_components_at_the_k_inputs():
    torch.manual_seed(0)
    q = Normal("q(z|x)", net=Encoder())
    u = nn.Parameter(torch.rand(K, DX, dtype=torch.float64))
    prior = Mixture.at(q, x=u)
    assert isinstance(prior, InputMixture) and prior.prob_text == "p(z)" and prior.cond_var == []
    assert prior.latex() == r"p(z) = \frac{1}{K}\sum_{k=1}^{K} q(z|x_k)"
    draws = q.sample({"x": torch.rand(4, DX, dtype=torch.float64)}, sample_shape=3)  # 3 draws of a batch of 4
    z = draws["z"] = draws["z"].detach()
    q.net.calls.clear()
    value = prior.log_prob(draws)
    assert value.shape == (3, 4)
    assert q.net.calls == [((K, DX),)]  # one call on the K inputs
    exact = reference(q.net, u, z, torch.full((K,), -math.log(K), dtype=torch.float64))
    torch.testing.assert_close(value, exact)
    got = torch.autograd.grad(value.sum(), [u, q.net.linear.weight])
    want = torch.autograd.grad(exact.sum(), [u, q.net.linear.weight])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    # learned weights: softmax of the logits
    logits = nn.Parameter(torch.randn(K, dtype=torch.float64))
    weighted = Mixture.at(q, logits, x=u)
    assert weighted.latex() == r"p(z) = \sum_{k=1}^{K} \pi_k q(z|x_k)"
    torch.testing.assert_close(weighted.log_prob({"z": z[0]}), reference(q.net, u, z[0], logits.log_softmax(-1)))


def test_many_values_are_scored_a_few_components_at_a_time(monkeypatch):
    """Scoring 3 x 4 draws against K = 5 components with room for 2 components' elementwise densities at a time
    gives the same densities and gradients, with the network still run once."""
    torch.manual_seed(4)
    q = Normal("q(z|x)", net=Encoder())
    u = nn.Parameter(torch.rand(K, DX, dtype=torch.float64))
    prior = Mixture.at(q, x=u)
    z = torch.randn(12, DZ, dtype=torch.float64)
    whole = prior.log_prob({"z": z})
    grads = torch.autograd.grad(whole.sum(), [u])
    monkeypatch.setattr(InputMixture, "chunk_elements", 2 * z.numel())
    q.net.calls.clear()
    chunked = prior.log_prob({"z": z})
    assert q.net.calls == [((K, DX),)]
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(torch.autograd.grad(chunked.sum(), [u]), grads)
    y = torch.randn(12, 3, dtype=torch.float64)  # and with another condition, batched
    both = Mixture.at(Normal("q(z|x,y)", net=Encoder(DX + 3)), x=u)
    chunked = both.log_prob({"z": z, "y": y})
    monkeypatch.setattr(InputMixture, "chunk_elements", 2 ** 25)
    torch.testing.assert_close(chunked, both.log_prob({"z": z, "y": y}))


def test_fixed_weights_one_unbatched_value_and_printing():
    torch.manual_seed(5)
    q = Normal("q(z|x_obs)", net=Encoder())
    u = torch.rand(K, DX, dtype=torch.float64)
    weights = torch.tensor([1.0, 2.0, 3.0, 2.0, 2.0], dtype=torch.float64)
    prior = Mixture.at(q, weights, x_obs=u)
    assert prior.latex() == r"p(z) = \sum_{k=1}^{K} \pi_k q(z|x_{obs,k})"
    assert "K=5 (x_obs: (5, 6))" in repr(prior)
    draw = prior.sample({})  # one value, no batch: scored as it is
    assert draw["z"].shape == (DZ,)
    exact = reference(q.net, u, draw["z"], (weights / weights.sum()).log())
    torch.testing.assert_close(prior.log_prob(draw), exact)
    assert prior.log_prob(draw).shape == ()


def test_mean_and_variance_are_the_mixture_s():
    """sample_mean and sample_variance: sum_k pi_k m_k and the law of total variance over the components at the
    K inputs, in plain torch; per example for a mixture with another condition."""
    torch.manual_seed(6)
    q = Normal("q(z|x)", net=Encoder())
    u = torch.rand(K, DX, dtype=torch.float64)
    weights = torch.tensor([1.0, 2.0, 3.0, 2.0, 2.0], dtype=torch.float64)
    prior = Mixture.at(q, weights, x=u)
    p, pi = q.net(u), (weights / weights.sum())[:, None]
    mean = (pi * p["loc"]).sum(0)
    torch.testing.assert_close(prior.sample_mean({}), mean)
    torch.testing.assert_close(prior.sample_variance({}), (pi * (p["scale"] ** 2 + (p["loc"] - mean) ** 2)).sum(0))
    conditional = Mixture.at(Normal("q(z|x,y)", net=Encoder(DX + 3)), x=u)
    y = torch.randn(4, 3, dtype=torch.float64)
    p = conditional.component.net(u[:, None].expand(K, 4, DX), y.expand(K, 4, 3))
    torch.testing.assert_close(conditional.sample_mean({"y": y}), p["loc"].mean(0))


def test_renaming_goes_through_the_component():
    q = Normal("q(z|x,y)", net=Encoder(DX + 3))
    u = nn.Parameter(torch.rand(K, DX, dtype=torch.float64))
    prior = Mixture.at(q, nn.Parameter(torch.zeros(K, dtype=torch.float64)), x=u)
    p = Bernoulli("p(x|z)", net=lambda z: {"logits": z})
    assert (p * prior).replace_var(x="w").prob_text == "p(w,z|y)"  # x of p, not an input of the prior
    renamed = prior.replace_var(z="a", y="c")
    assert renamed.latex() == r"p(a|c) = \sum_{k=1}^{K} \pi_k q(a|x_k,c)"
    assert renamed.inputs.x is u and renamed.logits is prior.logits and renamed.component.net is q.net
    a, c = torch.randn(4, DZ, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(renamed.log_prob({"a": a, "c": c}), prior.log_prob({"z": a, "y": c}))


def test_other_conditions_stay_conditions_of_the_mixture():
    torch.manual_seed(1)
    q = Normal("q(z|x,y)", net=Encoder(DX + 3))
    u = torch.rand(K, DX, dtype=torch.float64)
    prior = Mixture.at(q, name="r", x=u)
    assert prior.prob_text == "r(z|y)" and prior.latex() == r"r(z|y) = \frac{1}{K}\sum_{k=1}^{K} q(z|x_k,y)"
    y, z = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, DZ, dtype=torch.float64)
    value = prior.log_prob({"z": z, "y": y})
    p = q.net(u[:, None].expand(K, 4, DX), y.expand(K, 4, 3))
    exact = torch.logsumexp(td.Normal(p["loc"], p["scale"]).log_prob(z).sum(-1), 0) - math.log(K)
    torch.testing.assert_close(value, exact)
    assert not isinstance(prior.inputs.x, nn.Parameter) and torch.equal(prior.inputs.x, u)  # fixed: a buffer


def test_draws_pick_components_by_weight_and_are_reparameterized_given_the_component():
    """Components far apart and narrow: each draw lies next to its component's mean, so counting draws by
    nearest mean gives the components' frequencies, which match the weights; a draw's gradient reaches the
    pseudo-inputs."""
    torch.manual_seed(2)
    means = torch.tensor([[-10.0, 0.0], [0.0, 10.0], [10.0, 0.0]], dtype=torch.float64)
    q = Normal("q(z|x)", net=lambda x: {"loc": x, "scale": torch.full_like(x, 0.01)})
    u = nn.Parameter(means.clone())
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    prior = Mixture.at(q, nn.Parameter(weights.log()), x=u)
    draws = prior.sample({}, sample_shape=20_000)["z"]
    assert draws.shape == (20_000, 2)
    nearest = torch.cdist(draws, means).argmin(-1)
    assert (torch.cdist(draws, means).min(-1).values < 0.1).all()
    frequencies = torch.bincount(nearest, minlength=3).double() / len(draws)
    torch.testing.assert_close(frequencies, weights, atol=0.015, rtol=0)  # 5 standard errors at most
    draws.sum().backward()
    torch.testing.assert_close(u.grad.sum(-1), 2 * torch.bincount(nearest, minlength=3).double())
    # one draw per example of a batch given in the inputs of a conditional mixture, cached for the evaluation
    batch = prior.sample({"w": torch.zeros(8, 1)})
    assert batch["z"].shape == (8, 2)


def test_a_vamp_prior_vae_trains_its_pseudo_inputs():
    torch.manual_seed(3)
    q = Normal("q(z|x)", net=Encoder())
    p = Bernoulli("p(x|z)", net=lambda z: {"logits": z.repeat_interleave(DX // DZ, -1)})
    u = nn.Parameter(torch.rand(K, DX, dtype=torch.float64))
    prior = Mixture.at(q, x=u)
    kl = KL(q, prior)
    assert not kl.analytic  # Monte Carlo over q's draws
    loss = (KL(q, prior) - E(q, LogProb(p))).mean()
    assert loss.latex() == (r"\mathbb{E}_{p_{data}(x)}\left[D_{KL}\left[q(z|x)\|p(z)\right] - "
                            r"\mathbb{E}_{q(z|x)}\left[\log p(x|z)\right]\right]")
    model = Model(loss, [q, p, prior], optimizer_params={"lr": 0.05})
    assert sum(w is u for g in model.optimizer.param_groups for w in g["params"]) == 1
    x = torch.rand(16, DX, dtype=torch.float64).round()
    before = u.detach().clone()
    losses = [model.train({"x": x}) for _ in range(30)]
    assert not torch.equal(before, u) and losses[-1] < losses[0]
    prior.float()
    assert prior.inputs.x.dtype == torch.float32


def test_bad_use_is_named():
    q = Normal("q(z|x)", net=Encoder())
    with pytest.raises(ValueError, match=r"^Mixture.at\(q\(z\|x\), ...\): name the inputs to mix over"):
        Mixture.at(q)
    with pytest.raises(ValueError, match=r"\['w'\] are not inputs of q\(z\|x\); it takes \['x'\]"):
        Mixture.at(q, w=torch.rand(K, DX))
    with pytest.raises(TypeError, match=r"x= must be K values as a floating tensor \(K, \*event\) or an "
                                        r"nn.Parameter; got a torch.int64 tensor"):
        Mixture.at(q, x=torch.ones(K, DX, dtype=torch.long))
    with pytest.raises(TypeError, match=r"x= must be K values .*; got list"):
        Mixture.at(q, x=[[0.0] * DX])
    two = Normal("q(z|x,y)", net=Encoder(DX + 3))
    with pytest.raises(ValueError, match=r"the same number K of values along dim 0; got \{'x': 5, 'y': 4\}"):
        Mixture.at(two, x=torch.rand(K, DX), y=torch.rand(4, 3))
    with pytest.raises(ValueError, match=r"^Mixture.at\(q\(z\|x\), ...\): its weights must be 5 logits, one per "
                                         r"component; got an nn.Parameter of shape \(4,\)"):
        Mixture.at(q, nn.Parameter(torch.zeros(4)), x=torch.rand(K, DX))
    with pytest.raises(ValueError, match=r"its weights must be positive; got \[1.0, 0.0, 1.0, 1.0, 1.0\]"):
        Mixture.at(q, [1.0, 0.0, 1.0, 1.0, 1.0], x=torch.rand(K, DX))
    with pytest.raises(TypeError, match=r"weights must be None \(uniform\), K positive numbers or an nn.Parameter"):
        Mixture.at(q, "uniform", x=torch.rand(K, DX))
    with pytest.raises(ValueError, match=r"the inputs hold no values \(K = 0 along dim 0\)"):
        Mixture.at(q, x=torch.rand(0, DX))
    wide = Mixture.at(q, x=torch.rand(K, DX + 1, dtype=torch.float64))  # the encoder takes DX features
    with pytest.raises(ValueError, match=r"^p\(z\), q\(z\|x\) mixed over the K values `x` of shape \(5, 7\) "
                                         r"\(Mixture.at\): q\(z\|x\)"):
        wide.log_prob({"z": torch.zeros(4, DZ, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"^p\(z\), q\(z\|x\) mixed over the K values `x` of shape \(5, 7\)"):
        wide.sample({}, sample_shape=2)
    conditional = Mixture.at(Normal("q(z|x,y)", net=Encoder(DX + 3)), x=torch.rand(K, DX, dtype=torch.float64))
    with pytest.raises(KeyError, match=r"p\(z\|y\) needs input `y`; got \['z'\]"):
        conditional.log_prob({"z": torch.zeros(4, DZ, dtype=torch.float64)})
    with pytest.raises(KeyError, match=r"p\(z\|y\) needs input `y`; got nothing"):
        conditional.sample({}, sample_shape=3)
    with pytest.raises(TypeError, match=r"^Mixture.at takes one pgm distribution of one variable"):
        Mixture.at(q * Normal("p(w)", loc=0.0, scale=1.0, features_shape=[1]), x=torch.rand(K, DX))
