"""Products (factorized joints), marginals and their posteriors, and renaming with replace_var."""
import math

import pytest
import torch
import torch.distributions as td
from torch import nn

from pgm.distributions import (
    Bernoulli, Categorical, Density, JointDistribution, MarginalDistribution, Mixture, Normal, ProductOfNormal, RelaxedCategorical,
)
from pgm.losses import E, LogProb

BATCH, DX, DW, DA = 4, 5, 2, 3


class Gaussian(nn.Module):
    """loc = 10 * linear(inputs), a tiny scale: a draw shows which value of its input it was made from."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, *inputs):
        loc = 10 * self.linear(torch.cat(inputs, -1))
        return {"loc": loc, "scale": torch.full_like(loc, 1e-3)}


@pytest.fixture
def factors():
    return (Normal("p(x|a)", net=Gaussian(DA, DX)), Normal("p(w|a)", net=Gaussian(DA, DW)),
            Normal("p(a)", loc=0.0, scale=1.0, features_shape=[DA]))


def _independent_log_prob(d, inputs, value):
    """A factor's log-density computed straight from its network with torch.distributions."""
    params = d.net(*inputs)
    return td.Independent(td.Normal(params["loc"], params["scale"]), 1).log_prob(value)


def test_product_signature_and_latex(factors):
    p_x, p_w, p_a = factors
    joint = p_x * p_w * p_a
    assert isinstance(joint, JointDistribution)
    assert (joint.name, joint.var, joint.cond_var) == ("p", ["x", "w", "a"], [])
    assert joint.prob_text == "p(x,w,a)"
    assert joint.latex() == "p(x,w,a) = p(x|a)p(w|a)p(a)"
    assert repr(joint).startswith("JointDistribution(\n  p(x,w,a) = p(x|a)p(w|a)p(a)\n")
    assert list(joint.factors) == [p_x, p_w, p_a]
    assert set(joint.parameters()) == set(p_x.parameters()) | set(p_w.parameters())
    # products of products flatten
    assert (p_x * (p_w * p_a)).latex() == "p(x,w,a) = p(x|a)p(w|a)p(a)"


def test_product_with_mixed_names_and_a_condition():
    joint = Normal("q(a|x)", net=Gaussian(DX, DA)) * Normal("r(z|a,y)", net=Gaussian(DA + 1, 2))
    assert (joint.prob_text, joint.cond_var) == ("p(a,z|x,y)", ["x", "y"])
    assert joint.latex() == "p(a,z|x,y) = q(a|x)r(z|a,y)"


def test_product_log_prob_is_the_sum_of_the_factors(factors):
    p_x, p_w, p_a = factors
    x, w, a = torch.randn(BATCH, DX), torch.randn(BATCH, DW), torch.randn(BATCH, DA)
    got = (p_x * p_w * p_a).log_prob({"x": x, "w": w, "a": a})
    expected = (_independent_log_prob(p_x, [a], x) + _independent_log_prob(p_w, [a], w)
                + td.Independent(td.Normal(torch.zeros(DA), torch.ones(DA)), 1).log_prob(a))
    assert got.shape == (BATCH,)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("order", ["xwa", "axw", "wax"])
@pytest.mark.parametrize("sample_shape", [(), (5,), (3, 2)], ids=str)
def test_product_samples_in_dependency_order(factors, order, sample_shape):
    by_var = dict(zip("xwa", factors))
    joint = by_var[order[0]] * by_var[order[1]] * by_var[order[2]]
    out = joint.sample({}, sample_shape=sample_shape)
    assert set(out) == {"x", "w", "a"}
    assert out["a"].shape == (*sample_shape, DA)
    assert out["x"].shape == (*sample_shape, DX) and out["w"].shape == (*sample_shape, DW)
    # x and w were drawn from the a that was returned (scale 1e-3 around 10 * linear(a))
    for name, d in (("x", by_var["x"]), ("w", by_var["w"])):
        a = out["a"].reshape(-1, DA)
        expected = d.net(a)["loc"].reshape(out[name].shape)
        torch.testing.assert_close(out[name], expected, atol=0.02, rtol=0)


