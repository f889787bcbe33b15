"""Mixture: log-density against torch's MixtureSameFamily, draws, the stratified estimator, renaming, errors."""
import math

import pytest
import torch
import torch.distributions as td
from torch import nn

from pgm.distributions import Bernoulli, Deterministic, Mixture, Normal
from pgm.losses import E, LogProb, Term

BATCH, DX, DW, DZ = 5, 4, 3, 2
F64 = torch.float64


class Gaussian(nn.Module):
    def __init__(self, in_features, shift=0.0):
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * DZ, dtype=F64)
        self.shift = shift

    def forward(self, *inputs):
        loc, scale = self.linear(torch.cat(inputs, -1)).chunk(2, -1)
        return {"loc": loc + self.shift, "scale": nn.functional.softplus(scale) + 0.2}


class Logits(nn.Module):
    """Mixing logits from both inputs, (batch, 2)."""

    def __init__(self, out=2):
        super().__init__()
        self.linear = nn.Linear(DX + DW, out, dtype=F64)

    def forward(self, x, w):
        return self.linear(torch.cat([x, w], -1))


@pytest.fixture
def components():
    return Normal("q(z|x)", net=Gaussian(DX, -2.0)), Normal("q(z|w)", net=Gaussian(DW, 2.0))


@pytest.fixture
def data():
    return {"x": torch.randn(BATCH, DX, dtype=F64), "w": torch.randn(BATCH, DW, dtype=F64)}


def _reference(components, data, logits):
    """torch's MixtureSameFamily from the components' parameters and the mixing logits."""
    a, b = components[0].get_params({"x": data["x"]}), components[1].get_params({"w": data["w"]})
    normal = td.Normal(torch.stack([a["loc"], b["loc"]], -2), torch.stack([a["scale"], b["scale"]], -2))
    return td.MixtureSameFamily(td.Categorical(logits=logits.expand(BATCH, 2)), td.Independent(normal, 1))


def _weights(kind):
    """(the weights argument, a function of the inputs returning the reference logits)."""
    if kind == "uniform":
        return None, lambda d: torch.zeros(2, dtype=F64)
    if kind == "fixed":
        return [0.3, 0.7], lambda d: torch.tensor([0.3, 0.7], dtype=F64).log()
    if kind == "learned":
        logits = nn.Parameter(torch.tensor([0.5, -1.0], dtype=F64))
        return logits, lambda d: logits
    net = Logits()
    return net, lambda d: net(d["x"], d["w"])


KINDS = ["uniform", "fixed", "learned", "network"]


@pytest.mark.parametrize("kind", KINDS)
def test_log_prob_matches_mixture_same_family(components, data, kind):
    weights, logits = _weights(kind)
    mixture = Mixture(components, weights)
    assert (mixture.prob_text, mixture.cond_var) == ("q(z|x,w)", ["x", "w"])
    assert not mixture.has_reparam and mixture.has_log_prob
    reference = _reference(components, data, logits(data))
    z = torch.randn(3, BATCH, DZ, dtype=F64)  # sample dims in front of the value
    got = mixture.log_prob({**data, "z": z})
    assert got.shape == (3, BATCH)
    torch.testing.assert_close(got, reference.log_prob(z))


@pytest.mark.parametrize("kind", ["fixed", "network"])
def test_samples_match_the_mixture_mean_and_variance(components, data, kind):
    weights, logits = _weights(kind)
    mixture = Mixture(components, weights)
    reference = _reference(components, data, logits(data))
    mean, variance = mixture.sample_mean(data), mixture.sample_variance(data)
    # the formulas: sum_k pi_k mu_k and sum_k pi_k (s_k^2 + mu_k^2) - mean^2
    torch.testing.assert_close(mean, reference.mean)
    torch.testing.assert_close(variance, reference.variance)
    torch.manual_seed(0)
    n = 40000
    z = mixture.sample(data, sample_shape=n)["z"]
    assert z.shape == (n, BATCH, DZ)
    # the components are about 4 apart, so a wrong choice of component shows as a shift of order 1;
    # the standard error of the empirical mean is below sqrt(5 / 40000) ~ 0.011
    torch.testing.assert_close(z.mean(0), mean.detach(), atol=0.06, rtol=0)
    torch.testing.assert_close(z.var(0), variance.detach(), atol=0.15, rtol=0.05)


def test_each_draw_is_one_components_draw(components, data):
    mixture = Mixture(components)
    torch.manual_seed(3)
    z = mixture.sample(data, sample_shape=7)["z"]
    torch.manual_seed(3)
    z_x = components[0].sample(data, sample_shape=7)["z"]
    z_w = components[1].sample(data, sample_shape=7)["z"]
    from_x = (z == z_x).all(-1)
    assert bool((from_x | (z == z_w).all(-1)).all()) and 0 < int(from_x.sum()) < 7 * BATCH


