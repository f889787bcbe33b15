"""Gamma, Poisson and Multinomial against torch.distributions: log_prob, entropy, sampling, gradients, KL.

As in test_families.py, two tables: EXAMPLES (parameters from a small network of ``x``) and PRIORS (fixed
parameters). Each row names an independent reference built with torch.distributions from the same parameters.
"""
from dataclasses import dataclass, field
from typing import Callable, Optional

import pytest
import torch
import torch.distributions as td
from torch import nn
from torch.nn.functional import softplus

from pgm.distributions import Gamma, Multinomial, Poisson
from pgm.losses import KL

BATCH, IN, K = 6, 4, 3
N = 7  # the Multinomial's total_count
SAMPLE_SHAPES = [(), (5,), (3, 2)]


def positive(h):
    return softplus(h) + 0.1


def positive_value(shape):
    return torch.rand(shape) * 3 + 0.1


def counts(shape):
    return torch.poisson(torch.full(shape, 2.0))


def count_vectors(shape, total=N):
    return td.Multinomial(total, probs=torch.ones(shape[-1])).sample(shape[:-1])


def in_support(family, z, total=N):
    if family is Gamma:
        return bool((z > 0).all())
    if family is Poisson:
        return bool(((z >= 0) & (z == z.round())).all())
    return bool(((z >= 0) & (z == z.round())).all() and (z.sum(-1) == total).all())


def _ind(d, n=1):
    return td.Independent(d, n)


@dataclass
class Example:
    id: str
    family: type
    head: Callable          # (batch, width) features -> the parameter dict
    width: int
    reference: Callable     # parameters -> torch distribution scoring a value (event dims reinterpreted)
    sampler: Callable       # parameters -> torch distribution drawing the same samples with the same seed
    value: Callable         # shape -> a value the reference scores
    kwargs: dict = field(default_factory=dict)
    reparam: bool = True


EXAMPLES = [
    Example("gamma", Gamma, lambda h: {"concentration": positive(h[:, :K]), "rate": positive(h[:, K:])}, 2 * K,
            lambda p: _ind(td.Gamma(**p)), lambda p: td.Gamma(**p), positive_value),
    Example("poisson", Poisson, lambda h: {"rate": positive(h)}, K, lambda p: _ind(td.Poisson(**p)),
            lambda p: td.Poisson(**p), counts, reparam=False),
    Example("multinomial-probs", Multinomial, lambda h: {"probs": h.softmax(-1)}, K,
            lambda p: td.Multinomial(N, **p), lambda p: td.Multinomial(N, **p), count_vectors,
            kwargs={"total_count": N}, reparam=False),
    Example("multinomial-logits", Multinomial, lambda h: {"logits": h}, K,
            lambda p: td.Multinomial(N, **p), lambda p: td.Multinomial(N, **p), count_vectors,
            kwargs={"total_count": N}, reparam=False),
]
WITH_ENTROPY = [e for e in EXAMPLES if e.family is not Poisson]  # torch has no Poisson entropy


class Head(nn.Module):
    def __init__(self, example):
        super().__init__()
        self.linear = nn.Linear(IN, example.width)
        self.head = example.head

    def forward(self, x):
        return self.head(self.linear(x))


def _make(example, net=None):
    net = Head(example) if net is None else net
    return example.family("p(z|x)", net=net, **example.kwargs), net


def _table(rows):
    return pytest.mark.parametrize("example", rows, ids=[r.id for r in rows])


@_table(EXAMPLES)
def test_log_prob_matches_torch(example):
    d, net = _make(example)
    x = torch.randn(BATCH, IN)
    value = example.value((BATCH, K))
    got = d.log_prob({"x": x, "z": value})
    assert got.shape == (BATCH,)
    torch.testing.assert_close(got, example.reference(net(x)).log_prob(value))


@_table(EXAMPLES)
def test_log_prob_keeps_sample_dims(example):
    d, net = _make(example)
    x = torch.randn(BATCH, IN)
    value = example.value((5, BATCH, K))
    got = d.log_prob({"x": x, "z": value})
    assert got.shape == (5, BATCH)
    torch.testing.assert_close(got, example.reference(net(x)).log_prob(value))


