"""The public interface a term calls on a distribution (sample, log_prob, entropy, sample_mean, sample_variance,
enumerate_support), the same for a family, a product, a marginal and a product of experts; the exact marginal by
enumeration; the ELBO helper. References are torch.distributions and plain-torch sums."""
import itertools

import pytest
import torch
import torch.distributions as td
from torch import nn

from pgm import Context
from pgm.distributions import (Bernoulli, Categorical, Distribution, Family, JointDistribution, Normal,
                               ProductOfNormal)
from pgm.losses import ELBO, E, KL, LogProb

B, K, D = 6, 3, 2


class Linear(nn.Module):
    def __init__(self, i, o, head="gaussian"):
        super().__init__()
        self.linear, self.head = nn.Linear(i, 2 * o if head == "gaussian" else o), head

    def forward(self, *inputs):
        h = self.linear(torch.cat(inputs, -1))
        if self.head == "gaussian":
            loc, scale = h.chunk(2, -1)
            return {"loc": loc, "scale": nn.functional.softplus(scale) + 0.1}
        return {"logits": h}


@pytest.fixture
def gmm():
    p_y = Categorical("p(y)", logits=nn.Parameter(torch.randn(K)))
    p_x = Normal("p(x|y)", net=Linear(K, D))
    return p_x, p_y, torch.randn(B, D)


def test_marginal_over_a_categorical_is_exact(gmm):
    p_x, p_y, x = gmm
    marginal = (p_x * p_y).marginalize_var("y")
    assert marginal.latex() == r"p(x) = \sum_{y} p(x|y)p(y)"
    assert LogProb(marginal).input_var == ["x"]  # it does not ask for y
    params = p_x.get_params({"y": torch.eye(K)})
    reference = td.MixtureSameFamily(td.Categorical(logits=p_y.logits),
                                     td.Independent(td.Normal(params["loc"], params["scale"]), 1))
    torch.testing.assert_close(LogProb(marginal).eval({"x": x}), reference.log_prob(x))


def test_marginal_over_bernoulli_codes_is_exact():
    p_z = Bernoulli("p(z)", probs=torch.tensor([0.2, 0.7]))
    p_x = Normal("p(x|z)", net=Linear(2, D))
    x = torch.randn(B, D)
    total = 0
    for bits in itertools.product([0.0, 1.0], repeat=2):
        z = torch.tensor(bits)
        params = p_x.get_params({"z": z.expand(B, 2)})
        total = total + td.Bernoulli(probs=p_z.probs).log_prob(z).sum().exp() * \
            td.Normal(params["loc"], params["scale"]).log_prob(x).sum(-1).exp()
    torch.testing.assert_close((p_x * p_z).marginalize_var("z").log_prob({"x": x}), total.log())


def test_a_continuous_marginal_says_it_has_no_closed_form():
    p_x, prior = Normal("p(x|z)", net=Linear(D, D)), Normal("p(z)", loc=0.0, scale=1.0, features_shape=[D])
    marginal = (p_x * prior).marginalize_var("z")
    assert marginal.latex() == r"p(x) = \int p(x|z)p(z) \, dz"
    with pytest.raises(ValueError, match=r"^LogProb\(p\(x\)\): log p\(x\) needs `z` integrated out, which has no "
                                         r"closed form \(p\(z\) is not discrete\); estimate it with pgm.losses.IWAE"):
        LogProb(marginal)


def test_sample_mean_and_variance_match_torch(gmm):
    p_x, p_y, _ = gmm
    y = torch.eye(K)[torch.randint(K, (B,))]
    params = p_x.get_params({"y": y})
    torch.testing.assert_close(p_x.sample_mean({"y": y}), params["loc"])
    torch.testing.assert_close(p_x.sample_variance({"y": y}), params["scale"] ** 2)
    torch.testing.assert_close(p_y.sample_mean(), torch.softmax(p_y.logits, -1))
    poe = ProductOfNormal([Normal("q(z|x)", net=Linear(D, D))])
    x = torch.randn(B, D)
    torch.testing.assert_close(poe.sample_mean({"x": x}), poe.get_params({"x": x})["loc"])
    means = (p_x * p_y).sample_mean({})
    assert set(means) == {"y", "x"} and means["y"].shape == (K,)


