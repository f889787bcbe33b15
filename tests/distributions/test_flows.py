"""Flow: names and LaTeX, densities that integrate to 1, the cached log-density of its own draws against the
inverse path, conditional layers, density estimation, KL against a flow, a compiled step, and bad input."""

import pytest
import torch
import torch.distributions as td
from torch import nn
from torch.distributions.transforms import AffineTransform

from pgm import Context
from pgm.distributions import Bernoulli, Flow, Normal
from pgm.distributions.flows import (ActNorm, AffineCoupling, BatchNormFlow, Flatten, InvertibleConv1x1, Logit,
                                     Planar, Radial, Reverse, Shuffle, Squeeze, TransformLayer, bits_per_dim)
from pgm.losses import E, KL, LogProb
from pgm.models import Model

F64 = torch.float64


def randomize(layer, scale=0.5):
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return layer


class Gaussian(nn.Module):
    def __init__(self, in_features=3, out=2):
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * out, dtype=F64)

    def forward(self, x):
        loc, scale = self.linear(x).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale) + 0.3}


def standard(name="p_0(z)", d=2):
    return Normal(name, loc=torch.zeros(d, dtype=F64), scale=torch.ones(d, dtype=F64))


def grid(half_width=10.0, step=0.05):
    g = torch.arange(-half_width, half_width + step / 2, step, dtype=F64)
    a, b = torch.meshgrid(g, g, indexing="ij")
    return torch.stack([a.flatten(), b.flatten()], -1), step * step


# ------------------------------------------------------------------------------------------- names, LaTeX
def test_signature_latex_and_conditioning_variables():
    base = Normal("q_0(z|x)", net=Gaussian())
    q = Flow(base, [Planar(2), AffineCoupling(2, cond_var="w", cond_features=1)]).double()
    assert (q.prob_text, q.var, q.cond_var, q.required_var) == ("q_K(z|x,w)", ["z"], ["x", "w"], ["x", "w"])
    assert LogProb(q).latex() == r"\log q_K(z|x,w)"
    assert E(q, LogProb(q)).latex() == r"\mathbb{E}_{q_K(z|x,w)}\left[\log q_K(z|x,w)\right]"
    assert q.latex() == (r"\log q_K(z|x,w) = \log q_0(z_0|x) - \sum_{k=1}^{K} \log \left|\det "
                         r"\frac{\partial z_k}{\partial z_{k-1}}\right|")
    density = Flow(standard(), [AffineCoupling(2)], var="x", direction="inverse")
    assert density.prob_text == "p_K(x)"
    assert density.latex() == (r"\log p_K(x) = \log p_0(x_K) + \sum_{k=1}^{K} \log \left|\det "
                               r"\frac{\partial x_k}{\partial x_{k-1}}\right|, \quad x_0 = x")
    assert Flow(Normal("q(z|x)", net=Gaussian()), [Planar(2)], name="r").prob_text == "r(z|x)"
    assert (q.has_sample, q.has_reparam, q.has_log_prob, q.has_entropy) == (True, True, True, False)
    renamed = q.replace_var(z="a", w="v")
    assert (renamed.prob_text, renamed.base.prob_text) == ("q_K(a|x,v)", "q_0(a|x)")
    assert renamed.sample({"x": torch.zeros(4, 3, dtype=F64), "v": torch.zeros(4, 1, dtype=F64)})["a"].shape == (4, 2)


# ------------------------------------------------------------------------------------------- densities
def test_density_estimation_flow_integrates_to_one_on_a_grid():
    """Planar, radial and coupling layers with random parameters map x to N(0, I): sum of p(x) over a grid of
    [-10, 10]^2 (step 0.05) times the cell area is 1 within 1e-3 (1e-6 over ten seeds; the grid is the limit)."""
    layers = [randomize(Planar(2)), randomize(Radial(2)), randomize(AffineCoupling(2, hidden=8), 0.3),
              Reverse(), randomize(Planar(2))]
    p = Flow(standard(), layers, var="x", direction="inverse").double()
    points, area = grid()
    assert abs(p.log_prob({"x": points}).exp().sum().item() * area - 1) < 1e-3


def test_sampling_flow_integrates_to_one_through_its_inverse():
    """The same for a flow of invertible layers scored through their inverses (tolerance 1e-3; at most 2.2e-4
    over ten seeds)."""
    actnorm = ActNorm(2).double()
    actnorm(torch.randn(64, 2, dtype=F64) * 0.7)
    batchnorm = randomize(BatchNormFlow(2), 0.2).double().eval()
    layers = [randomize(Radial(2)), randomize(AffineCoupling(2, hidden=8), 0.3), randomize(InvertibleConv1x1(2), 0.3),
              actnorm, batchnorm, randomize(AffineCoupling(2, parity=1, hidden=8), 0.3)]
    q = Flow(standard(), layers).double()
    points, area = grid()
    assert abs(q.log_prob({"z": points}).exp().sum().item() * area - 1) < 1e-3


