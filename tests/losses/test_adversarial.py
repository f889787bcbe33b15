"""Adversarial divergences: JensenShannon (GAN), Wasserstein (WGAN-GP) and AdversarialKL. Each value and gradient is
compared with plain torch on the same draws, each LaTeX string exactly; the discriminator's step leaves the
generator's parameters alone and the generator's step the discriminator's; known divergences between Gaussians
come out of the optimal discriminators; a discriminator returning the wrong shape is an error naming it."""
import math

import pytest
import torch
import torch.distributions as td
from torch import nn
from torch.nn import functional as F

from pgm.distributions import Bernoulli, Deterministic, Normal
from pgm.losses import AdversarialKL, JensenShannon, KL, LogProb, Parameter, Wasserstein

from loss_nets import Gaussian

B, DZ, DX = 16, 3, 2


class Generator(nn.Module):
    def __init__(self, dz=DZ, dx=DX):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dz, 8), nn.Tanh(), nn.Linear(8, dx))

    def forward(self, z):
        return {"loc": self.net(z)}


def discriminator(d_in=DX):
    return nn.Sequential(nn.Linear(d_in, 8), nn.Tanh(), nn.Linear(8, 1))


@pytest.fixture
def gan_parts():
    g = Generator()
    p = (Deterministic("p(x|z)", net=g) * Normal("p(z)", loc=0.0, scale=1.0, features_shape=[DZ])).marginalize_var("z")
    return g, p, discriminator(), torch.randn(B, DX)


def grads(module):
    return [None if w.grad is None else w.grad.clone() for w in module.parameters()]


def reference_grads(value, module):
    return list(torch.autograd.grad(value, list(module.parameters()), retain_graph=True))


# ------------------------------------------------------------------------------------------------- LaTeX


def test_latex_is_the_papers_objective(gan_parts):
    _, p, d, _ = gan_parts
    gan = JensenShannon(p, discriminator=d)
    assert gan.latex() == (r"\max_{D} \mathbb{E}_{p_{data}(x)}\left[\log D(x)\right] + "
                           r"\mathbb{E}_{p(x)}\left[\log\left(1 - D(x)\right)\right]")
    assert gan.discriminator_loss.latex() == (r"- (\mathbb{E}_{p_{data}(x)}\left[\log D(x)\right] + "
                                              r"\mathbb{E}_{p(x)}\left[\log\left(1 - D(x)\right)\right])")
    assert str(gan) == "max_D E_p_data(x)[log D(x)] + E_p(x)[log(1 - D(x))]"
    assert JensenShannon(p, discriminator=d, non_saturating=True).latex() == \
        r"- \mathbb{E}_{p(x)}\left[\log D(x)\right]"
    wgan = Wasserstein(p, discriminator=d, gradient_penalty=Parameter("lambda"))
    assert wgan.latex() == (r"\max_{\lVert D \rVert_{L} \leq 1} \mathbb{E}_{p_{data}(x)}\left[D(x)\right] - "
                            r"\mathbb{E}_{p(x)}\left[D(x)\right]")
    assert wgan.discriminator_loss.latex() == (
        r"\mathbb{E}_{p(x)}\left[D(x)\right] - \mathbb{E}_{p_{data}(x)}\left[D(x)\right] + \lambda "
        r"\mathbb{E}_{\hat{x}}\left[\left(\left\lVert \nabla_{\hat{x}} D(\hat{x}) \right\rVert_{2} - 1\right)^{2}\right]")
    assert wgan.discriminator_loss.parameters == ["lambda"]
    assert Wasserstein(p, discriminator=d, gradient_penalty=0).discriminator_loss.latex() == \
        r"\mathbb{E}_{p(x)}\left[D(x)\right] - \mathbb{E}_{p_{data}(x)}\left[D(x)\right]"
    kl = AdversarialKL(p, discriminator=d)
    assert kl.latex() == r"\mathbb{E}_{p(x)}\left[\log \frac{D(x)}{1 - D(x)}\right]"
    assert kl.discriminator_loss.latex() == (r"- (\mathbb{E}_{p(x)}\left[\log D(x)\right] + "
                                             r"\mathbb{E}_{p_{data}(x)}\left[\log\left(1 - D(x)\right)\right])")
    # the divergence composes like any loss and needs the data it compares with
    assert (gan + 2 * kl).input_var == ["x"] and gan.distributions == [p]


def test_each_loss_trains_its_own_networks(gan_parts):
    g, p, d, _ = gan_parts
    for divergence in (JensenShannon(p, discriminator=d), Wasserstein(p, discriminator=d),
                       AdversarialKL(p, discriminator=d)):
        assert divergence.modules == [] and divergence.generator_loss is divergence
        assert divergence.discriminator_loss.modules == [d] and divergence.discriminator is d


