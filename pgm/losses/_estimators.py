r"""The estimators of :math:`\mathbb{E}_{q}[f]` and of its gradient, in one place.

Each estimator is a small :class:`Estimator` subclass registered under the name ``E(..., estimator=name)``
takes: the checks that refuse a ``q`` it cannot work for (when the formula is written), whether it is the
default for a ``q``, and ``estimate``, which :class:`~pgm.losses.E` dispatches to. Adding one is one class
here (or :func:`register_estimator` in user code); nothing in ``E`` changes.

Every gradient that is not pathwise goes through :func:`score_term`, the one score-function surrogate: the
expectation's own, a mixture component without a reparameterized sampler, IWAE's VIMCO term and the
sequence's carried draws (``Sum``).
"""
from __future__ import annotations

import math

import torch

from ..distributions import JointDistribution, Mixture
from ._baselines import MovingAverageBaseline, fit_baseline


def score_term(signal, log_q):
    r"""The score-function surrogate :math:`\mathrm{sg}[s]\,(\log q - \mathrm{sg}[\log q])`: zero in value, its
    gradient is :math:`s\,\nabla \log q`. Added to a value, it leaves the value as it was and adds the score
    gradient, so the number a loss returns stays the expectation itself. ``signal`` (the learning signal, less
    any baseline) is never differentiated."""
    if isinstance(signal, torch.Tensor):
        signal = signal.detach()
    return signal * (log_q - log_q.detach())


def _mean_over_draws(value, context):
    """Average a value over the sample dims an expectation added in front of ``context``'s dims."""
    if not isinstance(value, torch.Tensor):
        return value
    extra = value.dim() - len(context.lead_shape)
    return value.mean(dim=tuple(range(extra))) if extra > 0 else value


def _draw_to_score(q, context, sample_shape):
    """A draw of ``q`` for the score-function estimator and the log q its score term differentiates."""
    factors = q.factors if type(q) is JointDistribution else None
    if factors is not None and any(f.has_reparam for f in factors):
        # a joint of reparameterized and discrete factors: the pathwise gradient through the first, the
        # score term for the discrete ones only (their log q, which may depend on the reparameterized draws)
        inner = q.sample(context, sample_shape, reparam=True)
        return inner, sum(f.log_prob(inner) for f in factors if not f.has_reparam)
    inner = q.sample(context, sample_shape, reparam=False)
    return inner, q.log_prob(inner)


# ------------------------------------------------------------------ the registry
ESTIMATORS = {}  # name -> the estimator, in the order registered


class Estimator:
    """How :class:`~pgm.losses.E` computes :math:`\\mathbb{E}_{q}[f]` and its gradient.

    A subclass sets ``name`` (what ``E(q, f, estimator=name)`` takes) and defines :meth:`estimate`; it may
    refuse a ``q`` in :meth:`check` and claim the default for some ``q`` in :meth:`is_default_for`.
    :func:`register_estimator` makes it known to ``E``. The formula prints the same whichever estimator
    computes it.

    Attributes:
        name: the estimator's name.
        draws: whether it samples ``q`` (``E`` then refuses a ``q`` that cannot be sampled); ``False`` for an
            exact sum.
        takes_baseline: whether it takes ``E``'s ``baseline`` (only the score function does).
    """

    name = None
    draws = True
    takes_baseline = False

    def is_default_for(self, q) -> bool:
        """Whether ``E`` over ``q`` uses this estimator when none is named. The first registered estimator
        claiming ``q`` is its default; one that claims none is used only when named."""
        return False

    def check(self, q, where):
        """Refuse a ``q`` this estimator cannot work for, with a ``ValueError`` starting with ``where`` (``"E over
        q(z|x)"``); called when the expectation is written."""

    def check_sample_shape(self, where, sample_shape, given):
        """Refuse a sample shape (``given`` as written, ``sample_shape`` as a tuple); called after :meth:`check`.
        An estimator that draws nothing refuses more than one draw."""
        if not self.draws and math.prod(sample_shape) != 1:
            raise ValueError(f"{where}: estimator={self.name!r} draws no samples; leave sample_shape={given!r} out.")

    def estimate(self, q, f, context, sample_shape, baseline):
        """The expectation, one value per example of ``context``, with the gradient this estimator gives.

        Args:
            q: the distribution averaged over.
            f: the function averaged: ``f(inner)`` evaluates it in a :class:`~pgm.Context` that holds values of
                ``q``'s variables (``q.sample(context, sample_shape)`` returns one).
            context: the :class:`~pgm.Context` of the evaluation, holding ``q``'s conditions.
            sample_shape: the number of draws asked for, as a tuple.
            baseline: the baseline module, or ``None`` (always ``None`` unless ``takes_baseline``).
        """
        raise NotImplementedError(f"the estimator {self.name!r} does not define estimate(q, f, context, ...)")

    def __repr__(self):
        return f"<estimator {self.name!r}>"


