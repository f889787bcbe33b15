"""Every family against torch.distributions: log_prob, entropy, sampling, moments, gradients; KL of the
Gamma and Poisson; the Multinomial's total_count.

Two tables: EXAMPLES (parameters from a small network of ``x``) and PRIORS (fixed parameters). Each row
names an independent reference built with torch.distributions from the same parameters.
"""
from dataclasses import dataclass, field
from typing import Callable, Optional

import pytest
import torch
import torch.distributions as td
from torch import nn
from torch.distributions import constraints
from torch.nn.functional import one_hot, softplus

from pgm.distributions import (
    Bernoulli, Beta, Categorical, Deterministic, Dirichlet, Gamma, Laplace, Multinomial, Normal, Poisson,
    RelaxedBernoulli, RelaxedCategorical,
)
from pgm.losses import KL

BATCH, IN, K = 6, 4, 3
N = 7  # the Multinomial's total_count
SAMPLE_SHAPES = [(), (5,), (3, 2)]
TEMPERATURE = 0.5


def positive(h):
    return softplus(h) + 0.1


def real(shape):
    return torch.randn(shape)


def binary(shape):
    return torch.bernoulli(torch.full(shape, 0.5))


def onehot(shape):
    return one_hot(torch.randint(shape[-1], shape[:-1]), shape[-1]).to(torch.get_default_dtype())


def unit(shape):
    return torch.rand(shape) * 0.9 + 0.05


def simplex(shape):
    return torch.randn(shape).softmax(-1)


def positive_value(shape):
    return torch.rand(shape) * 3 + 0.1


def counts(shape):
    return torch.poisson(torch.full(shape, 2.0))


def count_vectors(shape, total=N):
    return td.Multinomial(total, probs=torch.ones(shape[-1])).sample(shape[:-1])


class CountVectors(constraints.Constraint):
    """Non-negative integer vectors summing to ``total`` (torch's ``multinomial`` only bounds the sum)."""
    event_dim = 1

    def __init__(self, total):
        self.total = total
        super().__init__()

    def check(self, value):
        return ((value >= 0) & (value == value.round())).all(-1) & (value.sum(-1) == self.total)


@dataclass
class Example:
    id: str
    family: type
    head: Callable           # (batch, width) features -> the parameter dict
    width: int
    reference: Optional[Callable]   # parameters -> torch distribution scoring a value (event dims reinterpreted)
    sampler: Optional[Callable]     # parameters -> torch distribution drawing the same samples with the same seed
    value: Optional[Callable]       # shape -> a value the reference scores
    support: constraints.Constraint
    kwargs: dict = field(default_factory=dict)
    reparam: bool = True
    continuous: bool = True  # log_prob differentiable in the value


def _ind(d, n=1):
    return td.Independent(d, n)


def _loc_scale(h):
    return {"loc": h[:, :K], "scale": positive(h[:, K:])}


def _relaxed_cat(kind):
    return lambda p: td.RelaxedOneHotCategorical(torch.as_tensor(TEMPERATURE, dtype=p[kind].dtype), **p)


def _relaxed_bern(p):
    return _ind(td.RelaxedBernoulli(torch.as_tensor(TEMPERATURE, dtype=next(iter(p.values())).dtype), **p))


