"""Signatures, subclassing with forward(), printing, and the nn.Module behaviour of distributions."""
import pytest
import torch
import torch.distributions as td
from torch import nn

from pgm.distributions import Bernoulli, Categorical, Distribution, Normal

# signature -> (name, var, cond_var, prob_text, latex): a subscript of several characters braced in LaTeX
SIGNATURES = [
    ("q(a|x,w)", "q", ["a"], ["x", "w"], "q(a|x,w)", "q(a|x,w)"),
    ("p(z)", "p", ["z"], [], "p(z)", "p(z)"),
    ("  q ( z | x , y )  ", "q", ["z"], ["x", "y"], "q(z|x,y)", "q(z|x,y)"),
    ("p_theta(x_1|z_2)", "p_theta", ["x_1"], ["z_2"], "p_theta(x_1|z_2)", "p_{theta}(x_1|z_2)"),
    ("q(z_top|x_obs,y)", "q", ["z_top"], ["x_obs", "y"], "q(z_top|x_obs,y)", "q(z_{top}|x_{obs},y)"),
    (r"q_{\phi}(z|x)", r"q_{\phi}", ["z"], ["x"], r"q_{\phi}(z|x)", r"q_{\phi}(z|x)"),
    ("p^{*}(x)", "p^{*}", ["x"], [], "p^{*}(x)", "p^{*}(x)"),
]

BAD_SIGNATURES = ["q(z|)", "q z", "q(z|x|y)", "(z)", "q()", "q(1z)", "q(z x)", "", "q(z|x", "q(z)(x)"]


def _net(*inputs):
    h = torch.cat(inputs, -1)
    return {"loc": h, "scale": h.exp()}


@pytest.mark.parametrize("signature, name, var, cond_var, prob_text, latex", SIGNATURES,
                         ids=[s[0] for s in SIGNATURES])
def test_signature_is_parsed(signature, name, var, cond_var, prob_text, latex):
    d = Normal(signature, net=_net) if cond_var else Normal(signature, loc=0.0, scale=1.0, features_shape=[2])
    assert (d.name, d.var, d.cond_var, d.prob_text, d.latex()) == (name, var, cond_var, prob_text, latex)


def test_signature_equals_keywords():
    a = Normal("q(a|x,w)", net=_net)
    b = Normal(var=["a"], cond_var=["x", "w"], name="q", net=_net)
    assert (a.name, a.var, a.cond_var, a.prob_text) == (b.name, b.var, b.cond_var, b.prob_text) \
        == ("q", ["a"], ["x", "w"], "q(a|x,w)")
    x, w = torch.randn(3, 2), torch.randn(3, 1)
    value = torch.randn(3, 3)
    torch.testing.assert_close(a.log_prob({"x": x, "w": w, "a": value}), b.log_prob({"x": x, "w": w, "a": value}))
    assert Normal(var=["z"], loc=0.0, scale=1.0, features_shape=[]).prob_text == "p(z)"  # name defaults to p


@pytest.mark.parametrize("signature", BAD_SIGNATURES)
def test_unparseable_signature_raises(signature):
    with pytest.raises(ValueError, match=r"cannot parse the signature .*: write it as name\(variables\|conditions\)"):
        Normal(signature, net=_net)


@pytest.mark.parametrize("make, error, message", [
    (lambda: Normal("q(z,z|x)", net=_net), ValueError, r"q\(z,z\|x\): the variables \['z', 'z'\] repeat a name"),
    (lambda: Normal("q(z|x,x)", net=_net), ValueError,
     r"q\(z\|x,x\): the conditioning variables \['x', 'x'\] repeat a name"),
    (lambda: Normal("q(z|z)", net=_net), ValueError, r"q\(z\|z\): \['z'\] cannot be both generated and conditioned on"),
    (lambda: Normal(var=["z"], cond_var=["z"], net=_net), ValueError,
     r"p\(z\|z\): \['z'\] cannot be both generated and conditioned on"),
    (lambda: Normal("p(x,w)", loc=0.0, scale=1.0), ValueError,
     r"p\(x,w\): a Normal generates one variable, not 2; write the joint as a product .* p_x \* p_w"),
    (lambda: Normal(3), TypeError, r"a signature must be a string such as 'q\(z\|x\)'; got int"),
    (lambda: Normal("q(z|x)", var=["z"], net=_net), ValueError, r"give either a signature or var=/cond_var="),
    (lambda: Normal(net=_net), ValueError, r"a distribution needs a signature such as 'q\(z\|x\)', or var=\['z'\]"),
], ids=["repeat-var", "repeat-cond", "var-is-cond", "keywords-var-is-cond", "two-vars", "not-a-string",
        "signature-and-var", "nothing"])