@_table(WITH_ENTROPY)
def test_entropy_matches_torch(example):
    d, net = _make(example)
    x = torch.randn(BATCH, IN)
    got = d.entropy({"x": x})
    assert got.shape == (BATCH,)
    torch.testing.assert_close(got, example.reference(net(x)).entropy())


def test_poisson_has_no_closed_form_entropy():
    d, _ = _make(EXAMPLES[1])
    assert not d.has_entropy
    with pytest.raises(ValueError, match=r"H\[p\(z\|x\)\]: Poisson has no closed-form entropy; estimate it with"):
        d.entropy({"x": torch.randn(BATCH, IN)})


@_table(EXAMPLES)
def test_mean_and_variance_match_torch(example):
    d, net = _make(example)
    x = torch.randn(BATCH, IN)
    reference = example.sampler(net(x))
    torch.testing.assert_close(d.sample_mean({"x": x}), reference.mean)
    torch.testing.assert_close(d.sample_variance({"x": x}), reference.variance)


@_table(EXAMPLES)
@pytest.mark.parametrize("sample_shape", SAMPLE_SHAPES, ids=str)
def test_sample_is_torch_sample(example, sample_shape):
    """Same seed, same draw as torch's own sampler; shape (*sample_shape, batch, *event); in the support."""
    d, net = _make(example)
    x = torch.randn(BATCH, IN)
    torch.manual_seed(1)
    out = d.sample({"x": x}, sample_shape=sample_shape, reparam=example.reparam)
    assert set(out) == {"x", "z"} and out["x"] is x
    z = out["z"]
    assert z.shape == (*sample_shape, BATCH, K)
    assert in_support(example.family, z)
    with torch.no_grad():
        params = net(x)
    torch.manual_seed(1)
    torch.testing.assert_close(z.detach(), example.sampler(params).sample(sample_shape))


