"""Terms a researcher writes: Term(fn, latex), Input, detach and the elementwise functions of losses. Each value is
compared with the same computation in plain torch on the same samples, each LaTeX string exactly."""
import math

import pytest
import torch
import torch.distributions as td
from torch import nn

from pgm.distributions import Normal
from pgm.losses import (E, IWAE, Input, LogMeanExp, LogProb, Parameter, Term, detach, exp, log, logsumexp, maximum,
                        minimum, sqrt)
from pgm.models import Model

from loss_nets import Gaussian

B, D = 7, 3


def rbf_mmd(a, b):
    """The biased MMD^2 estimate with an RBF kernel of bandwidth 1, between two sample sets (n, D)."""
    def k(u, v):
        return torch.exp(-torch.cdist(u, v).pow(2) / 2).mean()
    return k(a, a) + k(b, b) - 2 * k(a, b)


@pytest.fixture
def vae():
    q = Normal("q(z|x)", net=Gaussian(4, D))
    p = Normal("p(x|z)", net=Gaussian(D, 4))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[D])
    return q, p, prior, torch.randn(B, 4)


def test_an_mmd_term_between_samples_of_q_and_of_the_prior(vae):
    q, p, prior, x = vae
    mmd = Term(rbf_mmd, r"\mathrm{MMD}\left[q(z|x)\|p(z)\right]", "MMD[q||p]", inputs={"a": q, "b": prior})
    loss = (-E(q, LogProb(p)) + mmd).mean()
    assert loss.latex() == (r"\mathbb{E}_{p_{data}(x)}\left[- \mathbb{E}_{q(z|x)}\left[\log p(x|z)\right] + "
                            r"\mathrm{MMD}\left[q(z|x)\|p(z)\right]\right]")
    assert str(loss) == "E_p_data(x)[-E_q(z|x)[log p(x|z)] + MMD[q||p]]"
    assert loss.input_var == ["x"] and mmd.distributions == [q, prior]
    torch.manual_seed(1)
    value = loss.eval({"x": x})
    torch.manual_seed(1)  # the same draws in the same order: q's (shared by E and the term), then the prior's
    z = q.torch_distribution({"x": x}).rsample()
    z_prior = torch.randn(B, D)
    params = p.get_params({"z": z})
    expected = (-td.Normal(params["loc"], params["scale"]).log_prob(x).sum(-1)).mean() + rbf_mmd(z, z_prior)
    torch.testing.assert_close(value, expected)


def test_a_term_shares_the_draw_with_the_expectation_over_the_same_distribution(vae):
    q, _, _, x = vae
    total = Term(lambda z: z.sum(-1), r"s(z)", inputs={"z": q}) - E(q, Term(lambda z: z.sum(-1), r"s(z)"))
    assert torch.equal(total.eval({"x": x}), torch.zeros(B))


def test_a_term_network_is_trained_by_the_model(vae):
    q, p, prior, x = vae
    critic = nn.Linear(D, 1)
    score = Term(lambda z: critic(z).squeeze(-1), r"T(z)", inputs={"z": q})
    score.fn = critic_fn = _Critic(critic)
    model = Model((-E(q, LogProb(p)) + score).mean(), distributions=[q, p])
    assert any(p_ is critic.weight for p_ in model.optimizer.param_groups[0]["params"])
    before = critic.weight.detach().clone()
    model.train({"x": x})
    assert not torch.equal(before, critic.weight) and critic_fn.calls == 1


class _Critic(nn.Module):
    def __init__(self, linear):
        super().__init__()
        self.linear, self.calls = linear, 0

    def forward(self, z):
        self.calls += 1
        return self.linear(z).squeeze(-1)


def test_per_example_inputs_weigh_the_terms(vae):
    q, p, _, x = vae
    w = torch.rand(B)
    loss = (Input("w") * LogProb(q)).mean()
    z = torch.randn(B, D)
    assert loss.latex() == r"\mathbb{E}_{p_{data}(w,x,z)}\left[w \log q(z|x)\right]"
    assert loss.input_var == ["w", "z", "x"]
    torch.testing.assert_close(loss.eval({"x": x, "z": z, "w": w}), (w * q.log_prob({"x": x, "z": z})).mean())


def test_detach_keeps_the_value_and_stops_the_gradient(vae):
    q, _, _, x = vae
    z = torch.randn(B, D)
    both = (LogProb(q) + detach(2 * LogProb(q))).mean()
    assert both.latex() == (r"\mathbb{E}_{p_{data}(x,z)}\left[\log q(z|x) + "
                            r"\mathrm{sg}\left[2 \log q(z|x)\right]\right]")
    value = both.eval({"x": x, "z": z})
    torch.testing.assert_close(value, 3 * q.log_prob({"x": x, "z": z}).mean())
    grad, = torch.autograd.grad(value, q.net.linear.weight)
    expected, = torch.autograd.grad(q.log_prob({"x": x, "z": z}).mean(), q.net.linear.weight)
    torch.testing.assert_close(grad, expected)  # only the term outside detach contributes