EXAMPLES = [
    Example("normal", Normal, _loc_scale, 2 * K, lambda p: _ind(td.Normal(**p)), lambda p: td.Normal(**p),
            real, constraints.real),
    Example("laplace", Laplace, _loc_scale, 2 * K, lambda p: _ind(td.Laplace(**p)), lambda p: td.Laplace(**p),
            real, constraints.real),
    Example("bernoulli-logits", Bernoulli, lambda h: {"logits": h}, K, lambda p: _ind(td.Bernoulli(**p)),
            lambda p: td.Bernoulli(**p), binary, constraints.boolean, reparam=False, continuous=False),
    Example("bernoulli-probs", Bernoulli, lambda h: {"probs": h.sigmoid()}, K, lambda p: _ind(td.Bernoulli(**p)),
            lambda p: td.Bernoulli(**p), binary, constraints.boolean, reparam=False, continuous=False),
    Example("categorical-logits", Categorical, lambda h: {"logits": h}, K, lambda p: td.OneHotCategorical(**p),
            lambda p: td.OneHotCategorical(**p), onehot, constraints.one_hot, reparam=False, continuous=False),
    Example("categorical-probs", Categorical, lambda h: {"probs": h.softmax(-1)}, K,
            lambda p: td.OneHotCategorical(**p), lambda p: td.OneHotCategorical(**p), onehot, constraints.one_hot,
            reparam=False, continuous=False),
    # relaxed families score one-hot / binary values as the categorical / Bernoulli they stand for
    Example("relaxed-categorical-logits", RelaxedCategorical, lambda h: {"logits": h}, K,
            lambda p: td.OneHotCategorical(logits=p["logits"]), _relaxed_cat("logits"), onehot, constraints.simplex,
            kwargs={"temperature": TEMPERATURE}),
    Example("relaxed-categorical-probs", RelaxedCategorical, lambda h: {"probs": h.softmax(-1)}, K,
            lambda p: td.OneHotCategorical(probs=p["probs"]), _relaxed_cat("probs"), onehot, constraints.simplex,
            kwargs={"temperature": TEMPERATURE}),
    Example("relaxed-categorical-concrete", RelaxedCategorical, lambda h: {"logits": h}, K,
            _relaxed_cat("logits"), _relaxed_cat("logits"), simplex, constraints.simplex,
            kwargs={"temperature": TEMPERATURE, "density": "concrete"}),
    Example("relaxed-bernoulli-logits", RelaxedBernoulli, lambda h: {"logits": h}, K,
            lambda p: _ind(td.Bernoulli(**p)), _relaxed_bern, binary, constraints.unit_interval,
            kwargs={"temperature": TEMPERATURE}),
    Example("relaxed-bernoulli-probs", RelaxedBernoulli, lambda h: {"probs": h.sigmoid()}, K,
            lambda p: _ind(td.Bernoulli(**p)), _relaxed_bern, binary, constraints.unit_interval,
            kwargs={"temperature": TEMPERATURE}),
    Example("beta", Beta, lambda h: {"concentration1": positive(h[:, :K]), "concentration0": positive(h[:, K:])},
            2 * K, lambda p: _ind(td.Beta(**p)), lambda p: td.Beta(**p), unit, constraints.unit_interval),
    Example("dirichlet", Dirichlet, lambda h: {"concentration": positive(h)}, K, lambda p: td.Dirichlet(**p),
            lambda p: td.Dirichlet(**p), simplex, constraints.simplex),
    Example("deterministic", Deterministic, lambda h: {"loc": h}, K, None, None, None, constraints.real),
    Example("gamma", Gamma, lambda h: {"concentration": positive(h[:, :K]), "rate": positive(h[:, K:])}, 2 * K,
            lambda p: _ind(td.Gamma(**p)), lambda p: td.Gamma(**p), positive_value, constraints.positive),
    Example("poisson", Poisson, lambda h: {"rate": positive(h)}, K, lambda p: _ind(td.Poisson(**p)),
            lambda p: td.Poisson(**p), counts, constraints.nonnegative_integer, reparam=False, continuous=False),
    Example("multinomial-probs", Multinomial, lambda h: {"probs": h.softmax(-1)}, K,
            lambda p: td.Multinomial(N, **p), lambda p: td.Multinomial(N, **p), count_vectors, CountVectors(N),
            kwargs={"total_count": N}, reparam=False, continuous=False),
    Example("multinomial-logits", Multinomial, lambda h: {"logits": h}, K,
            lambda p: td.Multinomial(N, **p), lambda p: td.Multinomial(N, **p), count_vectors, CountVectors(N),
            kwargs={"total_count": N}, reparam=False, continuous=False),
]
SCORED = [e for e in EXAMPLES if e.reference is not None]
NO_ENTROPY = (Poisson,)  # torch has no Poisson entropy; test_poisson_has_no_closed_form_entropy
WITH_ENTROPY = [e for e in SCORED if e.family not in NO_ENTROPY]
WITH_MOMENTS = [e for e in EXAMPLES if e.family in (Gamma, Poisson, Multinomial)]


def _entropy_reference(example, params):
    """The relaxed families' entropy is the categorical / Bernoulli one, whatever their density."""
    if example.family is RelaxedCategorical:
        return td.OneHotCategorical(**params).entropy()
    if example.family is RelaxedBernoulli:
        return _ind(td.Bernoulli(**params)).entropy()
    return example.reference(params).entropy()


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