def test_product_samples_with_a_batch_of_conditions():
    p_x = Normal("p(x|a)", net=Gaussian(DA, DX))
    p_a = Normal("p(a|c)", net=Gaussian(2, DA))
    joint = p_x * p_a
    c = torch.randn(BATCH, 2)
    out = joint.sample({"c": c}, sample_shape=(5,))
    assert out["c"] is c
    assert out["a"].shape == (5, BATCH, DA) and out["x"].shape == (5, BATCH, DX)
    torch.testing.assert_close(out["a"], p_a.net(c)["loc"].expand(5, BATCH, DA), atol=0.02, rtol=0)
    torch.testing.assert_close(out["x"], p_x.net(out["a"])["loc"], atol=0.02, rtol=0)
    one = joint.sample({"c": c})
    torch.testing.assert_close(joint.log_prob(one), _independent_log_prob(p_x, [one["a"]], one["x"])
                               + _independent_log_prob(p_a, [c], one["a"]))


def test_product_of_priors_draws_per_batch_element():
    joint = Normal("p(x|a)", net=Gaussian(DA, DX)) * Normal("p(a)", loc=0.0, scale=1.0, features_shape=[DA])
    out = joint.sample({"y": torch.zeros(BATCH, 1)}, sample_shape=(2,))
    assert out["a"].shape == (2, BATCH, DA) and out["x"].shape == (2, BATCH, DX)
    assert not torch.equal(out["a"][:, :1].expand_as(out["a"]), out["a"])


def test_product_rsample_gradients_reach_every_factor(factors):
    p_x, p_w, _ = factors
    out = (p_x * p_w * factors[2]).sample({})
    (out["x"].sum() + out["w"].sum()).backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in [*p_x.parameters(), *p_w.parameters()])


def test_product_with_a_discrete_factor_samples_it_without_gradient():
    joint = Bernoulli("p(x|a)", net=lambda a: {"logits": a}) * Normal("p(a)", loc=0.0, scale=1.0, features_shape=[3])
    for reparam in (True, False):
        out = joint.sample({}, reparam=reparam)
        assert out["x"].shape == (3,) and set(out["x"].unique().tolist()) <= {0.0, 1.0}
        assert not out["x"].requires_grad


def test_product_variable_clash_raises(factors):
    with pytest.raises(ValueError, match=r"p\(x\|a\) and q\(x\|z\) both generate `x`; a product needs distinct "
                                         r"variables. Rename one, e.g. d.replace_var\(x='x2'\) where d is q\(x\|z\)"):
        factors[0] * Normal("q(x|z)", net=Gaussian(1, DX))


def test_product_with_a_cycle_cannot_sample():
    joint = Normal("p(x|a)", net=Gaussian(DA, DA)) * Normal("p(a|x)", net=Gaussian(DA, DA))
    assert joint.prob_text == "p(x,a)"
    with pytest.raises(ValueError, match=r"p\(x,a\): cannot sample \['p\(x\|a\)', 'p\(a\|x\)'\]; their conditions "
                                         r"\['a', 'x'\] are neither given nor generated"):
        joint.sample({})


def test_product_with_a_number_raises(factors):
    with pytest.raises(TypeError, match=rf"unsupported operand type\(s\) for \*: '{type(factors[0]).__name__}' and 'int'"):
        factors[0] * 2


def test_product_entropy_raises(factors):
    with pytest.raises(ValueError, match=r"H\[p\(x,w,a\)\]: JointDistribution has no closed-form entropy; estimate it with"):
        (factors[0] * factors[1] * factors[2]).entropy({})


def test_marginalize_var(factors):
    joint = factors[0] * factors[1] * factors[2]
    marginal = joint.marginalize_var("a")
    assert isinstance(marginal, MarginalDistribution)
    assert (marginal.prob_text, marginal.var, marginal.cond_var) == ("p(x,w)", ["x", "w"], [])
    assert marginal.latex() == r"p(x,w) = \int p(x|a)p(w|a)p(a) \, da"
    assert joint.prob_text == "p(x,w,a)"  # the joint is unchanged
    out = marginal.sample({"y": torch.zeros(BATCH, 1)}, sample_shape=(2,))
    assert set(out) == {"y", "x", "w"}
    assert out["x"].shape == (2, BATCH, DX) and out["w"].shape == (2, BATCH, DW)
    with pytest.raises(ValueError, match=r"log p\(x,w\) needs `a` integrated out, which has no closed form "
                                         r"\(p\(a\) is not discrete\); estimate it with pgm.losses.IWAE"):
        marginal.log_prob({"x": out["x"], "w": out["w"]})


