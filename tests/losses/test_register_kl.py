"""pgm.losses.register_kl: a closed form the user registers is the one KL uses, where there would otherwise be the
Monte Carlo fallback or torch's closed form, for pgm families, subclasses of them and renamed distributions."""
import math

import pytest
import torch
import torch.distributions as td
from torch import nn

from pgm.distributions import Gamma, Laplace, Normal
from pgm.losses import KL, register_kl
from pgm.losses import _kl

from loss_nets import Gaussian


@pytest.fixture
def registry():
    """Registrations made by a test last for that test only."""
    saved = dict(_kl._REGISTRY)
    yield
    _kl._REGISTRY.clear()
    _kl._REGISTRY.update(saved)
    _kl._FOUND.clear()  # the functions found for pairs of types, which may have been the test's


class Positive(nn.Module):
    """Gamma parameters of q(z|x) from a linear layer."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 2 * 3)

    def forward(self, x):
        concentration, rate = self.linear(x).chunk(2, -1)
        return {"concentration": nn.functional.softplus(concentration) + 0.5,
                "rate": nn.functional.softplus(rate) + 0.5}


def gamma_laplace(q, p):
    """KL(Gamma(alpha, beta) || Laplace(mu, b)) for mu <= 0, where E_q|z - mu| = E_q[z] - mu:
    -H[q] + log 2b + (alpha / beta - mu) / b, elementwise. torch has no closed form for this pair."""
    return -q.entropy() + torch.log(2 * p.scale) + (q.mean - p.loc) / p.scale


def gamma_and_laplace():
    q = Gamma("q(z|x)", net=Positive())
    prior = Laplace("p(z)", loc=-0.5, scale=2.0, features_shape=[3])
    return q, prior


def register_spy(type_q, type_p, fn):
    """Register ``fn`` for (type_q, type_p); returns the list of the torch types each call received."""
    calls = []

    @register_kl(type_q, type_p)
    def closed_form(q, p):
        calls.append((type(q), type(p)))
        return fn(q, p)
    return calls


def test_a_registered_closed_form_replaces_the_monte_carlo_fallback(registry):
    q, prior = gamma_and_laplace()
    x = torch.randn(5, 4)
    assert not _kl.has_closed_form(q, prior)
    assert KL(q, prior).analytic is False  # without a registration: the Monte Carlo estimate

    calls = register_spy(Gamma, Laplace, gamma_laplace)
    divergence = KL(q, prior)
    assert divergence.analytic is True and "closed form" in repr(divergence)
    torch.manual_seed(1)
    value = divergence.eval({"x": x})
    torch.manual_seed(2)
    assert torch.equal(divergence.eval({"x": x}), value)  # nothing is drawn
    assert calls and set(calls) == {(td.Gamma, td.Laplace)}

    # the value is the formula on q's parameters, summed over the event dims ...
    params = q.get_params({"x": x})
    alpha, beta = params["concentration"], params["rate"]
    entropy = alpha - torch.log(beta) + torch.lgamma(alpha) + (1 - alpha) * torch.digamma(alpha)
    expected = (-entropy + math.log(4.0) + (alpha / beta + 0.5) / 2.0).sum(-1)
    torch.testing.assert_close(value, expected)
    # ... and it is the divergence: the Monte Carlo estimate agrees with it
    torch.manual_seed(0)
    estimate = KL(q, prior, analytic=False, sample_shape=20000).eval({"x": x})
    torch.testing.assert_close(estimate, value, atol=0.03, rtol=0.01)


def test_a_registered_closed_form_serves_renamed_distributions_and_subclasses(registry):
    q, prior = gamma_and_laplace()
    x = torch.randn(5, 4)
    calls = register_spy(Gamma, Laplace, gamma_laplace)
    reference = KL(q, prior).eval({"x": x})
    seen = len(calls)

    q_a, prior_a = q.replace_var(z="a"), prior.replace_var(z="a")  # the same networks, variables renamed
    renamed = KL(q_a, prior_a)
    assert renamed.analytic is True and str(renamed) == "KL[q(a|x)||p(a)]"
    torch.testing.assert_close(renamed.eval({"x": x}), reference)
    assert len(calls) > seen

    class Rate(Gamma):  # a user's subclass of a pgm family inherits the registration
        pass
    sub = Rate("r(z|x)", net=q.net)
    assert KL(sub, prior).analytic is True
    torch.testing.assert_close(KL(sub, prior).eval({"x": x}), reference)


def test_a_registered_closed_form_wins_over_torchs(registry):
    """"Free bits" (Kingma et al. 2016): the KL of each latent dimension counted as at least 0.5 nat, registered for
    Normal || Normal, which torch also knows; the registered one is used, for renamed distributions too."""
    q = Normal("q(z|x)", net=Gaussian(4, 3))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[3])
    x = torch.randn(6, 4)
    torchs = KL(q, prior).eval({"x": x})
    calls = register_spy(Normal, Normal, lambda q, p: td.kl_divergence(q, p).clamp(min=0.5))
    params = q.get_params({"x": x})
    elementwise = td.kl_divergence(td.Normal(params["loc"], params["scale"]), td.Normal(0.0, 1.0))
    assert bool((elementwise < 0.5).any())  # so that the floor shows
    expected = elementwise.clamp(min=0.5).sum(-1)
    torch.testing.assert_close(KL(q, prior).eval({"x": x}), expected)
    torch.testing.assert_close(KL(q.replace_var(z="a"), prior.replace_var(z="a")).eval({"x": x}), expected)
    assert not torch.allclose(expected, torchs)
    assert set(calls) == {(td.Normal, td.Normal)}


def test_torchs_kl_lookup_that_pgm_relies_on_is_still_there():
    """pgm asks torch's private ``_dispatch_kl`` (in pgm/losses/_kl.py alone) whether torch has a closed form: if a
    torch release renames or changes it, this fails first, saying where to look."""
    from torch.distributions import kl
    lookup = getattr(kl, "_dispatch_kl", None)
    assert callable(lookup), "torch.distributions.kl._dispatch_kl is gone: update has_closed_form in pgm/losses/_kl.py"
    assert lookup(td.Normal, td.Normal) is kl._kl_normal_normal
    assert lookup(td.Laplace, td.Categorical) is NotImplemented
    shape = {"features_shape": [3]}
    assert _kl.has_closed_form(Normal("q(z)", loc=0.0, scale=1.0, **shape), Normal("p(z)", loc=1.0, scale=2.0, **shape))
    assert not _kl.has_closed_form(Gamma("q(z)", concentration=1.0, rate=1.0, **shape),
                                   Laplace("p(z)", loc=0.0, scale=1.0, **shape))