# ------------------------------------------------------------------------ values and gradients, plain torch


def test_jensen_shannon_values_and_gradients_match_plain_torch(gan_parts):
    g, p, d, x = gan_parts
    gan = JensenShannon(p, discriminator=d)
    for loss, name in ((gan, "generator"), (gan.discriminator_loss, "discriminator")):
        torch.manual_seed(1)
        value = loss.eval({"x": x})
        torch.manual_seed(1)
        fake = g.net(torch.randn(B, DZ))  # the prior's draw, then the generator
        v = F.logsigmoid(d(x)).mean() + F.logsigmoid(-d(fake)).mean()
        if name == "generator":
            torch.testing.assert_close(value, v)
            for ours, ref in zip(torch.autograd.grad(value, list(g.parameters()), retain_graph=True),
                                 reference_grads(v, g)):
                torch.testing.assert_close(ours, ref)
        else:
            torch.testing.assert_close(value, -v)
            # the discriminator's gradient is the cross-entropy's, the generated points held fixed
            bce = (F.binary_cross_entropy_with_logits(d(x), torch.ones(B, 1))
                   + F.binary_cross_entropy_with_logits(d(fake.detach()), torch.zeros(B, 1)))
            torch.testing.assert_close(value, bce)
            for ours, ref in zip(torch.autograd.grad(value, list(d.parameters()), retain_graph=True),
                                 reference_grads(bce, d)):
                torch.testing.assert_close(ours, ref)

    torch.manual_seed(2)
    value = JensenShannon(p, discriminator=d, non_saturating=True).eval({"x": x})
    torch.manual_seed(2)
    expected = -F.logsigmoid(d(g.net(torch.randn(B, DZ)))).mean()
    torch.testing.assert_close(value, expected)


def test_wasserstein_gradient_penalty_matches_plain_torch(gan_parts):
    g, p, d, x = gan_parts
    wgan = Wasserstein(p, discriminator=d, gradient_penalty=Parameter("lam"))
    torch.manual_seed(3)
    value = wgan.discriminator_loss.eval({"x": x}, lam=7.0)
    generator_value = None
    torch.manual_seed(3)
    fake = g.net(torch.randn(B, DZ)).detach()
    eps = torch.rand(B, 1)  # one weight per example, drawn after the generator's draw
    x_hat = (eps * x + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
    penalty = (grad.norm(dim=1) - 1).pow(2).mean()
    expected = d(fake).mean() - d(x).mean() + 7.0 * penalty
    torch.testing.assert_close(value, expected)
    for ours, ref in zip(torch.autograd.grad(value, list(d.parameters())), reference_grads(expected, d)):
        torch.testing.assert_close(ours, ref)

    torch.manual_seed(4)
    generator_value = wgan.eval({"x": x})
    torch.manual_seed(4)
    fake = g.net(torch.randn(B, DZ))
    reference = d(x).mean() - d(fake).mean()
    torch.testing.assert_close(generator_value, reference)
    for ours, ref in zip(torch.autograd.grad(generator_value, list(g.parameters())), reference_grads(reference, g)):
        torch.testing.assert_close(ours, ref)


def test_the_gradient_penalty_of_a_linear_critic_is_its_slope_minus_one_squared(gan_parts):
    _, p, _, x = gan_parts
    critic = nn.Linear(DX, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[3.0, 4.0]]))  # slope 5 everywhere: the penalty is (5 - 1)^2 = 16
    wgan = Wasserstein(p, discriminator=critic, gradient_penalty=2.0)
    without = Wasserstein(p, discriminator=critic, gradient_penalty=0.0)
    torch.manual_seed(5)
    a = wgan.discriminator_loss.eval({"x": x})
    torch.manual_seed(5)
    b = without.discriminator_loss.eval({"x": x})
    torch.testing.assert_close(a - b, torch.tensor(2.0 * 16.0))


def test_the_gradient_penalty_is_evaluated_without_gradients_as_with_them(gan_parts):
    """Model.test and validation evaluate under torch.no_grad; the penalty, itself a gradient, still has a value
    there (the same), and leaves nothing to back-propagate."""
    _, p, d, x = gan_parts
    wgan = Wasserstein(p, discriminator=d, gradient_penalty=10.0)
    torch.manual_seed(6)
    with_grad = wgan.discriminator_loss.eval({"x": x})
    torch.manual_seed(6)
    with torch.no_grad():
        without = wgan.discriminator_loss.eval({"x": x})
    assert not without.requires_grad
    torch.testing.assert_close(without, with_grad.detach())