def _example(id):
    return next(e for e in EXAMPLES if e.id == id)


@_table(SCORED)
def test_log_prob_matches_torch(example):
    d, net = _make(example)
    x = torch.randn(BATCH, IN)
    value = example.value((BATCH, K))
    got = d.log_prob({"x": x, "z": value})
    assert got.shape == (BATCH,)
    torch.testing.assert_close(got, example.reference(net(x)).log_prob(value))


@_table(SCORED)
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
    torch.testing.assert_close(got, _entropy_reference(example, net(x)))


def test_poisson_has_no_closed_form_entropy():
    d, _ = _make(_example("poisson"))
    assert not d.has_entropy
    with pytest.raises(ValueError, match=r"H\[p\(z\|x\)\]: Poisson has no closed-form entropy; estimate it with"):
        d.entropy({"x": torch.randn(BATCH, IN)})


@_table(WITH_MOMENTS)
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
    assert bool(example.support.check(z).all())
    with torch.no_grad():
        params = net(x)
    if example.sampler is None:  # a point mass
        expected = params["loc"].expand(z.shape)
    else:
        torch.manual_seed(1)
        expected = example.sampler(params).sample(sample_shape)
    torch.testing.assert_close(z.detach(), expected)


@_table([e for e in EXAMPLES if e.reparam])
def test_rsample_gradients_reach_the_network(example):
    d, net = _make(example)
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
    for x in (torch.randn(BATCH, IN), torch.randn(BATCH, IN, requires_grad=True)):
        for reparam in (True, False):
            for sample_shape in ((), (2,)):
                z = d.sample({"x": x}, sample_shape=sample_shape, reparam=reparam)["z"]
                assert not z.requires_grad and z.shape == (*sample_shape, BATCH, K)


@_table(SCORED)
def test_gradcheck_log_prob(example):
    """log_prob in float64, w.r.t. the network's weight and input (and the value, for continuous families)."""
    weight = torch.randn(IN, example.width, dtype=torch.float64, requires_grad=True)
    held = {}
    d, _ = _make(example, net=lambda x: example.head(x @ held["weight"]))
    d = d.to(torch.float64)
    x = torch.randn(BATCH, IN, dtype=torch.float64, requires_grad=True)
    value = example.value((BATCH, K)).double().requires_grad_(example.continuous)

    def log_prob(weight, x, value):
        held["weight"] = weight
        return d.log_prob({"x": x, "z": value})

    assert torch.autograd.gradcheck(log_prob, (weight, x, value))


def test_multinomial_total_count_is_a_fixed_int():
    """total_count is a constant of the family: not a network output, not moved or cast with the module."""
    d, net = _make(_example("multinomial-probs"))
    assert d.total_count == N and type(d.total_count) is int
    assert "total_count" not in dict(d.named_buffers()) and "total_count" not in d.state_dict()
    d = d.to(torch.float64)
    x = torch.randn(BATCH, IN, dtype=torch.float64)
    net.double()
    z = d.sample({"x": x})["z"]
    assert z.dtype == torch.float64 and bool((z.sum(-1) == N).all())
    renamed = d.replace_var(z="c")
    assert renamed.total_count == N and renamed.sample({"x": x})["c"].sum(-1).eq(N).all()


@dataclass
class Prior:
    id: str
    family: type
    kwargs: dict
    reference: Optional[Callable]  # () -> torch distribution scoring a value
    sampler: Optional[Callable]    # () -> torch distribution drawing the same samples with the same seed
    event_shape: tuple
    value: Optional[Callable]
    support: Optional[constraints.Constraint] = None  # checked on every draw where given


def _t(*values):
    return torch.tensor(values)


