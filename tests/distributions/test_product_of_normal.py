"""ProductOfNormal (Wu & Goodman's product of Gaussian experts) against a hand computation."""
import pytest
import torch
import torch.distributions as td
from torch import nn

from pgm._errors import MissingInputError
from pgm.distributions import Bernoulli, Normal, ProductOfNormal

BATCH, DX, DW, DZ = 5, 4, 3, 2


class Expert(nn.Module):
    def __init__(self, in_features):
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * DZ)

    def forward(self, *inputs):
        loc, scale = self.linear(torch.cat(inputs, -1)).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale) + 0.1}


@pytest.fixture
def experts():
    return Normal("q(z|x)", net=Expert(DX)), Normal("q(z|w)", net=Expert(DW))


@pytest.fixture
def data():
    return {"x": torch.randn(BATCH, DX), "w": torch.randn(BATCH, DW)}


def _product(pairs, prior=True):
    """Precisions add; the mean is the precision-weighted mean (the prior expert is N(0, 1))."""
    precision = sum(scale.pow(-2) for _, scale in pairs) + (1.0 if prior else 0.0)
    loc = sum(loc * scale.pow(-2) for loc, scale in pairs) / precision
    return loc, precision.pow(-0.5)


def _expert_params(expert, *inputs):
    p = expert.net(*inputs)
    return p["loc"], p["scale"]


@pytest.mark.parametrize("given", [("x", "w"), ("x",), ("w",)], ids=["both", "x", "w"])
@pytest.mark.parametrize("absent", ["missing", "none"])
@pytest.mark.parametrize("prior", [True, False], ids=["prior", "no-prior"])
def test_product_matches_a_hand_computation(experts, data, given, absent, prior):
    poe = ProductOfNormal(experts, prior_expert=prior)
    inputs = {k: data[k] for k in given}
    if absent == "none":
        inputs.update({k: None for k in ("x", "w") if k not in given})
    pairs = [_expert_params(e, data[e.cond_var[0]]) for e in experts if e.cond_var[0] in given]
    loc, scale = _product(pairs, prior)
    params = poe.get_params(inputs)
    torch.testing.assert_close(params["loc"], loc)
    torch.testing.assert_close(params["scale"], scale)
    if not prior and len(given) == 1:  # one expert alone is that expert
        torch.testing.assert_close(params["loc"], pairs[0][0])
        torch.testing.assert_close(params["scale"], pairs[0][1])
    reference = td.Independent(td.Normal(loc, scale), 1)
    z = torch.randn(BATCH, DZ)
    got = poe.log_prob({**inputs, "z": z})
    assert got.shape == (BATCH,)
    torch.testing.assert_close(got, reference.log_prob(z))
    torch.testing.assert_close(poe.entropy(inputs), reference.entropy())
    torch.manual_seed(1)
    sample = poe.sample(inputs, sample_shape=(3,))["z"]
    torch.manual_seed(1)
    torch.testing.assert_close(sample, reference.rsample((3,)))


def test_expert_with_two_inputs_is_left_out_when_one_is_absent(data):
    q_xw = Normal("q(z|x,w)", net=Expert(DX + DW))
    q_x = Normal("q(z|x)", net=Expert(DX))
    poe = ProductOfNormal([q_xw, q_x])
    assert poe.prob_text == "q(z|x,w)" and poe.cond_var == ["x", "w"]
    loc, scale = _product([_expert_params(q_x, data["x"])])
    params = poe.get_params({"x": data["x"]})
    torch.testing.assert_close(params["loc"], loc)
    torch.testing.assert_close(params["scale"], scale)
    loc, scale = _product([_expert_params(q_xw, data["x"], data["w"]), _expert_params(q_x, data["x"])])
    torch.testing.assert_close(poe.get_params(data)["loc"], loc)


def test_rsample_gradients_reach_every_present_expert(experts, data):
    poe = ProductOfNormal(experts)
    poe.sample(data)["z"].sum().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in poe.parameters())
    for p in poe.parameters():
        p.grad = None
    poe.sample({"x": data["x"]})["z"].sum().backward()
    assert all(p.grad is not None for p in experts[0].parameters())
    assert all(p.grad is None for p in experts[1].parameters())


def test_gradcheck_log_prob():
    weight_x = torch.randn(DX, 2 * DZ, dtype=torch.float64, requires_grad=True)
    weight_w = torch.randn(DW, 2 * DZ, dtype=torch.float64, requires_grad=True)
    held = {}

    def head(h):
        return {"loc": h[:, :DZ], "scale": nn.functional.softplus(h[:, DZ:]) + 0.1}

    poe = ProductOfNormal([Normal("q(z|x)", net=lambda x: head(x @ held["x"])),
                           Normal("q(z|w)", net=lambda w: head(w @ held["w"]))])
    x = torch.randn(BATCH, DX, dtype=torch.float64, requires_grad=True)
    w = torch.randn(BATCH, DW, dtype=torch.float64, requires_grad=True)
    z = torch.randn(BATCH, DZ, dtype=torch.float64, requires_grad=True)

    def log_prob(weight_x, weight_w, x, w, z):
        held.update(x=weight_x, w=weight_w)
        return poe.log_prob({"x": x, "w": w, "z": z})

    assert torch.autograd.gradcheck(log_prob, (weight_x, weight_w, x, w, z))


def test_signature_and_repr(experts):
    poe = ProductOfNormal(experts, name="r")
    assert (poe.name, poe.var, poe.cond_var, poe.prob_text) == ("r", ["z"], ["x", "w"], "r(z|x,w)")
    assert repr(poe).startswith("ProductOfNormal(\n  r(z|x,w) ∝ p(z) q(z|x)q(z|w)\n")
    assert repr(ProductOfNormal(experts, prior_expert=False)).startswith(
        "ProductOfNormal(\n  q(z|x,w) ∝ q(z|x)q(z|w)\n")
    assert set(poe.parameters()) == set(experts[0].parameters()) | set(experts[1].parameters())


def test_no_expert_present_raises(experts):
    poe = ProductOfNormal(experts)
    message = r"q\(z\|x,w\) needs the inputs of at least one expert \(q\(z\|x\), q\(z\|w\)\); got "
    with pytest.raises(MissingInputError, match=message + "nothing"):
        poe.sample({})
    with pytest.raises(MissingInputError, match=message + "nothing"):
        poe.sample({"x": None, "w": None})
    with pytest.raises(MissingInputError, match=message + r"\['y', 'z'\]"):
        poe.log_prob({"y": torch.zeros(2, 1), "z": torch.zeros(2, DZ)})


@pytest.mark.parametrize("make, error, message", [
    (lambda e: ProductOfNormal([]), TypeError, r"ProductOfNormal takes a non-empty list of Normal experts"),
    (lambda e: ProductOfNormal([e[0], Bernoulli("q(z|w)", net=lambda w: {"logits": w})]), TypeError,
     r"ProductOfNormal takes a non-empty list of Normal experts"),
    (lambda e: ProductOfNormal([e[0], Normal("q(a|w)", net=Expert(DW))]), ValueError,
     r"experts must generate the same variable; q\(a\|w\) generates \['a'\], not \['z'\]"),
], ids=["empty", "not-normal", "different-variables"])
def test_bad_experts_raise(experts, make, error, message):
    with pytest.raises(error, match=message):
        make(experts)