def test_elementwise_functions_match_torch(vae):
    q, _, _, x = vae
    z = torch.randn(B, D)
    inputs = {"x": x, "z": z, "w": torch.rand(B) + 0.1}
    lq, w = q.log_prob({"x": x, "z": z}), inputs["w"]
    cases = [
        (log(Input("w")), torch.log(w), r"\log\left(w\right)"),
        (exp(LogProb(q)), torch.exp(lq), r"\exp\left(\log q(z|x)\right)"),
        (sqrt(Input("w")), torch.sqrt(w), r"\sqrt{w}"),
        (logsumexp(LogProb(q), Input("w"), 0.5), torch.logsumexp(torch.stack([lq, w, torch.full_like(w, 0.5)]), 0),
         r"\log\left(e^{\log q(z|x)} + e^{w} + e^{0.5}\right)"),
        (minimum(LogProb(q), Input("w")), torch.minimum(lq, w), r"\min\left(\log q(z|x), w\right)"),
        (maximum(LogProb(q), Parameter("c")), torch.maximum(lq, torch.tensor(-1.0)), r"\max\left(\log q(z|x), c\right)"),
    ]
    for loss, expected, latex in cases:
        assert loss.latex() == latex
        torch.testing.assert_close(loss.eval(inputs, c=-1.0), expected)
    assert str(cases[3][0]) == "logsumexp(log q(z|x), w, 0.5)" and str(cases[4][0]) == "min(log q(z|x), w)"


def test_a_mixture_density_written_with_logsumexp(vae):
    """log(1/2 q(z|x) + 1/2 q(z|w)): the MMVAE posterior as a formula, against MixtureSameFamily."""
    q, _, _, x = vae
    q_w = Normal("q(z|w)", net=Gaussian(4, D))
    w, z = torch.randn(B, 4), torch.randn(B, D)
    mixture = logsumexp(math.log(0.5) + LogProb(q), math.log(0.5) + LogProb(q_w))
    a, b = q.get_params({"x": x}), q_w.get_params({"w": w})
    reference = td.MixtureSameFamily(
        td.Categorical(torch.full((B, 2), 0.5)),
        td.Independent(td.Normal(torch.stack([a["loc"], b["loc"]], 1), torch.stack([a["scale"], b["scale"]], 1)), 1))
    torch.testing.assert_close(mixture.eval({"x": x, "w": w, "z": z}), reference.log_prob(z))


def test_log_mean_exp_of_the_importance_weights_is_iwae(vae):
    q, p, prior, x = vae
    joint = p * prior
    bound = LogMeanExp(q, LogProb(joint) - LogProb(q), sample_shape=5)
    assert bound.latex() == (r"\mathbb{E}_{z_{1:5} \sim q(z|x)}\left[\log \frac{1}{5}\sum_{k=1}^{5} "
                             r"e^{\log p(x,z_k) - \log q(z_k|x)}\right]")
    torch.manual_seed(3)
    value = bound.eval({"x": x})
    torch.manual_seed(3)
    torch.testing.assert_close(value, IWAE(joint, q, sample_shape=5).eval({"x": x}))
    assert value.shape == (B,)


def test_term_errors(vae):
    q, _, _, x = vae
    with pytest.raises(ValueError, match=r"^Term s\(z\): its function must return one value per example, shape "
                                         r"\(7,\), or one number, shape \(\); got shape \(7, 3\)\. Sum the event dims"):
        Term(lambda z: z, "s(z)", inputs={"z": q}).eval({"x": x})
    with pytest.raises(TypeError, match=r"^Term s: its function must return a tensor; got float"):
        Term(lambda x: 1.0, "s").eval({"x": x})
    with pytest.raises(ValueError, match=r"^Term s: inputs names \['y'\], which are not arguments of its function "
                                         r"\['x'\]"):
        Term(lambda x: x, "s", inputs={"y": q})
    with pytest.raises(TypeError, match=r"^Term s: inputs\['x'\] must be a variable's name, a distribution, "
                                        r"ParametersOf\(q\) or TorchDistributionOf\(q\); got int"):
        Term(lambda x: x, "s", inputs={"x": 3})
    with pytest.raises(TypeError, match=r"^Term s: its function must take named positional arguments"):
        Term(lambda *a: a[0], "s")
    with pytest.raises(KeyError, match=r"the loss needs input `u` \(`u` is used by Term s\)"):
        Term(lambda u: u.sum(-1), "s").eval({"x": x})
    with pytest.raises(ValueError, match=r"^an Input's name must be an identifier such as 'w'; got '1w'"):
        Input("1w")
    with pytest.raises(TypeError, match=r"got a Tensor of shape \(7,\)\. A formula is evaluated anew on each batch, "
                                        r"so pass per-example values as inputs and name them in it: Input\('w'\)"):
        LogProb(q) + torch.ones(B)
    with pytest.raises(ValueError, match=r"^logsumexp takes at least two losses; got 1"):
        logsumexp(LogProb(q))


def test_term_construction_errors():
    with pytest.raises(TypeError, match=r"^Term takes a function of the named inputs; got int\.$"):
        Term(3, "s")
    with pytest.raises(TypeError, match=r"^Term needs its LaTeX as a string, e\.g\. r'\\mathrm\{MMD\}'; got int\.$"):
        Term(lambda z: z, 3)
    with pytest.raises(TypeError, match=r"^Term s: cannot read the argument names of <built-in function max>; pass a "
                                        r"function with named arguments"):
        Term(max, "s")


def test_log_mean_exp_refuses_a_proposal_without_a_reparameterized_sampler():
    from pgm.distributions import Categorical
    q = Categorical("q(y|x)", net=lambda x: {"logits": torch.zeros(len(x), 2)})
    with pytest.raises(ValueError, match=r"^LogMeanExp over q\(y\|x\): Categorical has no reparameterized sampler; "
                                         r"use a relaxed family, IWAE\(p, q, K\)"):
        LogMeanExp(q, LogProb(q), 4)