def test_a_context_is_extended_by_sampling_and_shared(gmm):
    p_x, p_y, x = gmm
    q = Normal("q(z|x)", net=Linear(D, D))
    context = Context.from_inputs({"x": x})
    inner = q.sample(context, sample_shape=4)
    assert isinstance(inner, Context) and inner["z"].shape == (4, B, D) and inner.batch_shape == (4, B)
    assert torch.equal(q.sample(context, sample_shape=4)["z"], inner["z"])  # one draw per evaluation
    assert q.log_prob(inner).shape == (4, B)
    assert "z" in inner and "z" not in context and inner.get("w") is None


def test_a_family_in_a_few_lines():
    class Gumbel(Family):
        family = td.Gumbel
        parameter_sets = (("loc", "scale"),)

    g = Gumbel("p(v|x)", net=Linear(D, D))
    x = torch.randn(B, D)
    v = g.sample({"x": x})["v"]
    params = g.get_params({"x": x})
    torch.testing.assert_close(g.log_prob({"x": x, "v": v}), td.Gumbel(params["loc"], params["scale"]).log_prob(v).sum(-1))
    assert isinstance(g, Distribution) and g.has_reparam and not g.has_enumerate_support


def test_elbo_uses_the_analytic_kl_where_it_can():
    q = Normal("q(z|x)", net=Linear(D, D))
    p_x, prior = Normal("p(x|z)", net=Linear(D, D)), Normal("p(z)", loc=0.0, scale=1.0, features_shape=[D])
    x = torch.randn(B, D)
    elbo = ELBO(p_x * prior, q)
    assert elbo.latex() == r"\mathbb{E}_{q(z|x)}\left[\log p(x|z)\right] - D_{KL}\left[q(z|x)\|p(z)\right]"
    torch.manual_seed(0)
    value = elbo.eval({"x": x})
    torch.manual_seed(0)
    torch.testing.assert_close(value, (E(q, LogProb(p_x)) - KL(q, prior)).eval({"x": x}))
    laplace_prior = Categorical("p(y)", probs=torch.full((K,), 1 / K))
    q_y = Categorical("q(y|x)", net=Linear(D, K, head="logits"))
    p_xy = Normal("p(x|y)", net=Linear(K, D))
    both = ELBO(p_xy * laplace_prior, q_y)
    assert both.latex() == r"\mathbb{E}_{q(y|x)}\left[\log p(x|y)\right] - D_{KL}\left[q(y|x)\|p(y)\right]"
    assert both.children[0].estimator == "score_function"

    class StudentT(Family):  # torch has no closed-form KL of a Normal against it
        family = td.StudentT
        parameter_sets = (("df", "loc", "scale"),)

    heavy = StudentT("p(z)", df=3.0, loc=0.0, scale=1.0, features_shape=[D])
    general = ELBO(JointDistribution([p_x, heavy]), q)
    assert general.latex() == r"\mathbb{E}_{q(z|x)}\left[\log p(x,z) - \log q(z|x)\right]"
    torch.manual_seed(0)
    value = general.eval({"x": x})
    torch.manual_seed(0)
    z = q.torch_distribution({"x": x}).rsample()
    params = p_x.get_params({"z": z})
    expected = (td.Normal(params["loc"], params["scale"]).log_prob(x).sum(-1) + td.StudentT(3.0).log_prob(z).sum(-1)
                - q.torch_distribution({"x": x}, independent=True).log_prob(z))
    torch.testing.assert_close(value, expected)
    with pytest.raises(ValueError, match=r"^ELBO: q\(z\|x\) generates \['z'\], which p\(x\|y\) does not"):
        ELBO(p_xy, q)


def test_what_a_distribution_lacks_is_named():
    q = Normal("q(z|x)", net=Linear(D, D))
    with pytest.raises(ValueError, match=r"^q\(z\|x\): Normal has no finite support to enumerate; sample it instead"):
        q.enumerate_support({"x": torch.randn(B, D)})
    from pgm.distributions import Density
    target = Density("p(z)", lambda z: -z.pow(2).sum(-1))
    with pytest.raises(ValueError, match=r"^p\(z\): Density has no closed-form mean; average samples instead\.$"):
        target.sample_mean()
    with pytest.raises(ValueError, match=r"^p\(z\): Density has no closed-form variance; use samples instead\.$"):
        target.sample_variance()


def test_a_family_overriding_the_old_hook_name_is_told_the_new_one():
    with pytest.raises(TypeError, match=r"Counts: the method that builds the torch distribution is now "
                                        r"torch_distribution_of\(self, params\); rename Counts._torch to it."):
        class Counts(Family):
            family = td.Poisson
            parameter_sets = (("rate",),)

            def _torch(self, params):
                return td.Poisson(**params)