@pytest.mark.parametrize("kind", ["fixed", "network"])
def test_component_posterior_by_hand(components, data, kind):
    weights, logits = _weights(kind)
    mixture = Mixture(components, weights)
    z = torch.randn(BATCH, DZ, dtype=F64)
    a, b = components[0].get_params({"x": data["x"]}), components[1].get_params({"w": data["w"]})
    log_q = torch.stack([td.Normal(a["loc"], a["scale"]).log_prob(z).sum(-1),
                         td.Normal(b["loc"], b["scale"]).log_prob(z).sum(-1)], -1)
    joint = (torch.log_softmax(logits(data), -1) + log_q).exp()
    posterior = mixture.component_posterior({**data, "z": z})
    assert posterior.shape == (BATCH, 2)
    torch.testing.assert_close(posterior, joint / joint.sum(-1, keepdim=True))


def test_stratified_expectation_by_hand(components, data):
    logits = nn.Parameter(torch.tensor([0.5, -1.0], dtype=F64))
    mixture = Mixture(components, logits)
    p = Normal("p(x|z)", net=lambda z: {"loc": z.sum(-1, keepdim=True).expand(*z.shape[:-1], DX),
                                         "scale": torch.ones(*z.shape[:-1], DX, dtype=z.dtype)})
    loss = E(mixture, LogProb(p), sample_shape=4)
    assert loss.estimator == "stratified"
    torch.manual_seed(5)
    value = loss.eval(data)
    torch.manual_seed(5)
    expected = 0
    for k, c in enumerate(components):
        z = c.sample(data, sample_shape=4)["z"]
        flat = {"x": data["x"].repeat(4, 1), "z": z.reshape(4 * BATCH, DZ)}  # a dict's dim 0 is its batch
        f = p.log_prob(flat).reshape(4, BATCH).mean(0)
        expected = expected + torch.softmax(logits, -1)[k] * f
    assert value.shape == (BATCH,)
    torch.testing.assert_close(value, expected)
    value.sum().backward()
    assert logits.grad is not None and bool(logits.grad.abs().sum() > 0)
    assert all(q.grad is not None for c in components for q in c.parameters())


def test_stratified_with_network_weights_reaches_the_network(components, data):
    net = Logits()
    mixture = Mixture(components, net)
    E(mixture, LogProb(mixture)).eval(data).sum().backward()
    assert all(q.grad is not None and bool(q.grad.abs().sum() > 0) for q in net.parameters())


def test_stratified_gradient_of_discrete_components_by_the_score_function():
    """d/d theta_k of sum_k pi_k E_{Bernoulli(sigmoid(theta_k))}[z] is pi_k sigmoid'(theta_k)."""
    theta = [nn.Parameter(torch.tensor([0.3], dtype=F64)), nn.Parameter(torch.tensor([-1.0], dtype=F64))]
    mixture = Mixture([Bernoulli("q(z)", logits=t, features_shape=[1]) for t in theta], [0.25, 0.75])
    loss = E(mixture, Term(lambda z: z.sum(-1), "s(z)"), sample_shape=20000)
    value = loss.eval({"x": torch.zeros(2, 1, dtype=F64)})
    expected = 0.25 * torch.sigmoid(theta[0]) + 0.75 * torch.sigmoid(theta[1])
    torch.testing.assert_close(value, expected.expand(2), atol=0.02, rtol=0)  # standard error < 0.004
    value.mean().backward()
    for t, pi in zip(theta, (0.25, 0.75)):
        s = torch.sigmoid(t.detach())
        torch.testing.assert_close(t.grad, pi * s * (1 - s), atol=0.02, rtol=0)


def test_score_function_estimator_on_a_mixture(components, data):
    mixture = Mixture(components)
    with pytest.raises(ValueError, match=r"Mixture has no reparameterized sampler"):
        E(mixture, LogProb(mixture), estimator="reparameterized")
    value = E(mixture, LogProb(mixture), estimator="score_function", sample_shape=3).eval(data)
    assert value.shape == (BATCH,) and bool(torch.isfinite(value).all())


def test_renamed_mixture_uses_the_new_names(components, data):
    net = Logits()
    mixture = Mixture(components, net)
    renamed = mixture.replace_var(z="a", x="y")
    assert renamed.prob_text == "q(a|y,w)" and renamed.cond_var == ["y", "w"]
    assert renamed.latex() == r"q(a|y,w) = \pi_{1}(y,w) q(a|y) + \pi_{2}(y,w) q(a|w)"
    assert set(renamed.parameters()) == set(mixture.parameters())
    inputs = {"y": data["x"], "w": data["w"]}
    drawn = renamed.sample(inputs, sample_shape=2)
    assert set(drawn) == {"y", "w", "a"} and drawn["a"].shape == (2, BATCH, DZ)
    z = torch.randn(BATCH, DZ, dtype=F64)
    torch.testing.assert_close(renamed.log_prob({**inputs, "a": z}), mixture.log_prob({**data, "z": z}))
    fixed = Mixture(components, [0.25, 0.75]).replace_var(z="a")
    assert fixed.latex() == "q(a|x,w) = 0.25 q(a|x) + 0.75 q(a|w)"