def test_marginalize_two_vars():
    joint = (Normal("p(x|a)", net=Gaussian(DA, DX)) * Normal("p(a|z)", net=Gaussian(2, DA))
             * Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2]))
    marginal = joint.marginalize_var("a", "z")
    assert marginal.latex() == r"p(x) = \int p(x|a)p(a|z)p(z) \, da dz"
    assert set(marginal.sample({})) == {"x"}


def test_a_marginal_of_a_marginal_keeps_every_hidden_variable():
    """p(x|y,b) p(y) p(b), Bernoulli y and b: marginalizing y then b is the exact sum over both, as at once."""
    p_x = Normal("p(x|y,b)", net=Gaussian(2, 1))
    joint = p_x * Bernoulli("p(y)", probs=0.3, features_shape=[1]) * Bernoulli("p(b)", probs=0.6, features_shape=[1])
    once, twice = joint.marginalize_var("y", "b"), joint.marginalize_var("y").marginalize_var("b")
    assert twice.latex() == once.latex() == r"p(x) = \sum_{y,b} p(x|y,b)p(y)p(b)"
    assert set(twice.sample({}, sample_shape=(3,))) == {"x"}
    x = {"x": torch.randn(5, 1)}
    terms = []
    for y, py in ((0.0, 0.7), (1.0, 0.3)):
        for b, pb in ((0.0, 0.4), (1.0, 0.6)):
            given = {"y": torch.full((5, 1), y), "b": torch.full((5, 1), b), **x}
            terms.append(p_x.log_prob(given) + torch.tensor(py * pb).log())
    torch.testing.assert_close(twice.log_prob(x), torch.logsumexp(torch.stack(terms), 0))


def test_an_enumerated_variable_reaches_its_own_network_once_per_value():
    """The exact marginal p(x) = sum_y p(x|y) p(y) of a 2-bit y runs p(x|y)'s network on the 4 codes, not on 4 per
    example, and equals the sum written out."""
    seen = []

    class Recording(Gaussian):
        def forward(self, *inputs):
            seen.append(tuple(inputs[0].shape))
            return super().forward(*inputs)

    p_x = Normal("p(x|y)", net=Recording(2, 1))
    marginal = (p_x * Bernoulli("p(y)", probs=0.3, features_shape=[2])).marginalize_var("y")
    x = torch.randn(5, 1)
    value = marginal.log_prob({"x": x})
    assert seen == [(4, 2)]
    codes = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    prior = td.Bernoulli(probs=torch.tensor(0.3)).log_prob(codes).sum(-1)  # (4,)
    with torch.no_grad():
        loc = 10 * p_x.net.linear(codes)  # (4, 1)
    per_code = td.Normal(loc[:, None], 1e-3).log_prob(x).sum(-1)  # (4, 5)
    torch.testing.assert_close(value, torch.logsumexp(per_code + prior[:, None], 0))


class Components(nn.Module):
    """The K Gaussians of a mixture: p(x|z) for one-hot z, means (K, D) and scales (K, D)."""

    def __init__(self, loc, scale):
        super().__init__()
        self.loc, self.scale = loc, scale

    def forward(self, z):
        return {"loc": z @ self.loc, "scale": z @ self.scale}


