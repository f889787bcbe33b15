"""ProductOfNormal with a per-example mask: example by example, the product over that example's experts."""
import pytest
import torch
from torch import nn

from pgm._errors import MissingInputError
from pgm.distributions import Normal, ProductOfNormal

BATCH, DX, DW, DZ = 4, 3, 2, 2
F64 = torch.float64
MASK = torch.tensor([[1, 1], [1, 0], [0, 1], [1, 0]], dtype=F64)  # every pattern with at least one expert


class Expert(nn.Module):
    def __init__(self, in_features):
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * DZ, dtype=F64)

    def forward(self, *inputs):
        loc, scale = self.linear(torch.cat(inputs, -1)).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale) + 0.1}


@pytest.fixture
def experts():
    return Normal("q(z|x)", net=Expert(DX)), Normal("q(z|w)", net=Expert(DW))


@pytest.fixture
def data():
    return {"x": torch.randn(BATCH, DX, dtype=F64), "w": torch.randn(BATCH, DW, dtype=F64)}


@pytest.mark.parametrize("prior", [True, False], ids=["prior", "no-prior"])
def test_masked_product_is_the_product_over_each_examples_experts(experts, data, prior):
    masked = ProductOfNormal(experts, prior_expert=prior, mask="m")
    plain = ProductOfNormal(experts, prior_expert=prior)
    assert masked.prob_text == "q(z|x,w,m)" and masked.required_var == ["m"]
    params = masked.get_params({**data, "m": MASK})
    z = torch.randn(BATCH, DZ, dtype=F64)
    log_prob = masked.log_prob({**data, "m": MASK, "z": z})
    for i, row in enumerate(MASK.tolist()):
        # example i alone, with the inputs of its missing experts left out
        inputs = {k: data[k][i:i + 1] for k, present in zip(("x", "w"), row) if present}
        expected = plain.get_params(inputs)
        torch.testing.assert_close(params["loc"][i:i + 1], expected["loc"])
        torch.testing.assert_close(params["scale"][i:i + 1], expected["scale"])
        torch.testing.assert_close(log_prob[i:i + 1], plain.log_prob({**inputs, "z": z[i:i + 1]}))


def test_an_all_ones_mask_is_the_unmasked_product_and_absent_inputs_still_leave_experts_out(experts, data):
    masked, plain = ProductOfNormal(experts, mask="m"), ProductOfNormal(experts)
    ones = torch.ones(BATCH, 2, dtype=F64)
    torch.testing.assert_close(masked.get_params({**data, "m": ones}), plain.get_params(data))
    only_x = {"x": data["x"]}
    torch.testing.assert_close(masked.get_params({**only_x, "m": ones}), plain.get_params(only_x))
    torch.testing.assert_close(masked.get_params({**only_x, "w": None, "m": MASK})["loc"][2],
                               torch.zeros(DZ, dtype=F64))  # example 2 has only w, which is absent: the prior


def test_masked_expert_gets_no_gradient_from_its_examples(experts, data):
    masked = ProductOfNormal(experts, mask="m")
    mask = torch.tensor([[1, 0]] * BATCH, dtype=F64)
    masked.sample({**data, "m": mask})["z"].sum().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in experts[0].parameters())
    assert all(p.grad is None or bool((p.grad == 0).all()) for p in experts[1].parameters())


def test_renamed_mask_and_repr(experts, data):
    masked = ProductOfNormal(experts, mask="m")
    assert repr(masked).startswith("ProductOfNormal(\n  q(z|x,w,m) ∝ p(z) q(z|x)q(z|w), masked by m\n")
    renamed = masked.replace_var(m="b", z="a")
    assert renamed.prob_text == "q(a|x,w,b)" and renamed.mask == "b"
    torch.testing.assert_close(renamed.get_params({**data, "b": MASK}), masked.get_params({**data, "m": MASK}))


def test_mask_errors(experts, data):
    masked = ProductOfNormal(experts, mask="m")
    shape = r"q\(z\|x,w,m\): its mask `m` must have shape \(batch, 2\), one column per expert \(q\(z\|x\), q\(z\|w\)\); "
    with pytest.raises(ValueError, match="^" + shape + r"got a tensor of shape \(4, 3\)"):
        masked.get_params({**data, "m": torch.ones(BATCH, 3)})
    with pytest.raises(ValueError, match="^" + shape + r"got a tensor of shape \(4,\)"):
        masked.get_params({**data, "m": torch.ones(BATCH)})
    with pytest.raises(ValueError, match=r"^q\(z\|x,w,m\): its mask `m` must have shape \(batch, 2\) with the batch of "
                                         r"its experts, \(4,\); got a tensor of shape \(3, 2\)"):
        masked.get_params({**data, "m": torch.ones(3, 2)})
    with pytest.raises(MissingInputError, match=r"^q\(z\|x,w,m\) needs its mask `m` of shape \(batch, 2\)"):
        masked.get_params(data)
    no_prior = ProductOfNormal(experts, mask="m", prior_expert=False)
    with pytest.raises(ValueError, match=r"^q\(z\|x,w,m\): examples \[1, 3\] have no expert present in the mask `m` "
                                         r"and there is no prior expert"):
        no_prior.get_params({**data, "m": torch.tensor([[1, 1], [0, 0], [0, 1], [0, 0]])})
    with pytest.raises(ValueError, match=r"\['z'\] cannot be both generated and conditioned on"):
        ProductOfNormal(experts, mask="z")
    with pytest.raises(TypeError, match=r"^ProductOfNormal: mask must be the name of an input, e.g. mask='m'"):
        ProductOfNormal(experts, mask=MASK)