def register_estimator(cls):
    """Make the :class:`Estimator` subclass ``cls`` available as ``E(q, f, estimator=cls.name)``; usable as a
    class decorator. Registering a name again replaces the earlier estimator."""
    if not (isinstance(cls, type) and issubclass(cls, Estimator)):
        raise TypeError(f"register_estimator takes a subclass of pgm.losses.Estimator; got {cls!r}.")
    if not isinstance(cls.name, str) or not cls.name:
        raise ValueError(f"register_estimator: {cls.__name__} must set name, the string E(..., estimator=name) "
                         f"takes; got {cls.name!r}.")
    ESTIMATORS[cls.name] = cls()
    return cls


def default_estimator(q):
    """The name of the estimator ``E`` over ``q`` uses when none is named."""
    return next(e.name for e in ESTIMATORS.values() if e.is_default_for(q))


def estimator_for(q, name, baseline, sample_shape, given):
    """The estimator ``name`` (``None``: ``q``'s default) for ``E`` over ``q``, after its checks."""
    where = f"E over {q.prob_text}"
    if name is None:
        name = default_estimator(q)
    if not isinstance(name, str) or name not in ESTIMATORS:
        raise ValueError(f"{where}: estimator must be one of {tuple(ESTIMATORS)}; got {name!r}.")
    estimator = ESTIMATORS[name]
    if estimator.draws and not q.has_sample:
        raise ValueError(f"{where}: {type(q).__name__} cannot be sampled, so no expectation over it can be "
                         f"estimated; take it over a distribution you can sample (e.g. the q of KL(q, p)).")
    estimator.check(q, where)
    if baseline is not None and not estimator.takes_baseline:
        raise ValueError(f"{where}: a baseline reduces the variance of the score-function estimator only; "
                         f"this expectation uses estimator={name!r}.")
    estimator.check_sample_shape(where, sample_shape, given)
    return estimator


# ------------------------------------------------------------------ the estimators
@register_estimator
class Reparameterized(Estimator):
    r""":math:`\frac{1}{K}\sum_k f(z_k)`, :math:`z_k = g(\epsilon_k, x)`: the gradient flows through the draw."""

    name = "reparameterized"

    def is_default_for(self, q):
        return q.has_reparam

    def check(self, q, where):
        if not q.has_reparam:
            raise ValueError(
                f"{where}: {type(q).__name__} has no reparameterized sampler, so no gradient would flow through "
                f"the sample; use estimator={default_estimator(q)!r} (the default for it), enumerate=True for a "
                f"small discrete variable, or a relaxed family (RelaxedCategorical, RelaxedBernoulli)."
            )

    def estimate(self, q, f, context, sample_shape, baseline):
        inner = q.sample(context, sample_shape)
        return _mean_over_draws(f(inner), context)


@register_estimator
class ScoreFunction(Estimator):
    r"""REINFORCE (Williams 1992): the value :math:`\frac{1}{K}\sum_k f(z_k)`, the gradient
    :math:`\frac{1}{K}\sum_k \nabla f(z_k) + (f(z_k) - b)\nabla \log q(z_k)` through :func:`score_term`."""

    name = "score_function"
    takes_baseline = True

    def is_default_for(self, q):
        return not q.has_reparam and not isinstance(q, Mixture)

    def check(self, q, where):
        if getattr(q, "scores_another_family", False):
            raise ValueError(
                f"{where}: {type(q).__name__} scores a draw with the log-probability of the discrete family it "
                f"stands for, not with the density its relaxed draws have, so the score-function gradient would be "
                f"biased; use the reparameterized estimator (its default), RelaxedCategorical(..., "
                f"density='concrete'), or the discrete family itself (Categorical, Bernoulli)."
            )
        if not q.has_log_prob:
            raise ValueError(f"{where}: the score-function estimator needs log {q.prob_text}, but "
                             f"{q.no_log_prob_reason}.")

    def estimate(self, q, f, context, sample_shape, baseline):
        inner, log_q = _draw_to_score(q, context, sample_shape)
        value = f(inner)
        if isinstance(value, torch.Tensor) and value.dim() == 0 and log_q.dim() > 0:
            # f of the whole batch of draws (an MMD, a batch statistic): its score is that of all of them together
            log_q = log_q.sum().expand_as(log_q)
        value = (value + torch.zeros_like(log_q) if isinstance(value, torch.Tensor)
                 else log_q.new_full(log_q.shape, value))
        signal = value.detach()
        if baseline is not None:
            b = baseline(context, signal)  # read before it learns from this batch (a moving average)
            signal = signal - b.detach()
            if not isinstance(baseline, MovingAverageBaseline):  # a learned baseline: fit b to f
                value = value + fit_baseline(b, _mean_over_draws(value.detach(), context))  # b against f's mean
        return _mean_over_draws(value + score_term(signal, log_q), context)