def test_the_posterior_of_a_summed_out_categorical_is_bayes_rule():
    """The E-step of EM for a Gaussian mixture: p(z = k|x) = pi_k N(x; mu_k, s_k) / sum_j pi_j N(x; mu_j, s_j)."""
    torch.manual_seed(0)
    k, d = 3, 2
    loc, scale = torch.randn(k, d, dtype=torch.float64) * 2, torch.rand(k, d, dtype=torch.float64) + 0.5
    pi = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    marginal = (Normal("p(x|z)", net=Components(loc, scale)) * Categorical("p(z)", probs=pi)).marginalize_var("z")
    x = torch.randn(7, d, dtype=torch.float64) * 2
    # Bayes' rule by hand, each component's density written out
    density = torch.stack([(-0.5 * ((x - loc[j]) / scale[j]) ** 2 - scale[j].log() - 0.5 * math.log(2 * math.pi))
                           .sum(-1).exp() for j in range(k)], -1)  # (7, K)
    expected = pi * density / (pi * density).sum(-1, keepdim=True)
    got = marginal.posterior({"x": x})
    assert got.shape == (7, k)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(marginal.posterior({"x": x}, log=True), expected.log())
    torch.testing.assert_close(got.sum(-1), torch.ones(7, dtype=torch.float64))


def test_the_posterior_of_summed_out_bits_follows_enumerate_support():
    """Two bits y: the 4 codes in binary order, p(y|x) proportional to p(x|y) p(y)."""
    p_x = Normal("p(x|y)", net=lambda y: {"loc": y @ torch.tensor([[1.0], [2.0]]), "scale": torch.ones(y.shape[0], 1)})
    marginal = (p_x * Bernoulli("p(y)", probs=0.3, features_shape=[2])).marginalize_var("y")
    x = torch.tensor([[0.0], [1.5], [3.0]])
    codes = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    prior = td.Bernoulli(probs=torch.tensor(0.3)).log_prob(codes).sum(-1)  # (4,)
    joint = td.Normal(codes @ torch.tensor([1.0, 2.0]), 1.0).log_prob(x) + prior  # (3, 4)
    torch.testing.assert_close(marginal.posterior({"x": x}), torch.softmax(joint, -1))


def test_the_posterior_needs_one_discrete_summed_out_variable(factors):
    p_x = Normal("p(x|y,b)", net=lambda y, b: {"loc": y[:, :1] + b, "scale": torch.ones(y.shape[0], 1)})
    both = (p_x * Bernoulli("p(y)", probs=0.3, features_shape=[2])
            * Bernoulli("p(b)", probs=0.5, features_shape=[1])).marginalize_var("y", "b")
    with pytest.raises(ValueError, match=r"^p\(x\).posterior: the posterior of one summed-out variable at a time; "
                                         r"this marginal sums out \['y', 'b'\]"):
        both.posterior({"x": torch.zeros(2, 1)})
    continuous = (factors[0] * factors[2]).marginalize_var("a")
    with pytest.raises(ValueError, match=r"^p\(x\).posterior: log p\(x\) needs `a` integrated out, which has no "
                                         r"closed form"):
        continuous.posterior({"x": torch.zeros(2, DX)})


def test_a_factor_waits_for_the_factor_generating_an_input_it_could_go_without():
    """A product of experts leaves out an expert whose input is absent; inside a product whose other factor
    generates that input, it must be sampled after that factor, whatever the order written."""
    q_a = Normal("q(a|x)", net=lambda x: {"loc": x + 100.0, "scale": torch.full_like(x, 1e-3)})
    q_za = Normal("q(z|a)", net=lambda a: {"loc": a, "scale": torch.full_like(a, 1e-3)})
    q_zy = Normal("q(z|y)", net=lambda y: {"loc": y, "scale": torch.full_like(y, 10.0)})
    poe = ProductOfNormal([q_za, q_zy])
    inputs = {"x": torch.zeros(3, 2), "y": torch.zeros(3, 2)}
    for joint in (q_a * poe, poe * q_a):
        assert joint.sample(inputs)["z"].mean().item() == pytest.approx(100.0, abs=0.1)


def test_a_product_with_a_factor_that_cannot_be_sampled_cannot_be_sampled():
    p_x = Normal("p(x|z)", net=lambda z: {"loc": z, "scale": torch.ones_like(z)})
    p_z = Density("p(z)", lambda z: -z.pow(2).sum(-1))
    joint = p_x * p_z
    assert not joint.has_sample and not Mixture([Normal("q(z)", loc=0.0, scale=1.0, features_shape=[1]),
                                                 p_z]).has_sample
    with pytest.raises(ValueError, match=r"^E over p\(x,z\): JointDistribution cannot be sampled"):
        E(joint, LogProb(p_x))