def test_adversarial_kl_of_an_encoder_matches_plain_torch():
    q = Normal("q(z|x)", net=Gaussian(DX, DZ))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[DZ])

    class T(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(DZ + DX, 8), nn.Tanh(), nn.Linear(8, 1))

        def forward(self, z, x):
            return self.net(torch.cat([z, x], -1))

    t, x = T(), torch.randn(B, DX)
    kl = AdversarialKL(q, prior, discriminator=t)
    assert kl.latex() == r"\mathbb{E}_{q(z|x)}\left[\log \frac{D(z,x)}{1 - D(z,x)}\right]"
    assert kl.discriminator_loss.latex() == (
        r"\mathbb{E}_{p_{data}(x)}\left[- (\mathbb{E}_{q(z|x)}\left[\log D(z,x)\right] + "
        r"\mathbb{E}_{p(z)}\left[\log\left(1 - D(z,x)\right)\right])\right]")
    torch.manual_seed(6)
    value = kl.eval({"x": x})
    assert value.shape == (B,)  # per example, like KL(q, prior): it stands for it in an ELBO
    torch.manual_seed(6)
    z = q.torch_distribution({"x": x}).rsample()
    expected = t(z, x).squeeze(-1)
    torch.testing.assert_close(value, expected)
    for ours, ref in zip(torch.autograd.grad(value.sum(), list(q.parameters())), reference_grads(expected.sum(), q)):
        torch.testing.assert_close(ours, ref)

    torch.manual_seed(7)
    d_value = kl.discriminator_loss.eval({"x": x})
    torch.manual_seed(7)
    z_q = q.torch_distribution({"x": x}).rsample().detach()
    z_p = torch.randn(B, DZ)
    d_expected = -(F.logsigmoid(t(z_q, x)) + F.logsigmoid(-t(z_p, x))).mean()
    torch.testing.assert_close(d_value, d_expected)
    for ours, ref in zip(torch.autograd.grad(d_value, list(t.parameters())), reference_grads(d_expected, t)):
        torch.testing.assert_close(ours, ref)


# ------------------------------------------------------------- the optimal discriminators give the divergences


def shifted_gaussian(shift):
    """p(x) = N(shift, 1) in 1-D, as a generator: x = z + shift, z ~ N(0, 1)."""
    g = Deterministic("p(x|z)", net=lambda z: {"loc": z + shift})
    return (g * Normal("p(z)", loc=0.0, scale=1.0, features_shape=[1])).marginalize_var("z")


def linear(weight, bias):
    layer = nn.Linear(1, 1)
    with torch.no_grad():
        layer.weight.fill_(weight)
        layer.bias.fill_(bias)
    return layer


def test_optimal_discriminators_give_the_known_divergences():
    torch.manual_seed(8)
    n, mu = 200_000, 1.0
    data = torch.randn(n, 1)  # p_data = N(0, 1); the generator is N(mu, 1)
    p = shifted_gaussian(mu)
    # GAN: D*(x) = p_data / (p_data + p), logit log N(x; 0, 1) - log N(x; mu, 1) = -mu x + mu^2 / 2; the value of
    # V at D* is 2 JS - log 4, with JS integrated on a grid (plain torch)
    value = JensenShannon(p, discriminator=linear(-mu, mu ** 2 / 2)).eval({"x": data})
    grid = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    a, b = td.Normal(0.0, 1.0).log_prob(grid).exp(), td.Normal(mu, 1.0).log_prob(grid).exp()
    m = (a + b) / 2
    js = 0.5 * torch.trapezoid(a * (a / m).log(), grid) + 0.5 * torch.trapezoid(b * (b / m).log(), grid)
    assert value.item() == pytest.approx(2 * js.item() - math.log(4), abs=5e-3)
    # Wasserstein-1 between N(0, 1) and N(mu, 1) is mu, attained by the 1-Lipschitz critic f(x) = -x
    assert Wasserstein(p, discriminator=linear(-1.0, 0.0)).eval({"x": data}).item() == pytest.approx(mu, abs=1e-2)
    # KL[p || p_data] = mu^2 / 2: D labels p's draws 1, so its optimal logit is log p - log p_data = mu x - mu^2 / 2
    kl = AdversarialKL(p, discriminator=linear(mu, -mu ** 2 / 2)).eval({"x": data})
    assert kl.item() == pytest.approx(mu ** 2 / 2, abs=1e-2)
    # and between two distributions: the same estimate, per example, against the closed form KL
    q = Normal("q(z|x)", net=lambda x: {"loc": x, "scale": torch.ones_like(x)})
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[1])

    class Ratio(nn.Module):  # log q(z|x) - log p(z) = z x - x^2 / 2 exactly
        def forward(self, z, x):
            return z * x - x ** 2 / 2

    x = torch.full((n, 1), 1.5)
    estimate = AdversarialKL(q, prior, discriminator=Ratio()).eval({"x": x})
    assert estimate.mean().item() == pytest.approx(KL(q, prior).eval({"x": x[:1]}).item(), abs=1e-2)


