"""FactorOut (the multi-scale flows of RealNVP and Glow): a flow's log-density against the same multi-scale flow
written by hand in plain torch on the same weights (values and gradients, float64), draws scored back through the
layers, densities that integrate to 1 on 2-D and 4-D grids, sample and batch shapes, a class-conditional prior,
the LaTeX, and the errors."""
import math

import pytest
import torch
from torch import nn
from torch.distributions.transforms import AffineTransform

from pgm.distributions import Flow, Normal
from pgm.distributions.flows import (ActNorm, AffineCoupling, FactorOut, InvertibleConv1x1, Squeeze,
                                     TransformLayer)
from pgm.losses import LogProb

F64 = torch.float64
LOG_2PI = math.log(2 * math.pi)


def randomize(module, scale=0.4):
    """Random parameters everywhere (zero-initialized last layers included); an ActNorm counts as initialized."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * scale)
        for m in module.modules():
            if isinstance(m, ActNorm):
                m.initialized.fill_(True)
    return module


class ConvPrior(nn.Module):
    """Glow's prior of factored-out channels: a convolution of the kept ones gives the mean and log-scale."""

    def __init__(self, kept, factored, classes=0):
        super().__init__()
        self.conv = nn.Conv2d(kept + classes, 2 * factored, 3, padding=1, dtype=F64)

    def forward(self, h, *y):
        extra = [c[:, :, None, None].expand(-1, -1, *h.shape[2:]) for c in y]
        loc, log_scale = self.conv(torch.cat([h, *extra], 1)).chunk(2, 1)
        return {"loc": loc, "scale": log_scale.exp()}


class LinearPrior(nn.Module):
    """A Gaussian of the factored-out features given the kept ones of a vector; its scale in [e^-1/2, e^1/2] keeps
    the tails light enough for a grid."""

    def __init__(self, kept, factored):
        super().__init__()
        self.linear = nn.Linear(kept, 2 * factored, dtype=F64)

    def forward(self, h):
        loc, log_scale = self.linear(h).chunk(2, -1)
        return {"loc": loc, "scale": (0.5 * torch.tanh(log_scale)).exp()}


def standard(name, shape):
    return Normal(name, loc=torch.zeros(shape, dtype=F64), scale=torch.ones(shape, dtype=F64))


def glow(classes=0):
    """x (1, 4, 4) -> squeeze (4, 2, 2) -> actnorm, 1x1 conv, coupling -> factor out 2 channels -> squeeze (8, 1, 1)
    -> coupling -> N(0, I)."""
    prior = Normal("p(z_1|h_1,y)" if classes else "p(z_1|h_1)", net=ConvPrior(2, 2, classes))
    layers = [Squeeze(), ActNorm(4), InvertibleConv1x1(4), AffineCoupling((4, 2, 2), "channel", hidden=8),
              FactorOut(4, prior, cond_var="y" if classes else None), Squeeze(),
              AffineCoupling((8, 1, 1), "channel", hidden=8)]
    return randomize(Flow(standard("p_0(x)", (8, 1, 1)), layers, var="x", direction="inverse").double())