@register_estimator
class Enumerate(Estimator):
    r""":math:`\sum_z q(z) f(z)` over every value of a discrete ``q``: exact, no draws."""

    name = "enumerate"
    draws = False

    def check(self, q, where):
        if not q.has_enumerate_support:
            raise ValueError(
                f"{where}: enumerate=True sums over every value of a discrete variable; {type(q).__name__} has no "
                f"finite support. Sample it instead (the reparameterized or score-function estimator)."
            )

    def check_sample_shape(self, where, sample_shape, given):
        if math.prod(sample_shape) != 1:
            raise ValueError(f"{where}: enumerate=True sums over every value exactly, so it draws no samples; "
                             f"leave sample_shape={given!r} out (or sample instead of enumerating).")

    def estimate(self, q, f, context, sample_shape, baseline):
        inner = context.enumerating(q.var[0], q.enumerate_support(context))
        weights = q.log_prob(inner).exp()
        return (weights * f(inner)).sum(0)


@register_estimator
class Stratified(Estimator):
    r"""For a :class:`~pgm.distributions.Mixture`, :math:`\sum_k \pi_k \mathbb{E}_{q_k}[f]` with ``sample_shape``
    draws per component (MMVAE, Shi et al. 2019): the gradient reaches the components (pathwise, or by the
    score function for one without a reparameterized sampler) and the weights. It reads the mixture's public
    ``components`` and ``component_weights``."""

    name = "stratified"

    def is_default_for(self, q):
        return not q.has_reparam and isinstance(q, Mixture)

    def check(self, q, where):
        if not isinstance(q, Mixture):
            raise ValueError(f"{where}: estimator='stratified' draws once per component of a Mixture; "
                             f"{type(q).__name__} is not one.")

    def estimate(self, q, f, context, sample_shape, baseline):
        weights, total = q.component_weights(context), 0
        for k, component in enumerate(q.components):
            inner = component.sample(context, sample_shape)
            value = f(inner)
            if not component.has_reparam and component.has_log_prob and isinstance(value, torch.Tensor):
                value = value + score_term(value, component.log_prob(inner))  # a discrete component
            total = total + weights[..., k] * _mean_over_draws(value, context)
        return total


# ------------------------------------------------------------------ IWAE
def _log_mean_exp(values, count):
    """log (1/K) sum_k exp(values_k) over the first dim (``count`` = K)."""
    return torch.logsumexp(values, 0) - math.log(count)


def _leave_one_out(log_w):
    """VIMCO's baseline for each of the K samples (first dim of ``log_w``): the bound with log w_k replaced by
    the mean of the others' log w, a value that does not depend on sample k (Mnih & Rezende 2016)."""
    count = log_w.shape[0]
    others_mean = (log_w.sum(0, keepdim=True) - log_w) / (count - 1)
    # log sum_{j != k} w_j from prefix and suffix log-sum-exps: stable, O(K) memory
    prefix = torch.logcumsumexp(log_w, 0)
    suffix = torch.logcumsumexp(log_w.flip(0), 0).flip(0)
    empty = torch.full_like(log_w[:1], -math.inf)
    others = torch.logaddexp(torch.cat([empty, prefix[:-1]]), torch.cat([suffix[1:], empty]))
    return torch.logaddexp(others, others_mean) - math.log(count)


def importance_weighted(p, q, context, sample_shape):
    r"""IWAE's bound :math:`\log \frac{1}{K}\sum_k p(x, z_k) / q(z_k|x)`, per example: pathwise where ``q`` has a
    reparameterized sampler, else with VIMCO's score term (the bound itself as the signal for K = 1)."""
    if q.has_reparam:
        inner, log_q_score = q.sample(context, sample_shape), None
    else:
        inner, log_q_score = _draw_to_score(q, context, sample_shape)
    log_w = p.log_prob(inner) - q.log_prob(inner)
    extra = log_w.dim() - len(context.lead_shape)
    count = math.prod(log_w.shape[:extra]) if extra > 0 else 1
    log_w = log_w.reshape((count,) + log_w.shape[max(extra, 0):])
    bound = _log_mean_exp(log_w, count)
    if log_q_score is None:
        return bound
    # the score term, zero in value: (bound - bound without sample k) * grad log q(z_k), summed over k
    with torch.no_grad():
        signal = bound.unsqueeze(0) - (_leave_one_out(log_w) if count > 1 else 0)
    return bound + score_term(signal, log_q_score.reshape(log_w.shape)).sum(0)