# -------------------------------------------------------- each step leaves the other side's parameters alone


@pytest.mark.parametrize("make", [
    lambda p, d: JensenShannon(p, discriminator=d),
    lambda p, d: JensenShannon(p, discriminator=d, non_saturating=True),
    lambda p, d: Wasserstein(p, discriminator=d),
    lambda p, d: AdversarialKL(p, discriminator=d),
], ids=["js", "js-non-saturating", "wasserstein-gp", "adversarial-kl"])
def test_each_step_changes_only_its_own_side(make, gan_parts):
    g, p, d, x = gan_parts
    divergence = make(p, d)
    # one optimizer over BOTH networks: only the gradients decide what moves
    optimizer = torch.optim.SGD(list(g.parameters()) + list(d.parameters()), lr=0.1)
    for loss, moved, kept in ((divergence.discriminator_loss, d, g), (divergence, g, d)):
        before_moved = [w.detach().clone() for w in moved.parameters()]
        before_kept = [w.detach().clone() for w in kept.parameters()]
        optimizer.zero_grad(set_to_none=True)
        loss.eval({"x": x}).backward()
        assert all(w.grad is None for w in kept.parameters())  # not even a zero gradient reaches it
        optimizer.step()
        assert all(torch.equal(a, w) for a, w in zip(before_kept, kept.parameters()))
        assert any(not torch.equal(a, w) for a, w in zip(before_moved, moved.parameters()))


@pytest.mark.parametrize("divergence", [JensenShannon, Wasserstein, AdversarialKL])
def test_the_discriminators_loss_reaches_neither_distribution_it_compares(divergence):
    """Between two trainable distributions (an encoder against another), the discriminator's loss trains the
    discriminator only, even under a plain backward: neither p's nor q's draws carry its gradient."""
    class Encoder(nn.Linear):
        def forward(self, x):
            loc, scale = super().forward(x).chunk(2, -1)
            return {"loc": loc, "scale": scale.exp()}

    class Critic(nn.Linear):
        def forward(self, z, x):
            return super().forward(torch.cat([z, x], -1))

    p, q = Normal("q(z|x)", net=Encoder(3, 4)), Normal("r(z|x)", net=Encoder(3, 4))
    d = Critic(5, 1)
    divergence(p, q, discriminator=d).discriminator_loss.eval({"x": torch.randn(8, 3)}).backward()
    assert p.net.weight.grad is None and q.net.weight.grad is None
    assert d.weight.grad is not None


def test_training_in_turn_moves_a_generator_towards_the_data():
    """A few hundred alternating plain-torch steps pull a shifted 1-D generator onto the data's mean."""
    torch.manual_seed(9)
    shift = nn.Parameter(torch.tensor(3.0))
    g = Deterministic("p(x|z)", net=lambda z: {"loc": z + shift})
    p = (g * Normal("p(z)", loc=0.0, scale=1.0, features_shape=[1])).marginalize_var("z")
    d = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1))
    gan = JensenShannon(p, discriminator=d, non_saturating=True)
    d_opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    g_opt = torch.optim.Adam([shift], lr=2e-2)
    for _ in range(300):
        batch = {"x": torch.randn(64, 1)}
        for loss, opt in ((gan.discriminator_loss, d_opt), (gan, g_opt)):
            opt.zero_grad()
            loss.eval(batch).backward()
            opt.step()
    assert abs(shift.item()) < 0.5


# ----------------------------------------------------------------------------------------- conditions