def test_density_estimation_matches_torch_transformed_distribution():
    """x -> 1 + 2x to N(0, 1): x ~ N(-1/2, 1/4); drawing runs the inverse."""
    p = Flow(Normal("p_0(x)", loc=0.0, scale=1.0, features_shape=[3]),
             [TransformLayer(AffineTransform(1.0, 2.0))], direction="inverse")
    x = torch.randn(5, 3)
    torch.testing.assert_close(p.log_prob({"x": x}), td.Normal(-0.5, 0.5).log_prob(x).sum(-1))
    draws = p.sample({}, sample_shape=20000)["x"]
    assert draws.shape == (20000, 3) and abs(draws.mean().item() + 0.5) < 0.02


# ---------------------------------------------------------------------------- own draws and the inverse
def _conditional_flow():
    base = Normal("q_0(z|x)", net=Gaussian())
    layers = [randomize(AffineCoupling(2, cond_var="w", cond_features=2, hidden=8)), randomize(Radial(2), 1.0),
              Shuffle(2), randomize(InvertibleConv1x1(2), 0.7)]
    return Flow(base, layers).double()


def test_log_prob_of_its_own_draws_equals_the_inverse_path():
    q = _conditional_flow()
    inputs = {"x": torch.randn(5, 3, dtype=F64), "w": torch.randn(5, 2, dtype=F64)}
    context = Context.from_inputs(inputs)
    inner = q.sample(context, sample_shape=4)
    assert inner["z"].shape == (4, 5, 2) and inner.lead["z"] == 2
    cached = q.log_prob(inner)
    assert q.sample(context, sample_shape=4)["z"] is inner["z"]  # one draw per evaluation, shared
    inverse = q.log_prob({**inputs, "z": inner["z"]})  # a new evaluation: scored through the inverses
    assert cached.shape == inverse.shape == (4, 5)
    torch.testing.assert_close(cached, inverse)
    values, log_q = q.sample_and_log_prob(inputs, 2)
    torch.testing.assert_close(log_q, q.log_prob(values))


def test_reparameterized_gradients_reach_the_base_and_the_layers():
    q = _conditional_flow()
    prior = standard("p(z)")
    loss = E(q, LogProb(prior) - LogProb(q)).mean()
    loss.eval({"x": torch.randn(5, 3, dtype=F64), "w": torch.randn(5, 2, dtype=F64)}).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in q.parameters() if p.requires_grad)


def test_a_planar_flow_scores_its_own_draws_but_not_other_values():
    q = Flow(Normal("q_0(z|x)", net=Gaussian()), [randomize(Planar(2), 1.0), randomize(Planar(2), 1.0)]).double()
    x = torch.randn(5, 3, dtype=F64)
    elbo = E(q, LogProb(standard("p(z)")) - LogProb(q), sample_shape=3)
    assert elbo.eval({"x": x}).shape == (5,)
    # the cached value is the change of variables along the draw: check it against a hand-written pass
    context = Context.from_inputs({"x": x})
    inner = q.sample(context)
    z0 = q.base.sample(context)["z"]  # the base's draw is shared with the flow's in this evaluation
    z1, ld1 = q.layers[0](z0)
    z2, ld2 = q.layers[1](z1)
    torch.testing.assert_close(inner["z"], z2)
    base = q.base.log_prob(context.child({"z": z0}, {"z": 1}, context.lead_shape))
    torch.testing.assert_close(q.log_prob(inner), base - ld1 - ld2)
    with pytest.raises(ValueError, match=r"^q_K\(z\|x\): cannot score a value of `z` it did not draw in this "
                                         r"evaluation: its layer 1 of 2, Planar\(2\), has no inverse\. .*use "
                                         r"invertible layers \(AffineCoupling, Radial"):
        q.log_prob({"x": x, "z": torch.zeros(5, 2, dtype=F64)})


def test_draws_without_reparameterization_are_scored_through_the_inverse():
    q = _conditional_flow()
    inputs = {"x": torch.randn(5, 3, dtype=F64), "w": torch.randn(5, 2, dtype=F64)}
    score = E(q, LogProb(q), estimator="score_function")
    assert score.eval(inputs).shape == (5,)
    draw = q.sample(inputs, reparam=False)["z"]
    assert not draw.requires_grad