def test_latex_and_repr(components):
    assert Mixture(components).latex() == r"q(z|x,w) = \frac{1}{2} q(z|x) + \frac{1}{2} q(z|w)"
    learned = Mixture(components, nn.Parameter(torch.zeros(2)), name="r")
    assert learned.latex() == r"r(z|x,w) = \pi_{1} q(z|x) + \pi_{2} q(z|w)"
    assert repr(learned).startswith("Mixture(\n  r(z|x,w) = \\pi_{1} q(z|x) + \\pi_{2} q(z|w)\n")


def test_a_mixture_of_priors_without_conditions():
    prior = Mixture([Normal("p(z)", loc=-1.0, scale=1.0, features_shape=[DZ]),
                     Normal("p(z)", loc=3.0, scale=0.5, features_shape=[DZ])], [0.5, 0.5])
    assert prior.prob_text == "p(z)" and prior.required_var == []
    torch.testing.assert_close(prior.sample_mean(), torch.full((DZ,), 1.0))
    torch.testing.assert_close(prior.sample_variance(), torch.full((DZ,), 0.5 * 1 + 0.5 * 0.25 + 4.0))
    z = prior.sample({"x": torch.zeros(BATCH, 1)})["z"]
    assert z.shape == (BATCH, DZ)
    expected = torch.logsumexp(torch.stack([td.Normal(-1.0, 1.0).log_prob(z).sum(-1),
                                            td.Normal(3.0, 0.5).log_prob(z).sum(-1)]), 0) + math.log(0.5)
    torch.testing.assert_close(prior.log_prob({"z": z}), expected)


def test_errors(components, data):
    q_x, q_w = components
    with pytest.raises(ValueError, match=r"^Mixture\(\[q\(z\|x\)\]\): a mixture needs at least 2 components"):
        Mixture([q_x])
    with pytest.raises(ValueError, match=r"^Mixture\(\[q\(z\|x\), q\(a\|w\)\]\): its components must generate the "
                                         r"same single variable; q\(a\|w\) generates \['a'\], q\(z\|x\) \['z'\]\. "
                                         r"Rename with replace_var, e.g. d.replace_var\(a='z'\)"):
        Mixture([q_x, q_w.replace_var(z="a")])
    with pytest.raises(TypeError, match=r"^Mixture takes a list of pgm distributions"):
        Mixture([q_x, "q(z|w)"])
    with pytest.raises(ValueError, match=r"^Mixture q\(z\|x,w\): its weights must be 2 numbers, one per component; "
                                         r"got shape \(3,\)"):
        Mixture(components, [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match=r"^Mixture q\(z\|x,w\): its weights must be 2 logits, one per component; "
                                         r"got an nn.Parameter of shape \(3,\)"):
        Mixture(components, nn.Parameter(torch.zeros(3)))
    with pytest.raises(ValueError, match=r"^Mixture q\(z\|x,w\): its weights must be positive; got \[0.0, 1.0\]"):
        Mixture(components, [0.0, 1.0])
    with pytest.raises(ValueError, match=r"^Mixture p\(z\) has no conditioning variables for a network of weights"):
        Mixture([Normal("p(z)", loc=0.0, scale=1.0, features_shape=[DZ])] * 2, Logits())
    with pytest.raises(TypeError, match=r"^Mixture q\(z\|x,w\): weights must be None, 2 numbers"):
        Mixture(components, "uniform")
    wrong = Mixture(components, Logits(out=3))
    with pytest.raises(ValueError, match=r"^Mixture q\(z\|x,w\): its weights network must return logits of shape "
                                         r"\(batch, K\) = \(5, 2\); got shape \(5, 3\)"):
        wrong.log_prob({**data, "z": torch.zeros(BATCH, DZ, dtype=F64)})
    point = Mixture([q_x, Deterministic("q(z|w)", net=lambda w: {"loc": w[:, :DZ]})])
    with pytest.raises(ValueError, match=r"^q\(z\|x,w\): its component q\(z\|w\): Deterministic has no density"):
        point.log_prob({**data, "z": torch.zeros(BATCH, DZ, dtype=F64)})


def test_weight_errors_name_the_mixture(components, data):
    with pytest.raises(TypeError, match=r"weights must be None, 2 numbers, an nn\.Parameter of 2 logits or a network; "
                                        r"got str"):
        Mixture(list(components), weights="uniform")
    mixture = Mixture(list(components), weights=nn.Linear(DX + DW, 2).double())
    with pytest.raises(KeyError, match=r"q\(z\|x,w\) needs input `w` for its weights; got \['x'\]"):
        mixture.component_weights({"x": data["x"]})