PROBS = _t(0.2, 0.3, 0.5)
PRIORS = [
    Prior("normal-features", Normal, dict(loc=0.5, scale=2.0, features_shape=[2, 3]),
          lambda: _ind(td.Normal(torch.full((2, 3), 0.5), torch.full((2, 3), 2.0)), 2),
          lambda: td.Normal(torch.full((2, 3), 0.5), torch.full((2, 3), 2.0)), (2, 3), real),
    Prior("normal-tensors", Normal, dict(loc=_t(0.0, 1.0, -1.0), scale=_t(1.0, 0.5, 2.0)),
          lambda: _ind(td.Normal(_t(0.0, 1.0, -1.0), _t(1.0, 0.5, 2.0))),
          lambda: td.Normal(_t(0.0, 1.0, -1.0), _t(1.0, 0.5, 2.0)), (3,), real),
    Prior("normal-scalar-loc-tensor-scale", Normal, dict(loc=0.0, scale=_t(1.0, 0.5, 2.0)),
          lambda: _ind(td.Normal(torch.zeros(3), _t(1.0, 0.5, 2.0))),
          lambda: td.Normal(torch.zeros(3), _t(1.0, 0.5, 2.0)), (3,), real),
    Prior("laplace", Laplace, dict(loc=1.0, scale=0.5, features_shape=[3]),
          lambda: _ind(td.Laplace(torch.ones(3), torch.full((3,), 0.5))),
          lambda: td.Laplace(torch.ones(3), torch.full((3,), 0.5)), (3,), real),
    Prior("bernoulli-probs", Bernoulli, dict(probs=0.3, features_shape=[4]),
          lambda: _ind(td.Bernoulli(torch.full((4,), 0.3))), lambda: td.Bernoulli(torch.full((4,), 0.3)), (4,),
          binary),
    Prior("bernoulli-logits", Bernoulli, dict(logits=_t(-1.0, 0.0, 2.0, 0.5)),
          lambda: _ind(td.Bernoulli(logits=_t(-1.0, 0.0, 2.0, 0.5))),
          lambda: td.Bernoulli(logits=_t(-1.0, 0.0, 2.0, 0.5)), (4,), binary),
    Prior("categorical-probs", Categorical, dict(probs=PROBS), lambda: td.OneHotCategorical(PROBS),
          lambda: td.OneHotCategorical(PROBS), (3,), onehot),
    Prior("categorical-logits", Categorical, dict(logits=_t(0.0, 1.0, 2.0)),
          lambda: td.OneHotCategorical(logits=_t(0.0, 1.0, 2.0)),
          lambda: td.OneHotCategorical(logits=_t(0.0, 1.0, 2.0)), (3,), onehot),
    Prior("relaxed-categorical", RelaxedCategorical, dict(probs=PROBS, temperature=TEMPERATURE),
          lambda: td.OneHotCategorical(PROBS), lambda: td.RelaxedOneHotCategorical(_t(TEMPERATURE), PROBS),
          (3,), onehot),
    Prior("relaxed-bernoulli", RelaxedBernoulli, dict(probs=0.3, features_shape=[4], temperature=TEMPERATURE),
          lambda: _ind(td.Bernoulli(torch.full((4,), 0.3))),
          lambda: td.RelaxedBernoulli(_t(TEMPERATURE), torch.full((4,), 0.3)), (4,), binary),
    Prior("beta", Beta, dict(concentration1=2.0, concentration0=3.0, features_shape=[3]),
          lambda: _ind(td.Beta(torch.full((3,), 2.0), torch.full((3,), 3.0))),
          lambda: td.Beta(torch.full((3,), 2.0), torch.full((3,), 3.0)), (3,), unit),
    Prior("dirichlet-tensor", Dirichlet, dict(concentration=_t(1.0, 2.0, 3.0)),
          lambda: td.Dirichlet(_t(1.0, 2.0, 3.0)), lambda: td.Dirichlet(_t(1.0, 2.0, 3.0)), (3,), simplex),
    Prior("dirichlet-features", Dirichlet, dict(concentration=2.0, features_shape=[4]),
          lambda: td.Dirichlet(torch.full((4,), 2.0)), lambda: td.Dirichlet(torch.full((4,), 2.0)), (4,), simplex),
    Prior("deterministic", Deterministic, dict(loc=_t(1.0, 2.0, 3.0)), None, None, (3,), None),
    Prior("gamma-features", Gamma, dict(concentration=2.0, rate=3.0, features_shape=[2, 3]),
          lambda: _ind(td.Gamma(torch.full((2, 3), 2.0), torch.full((2, 3), 3.0)), 2),
          lambda: td.Gamma(torch.full((2, 3), 2.0), torch.full((2, 3), 3.0)), (2, 3), positive_value,
          constraints.positive),
    Prior("gamma-tensors", Gamma, dict(concentration=_t(0.5, 1.0, 4.0), rate=_t(1.0, 2.0, 0.5)),
          lambda: _ind(td.Gamma(_t(0.5, 1.0, 4.0), _t(1.0, 2.0, 0.5))),
          lambda: td.Gamma(_t(0.5, 1.0, 4.0), _t(1.0, 2.0, 0.5)), (3,), positive_value, constraints.positive),
    Prior("poisson-features", Poisson, dict(rate=1.5, features_shape=[4]),
          lambda: _ind(td.Poisson(torch.full((4,), 1.5))), lambda: td.Poisson(torch.full((4,), 1.5)), (4,), counts,
          constraints.nonnegative_integer),
    Prior("poisson-tensor", Poisson, dict(rate=_t(0.5, 2.0, 10.0)),
          lambda: _ind(td.Poisson(_t(0.5, 2.0, 10.0))), lambda: td.Poisson(_t(0.5, 2.0, 10.0)), (3,), counts,
          constraints.nonnegative_integer),
    Prior("multinomial-probs", Multinomial, dict(probs=PROBS, total_count=N),
          lambda: td.Multinomial(N, PROBS), lambda: td.Multinomial(N, PROBS), (3,), count_vectors, CountVectors(N)),
    Prior("multinomial-logits-features", Multinomial, dict(logits=0.0, features_shape=[4], total_count=2),
          lambda: td.Multinomial(2, logits=torch.zeros(4)), lambda: td.Multinomial(2, logits=torch.zeros(4)), (4,),
          lambda shape: count_vectors(shape, total=2), CountVectors(2)),
]
SCORED_PRIORS = [p for p in PRIORS if p.reference is not None]
PRIORS_WITH_ENTROPY = [p for p in SCORED_PRIORS if p.family not in NO_ENTROPY]


