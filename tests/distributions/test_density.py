"""Density: a distribution given by the user's log-density function, scored but never sampled."""
import pytest
import torch
import torch.distributions as td
from torch import nn

from pgm.distributions import Density, Normal
from pgm.losses import E, KL, LogProb
from pgm.models import Model

TARGET = td.Normal(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0]))


def target_log_prob(z):
    return TARGET.log_prob(z).sum(-1) + 3.0  # known up to a constant, as an energy is


def test_log_prob_is_the_function():
    p = Density("p(z)", target_log_prob)
    z = torch.randn(4, 5, 2)
    torch.testing.assert_close(LogProb(p).eval({"z": z}), TARGET.log_prob(z).sum(-1) + 3.0)
    assert p.latex() == "p(z)" and Density("p(z)", target_log_prob, latex=r"\tilde p(z)").latex() == r"\tilde p(z)"


def test_variational_inference_on_a_target_density_finds_it():
    """KL(q || p) by Monte Carlo against a Gaussian target known up to a constant: q converges to the target."""
    p = Density("p(z)", target_log_prob)
    loc, log_scale = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))

    class Q(Normal):
        def __init__(self):
            super().__init__("q(z|c)")
            self.loc_, self.log_scale = loc, log_scale

        def forward(self, c):
            return {"loc": self.loc_.expand(c.shape[0], 2), "scale": self.log_scale.exp().expand(c.shape[0], 2)}

    q = Q()
    loss = KL(q, p, analytic=False, sample_shape=64).mean()
    assert loss.latex() == r"\mathbb{E}_{p_{data}(c)}\left[D_{KL}\left[q(z|c)\|p(z)\right]\right]"
    model = Model(loss, distributions=[q, p], optimizer_params={"lr": 0.05})
    for _ in range(400):
        model.train({"c": torch.zeros(8, 1)})
    torch.testing.assert_close(loc.detach(), TARGET.loc, atol=0.1, rtol=0)
    torch.testing.assert_close(log_scale.exp().detach(), TARGET.scale, atol=0.15, rtol=0.05)


def test_a_conditional_density_with_a_network_trains_it():
    net = nn.Linear(1, 1)

    class Energy(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, c):
            return -(x - self.net(c)).pow(2).sum(-1)

    p = Density("p(x|c)", Energy())
    assert list(p.parameters()) == list(net.parameters())
    value = LogProb(p).eval({"x": torch.ones(3, 1), "c": torch.zeros(3, 1)})
    assert value.shape == (3,)


def test_density_errors():
    p = Density("p(z)", target_log_prob)
    with pytest.raises(ValueError, match=r"^p\(z\): Density cannot be sampled; it can be scored"):
        p.sample({}, sample_shape=3)
    with pytest.raises(ValueError, match=r"^E over p\(z\): Density cannot be sampled, so no expectation over it"):
        E(p, LogProb(p))
    with pytest.raises(ValueError, match=r"KL\[q\(z\)\|\|p\(z\)\]: no closed form for Normal \|\| Density; pass "
                                         r"analytic=False"):
        KL(Normal("q(z)", loc=torch.zeros(2), scale=torch.ones(2)), p, analytic=True)
    with pytest.raises(TypeError, match=r"^p\(x\|z\): its log-density function must take \(x, z\); it takes 1 "
                                        r"arguments"):
        Density("p(x|z)", target_log_prob)
    with pytest.raises(TypeError, match=r"^p\(z\): Density takes a log-density function of \(z\); got int"):
        Density("p(z)", 3)
    with pytest.raises(ValueError, match=r"^p\(z\): its log-density function must return one value per example, "
                                         r"shape \(4,\) \(summed over the event dims\); got \(4, 2\)"):
        Density("p(z)", lambda z: z).log_prob({"z": torch.zeros(4, 2)})
    with pytest.raises(KeyError, match=r"p\(z\) needs input `z`; got \['x'\]"):
        p.log_prob({"x": torch.zeros(4, 2)})


def test_the_latex_given_names_the_density_inside_formulas_too():
    ring = Density("p(z)", lambda z: -(z.norm(dim=-1) - 2).pow(2) / 0.08, latex=r"\tilde p(z)")
    q = Normal("q(z|x)", net=lambda x: {"loc": x, "scale": torch.ones_like(x)})
    assert ring.latex() == r"\tilde p(z)"
    assert LogProb(ring).latex() == r"\log \tilde p(z)"
    assert KL(q, ring, analytic=False).latex() == r"D_{KL}\left[q(z|x)\|\tilde p(z)\right]"
    assert str(KL(q, ring, analytic=False)) == "KL[q(z|x)||p(z)]"