@pytest.mark.parametrize("make, message", [
    (lambda f: (f[0] * f[2]).marginalize_var("w"),
     r"p\(x,a\).marginalize_var: \['w'\] are not generated by it; it generates \['x', 'a'\]"),
    (lambda f: f[0].marginalize_var("x"), r"p\(x\|a\): only a joint distribution .* can marginalize a variable"),
    (lambda f: f[0].replace_var(q="r"),
     r"p\(x\|a\).replace_var: \['q'\] are not variables of this distribution; its variables are \['x', 'a'\]"),
    (lambda f: (f[0] * f[2]).replace_var(w="v"), r"p\(x,a\).replace_var: \['w'\] are not variables"),
    (lambda f: (f[0] * f[1] * f[2]).marginalize_var("a").replace_var(a="h"),
     r"p\(x,w\).replace_var: \['a'\] are not variables"),
    (lambda f: f[0].replace_var(a="x"), r"p\(x\|x\): \['x'\] cannot be both generated and conditioned on"),
], ids=["marginalize-unknown", "marginalize-leaf", "rename-unknown", "rename-unknown-joint", "rename-hidden",
        "rename-clash"])
def test_bad_names_raise(factors, make, message):
    with pytest.raises(ValueError, match=message):
        make(factors)


# ------------------------------------------------------------------ replace_var on every path
class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(DX, 2 * DA)

    def forward(self, x):
        loc, scale = self.linear(x).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale) + 0.1}


def test_replace_var_renames_every_path():
    q = Normal("q(z|x)", net=Encoder())
    r = q.replace_var(z="a", x="y")
    assert (q.prob_text, r.prob_text, r.latex(), r.var, r.cond_var) == ("q(z|x)", "q(a|y)", "q(a|y)", ["a"], ["y"])
    assert repr(r).startswith("Normal(\n  q(a|y): Normal(loc, scale)\n  (net): Encoder(")
    x, a = torch.randn(BATCH, DX), torch.randn(BATCH, DA)
    # sampling
    torch.manual_seed(1)
    out = r.sample({"y": x})
    torch.manual_seed(1)
    assert set(out) == {"y", "a"}
    torch.testing.assert_close(out["a"], q.sample({"x": x})["z"])
    # log_prob and entropy
    torch.testing.assert_close(r.log_prob({"y": x, "a": a}), q.log_prob({"x": x, "z": a}))
    torch.testing.assert_close(r.entropy({"y": x}), q.entropy({"x": x}))
    with pytest.raises(KeyError, match=r"q\(a\|y\) needs input `y`; got \['x'\]"):
        r.sample({"x": x})
    with pytest.raises(KeyError, match=r"q\(a\|y\) needs input `a`; got \['y', 'z'\]"):
        r.log_prob({"y": x, "z": a})
    # the network is shared, not copied
    assert r.net is q.net
    assert [id(p) for p in r.parameters()] == [id(p) for p in q.parameters()]
    with torch.no_grad():
        q.net.linear.bias.add_(1.0)
    torch.testing.assert_close(r.log_prob({"y": x, "a": a}), q.log_prob({"x": x, "z": a}))
    r.log_prob({"y": x, "a": a}).sum().backward()
    assert q.net.linear.weight.grad is not None


def test_replace_var_on_a_subclass_and_a_prior():
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[DA]).replace_var(z="a")
    assert prior.prob_text == "p(a)" and set(prior.sample({})) == {"a"}
    assert prior.log_prob({"a": torch.zeros(2, DA)}).shape == (2,)

    class Inference(Normal):
        def __init__(self):
            super().__init__("q(z|x)")
            self.encoder = Encoder()

        def forward(self, x):
            return self.encoder(x)

    r = Inference().replace_var(z="a")
    assert isinstance(r, Inference) and r.prob_text == "q(a|x)"
    assert set(r.sample({"x": torch.randn(2, DX)})) == {"x", "a"}