def _prior_table(rows):
    return pytest.mark.parametrize("prior", rows, ids=[r.id for r in rows])


@_prior_table(SCORED_PRIORS)
def test_prior_log_prob_matches_torch(prior):
    d = prior.family("p(z)", **prior.kwargs)
    value = prior.value((BATCH, *prior.event_shape))
    got = d.log_prob({"z": value})
    assert got.shape == (BATCH,)
    torch.testing.assert_close(got, prior.reference().log_prob(value))


@_prior_table(PRIORS_WITH_ENTROPY)
def test_prior_entropy_matches_torch(prior):
    """The references of the relaxed priors are their categorical / Bernoulli, whose entropy they report."""
    d = prior.family("p(z)", **prior.kwargs)
    got = d.entropy({})
    assert got.shape == ()  # the same for every batch element
    torch.testing.assert_close(got, prior.reference().entropy())


@_prior_table(PRIORS)
@pytest.mark.parametrize("sample_shape", SAMPLE_SHAPES, ids=str)
def test_prior_sample_without_inputs(prior, sample_shape):
    d = prior.family("p(z)", **prior.kwargs)
    torch.manual_seed(1)
    z = d.sample({}, sample_shape=sample_shape, reparam=_has_reparam(prior))["z"]
    assert z.shape == (*sample_shape, *prior.event_shape)
    _check_prior_draw(prior, z, sample_shape)


@_prior_table(PRIORS)
@pytest.mark.parametrize("sample_shape", SAMPLE_SHAPES, ids=str)
def test_prior_draws_one_value_per_batch_element(prior, sample_shape):
    d = prior.family("p(z)", **prior.kwargs)
    x = torch.randn(50, IN)
    torch.manual_seed(1)
    out = d.sample({"x": x}, sample_shape=sample_shape, reparam=_has_reparam(prior))
    assert out["x"] is x
    z = out["z"]
    assert z.shape == (*sample_shape, 50, *prior.event_shape)
    _check_prior_draw(prior, z, (*sample_shape, 50))
    if prior.sampler is not None:  # the batch elements are separate draws, not one draw broadcast
        flat = z.reshape(-1, 50, *prior.event_shape)
        assert not torch.equal(flat[:, :1].expand_as(flat), flat)


def _has_reparam(prior):
    return prior.family not in (Bernoulli, Categorical)


def _check_prior_draw(prior, z, shape):
    if prior.support is not None:
        assert bool(prior.support.check(z).all())
    if prior.sampler is None:
        torch.testing.assert_close(z, prior.kwargs["loc"].expand(z.shape))
        return
    torch.manual_seed(1)
    torch.testing.assert_close(z, prior.sampler().sample(shape))