def test_conditions_broadcast_over_sample_dims_and_lead():
    """A layer conditioned on a variable drawn with sample dims of its own, the base on the data."""
    a = Normal("q(a|x)", net=Gaussian(3, 2))
    q = Flow(Normal("q_0(z|x)", net=Gaussian()), [randomize(AffineCoupling(2, cond_var="a", cond_features=2))])
    q = q.double()
    loss = E(a, E(q, LogProb(q)), sample_shape=3)
    assert loss.eval({"x": torch.randn(5, 3, dtype=F64)}).shape == (5,)
    context = Context.from_inputs({"x": torch.randn(5, 3, dtype=F64)})
    inner = q.sample(a.sample(context, sample_shape=3))
    assert inner["z"].shape == (3, 5, 2)
    again = inner.child({"z": inner["z"].clone()}, {"z": 2}, inner.lead_shape)  # not the drawn tensor: the inverse
    torch.testing.assert_close(q.log_prob(inner), q.log_prob(again))


def test_a_flow_in_a_joint():
    q = Flow(standard("q_0(z)"), [randomize(Planar(2), 1.0)]).double()
    q_y = Normal("q(y|z)", net=Gaussian(2, 1))
    joint = q * q_y
    assert joint.prob_text == "p(z,y)"
    assert E(joint, LogProb(joint)).eval({"x": torch.zeros(4, 1)}).shape == (4,)


# ---------------------------------------------------------------------------- density estimation, images
def test_an_image_flow_gives_bits_per_dimension():
    torch.manual_seed(0)
    layers = [Logit(), Squeeze(), ActNorm(4), InvertibleConv1x1(4), AffineCoupling((4, 2, 2), "channel", hidden=8),
              AffineCoupling((4, 2, 2), "checkerboard", parity=1, hidden=8), Flatten((4, 2, 2))]
    p = Flow(Normal("p_0(x)", loc=0.0, scale=1.0, features_shape=[16]), layers, direction="inverse")
    pixels = torch.randint(0, 256, (8, 1, 4, 4)).float()
    log_p = p.log_prob({"x": pixels})
    assert log_p.shape == (8,)
    bpd = bits_per_dim(log_p, (1, 4, 4))
    assert torch.isfinite(bpd).all() and (bpd > 0).all()
    draws = p.sample({}, sample_shape=6)["x"]
    assert draws.shape == (6, 1, 4, 4) and (draws >= 0).all() and (draws < 256).all()  # the dequantized range


# ------------------------------------------------------------------------------------------------ KL
def _affine_flow():
    """N(loc(x), scale(x)) through z -> 0.5 + 2 z: the Normal N(0.5 + 2 loc, 2 scale)."""
    base = Normal("q_0(z|x)", net=Gaussian())
    return Flow(base, [TransformLayer(AffineTransform(0.5, 2.0))])


def test_kl_against_a_flow_falls_back_to_monte_carlo():
    q = _affine_flow()
    prior = standard("p(z)")
    x = torch.randn(4, 3, dtype=F64)
    params = q.base.get_params({"x": x})
    as_normal = td.Normal(0.5 + 2 * params["loc"], 2 * params["scale"])
    exact = td.kl_divergence(as_normal, td.Normal(torch.zeros(2, dtype=F64), 1.0)).sum(-1).detach()
    kl = KL(q, prior, sample_shape=20000)
    assert kl.analytic is False and "Monte Carlo" in repr(kl) and kl.latex() == r"D_{KL}\left[q_K(z|x)\|p(z)\right]"
    torch.testing.assert_close(kl.eval({"x": x}).detach(), exact, atol=0.05, rtol=0.02)
    reverse = KL(prior, q, sample_shape=20000)  # scores the prior's draws through the flow's inverse
    exact_reverse = td.kl_divergence(td.Normal(torch.zeros(2, dtype=F64), 1.0), as_normal).sum(-1).detach()
    torch.testing.assert_close(reverse.eval({"x": x}).detach(), exact_reverse, atol=0.05, rtol=0.02)
    closed = KL(q.base, prior)
    assert closed.analytic is True and "closed form" in repr(closed)
    with pytest.raises(ValueError, match=r"^KL\[q_K\(z\|x\)\|\|p\(z\)\]: no closed form for Flow \|\| Normal; pass "
                                         r"analytic=False"):
        KL(q, prior, analytic=True)


def test_kl_from_a_distribution_to_a_planar_flow_names_the_layer():
    q = Flow(Normal("q_0(z|x)", net=Gaussian()), [Planar(2)]).double()
    with pytest.raises(ValueError, match=r"cannot score a value of `z` it did not draw .* its layer 1 of 1, "
                                         r"Planar\(2\), has no inverse"):
        KL(standard("p(z)"), q).eval({"x": torch.randn(4, 3, dtype=F64)})