# ------------------------------------------------------------------ the same flow in plain torch
def squeeze(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze(x):
    n, c, h, w = x.shape
    return x.reshape(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c // 4, 2 * h, 2 * w)


def conv_matrix(layer):
    """W = P L (U + diag(sign exp(v))) from the LU parameters."""
    c = layer.channels
    lower = torch.tril(layer.lower, -1) + torch.eye(c, dtype=F64)
    upper = torch.triu(layer.upper, 1) + torch.diag(layer.sign * layer.log_scale.exp())
    return layer.p @ lower @ upper


def coupling_scale_shift(layer, kept, free_channels):
    """Glow's channel coupling: (s, t) of the free half from the network of the kept half (the free one zeroed)."""
    out = layer.net(torch.cat([kept, torch.zeros_like(kept[:, :free_channels])], 1))
    s, t = out.chunk(2, 1)
    c = kept.shape[1]
    return 5.0 * torch.tanh(s[:, c:] / 5.0), t[:, c:]


def gaussian(z, loc, log_scale):
    return (-0.5 * ((z - loc) / log_scale.exp()) ** 2 - log_scale - 0.5 * LOG_2PI).flatten(1).sum(1)


def reference(p, x, y=None):
    """log p(x), the base value h_K and the factored-out z_1, by the multi-scale change of variables."""
    _, actnorm, conv, coupling, split, _, top = p.layers
    h = squeeze(x)
    pixels = h.shape[2] * h.shape[3]
    h = h * actnorm.log_scale.exp()[:, None, None] + actnorm.bias[:, None, None]
    log_det = pixels * actnorm.log_scale.sum()
    h = torch.einsum("ij,njhw->nihw", conv_matrix(conv), h)
    log_det = log_det + pixels * conv.log_scale.sum()
    s, t = coupling_scale_shift(coupling, h[:, :2], 2)
    h = torch.cat([h[:, :2], h[:, 2:] * s.exp() + t], 1)
    log_det = log_det + s.flatten(1).sum(1)
    h_1, z_1 = h[:, :2], h[:, 2:]
    loc, log_scale = split.prior.net.conv(h_1 if y is None else torch.cat(
        [h_1, y[:, :, None, None].expand(-1, -1, 2, 2)], 1)).chunk(2, 1)
    log_p_z = gaussian(z_1, loc, log_scale)
    h = squeeze(h_1)
    s, t = coupling_scale_shift(top, h[:, :4], 4)
    h = torch.cat([h[:, :4], h[:, 4:] * s.exp() + t], 1)
    log_det = log_det + s.flatten(1).sum(1)
    log_p_base = gaussian(h, torch.zeros_like(h), torch.zeros_like(h))
    return log_p_base + log_p_z + log_det, h, z_1


def reference_inverse(p, h, z_1):
    """x from the base value and the factored-out channels, each map undone by hand."""
    _, actnorm, conv, coupling, _, _, top = p.layers
    s, t = coupling_scale_shift(top, h[:, :4], 4)
    h_1 = unsqueeze(torch.cat([h[:, :4], (h[:, 4:] - t) * (-s).exp()], 1))
    h = torch.cat([h_1, z_1], 1)
    s, t = coupling_scale_shift(coupling, h[:, :2], 2)
    h = torch.cat([h[:, :2], (h[:, 2:] - t) * (-s).exp()], 1)
    h = torch.einsum("ij,njhw->nihw", torch.linalg.inv(conv_matrix(conv)), h)
    return unsqueeze((h - actnorm.bias[:, None, None]) * (-actnorm.log_scale).exp()[:, None, None])


# ------------------------------------------------------------------ the density
def test_log_density_and_gradients_equal_a_hand_written_multiscale_flow():
    p = glow()
    x = torch.randn(6, 1, 4, 4, dtype=F64)
    params = list(p.parameters())
    log_p = p.log_prob({"x": x})
    expected, h, z_1 = reference(p, x)
    assert log_p.shape == (6,) and len(params) == 19  # actnorm 2, conv 3, couplings 6 + 6, prior 2
    torch.testing.assert_close(log_p, expected, rtol=1e-12, atol=1e-10)
    grads = torch.autograd.grad(log_p.sum(), params)
    expected_grads = torch.autograd.grad(expected.sum(), params)
    for name, got, want in zip([n for n, _ in p.named_parameters()], grads, expected_grads):
        assert want.abs().sum() > 0, name
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=name)
    # the hand-written maps are a bijection: x back from (h_K, z_1)
    torch.testing.assert_close(reference_inverse(p, h, z_1), x, rtol=0, atol=1e-10)


def test_a_draw_is_scored_back_through_the_layers():
    """Sampling runs the inverses (drawing z_1 from its prior given h_1); scoring the draw runs the forward maps:
    both passes give the hand-written log-density, and the scoring pass meets the h_1 the draw was made from."""
    p = glow()
    seen = []
    p.layers[4].prior.net.register_forward_hook(lambda module, args, out: seen.append(args[0].detach()))
    draws, log_q = p.sample_and_log_prob({}, sample_shape=7)
    x = draws["x"]
    drawn_from = seen[-1]
    expected, h, z_1 = reference(p, x)
    assert x.shape == (7, 1, 4, 4)
    torch.testing.assert_close(log_q, expected, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(p.log_prob({"x": x}), expected, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(seen[-1], drawn_from, rtol=0, atol=1e-10)
    torch.testing.assert_close(reference_inverse(p, h, z_1), x, rtol=0, atol=1e-10)


def test_the_layer_alone_inverts_its_split():
    """forward(inverse(h)) keeps h and scores the drawn channels by the log-density the inverse returned."""
    layer = randomize(FactorOut(4, Normal("p(z_1|h_1)", net=ConvPrior(2, 2))))
    kept = torch.randn(5, 2, 3, 3, dtype=F64)
    full, minus_log_p = layer.inverse(kept)
    back, log_p = layer(full)
    assert full.shape == (5, 4, 3, 3) and torch.equal(full[:, :2], kept) and torch.equal(back, kept)
    loc, log_scale = layer.prior.net.conv(kept).chunk(2, 1)
    torch.testing.assert_close(log_p, gaussian(full[:, 2:], loc, log_scale))
    torch.testing.assert_close(minus_log_p, -log_p)


def test_sample_shapes_and_batches():
    p = glow()
    draws = p.sample({}, sample_shape=(3, 2))
    assert draws["x"].shape == (3, 2, 1, 4, 4) and p.log_prob(draws).shape == (3, 2)
    x = torch.randn(4, 1, 4, 4, dtype=F64)
    one_by_one = torch.cat([p.log_prob({"x": x[i:i + 1]}) for i in range(4)])
    torch.testing.assert_close(p.log_prob({"x": x}), one_by_one)
    torch.testing.assert_close(p.log_prob({"x": x.expand(3, 4, 1, 4, 4)}), one_by_one.expand(3, 4))


def test_a_class_conditional_prior_takes_the_flows_input():
    p = glow(classes=3)
    y = nn.functional.one_hot(torch.tensor([0, 2, 1, 2]), 3).to(F64)
    x = torch.randn(4, 1, 4, 4, dtype=F64)
    assert (p.prob_text, p.cond_var) == ("p_K(x|y)", ["y"])
    torch.testing.assert_close(p.log_prob({"x": x, "y": y}), reference(p, x, y)[0], rtol=1e-12, atol=1e-10)
    assert p.sample({"y": y})["x"].shape == (4, 1, 4, 4)


def test_latex_adds_the_factored_out_priors():
    assert glow().latex() == (r"\log p_K(x) = \log p_0(x_K) + \log p(z_1|h_1) + \sum_{k=1}^{K} \log \left|\det "
                              r"\frac{\partial x_k}{\partial x_{k-1}}\right|, \quad x_0 = x")
    assert LogProb(glow()).latex() == r"\log p_K(x)"


# ------------------------------------------------------------------ normalization
def grid(dims, half_width, step):
    g = torch.arange(-half_width, half_width + step / 2, step, dtype=F64)
    return torch.stack(torch.meshgrid(*[g] * dims, indexing="ij"), -1).reshape(-1, dims), step ** dims


def test_a_2d_density_with_a_factored_out_coordinate_integrates_to_one():
    """A coupling, then x_2 factored out given x_1 by a learned Gaussian, then an affine map of x_1: the sum of
    p(x) over [-10, 10]^2 (step 0.05) times the cell area is 1 within 1e-4; a wrong sign of either term is not."""
    layers = [randomize(AffineCoupling(2, "alternating", hidden=8), 0.5),
              randomize(FactorOut(2, Normal("p(z_1|h_1)", net=LinearPrior(1, 1))), 0.5),
              TransformLayer(AffineTransform(0.3, 1.7))]
    p = Flow(standard("p_0(x)", (1,)), layers, var="x", direction="inverse").double()
    points, area = grid(2, 10.0, 0.05)
    assert abs(p.log_prob({"x": points}).exp().sum().item() * area - 1) < 1e-4


def test_a_4d_density_factored_out_twice_integrates_to_one():
    """4 -> coupling -> factor out 2 -> coupling -> factor out 1 -> N(0, 1): a grid of [-7, 7]^4 (step 0.5) sums
    to 1 within 3e-3 (-1.5e-3 here, the tails beyond the grid; a step of 0.35 gives the same; within 6e-5 for
    five other seeds)."""
    layers = [randomize(AffineCoupling(4, "half", hidden=8), 0.2),
              randomize(FactorOut(4, Normal("p(z_1|h_1)", net=LinearPrior(2, 2))), 0.5),
              randomize(AffineCoupling(2, "alternating", hidden=8), 0.2),
              randomize(FactorOut(2, Normal("p(z_2|h_2)", net=LinearPrior(1, 1))), 0.5)]
    p = Flow(standard("p_0(x)", (1,)), layers, var="x", direction="inverse").double()
    points, volume = grid(4, 7.0, 0.5)
    with torch.no_grad():
        mass = p.log_prob({"x": points}).exp().sum().item() * volume
    assert abs(mass - 1) < 3e-3


def test_realnvp_standard_normal_prior_without_conditioning():
    """RealNVP's factor-out: the factored channels are scored by N(0, I) whatever the kept ones are."""
    split = FactorOut(4, standard("p(z_1)", (2, 3, 3)))
    p = Flow(standard("p_0(x)", (2, 3, 3)), [split], var="x", direction="inverse")
    x = torch.randn(5, 4, 3, 3, dtype=F64)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(p.log_prob({"x": x}), expected)
    draws, log_q = p.sample_and_log_prob({}, sample_shape=6)
    torch.testing.assert_close(log_q, torch.distributions.Normal(0.0, 1.0).log_prob(draws["x"]).flatten(1).sum(1))


# ------------------------------------------------------------------ errors
def test_bad_factor_outs():
    prior = Normal("p(z_1|h_1)", net=ConvPrior(2, 2))
    with pytest.raises(ValueError, match=r"^FactorOut\(4\): keep must leave at least one channel in the flow and "
                                         r"factor out at least one, 1 <= keep < 4; got keep=4\.$"):
        FactorOut(4, prior, keep=4)
    with pytest.raises(TypeError, match=r"^FactorOut\(4\): the prior of the factored-out channels must be a pgm "
                                        r"distribution, e\.g\. Normal\('p\(z_1\|h_1\)', net=\.\.\.\); got Linear\.$"):
        FactorOut(4, nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"^FactorOut\(4\): its prior p\(z_1,u\|h_1\) generates \['z_1', 'u'\]; it "
                                         r"must generate one variable"):
        FactorOut(4, prior * Normal("p(u)", loc=0.0, scale=1.0, features_shape=[1]))
    with pytest.raises(ValueError, match=r"^FactorOut\(4\): cond_var names \['y'\], but its prior p\(z_1\|h_1\) does "
                                         r"not take them; give the prior those conditioning variables"):
        FactorOut(4, prior, cond_var="y")
    with pytest.raises(ValueError, match=r"^FactorOut\(4\): its prior p\(z_1\|h_1,y\) is conditioned on \['h_1', "
                                         r"'y'\], but it can be given only the kept channels .* e\.g\. FactorOut\(4, "
                                         r"prior, cond_var=\['y'\]\)\.$"):
        FactorOut(4, Normal("p(z_1|h_1,y)", net=ConvPrior(2, 2, 3)))


def test_bad_flows_with_a_factor_out():
    split = FactorOut(4, Normal("p(z_1|h_1)", net=ConvPrior(2, 2)))
    with pytest.raises(ValueError, match=r"^Flow over p_0\(x\): its layer 1 of 1, FactorOut\(4, p\(z_1\|h_1\), "
                                         r"keep=2\), factors channels out, which only a density-estimation flow can "
                                         r"do .* build it with direction='inverse', or leave the layer out\.$"):
        Flow(standard("p_0(x)", (2, 3, 3)), [split])
    coupling = AffineCoupling((2, 4, 4), "channel", hidden=4)
    with pytest.raises(ValueError, match=r"^p_K\(x\): its layer 3 of 3, FactorOut\(4, p\(z_1\|h_1\), keep=2\), takes "
                                         r"events with 4 features or channels .* its input, the output of layer 2, has "
                                         r"event shape \(8, 2, 2\)\. Build the layer for it, e\.g\. FactorOut\(8, "
                                         r"prior\)"):
        Flow(standard("p_0(x)", (4, 2, 2)), [coupling, Squeeze(), split], var="x", direction="inverse")
    fixed = FactorOut(4, standard("p(z_1)", (2, 3, 3)))
    with pytest.raises(ValueError, match=r"^p_K\(x\): its layer 2 of 2, FactorOut\(4, p\(z_1\), keep=2\), factors out "
                                         r"2 channels scored by its prior p\(z_1\) of event shape \(2, 3, 3\), but its "
                                         r"input, the output of layer 1, has event shape \(4, 2, 2\)\. Build the layer "
                                         r"for it, e\.g\. FactorOut\(4, a prior with features_shape=\[2, 2, 2\]\), or "
                                         r"change layer 1\.$"):
        Flow(standard("p_0(x)", (2, 2, 2)), [AffineCoupling((4, 2, 2), "channel", hidden=4), fixed], var="x",
             direction="inverse")


def test_a_prior_drawing_the_wrong_shape_is_named():
    class Wrong(nn.Module):
        def forward(self, h):
            return {"loc": h.new_zeros(h.shape[0], 2, 1, 1), "scale": h.new_ones(h.shape[0], 2, 1, 1)}

    split = FactorOut(4, Normal("p(z_1|h_1)", net=Wrong()))
    with pytest.raises(ValueError, match=r"^FactorOut\(4, p\(z_1\|h_1\), keep=2\): its prior p\(z_1\|h_1\) drew "
                                         r"values of shape \(5, 2, 1, 1\) for kept channels of shape \(5, 2, 3, 3\); "
                                         r"it must draw \(5, 2, 3, 3\)\.$"):
        split.inverse(torch.zeros(5, 2, 3, 3))