# ------------------------------------------------------------------------------------------------- KL
def test_kl_gamma_gamma_is_torch_closed_form():
    q, net = _make(_example("gamma"))
    prior = Gamma("p(z)", concentration=_t(0.5, 1.0, 4.0), rate=_t(1.0, 2.0, 0.5))
    x = torch.randn(BATCH, IN)
    got = KL(q, prior).eval({"x": x})
    assert got.shape == (BATCH,)
    reference = td.kl_divergence(td.Gamma(**net(x)), td.Gamma(_t(0.5, 1.0, 4.0), _t(1.0, 2.0, 0.5))).sum(-1)
    torch.testing.assert_close(got, reference)


def test_kl_gamma_gamma_between_two_networks_matches_monte_carlo():
    q, net_q = _make(_example("gamma"))
    r, net_r = _make(_example("gamma"))
    x = torch.randn(BATCH, IN)
    exact = KL(q, r).eval({"x": x})
    torch.testing.assert_close(exact, td.kl_divergence(td.Gamma(**net_q(x)), td.Gamma(**net_r(x))).sum(-1))
    estimate = KL(q, r, analytic=False, sample_shape=20000).eval({"x": x})
    torch.testing.assert_close(estimate, exact, atol=0.05, rtol=0.05)


def test_kl_poisson_poisson_is_torch_closed_form():
    q, net = _make(_example("poisson"))
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
                                         r"total_count=10, or total_count=None to score each count vector "
                                         r"with its own total\.$"):
        Multinomial("p(z|x)", net=lambda x: {"logits": x}, total_count=total_count)


def test_multinomial_total_count_is_required():
    with pytest.raises(TypeError, match="total_count"):
        Multinomial("p(z)", probs=PROBS)


def _multinomial_by_hand(logits, x):
    """log n_i! - sum_k log x_ik! + sum_k x_ik log pi_ik, with n_i each row's own sum, written out."""
    log_pi = logits - torch.logsumexp(logits, -1, keepdim=True)
    n = x.sum(-1)
    return torch.lgamma(n + 1) - torch.lgamma(x + 1).sum(-1) + (x * log_pi).sum(-1)


def test_multinomial_without_total_count_scores_each_row_with_its_own_total():
    torch.manual_seed(0)
    logits = torch.randn(BATCH, K, dtype=torch.float64)
    x = torch.tensor([[0, 0, 1], [3, 0, 2], [10, 4, 7], [0, 0, 0], [1, 1, 1], [40, 2, 0]])  # totals 1 ... 42
    p = Multinomial("p(x|z)", net=lambda z: {"logits": z}, total_count=None)
    got = p.log_prob({"z": logits, "x": x})
    assert got.shape == (BATCH,) and got.dtype == torch.float64
    torch.testing.assert_close(got, _multinomial_by_hand(logits, x.double()))
    torch.testing.assert_close(got[3], torch.tensor(0.0, dtype=torch.float64))  # the empty document: log 1
    # with sample dims in front, and from probs
    xs = torch.stack([x, x.flip(0)])
    torch.testing.assert_close(p.log_prob({"z": logits, "x": xs}), _multinomial_by_hand(logits, xs.double()))
    q = Multinomial("p(x)", probs=PROBS, total_count=None)
    torch.testing.assert_close(q.log_prob({"x": x.float()}), _multinomial_by_hand(PROBS.log(), x.float()))


def test_multinomial_without_total_count_cannot_be_sampled():
    p = Multinomial("p(x|z)", net=lambda z: {"logits": z}, total_count=None)
    assert not p.has_sample and not p.has_entropy
    z = torch.randn(BATCH, K)
    for call in (lambda: p.sample({"z": z}), lambda: p.sample_mean({"z": z}), lambda: p.sample_variance({"z": z})):
        with pytest.raises(ValueError, match=r"^p\(x\|z\): Multinomial with total_count=None scores each count "
                                             r"vector with its own total, but (a draw|its mean|its variance) needs a "
                                             r"total; build it with total_count=n \(e\.g\. total_count=10\)"):
            call()


