"""``Model(precision="bf16")``: the forward pass under autocast to bfloat16, parameters and optimizer in float32.

The reference is the same model in float32 from the same start and the same batches: bfloat16 keeps 8 bits of
mantissa (a relative rounding of 2**-8 = 0.4%), so the losses agree within 2% over a short run.
"""
import pytest
import torch
from torch import nn

from pgm.distributions import Bernoulli, Normal
from pgm.losses import E, KL, LogProb
from pgm.models import Model

from model_nets import Decoder, Encoder, LocScale, Logits


def vae(precision):
    torch.manual_seed(0)
    q, p = Normal("q(z|x)", net=Encoder(32, 4, hidden=64)), Bernoulli("p(x|z)", net=Decoder(4, 32, hidden=64))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[4])
    return Model((KL(q, prior) - E(q, LogProb(p))).mean(), [q, p], precision=precision,
                 optimizer_params={"lr": 1e-2})


def data(i):
    return {"x": torch.rand(64, 32, generator=torch.Generator().manual_seed(i)).round()}


def run(model, steps=20):
    torch.manual_seed(1)
    return [model.train(data(i % 4)) for i in range(steps)]


def test_bf16_losses_stay_within_two_percent_of_float32():
    full, half = vae("float32"), vae("bf16")
    expected, got = run(full), run(half)
    assert got[-1] < got[0] - 1.0  # it trains
    for e, g in zip(expected, got):
        assert g == pytest.approx(e, rel=0.02)
    assert all(p.dtype == torch.float32 for p in half.distributions.parameters())
    assert all(p.grad.dtype == torch.float32 for p in half.distributions.parameters())
    assert all(t.dtype == torch.float32 for s in half.optimizer.state.values() for t in s.values() if t.dim())
    # the forward pass did run in bfloat16: the losses are not float32's to rounding
    assert max(abs(e - g) for e, g in zip(expected, got)) > 1e-4
    test_full, test_half = full.test(data(9)), half.test(data(9))
    assert test_half == pytest.approx(test_full, rel=0.02)


def test_precision_is_checked():
    with pytest.raises(ValueError, match="Model: precision must be 'float32' or 'bf16'.*got 'fp16'"):
        vae("fp16")


def test_densities_and_their_sums_stay_float32_under_autocast():
    # the networks run in bfloat16; the log-density of 784 pixels and the KL are summed in float32 from the
    # networks' (bfloat16) outputs, as torch.distributions computes them on those outputs cast to float32
    torch.manual_seed(0)
    q = Normal("q(z|x)", net=nn.Sequential(nn.Linear(784, 16), LocScale()))
    p = Bernoulli("p(x|z)", net=nn.Sequential(nn.Linear(8, 784), Logits()))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[8])
    x = torch.rand(32, 784).round()
    z = torch.randn(32, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loc, scale = q.net(x)["loc"], q.net(x)["scale"]
        logits = p.net(z)["logits"]
        assert logits.dtype == torch.bfloat16  # the network itself did run in bfloat16
        log_px = p.log_prob({"x": x, "z": z})
        kl = KL(q, prior).eval({"x": x})
        draw = q.sample({"x": x})["z"]
    reference = torch.distributions.Bernoulli(logits=logits.float()).log_prob(x).sum(-1)
    assert log_px.dtype == torch.float32 and kl.dtype == torch.float32 and draw.dtype == torch.float32
    torch.testing.assert_close(log_px, reference, rtol=1e-6, atol=1e-4)
    exact_kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(loc.float(), scale.float()), torch.distributions.Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl, exact_kl, rtol=1e-6, atol=1e-5)
    # a sum kept in bfloat16 would be off by far more than that
    low = torch.distributions.Bernoulli(logits=logits).log_prob(x.bfloat16()).sum(-1)
    assert (low.float() - reference).abs().max() > 1e-2