def test_a_conditional_generator_shows_the_discriminator_its_condition():
    torch.manual_seed(10)
    g = Deterministic("p(x|z,y)", net=lambda z, y: {"loc": z + y})
    p = (g * Normal("p(z)", loc=0.0, scale=1.0, features_shape=[DX])).marginalize_var("z")
    seen = []

    class D(nn.Linear):
        def forward(self, x, y):
            seen.append((x, y))
            return super().forward(torch.cat([x, y], -1))

    gan = JensenShannon(p, discriminator=D(2 * DX, 1))
    assert gan.latex() == (r"\max_{D} \mathbb{E}_{p_{data}(x,y)}\left[\log D(x,y)\right] + "
                           r"\mathbb{E}_{p(x|y)}\left[\log\left(1 - D(x,y)\right)\right]")
    x, y = torch.randn(B, DX), torch.randn(B, DX)
    torch.manual_seed(11)
    value = gan.eval({"x": x, "y": y})
    (x_real, y_real), (x_fake, y_fake) = seen
    assert torch.equal(x_real, x) and torch.equal(y_real, y) and torch.equal(y_fake, y)
    torch.manual_seed(11)
    torch.testing.assert_close(x_fake, torch.randn(B, DX) + y)
    d = gan.discriminator
    torch.testing.assert_close(value, F.logsigmoid(d(x, y)).mean() + F.logsigmoid(-d(x_fake, y)).mean())


# ---------------------------------------------------------------------------------------------- errors


def test_a_discriminator_of_the_wrong_shape_is_named_with_the_fix(gan_parts):
    _, p, _, x = gan_parts

    class Critic(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(DX, 3)

        def forward(self, x):
            return self.linear(x)

    for make in (lambda d: JensenShannon(p, discriminator=d),
                 lambda d: Wasserstein(p, discriminator=d).discriminator_loss):
        with pytest.raises(ValueError) as error:
            make(Critic()).eval({"x": x})
        message = str(error.value)
        assert "the discriminator Critic must return one value per example, shape (16,) or (16, 1)" in message
        assert "returned shape (16, 3)" in message and "nn.Linear(hidden, 1)" in message
        assert message.startswith(("JensenShannon(p(x))", "Wasserstein(p(x))"))

    class Parameters(nn.Linear):  # written like a distribution's network
        def forward(self, x):
            return {"logits": super().forward(x)}

    with pytest.raises(TypeError, match=r"the discriminator Parameters must return a tensor, one logit per example; "
                                        r"it returned dict"):
        JensenShannon(p, discriminator=Parameters(DX, 1)).eval({"x": x})


def test_bad_arguments_are_refused_when_written(gan_parts):
    _, p, d, _ = gan_parts
    bernoulli_d = Bernoulli("d(t|x)", net=lambda x: {"logits": x})
    with pytest.raises(TypeError, match=r"discriminator= takes the network itself .* got d\(t\|x\)"):
        JensenShannon(p, discriminator=bernoulli_d)
    with pytest.raises(TypeError, match="discriminator= must be a network"):
        JensenShannon(p, discriminator=3)
    with pytest.raises(TypeError, match="p must be a pgm distribution"):
        JensenShannon(d, discriminator=d)
    other = Normal("q(w)", loc=0.0, scale=1.0, features_shape=[DX])
    with pytest.raises(ValueError, match=r"p and q must be distributions of the same variables.*replace_var"):
        AdversarialKL(p, other, discriminator=d)
    binary = Bernoulli("p(x)", probs=0.5, features_shape=[DX])
    with pytest.raises(ValueError, match="no reparameterized sampler.*RelaxedBernoulli"):
        JensenShannon(binary, discriminator=d)
    for bad in (-1.0, float("nan"), "10", True):
        with pytest.raises(ValueError, match="gradient_penalty must be a number >= 0"):
            Wasserstein(p, discriminator=d, gradient_penalty=bad)
    with pytest.raises(ValueError, match="non_saturating must be True or False"):
        JensenShannon(p, discriminator=d, non_saturating="yes")
    with pytest.raises(KeyError, match="the loss needs input `x`"):
        JensenShannon(p, discriminator=d).eval({})


@pytest.mark.parametrize("kind", ["js", "wgan_gp"])
def test_an_adversarial_term_beside_a_data_set_average_is_taken_over_the_examples(kind, gan_parts):
    # a formula with .mean() is evaluated from outside its averages (where global variables are drawn); a divergence
    # against the data is an average over the examples itself, so beside one it must be what it is alone
    _, p, d, x = gan_parts
    noise = Normal("r(x)", loc=torch.zeros(DX), scale=torch.ones(DX))
    divergence = (JensenShannon(p, discriminator=d) if kind == "js"
                  else Wasserstein(p, discriminator=d, gradient_penalty=10))
    for loss in (divergence, divergence.discriminator_loss):
        torch.manual_seed(3)
        alone = loss.eval({"x": x})
        torch.manual_seed(3)
        beside = (LogProb(noise).mean() + loss).eval({"x": x})
        torch.testing.assert_close(beside, alone + td.Normal(0.0, 1.0).log_prob(x).sum(-1).mean())
