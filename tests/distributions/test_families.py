"""Every family against torch.distributions: log_prob, entropy, sampling, gradients.

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
    Bernoulli, Beta, Categorical, Deterministic, Dirichlet, Laplace, Normal, RelaxedBernoulli, RelaxedCategorical,
)

BATCH, IN, K = 6, 4, 3
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
]
SCORED = [e for e in EXAMPLES if e.reference is not None]


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


@_table(SCORED)
def test_entropy_matches_torch(example):
    d, net = _make(example)
    x = torch.randn(BATCH, IN)
    got = d.entropy({"x": x})
    assert got.shape == (BATCH,)
    torch.testing.assert_close(got, _entropy_reference(example, net(x)))


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
    x = torch.randn(BATCH, IN, requires_grad=True)
    z = d.sample({"x": x}, sample_shape=(2,))["z"]
    (z * torch.randn(z.shape)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    assert bool(x.grad.abs().sum() > 0)


@_table([e for e in EXAMPLES if not e.reparam])
def test_discrete_families_sample_without_gradient(example):
    d, _ = _make(example)
    x = torch.randn(BATCH, IN)
    for reparam in (True, False):
        z = d.sample({"x": x}, reparam=reparam)["z"]
        assert not z.requires_grad and z.shape == (BATCH, K)


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


@dataclass
class Prior:
    id: str
    family: type
    kwargs: dict
    reference: Optional[Callable]  # () -> torch distribution scoring a value
    sampler: Optional[Callable]    # () -> torch distribution drawing the same samples with the same seed
    event_shape: tuple
    value: Optional[Callable]


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
]
SCORED_PRIORS = [p for p in PRIORS if p.reference is not None]


def _prior_table(rows):
    return pytest.mark.parametrize("prior", rows, ids=[r.id for r in rows])


@_prior_table(SCORED_PRIORS)
def test_prior_log_prob_matches_torch(prior):
    d = prior.family("p(z)", **prior.kwargs)
    value = prior.value((BATCH, *prior.event_shape))
    got = d.log_prob({"z": value})
    assert got.shape == (BATCH,)
    torch.testing.assert_close(got, prior.reference().log_prob(value))


@_prior_table(SCORED_PRIORS)
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
    if prior.sampler is None:
        torch.testing.assert_close(z, prior.kwargs["loc"].expand(z.shape))
        return
    torch.manual_seed(1)
    torch.testing.assert_close(z, prior.sampler().sample(shape))