def test_multinomial_with_a_total_count_refuses_rows_of_another_total():
    p = Multinomial("p(x|z)", net=lambda z: {"logits": z}, total_count=5)
    z = torch.randn(3, K)
    x = torch.tensor([[1, 2, 2], [0, 0, 7], [5, 0, 0]])
    with pytest.raises(ValueError, match=r"^p\(x\|z\): Multinomial\(total_count=5\) scores count vectors summing "
                                         r"to 5; got 1 of 3 rows summing to other totals, such as \[7\.0\]\. Give "
                                         r"total_count=None to score each row with its own total"):
        p.log_prob({"z": z, "x": x})
    torch.testing.assert_close(p.log_prob({"z": z, "x": x[[0, 2, 0]]}),
                               _multinomial_by_hand(z, x[[0, 2, 0]].float()))
    for bad in ([[1.5, 2.0, 1.5]], [[-1.0, 3.0, 3.0]]):
        with pytest.raises(ValueError, match=r"^p\(x\|z\): Multinomial scores counts, non-negative integers; got "
                                             r"values such as \[(1\.5|-1\.0)"):
            p.log_prob({"z": z[:1], "x": torch.tensor(bad)})


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


def test_a_class_of_probability_zero_is_scored_like_torch():
    """Masked classes (logit -inf) that a one-hot label does not pick add nothing: no 0 * -inf = nan."""
    logits = torch.tensor([[0.3, 1.0, -float("inf")], [0.0, -float("inf"), 2.0]])
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    expected = td.OneHotCategorical(logits=logits).log_prob(y)
    for family in (Categorical, RelaxedCategorical):
        q = family("q(y|x)", net=lambda x: {"logits": logits})
        torch.testing.assert_close(q.log_prob({"x": torch.zeros(2, 1), "y": y}), expected)


def test_relaxed_families_have_no_closed_form_mean_and_say_so():
    for family, params in ((RelaxedCategorical, {"logits": torch.zeros(2, 3)}),
                           (RelaxedBernoulli, {"logits": torch.zeros(2, 3)})):
        q = family("q(y|x)", net=lambda x: params)
        with pytest.raises(ValueError, match=rf"^q\(y\|x\): {family.__name__} has no closed-form mean; average "
                                             r"samples instead\.$"):
            q.sample_mean({"x": torch.zeros(2, 1)})
        with pytest.raises(ValueError, match=rf"^q\(y\|x\): {family.__name__} has no closed-form variance"):
            q.sample_variance({"x": torch.zeros(2, 1)})


def test_a_parameter_shared_by_every_example_broadcasts_with_sample_dims():
    """A decoder with a learned scale of shape (D,) scores draws with sample dims as torch broadcasts it."""
    from pgm.losses import E, LogProb

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear, self.log_scale = nn.Linear(2, 6), nn.Parameter(torch.linspace(-1, 1, 6))

        def forward(self, z):
            return {"loc": self.linear(z), "scale": self.log_scale.exp()}

    p = Normal("p(x|z)", net=Decoder())
    q = Normal("q(z|x)", net=lambda x: {"loc": x[:, :2], "scale": torch.ones(len(x), 2)})
    x = torch.randn(4, 6)
    torch.manual_seed(0)
    value = E(q, LogProb(p), sample_shape=3).eval({"x": x})
    torch.manual_seed(0)
    z = td.Normal(x[:, :2], torch.ones(4, 2)).rsample((3,))
    expected = td.Normal(p.net.linear(z), p.net.log_scale.exp()).log_prob(x).sum(-1).mean(0)
    torch.testing.assert_close(value, expected)


def test_integer_and_boolean_data_are_scored_as_floats():
    logits = torch.randn(4, 6)
    x = torch.randint(0, 2, (4, 6))
    p = Bernoulli("p(x|z)", net=lambda z: {"logits": z})
    expected = td.Bernoulli(logits=logits).log_prob(x.float()).sum(-1)
    for value in (x, x.to(torch.uint8), x.bool()):
        torch.testing.assert_close(p.log_prob({"z": logits, "x": value}), expected)
    counts = torch.randint(0, 5, (4, 3))
    rate = torch.rand(4, 3) + 0.5
    poisson = Poisson("p(n|z)", net=lambda z: {"rate": z})
    torch.testing.assert_close(poisson.log_prob({"z": rate, "n": counts}),
                               td.Poisson(rate).log_prob(counts.float()).sum(-1))