def test_replace_var_on_a_joint(factors):
    joint = factors[0] * factors[1] * factors[2]
    renamed = joint.replace_var(a="h", x="v")
    assert renamed.prob_text == "p(v,w,h)"
    assert renamed.latex() == "p(v,w,h) = p(v|h)p(w|h)p(h)"
    assert joint.latex() == "p(x,w,a) = p(x|a)p(w|a)p(a)"
    out = renamed.sample({}, sample_shape=(3,))
    assert set(out) == {"v", "w", "h"}
    torch.testing.assert_close(out["v"], factors[0].net(out["h"])["loc"], atol=0.02, rtol=0)
    torch.testing.assert_close(renamed.log_prob(out), joint.log_prob({"x": out["v"], "w": out["w"], "a": out["h"]}))
    assert {id(p) for p in renamed.parameters()} == {id(p) for p in joint.parameters()}
    marginal = joint.marginalize_var("a").replace_var(x="v")
    assert marginal.latex() == r"p(v,w) = \int p(v|a)p(w|a)p(a) \, da"
    assert set(marginal.sample({})) == {"v", "w"}


def test_replace_var_on_a_product_of_normal():
    q_x, q_w = Normal("q(z|x)", net=Encoder()), Normal("q(z|w)", net=Encoder())
    poe = ProductOfNormal([q_x, q_w])
    renamed = poe.replace_var(z="a", x="u")
    assert renamed.prob_text == "q(a|u,w)"
    assert repr(renamed).startswith("ProductOfNormal(\n  q(a|u,w) ∝ p(a) q(a|u)q(a|w)\n")
    x, w, a = torch.randn(BATCH, DX), torch.randn(BATCH, DX), torch.randn(BATCH, DA)
    torch.testing.assert_close(renamed.log_prob({"u": x, "w": w, "a": a}), poe.log_prob({"x": x, "w": w, "z": a}))
    torch.testing.assert_close(renamed.entropy({"u": x}), poe.entropy({"x": x}))
    torch.manual_seed(1)
    out = renamed.sample({"u": x})
    torch.manual_seed(1)
    torch.testing.assert_close(out["a"], poe.sample({"x": x})["z"])
    assert set(out) == {"u", "a"}
    assert {id(p) for p in renamed.parameters()} == {id(p) for p in poe.parameters()}


def test_replace_var_shares_the_temperature():
    q = RelaxedCategorical("q(y|x)", net=lambda x: {"logits": x}, temperature=0.5)
    r = q.replace_var(y="c")
    q.temperature = 0.1
    assert r.temperature.item() == pytest.approx(0.1)
    nn.ModuleList([q, r]).double()  # both moved (or cast), as a user does: still one temperature
    q.temperature = 0.2
    assert r.temperature.dtype == torch.float64 and r.temperature.item() == pytest.approx(0.2)


def test_a_renamed_prior_follows_the_original_to_another_dtype():
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[3])
    renamed = prior.replace_var(z="a")
    prior.double()
    assert renamed.sample({}, sample_shape=2)["a"].dtype == torch.float64


def test_draws_with_sample_dims_are_scored_per_sample_by_a_joint():
    """Importance weights by hand: z ~ q(z|x) 3 times, then log p(x|z) + log p(z) per draw, as torch gives it."""
    class Logits(nn.Linear):
        def forward(self, z):
            return {"logits": super().forward(z)}

    p_x = Bernoulli("p(x|z)", net=Logits(2, 5))
    p_z = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    q = Normal("q(z|x)", net=lambda x: {"loc": x[:, :2], "scale": torch.ones(len(x), 2)})
    x = torch.rand(4, 5).round()
    draw = q.sample({"x": x}, sample_shape=3)
    assert draw["z"].shape == (3, 4, 2) and draw["x"] is x
    expected = (td.Bernoulli(logits=p_x.net(draw["z"])["logits"]).log_prob(x).sum(-1)
                + td.Normal(0.0, 1.0).log_prob(draw["z"]).sum(-1))
    torch.testing.assert_close((p_x * p_z).log_prob(draw), expected)
    torch.testing.assert_close(p_x.log_prob(draw), expected - td.Normal(0.0, 1.0).log_prob(draw["z"]).sum(-1))
    assert p_x.sample(draw)["x"].shape == (3, 4, 5)  # sampled from again: one x per draw of z