def test_gamma_rsample_gradients_reach_the_network():
    d, net = _make(EXAMPLES[0])
    assert d.has_reparam
    x = torch.randn(BATCH, IN, requires_grad=True)
    z = d.sample({"x": x}, sample_shape=(2,))["z"]
    assert z.requires_grad
    (z * torch.randn(z.shape)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    assert bool(x.grad.abs().sum() > 0)


@_table([e for e in EXAMPLES if not e.reparam])
def test_discrete_families_sample_without_gradient(example):
    d, _ = _make(example)
    assert not d.has_reparam
    x = torch.randn(BATCH, IN, requires_grad=True)
    for reparam in (True, False):
        z = d.sample({"x": x}, sample_shape=(2,), reparam=reparam)["z"]
        assert not z.requires_grad and z.shape == (2, BATCH, K)


def test_gradcheck_gamma_log_prob():
    """log_prob in float64, w.r.t. the network's weight, its input and the value."""
    example = EXAMPLES[0]
    weight = torch.randn(IN, example.width, dtype=torch.float64, requires_grad=True)
    held = {}
    d, _ = _make(example, net=lambda x: example.head(x @ held["weight"]))
    d = d.to(torch.float64)
    x = torch.randn(BATCH, IN, dtype=torch.float64, requires_grad=True)
    value = positive_value((BATCH, K)).double().requires_grad_()

    def log_prob(weight, x, value):
        held["weight"] = weight
        return d.log_prob({"x": x, "z": value})

    assert torch.autograd.gradcheck(log_prob, (weight, x, value))


def test_multinomial_total_count_is_a_fixed_int():
    """total_count is a constant of the family: not a network output, not moved or cast with the module."""
    d, net = _make(EXAMPLES[2])
    assert d.total_count == N and type(d.total_count) is int
    assert "total_count" not in dict(d.named_buffers()) and "total_count" not in d.state_dict()
    d = d.to(torch.float64)
    x = torch.randn(BATCH, IN, dtype=torch.float64)
    net.double()
    z = d.sample({"x": x})["z"]
    assert z.dtype == torch.float64 and bool((z.sum(-1) == N).all())
    renamed = d.replace_var(z="c")
    assert renamed.total_count == N and renamed.sample({"x": x})["c"].sum(-1).eq(N).all()


# ----------------------------------------------------------------------------------- fixed parameters
@dataclass
class Prior:
    id: str
    family: type
    kwargs: dict
    reference: Callable  # () -> torch distribution scoring a value
    sampler: Callable    # () -> torch distribution drawing the same samples with the same seed
    event_shape: tuple
    value: Callable
    total: int = N


def _t(*values):
    return torch.tensor(values)


PROBS = _t(0.2, 0.3, 0.5)
PRIORS = [
    Prior("gamma-features", Gamma, dict(concentration=2.0, rate=3.0, features_shape=[2, 3]),
          lambda: _ind(td.Gamma(torch.full((2, 3), 2.0), torch.full((2, 3), 3.0)), 2),
          lambda: td.Gamma(torch.full((2, 3), 2.0), torch.full((2, 3), 3.0)), (2, 3), positive_value),
    Prior("gamma-tensors", Gamma, dict(concentration=_t(0.5, 1.0, 4.0), rate=_t(1.0, 2.0, 0.5)),
          lambda: _ind(td.Gamma(_t(0.5, 1.0, 4.0), _t(1.0, 2.0, 0.5))),
          lambda: td.Gamma(_t(0.5, 1.0, 4.0), _t(1.0, 2.0, 0.5)), (3,), positive_value),
    Prior("poisson-features", Poisson, dict(rate=1.5, features_shape=[4]),
          lambda: _ind(td.Poisson(torch.full((4,), 1.5))), lambda: td.Poisson(torch.full((4,), 1.5)), (4,), counts),
    Prior("poisson-tensor", Poisson, dict(rate=_t(0.5, 2.0, 10.0)),
          lambda: _ind(td.Poisson(_t(0.5, 2.0, 10.0))), lambda: td.Poisson(_t(0.5, 2.0, 10.0)), (3,), counts),
    Prior("multinomial-probs", Multinomial, dict(probs=PROBS, total_count=N),
          lambda: td.Multinomial(N, PROBS), lambda: td.Multinomial(N, PROBS), (3,), count_vectors),
    Prior("multinomial-logits-features", Multinomial, dict(logits=0.0, features_shape=[4], total_count=2),
          lambda: td.Multinomial(2, logits=torch.zeros(4)), lambda: td.Multinomial(2, logits=torch.zeros(4)), (4,),
          lambda shape: count_vectors(shape, total=2), total=2),
]


def _prior_table(rows):
    return pytest.mark.parametrize("prior", rows, ids=[r.id for r in rows])


@_prior_table(PRIORS)
def test_prior_log_prob_matches_torch(prior):
    d = prior.family("p(z)", **prior.kwargs)
    value = prior.value((BATCH, *prior.event_shape))
    got = d.log_prob({"z": value})
    assert got.shape == (BATCH,)
    torch.testing.assert_close(got, prior.reference().log_prob(value))


@_prior_table([p for p in PRIORS if p.family is not Poisson])
def test_prior_entropy_matches_torch(prior):
    d = prior.family("p(z)", **prior.kwargs)
    got = d.entropy({})
    assert got.shape == ()  # the same for every batch element
    torch.testing.assert_close(got, prior.reference().entropy())


@_prior_table(PRIORS)
@pytest.mark.parametrize("sample_shape", SAMPLE_SHAPES, ids=str)
def test_prior_sample_without_inputs(prior, sample_shape):
    d = prior.family("p(z)", **prior.kwargs)
    torch.manual_seed(1)
    z = d.sample({}, sample_shape=sample_shape)["z"]
    assert z.shape == (*sample_shape, *prior.event_shape)
    assert in_support(prior.family, z, prior.total)
    torch.manual_seed(1)
    torch.testing.assert_close(z, prior.sampler().sample(sample_shape))


@_prior_table(PRIORS)
@pytest.mark.parametrize("sample_shape", SAMPLE_SHAPES, ids=str)
def test_prior_draws_one_value_per_batch_element(prior, sample_shape):
    d = prior.family("p(z)", **prior.kwargs)
    x = torch.randn(50, IN)
    torch.manual_seed(1)
    out = d.sample({"x": x}, sample_shape=sample_shape)
    assert out["x"] is x
    z = out["z"]
    assert z.shape == (*sample_shape, 50, *prior.event_shape)
    torch.manual_seed(1)
    torch.testing.assert_close(z, prior.sampler().sample((*sample_shape, 50)))
    flat = z.reshape(-1, 50, *prior.event_shape)  # separate draws, not one draw broadcast
    assert not torch.equal(flat[:, :1].expand_as(flat), flat)


# ------------------------------------------------------------------------------------------------- KL
def test_kl_gamma_gamma_is_torch_closed_form():
    q, net = _make(EXAMPLES[0])
    prior = Gamma("p(z)", concentration=_t(0.5, 1.0, 4.0), rate=_t(1.0, 2.0, 0.5))
    x = torch.randn(BATCH, IN)
    got = KL(q, prior).eval({"x": x})
    assert got.shape == (BATCH,)
    reference = td.kl_divergence(td.Gamma(**net(x)), td.Gamma(_t(0.5, 1.0, 4.0), _t(1.0, 2.0, 0.5))).sum(-1)
    torch.testing.assert_close(got, reference)


def test_kl_gamma_gamma_between_two_networks_matches_monte_carlo():
    q, net_q = _make(EXAMPLES[0])
    r, net_r = _make(EXAMPLES[0])
    x = torch.randn(BATCH, IN)
    exact = KL(q, r).eval({"x": x})
    torch.testing.assert_close(exact, td.kl_divergence(td.Gamma(**net_q(x)), td.Gamma(**net_r(x))).sum(-1))
    estimate = KL(q, r, analytic=False, sample_shape=20000).eval({"x": x})
    torch.testing.assert_close(estimate, exact, atol=0.05, rtol=0.05)


def test_kl_poisson_poisson_is_torch_closed_form():
    q, net = _make(EXAMPLES[1])
    prior = Poisson("p(z)", rate=2.0, features_shape=[K])
    x = torch.randn(BATCH, IN)
    got = KL(q, prior).eval({"x": x})
    assert got.shape == (BATCH,)
    reference = td.kl_divergence(td.Poisson(**net(x)), td.Poisson(torch.full((K,), 2.0))).sum(-1)
    torch.testing.assert_close(got, reference)


# ----------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("total_count", [0, -3, 2.5, 3.0, True, "7", torch.tensor(7)], ids=repr)
def test_multinomial_total_count_must_be_a_positive_int(total_count):
    with pytest.raises(ValueError, match=r"p\(z\|x\): Multinomial needs total_count, the number of draws each "
                                         r"count vector sums to, as a positive int; got .*Pass e\.g\. "
                                         r"total_count=10\."):
        Multinomial("p(z|x)", net=lambda x: {"logits": x}, total_count=total_count)


def test_multinomial_total_count_is_required():
    with pytest.raises(TypeError, match="total_count"):
        Multinomial("p(z)", probs=PROBS)


@pytest.mark.parametrize("family, params", [
    (Gamma, {"concentration": torch.ones(BATCH, K), "rate": -torch.ones(BATCH, K)}),
    (Poisson, {"rate": -torch.ones(BATCH, K)}),
], ids=["gamma", "poisson"])
def test_negative_rate_from_the_network_is_refused(family, params):
    d = family("p(z|x)", net=lambda x: params)
    with pytest.raises(ValueError, match=r"p\(z\|x\): parameter `rate` must satisfy"):
        d.sample({"x": torch.randn(BATCH, IN)})


def test_multinomial_probs_off_the_simplex_are_refused():
    with pytest.raises(ValueError, match=r"p\(z\): parameter `probs` must satisfy Simplex"):
        Multinomial("p(z)", probs=_t(0.5, 0.6, 0.1), total_count=3)