def test_bad_signature_raises(make, error, message):
    with pytest.raises(error, match=message):
        make()


class Inference(Normal):
    """The API.md example, smaller."""

    def __init__(self):
        super().__init__("q(a|x,w)")
        self.fx, self.fw, self.head = nn.Linear(5, 8), nn.Linear(4, 8), nn.Linear(16, 6)

    def forward(self, x, w):
        h = self.head(torch.cat([self.fx(x).relu(), self.fw(w).relu()], -1))
        return {"loc": h[:, :3], "scale": nn.functional.softplus(h[:, 3:])}


def test_subclass_with_forward():
    q = Inference()
    x, w = torch.randn(7, 5), torch.randn(7, 4)
    assert (q.name, q.var, q.cond_var, q.prob_text) == ("q", ["a"], ["x", "w"], "q(a|x,w)")
    expected = {f"{module}.{p}" for module in ("fx", "fw", "head") for p in ("weight", "bias")}
    assert {n for n, _ in q.named_parameters()} == expected
    params = q(x, w)
    value = torch.randn(7, 3)
    torch.testing.assert_close(q.log_prob({"x": x, "w": w, "a": value}),
                               td.Independent(td.Normal(params["loc"], params["scale"]), 1).log_prob(value))
    a = q.sample({"x": x, "w": w}, sample_shape=(2,))["a"]
    assert a.shape == (2, 7, 3)
    a.sum().backward()
    assert all(p.grad is not None for p in q.parameters())


def test_subclass_with_forward_and_net_raises():
    class Both(Normal):
        def forward(self, x):
            return {}

    with pytest.raises(ValueError, match=r"q\(z\|x\): pass net= or define forward\(\), not both"):
        Both("q(z|x)", net=_net)


def test_repr_shows_signature_family_and_network():
    text = repr(Inference())
    assert text.startswith("Inference(\n  q(a|x,w): Normal(loc, scale)\n")
    assert "(fx): Linear(in_features=5, out_features=8, bias=True)" in text
    module = Bernoulli("p(x|z)", net=nn.Linear(3, 4))
    assert repr(module) == ("Bernoulli(\n  p(x|z): Bernoulli(logits or probs)\n"
                            "  (net): Linear(in_features=3, out_features=4, bias=True)\n)")
    assert repr(Normal("q(z|x)", net=_net)) == "Normal(q(z|x): Normal(loc, scale), net=_net)"
    assert repr(Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])) == "Normal(p(z): Normal(loc, scale))"
    assert str(Categorical("p(y)", probs=torch.ones(3) / 3)) == "Categorical(p(y): Categorical(logits or probs))"


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 6)

    def forward(self, x):
        loc, scale = self.linear(x).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale)}


def test_module_behaviour_with_a_network():
    q = Normal("q(z|x)", net=Encoder())
    assert [n for n, _ in q.named_parameters()] == ["net.linear.weight", "net.linear.bias"]
    assert list(q.state_dict()) == ["net.linear.weight", "net.linear.bias"]
    q64 = q.to(torch.float64)
    assert q64 is q and all(p.dtype == torch.float64 for p in q.parameters())
    x = torch.randn(2, 4, dtype=torch.float64)
    assert q.sample({"x": x})["z"].dtype == torch.float64
    other = Normal("q(z|x)", net=Encoder()).to(torch.float64)
    other.load_state_dict(q.state_dict())
    z = torch.randn(2, 3, dtype=torch.float64)
    torch.testing.assert_close(other.log_prob({"x": x, "z": z}), q.log_prob({"x": x, "z": z}))


def test_module_behaviour_with_fixed_parameters():
    prior = Normal("p(z)", loc=1.0, scale=2.0, features_shape=[3])
    assert list(prior.parameters()) == []
    assert set(prior.state_dict()) == {"loc", "scale"}
    assert prior.to(torch.float64).sample({})["z"].dtype == torch.float64
    moved = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[3])
    moved.load_state_dict(prior.state_dict())
    z = torch.randn(4, 3, dtype=torch.float64)
    expected = td.Independent(td.Normal(torch.ones(3), torch.full((3,), 2.0)), 1).log_prob(z.float())
    torch.testing.assert_close(moved.log_prob({"z": z.float()}), expected)


def test_learnable_fixed_parameter():
    loc = nn.Parameter(torch.zeros(3))
    prior = Normal("p(z)", loc=loc, scale=1.0, features_shape=[3])
    assert list(prior.parameters()) == [loc]
    prior.log_prob({"z": torch.ones(2, 3)}).sum().backward()
    torch.testing.assert_close(loc.grad, torch.full((3,), 2.0))  # d/d loc of -(z - loc)^2 / 2, twice


def test_distribution_is_a_module():
    assert issubclass(Normal, nn.Module) and issubclass(Normal, Distribution)