# ----------------------------------------------------------------------------------------- bad input
def test_a_layer_that_does_not_fit_the_base_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"^p_K\(z\): its layer 1 of 1, Planar\(3\), takes vectors of 3 features "
                                         r"\(event shape \(3,\)\), but its input, the base p_0\(z\), has event shape "
                                         r"\(2,\)\. Build the layer for it, e\.g\. Planar\(2\), or change the base"):
        Flow(standard(), [Planar(3)])
    with pytest.raises(ValueError, match=r"its layer 2 of 2, Radial\(3\), takes vectors of 3 features .* its input, "
                                         r"the output of layer 1, has event shape \(2,\)"):
        Flow(standard(), [Planar(2), Radial(3)])


def test_a_layer_that_does_not_fit_a_conditional_base_is_refused_at_the_first_evaluation():
    q = Flow(Normal("q_0(z|x)", net=Gaussian(3, 4)), [AffineCoupling(2)]).double()
    with pytest.raises(ValueError, match=r"^q_K\(z\|x\): its layer 1 of 1, AffineCoupling\(2, mask='alternating', "
                                         r"parity=0\), takes events of shape \(2,\) \(features=2\), but its input, the "
                                         r"base q_0\(z\|x\), has event shape \(4,\)\. Build the layer for it, e\.g\. "
                                         r"AffineCoupling\(4, mask='alternating'\)"):
        q.sample({"x": torch.randn(5, 3, dtype=F64)})
    density = Flow(standard(d=3), [AffineCoupling(3)], var="x", direction="inverse")
    with pytest.raises(ValueError, match=r"^p_K\(x\): `x` has shape \(5, 2\), but the flow's events have shape \(3,\)"):
        density.log_prob({"x": torch.randn(5, 2, dtype=F64)})


def test_other_bad_input():
    with pytest.raises(ValueError, match=r"^p_K\(x\) cannot be sampled: direction='inverse' draws by running the "
                                         r"layers' inverses, and its layer 1 of 1, Planar\(2\), has no inverse"):
        Flow(standard(), [Planar(2)], var="x", direction="inverse").sample({}, sample_shape=2)
    with pytest.raises(ValueError, match=r"direction must be 'forward' .* or 'inverse'"):
        Flow(standard(), [Planar(2)], direction="backward")
    with pytest.raises(TypeError, match=r"its layers must be pgm.distributions.flows.Layer modules .* got "
                                        r"\['Linear'\]"):
        Flow(standard(), [nn.Linear(2, 2)])
    q = Flow(standard(), [AffineCoupling(2, cond_var="w", cond_features=1)])
    with pytest.raises(KeyError, match=r"q_K\(z\|w\)|p_K\(z\|w\)"):
        q.sample({"x": torch.zeros(3, 1)})
    with pytest.raises(ValueError, match=r"its layers map `x` to events of shape \(4,\), but its base p_0\(z\) has "
                                         r"events of shape \(2,\)"):
        Flow(standard(), [Flatten((2, 2))], var="x", direction="inverse")
    with pytest.raises(ValueError, match=r"its layer 2 of 2, Planar\(3\), takes vectors of 3 features .* its input, "
                                         r"the output of layer 1, has event shape \(2,\)"):
        Flow(Normal("q_0(z|x)", net=Gaussian()), [Planar(2), Planar(3)])


# ------------------------------------------------------------------------------------------- compiled
def _vae(compile):
    torch.manual_seed(0)
    q = Flow(Normal("q_0(z|x)", net=Gaussian(6, 2)), [Planar(2), AffineCoupling(2, hidden=8), Planar(2)]).double()
    p = Bernoulli("p(x|z)", net=lambda z: {"logits": z.repeat(1, 3)})
    prior = standard("p(z)")
    loss = -E(q, LogProb(p) + LogProb(prior) - LogProb(q)).mean()
    return Model(loss, [q], optimizer_params={"lr": 1e-2}, compile=compile), q


def _train(model, q):
    torch.manual_seed(1)
    x = torch.rand(4, 8, 6, dtype=F64).round()
    losses = [model.train({"x": x[i]}) for i in range(4)]
    return losses, [t.detach().clone() for t in q.state_dict().values()]


def test_an_inductor_step_trains_a_flow_as_eager_does():
    """A VAE with a planar / coupling flow posterior: four steps compiled by inductor equal the eager ones."""
    import torch._inductor.config
    from torch._dynamo.utils import counters
    eager = _train(*_vae(False))
    counters.clear()
    with torch._inductor.config.patch(fallback_random=True):
        compiled = _train(*_vae("inductor"))
    assert counters["stats"]["unique_graphs"] > 0  # compiled, not fallen back to eager (that would warn)
    torch.testing.assert_close(torch.tensor(compiled[0]), torch.tensor(eager[0]), rtol=1e-6, atol=1e-6)
    for a, b in zip(compiled[1], eager[1]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)

