"""The terms of an objective: log-likelihoods, expectations, divergences and entropies."""
from __future__ import annotations

import torch
from torch import nn

from ..distributions import Distribution, JointDistribution
from .._errors import EventShapeError
from .._values import as_shape
from . import _kl, _printing
from ._base import Loss, as_loss
from ._baselines import as_baseline
from ._estimators import ESTIMATORS, estimator_for, importance_weighted


def _check_distribution(where, d):
    if not isinstance(d, Distribution):
        raise TypeError(f"{where} takes pgm distributions; got {type(d).__name__}.")


def _sample_shape(sample_shape):
    return torch.Size(as_shape(sample_shape))


def _needs(d, skip=()):
    return {v: d.prob_text for v in d.required_var if v not in skip}


class LogProb(Loss):
    r""":math:`\log p(x|z)`, per example: the log-density of ``p``'s variables given its conditions.

    Summed over the event dims, one value per example (and per sample inside an ``E``). For a product
    ``p_x * p_z`` it is the sum of the factors' log-densities, :math:`\log p(x|z) + \log p(z)`.

    Args:
        p: a distribution that has a density (``p.has_log_prob``); its variables and conditioning variables
            come from the inputs or from an enclosing :class:`E`.
    """

    def __init__(self, p):
        _check_distribution("LogProb", p)
        if not p.has_log_prob:
            raise ValueError(f"LogProb({p.prob_text}): {p.no_log_prob_reason}.")
        self.p = p

    def _eval(self, context):
        return self.p.log_prob(context)

    def _sym(self):
        latex, text = _printing.signature(self.p)
        return _printing.Term(rf"\log {latex}", f"log {text}")

    def _free(self):
        return {**{v: self.p.prob_text for v in self.p.var}, **_needs(self.p)}

    def _distributions(self):
        return [self.p]


class E(Loss):
    r""":math:`\mathbb{E}_{q}[f]`, per example: the expectation of the loss ``f`` over ``q``'s variables.

    Args:
        q: the distribution to average over.
        f: a loss evaluated with ``q``'s variables added to the inputs.
        sample_shape: the number (or shape) of samples, drawn in one batched call.
        estimator: how the expectation and its gradient are computed; by default ``"reparameterized"``
            where ``q`` has a reparameterized sampler, ``"stratified"`` for a :class:`~pgm.distributions.Mixture`,
            else ``"score_function"``:

            - ``"reparameterized"``: :math:`\frac{1}{K}\sum_k f(z_k)`, :math:`z_k = g(\epsilon_k, x)`;
            - ``"score_function"`` (REINFORCE, Williams 1992): the same value, with the gradient
              :math:`\frac{1}{K}\sum_k \nabla f(z_k) + (f(z_k) - b)\nabla \log q(z_k)`; the value printed and
              returned is the expectation itself, never the surrogate;
            - ``"enumerate"``: :math:`\sum_z q(z) f(z)` over every value of a discrete ``q`` (exact);
            - ``"stratified"``: for a mixture, :math:`\sum_k w_k \mathbb{E}_{q_k}[f]` with one draw per component;
            - the name of an :class:`Estimator` of your own, given to :func:`register_estimator`.
        enumerate: ``True`` is ``estimator="enumerate"``.
        baseline: for the score function, a control variate :math:`b` that lowers the variance without bias:
            ``"moving_average"`` (an exponential moving average of :math:`f`, updated after each step), a
            :class:`MovingAverageBaseline`, or a network taking ``q``'s conditioning variables and returning
            one value per example (trained alongside by a zero-valued term :math:`(f - b)^2`).
    """

    def __init__(self, q, f, sample_shape=1, enumerate=False, estimator=None, baseline=None):
        _check_distribution("E", q)
        self.q, self.f = q, as_loss(f)
        self.children = (self.f,)
        self.sample_shape = _sample_shape(sample_shape)
        if enumerate:
            if estimator not in (None, "enumerate"):
                raise ValueError(f"E over {q.prob_text}: enumerate=True and estimator={estimator!r} disagree; "
                                 f"give one of them.")
            estimator = "enumerate"
        self.estimator = estimator_for(q, estimator, baseline, self.sample_shape, sample_shape).name
        self.baseline = as_baseline(baseline, q)

    def _eval(self, context):
        return ESTIMATORS[self.estimator].estimate(self.q, self.f._eval, context, self.sample_shape, self.baseline)

    def _sym(self):
        latex, text = _printing.signature(self.q)
        with _printing.drawn(self.q.var):
            inner = self.f._sym()
        return _printing.Wrapped(rf"\mathbb{{E}}_{{{latex}}}\left[", r"\right]", f"E_{text}[", "]", inner)

    def _appearance(self):
        names = list(self.q.cond_var + self.q.var)
        return names + [n for n in Loss._appearance(self) if n not in names]

    def _free(self):
        out = _needs(self.q)
        for k, v in self.f._free().items():
            if k not in self.q.var:
                out.setdefault(k, v)
        return out

    def _distributions(self):
        return [self.q] + [d for d in self.f._distributions() if d is not self.q]

    def _modules(self):
        own = [self.baseline] if isinstance(self.baseline, nn.Module) else []
        return own + [m for m in Loss._modules(self) if all(m is not o for o in own)]


class KL(Loss):
    r"""The Kullback-Leibler divergence :math:`D_{KL}[q\|p] = \mathbb{E}_{q}[\log q - \log p]`, per example.

    By default (``analytic=None``) it is the closed form where the pair has one, else the Monte Carlo
    estimate. The closed form is summed over the event dims and comes from one registry: a function given to
    :func:`register_kl`, else torch's ``kl_divergence`` of the two families (the relaxed families count as
    the categorical or Bernoulli they relax). The Monte Carlo estimate is
    :math:`\frac{1}{K}\sum_k \log q(z_k) - \log p(z_k)`, :math:`z_k \sim q`, i.e.
    ``E(q, LogProb(q) - LogProb(p), sample_shape)``; it takes any ``q`` that can be sampled and scored (a
    :class:`~pgm.distributions.Flow`, a mixture) and a ``p`` that can only be scored
    (:class:`~pgm.distributions.Density`). Which one was chosen is recorded when the loss is written:
    ``kl.analytic`` is ``True`` for the closed form and ``False`` for Monte Carlo, and ``repr(kl)`` says so.
    ``analytic=True`` insists on the closed form (an error where there is none), ``analytic=False`` on Monte
    Carlo. Either way it prints :math:`D_{KL}\left[q\|p\right]`.

    Args:
        q: the distribution the divergence is taken from, e.g. the encoder ``q(z|x)``.
        p: a distribution of the same variables, e.g. the prior ``p(z)`` or another encoder ``q(z|x)``.
        analytic: ``None`` (closed form where there is one, else Monte Carlo), ``True`` or ``False``.
        sample_shape: the number (or shape) of draws of the Monte Carlo estimate.
    """

    def __init__(self, q, p, analytic=None, sample_shape=1):
        _check_distribution("KL", q)
        _check_distribution("KL", p)
        if q.var != p.var:
            raise ValueError(f"KL[{q.prob_text}||{p.prob_text}] compares distributions of different variables "
                             f"({q.var} and {p.var}); rename one with replace_var.")
        if analytic not in (None, True, False):
            raise ValueError(f"KL[{q.prob_text}||{p.prob_text}]: analytic must be None (closed form where there "
                             f"is one, else Monte Carlo), True or False; got {analytic!r}.")
        closed = _kl.has_closed_form(q, p)
        if analytic and not closed:
            raise ValueError(
                f"KL[{q.prob_text}||{p.prob_text}]: no closed form for {type(q).__name__} || {type(p).__name__}; "
                f"pass analytic=False to estimate it by Monte Carlo (with sample_shape=...), or register one "
                f"with pgm.losses.register_kl."
            )
        self.q, self.p = q, p
        self.analytic = closed if analytic is None else bool(analytic)
        self.sample_shape = _sample_shape(sample_shape)
        if not self.analytic:
            unscored = next((d for d in (q, p) if not d.has_log_prob), None)
            if unscored is not None or not q.has_sample:
                why = (f"{unscored.prob_text}: {unscored.no_log_prob_reason}" if unscored is not None
                       else f"{q.prob_text} cannot be sampled")
                raise ValueError(
                    f"KL[{q.prob_text}||{p.prob_text}]: no closed form for {type(q).__name__} || "
                    f"{type(p).__name__}, and no Monte Carlo estimate E_q[log q - log p] either ({why}); register "
                    f"a closed form with pgm.losses.register_kl."
                )
        self._estimate = None if self.analytic else E(q, LogProb(q) - LogProb(p), sample_shape)

    def _eval(self, context):
        if self._estimate is not None:
            try:
                return self._estimate._eval(context)
            except EventShapeError as error:  # p scoring q's draw of another event shape
                raise EventShapeError(f"KL[{self.q.prob_text}||{self.p.prob_text}]: {error}") from None
        return _kl.closed_form(self.q, self.p, context)

    def _sym(self):
        (q, q_text), (p, p_text) = _printing.signature(self.q), _printing.signature(self.p)
        return _printing.Term(rf"D_{{KL}}\left[{q}\|{p}\right]", f"KL[{q_text}||{p_text}]")

    def __repr__(self) -> str:
        if self.analytic:
            return f"<KL: {self}, closed form>"
        draws = "x".join(map(str, self.sample_shape)) or "1"
        return f"<KL: {self}, Monte Carlo E_q[log q - log p] over {draws} draw(s) of q>"

    def _free(self):
        return {**_needs(self.q), **_needs(self.p)}

    def _distributions(self):
        return [self.q, self.p]


class Entropy(Loss):
    r"""The entropy :math:`\mathcal{H}[q] = -\mathbb{E}_{q}[\log q]`, per example, summed over the event dims.

    With ``analytic=True`` (the default) the closed form of the family (``q.entropy``; a relaxed family's is
    that of the categorical or Bernoulli it relaxes); a distribution without one (``q.has_entropy`` false,
    e.g. a product or a mixture) is refused when the loss is written. With ``analytic=False`` the Monte Carlo
    estimate :math:`-\frac{1}{K}\sum_k \log q(z_k)`, :math:`z_k \sim q`, i.e. ``E(q, -LogProb(q))``.

    Args:
        q: the distribution, e.g. a classifier ``q(y|x)`` (M2's unlabelled bound adds :math:`\mathcal{H}[q(y|x)]`).
        analytic: the closed form (default) or the Monte Carlo estimate.
        sample_shape: the number (or shape) of draws of the Monte Carlo estimate.
    """

    def __init__(self, q, analytic=True, sample_shape=1):
        _check_distribution("Entropy", q)
        self.q = q
        if analytic and not q.has_entropy:
            raise ValueError(f"H[{q.prob_text}]: {type(q).__name__} has no closed-form entropy; "
                             f"pass analytic=False to estimate it by Monte Carlo.")
        self._estimate = None if analytic else E(q, -LogProb(q), sample_shape)

    def _eval(self, context):
        if self._estimate is not None:
            return self._estimate._eval(context)
        return self.q.entropy(context)

    def _sym(self):
        latex, text = _printing.signature(self.q)
        return _printing.Term(rf"\mathcal{{H}}\left[{latex}\right]", f"H[{text}]")

    def _free(self):
        return _needs(self.q)

    def _distributions(self):
        return [self.q]


class CrossEntropy(Loss):
    r"""The cross-entropy :math:`\mathcal{H}[q, p] = -\mathbb{E}_{q}[\log p]`, per example.

    Computed as :math:`\mathcal{H}[q] + D_{KL}[q\|p]`, both in closed form, where ``q`` and ``p`` are
    distributions of the same variables with a registered closed-form KL and ``q`` has a closed-form entropy;
    otherwise as the Monte Carlo
    estimate :math:`-\frac{1}{K}\sum_k \log p(z_k)`, :math:`z_k \sim q` (``E(q, -LogProb(p), sample_shape)``,
    with the default estimator for ``q``). Between distributions of the same variables it prints
    :math:`\mathcal{H}\left[q(z|x), p(z)\right]`; otherwise (``q(z|x)`` and a decoder ``p(x|z)``) there is no
    cross-entropy between the two, and it prints what it computes, as papers write it:
    :math:`-\mathbb{E}_{q(z|x)}\left[\log p(x|z)\right]`.

    Args:
        q: the distribution the expectation is over.
        p: the distribution scored, e.g. a prior.
        sample_shape: the number (or shape) of draws of the Monte Carlo estimate.
    """

    def __init__(self, q, p, sample_shape=1):
        _check_distribution("CrossEntropy", q)
        _check_distribution("CrossEntropy", p)
        self.q, self.p = q, p
        if q.var == p.var and q.has_entropy and _kl.has_closed_form(q, p):
            self._value = Entropy(q) + KL(q, p)
        else:
            self._value = E(q, -LogProb(p), sample_shape)

    def _eval(self, context):
        return self._value._eval(context)

    def _sym(self):
        (q, q_text), (p, p_text) = _printing.signature(self.q), _printing.signature(self.p)
        if self.q.var == self.p.var:
            return _printing.Term(rf"\mathcal{{H}}\left[{q}, {p}\right]", f"H[{q_text}, {p_text}]")
        expectation = _printing.Wrapped(rf"\mathbb{{E}}_{{{q}}}\left[", r"\right]", f"E_{q_text}[", "]",
                                        _printing.Term(rf"\log {p}", f"log {p_text}"))
        return _printing.negate(expectation)

    def _free(self):
        return self._value._free()

    def _distributions(self):
        return [self.q, self.p]


class IWAE(Loss):
    r"""Importance-weighted estimate of :math:`\log p(x)` (Burda et al. 2016), per example:

    :math:`\log \frac{1}{K}\sum_{k=1}^{K} p(x, z_k) / q(z_k|x)` with :math:`z_k \sim q(z|x)`, a lower bound
    that tightens as K grows. ``p`` is the joint over the data and the latents ``q`` generates.

    With K = 1 it is the one-sample ELBO; as K grows it tends to :math:`\log p(x)`, which is how the
    examples report test log-likelihoods (K = 1000). It prints the bound it computes, K the number of draws:
    ``IWAE(p, q, sample_shape=5)`` is
    :math:`\mathbb{E}_{z_{1:5} \sim q(z|x)}\left[\log \frac{1}{5}\sum_{k=1}^{5} \frac{p(x,z_k)}{q(z_k|x)}\right]`
    (a sample shape such as ``(2, 3)`` is K = 6 draws, averaged as one set), and with K = 1
    :math:`\mathbb{E}_{q(z|x)}\left[\log \frac{p(x,z)}{q(z|x)}\right]`. For the same bound written from other
    terms, see :class:`LogMeanExp`.

    A proposal without a reparameterized sampler (a Categorical or Bernoulli latent, a Mixture) gets the
    score-function gradient with VIMCO's leave-one-out baseline (Mnih & Rezende 2016): sample k's learning
    signal is the bound minus the bound with :math:`\log w_k` replaced by the mean of the other samples' (with
    K = 1, the bound itself, without a baseline); a joint of reparameterized and discrete factors gets the
    pathwise gradient through the first. The value is the bound either way.

    Args:
        p: the joint ``p(x, z)``, e.g. ``p_x * prior``.
        q: the proposal ``q(z|x)``, sampled with its reparameterized sampler where it has one.
        sample_shape: K, the number of importance samples (or a shape), drawn in one batched call.
    """

    def __init__(self, p, q, sample_shape=1):
        _check_distribution("IWAE", p)
        _check_distribution("IWAE", q)
        self.p, self.q = p, q
        self.sample_shape = _sample_shape(sample_shape)
        missing = [v for v in q.var if v not in p.var + p.cond_var]
        if missing:
            raise ValueError(f"IWAE: {q.prob_text} generates {missing}, which {p.prob_text} does not use.")
        unscored = [v for v in q.var if v not in p.var]
        if unscored:
            raise ValueError(f"IWAE: p must be the joint over the data and the latents {q.prob_text} generates; "
                             f"{p.prob_text} only conditions on {unscored}, so the weights p/q would miss their "
                             f"prior. Multiply it in: IWAE(p * prior, q, K).")

    def _eval(self, context):
        return importance_weighted(self.p, self.q, context, self.sample_shape)

    def _sym(self):
        count = _printing.sample_count(self.sample_shape)
        if count == 1:  # the one-sample bound: the ELBO
            (q, q_text), (p, p_text) = _printing.signature(self.q), _printing.signature(self.p)
            return _printing.Term(rf"\mathbb{{E}}_{{{q}}}\left[\log \frac{{{p}}}{{{q}}}\right]",
                                  f"E_{q_text}[log {p_text}/{q_text}]")
        with _printing.renamed(_printing.draws_of(self.q, count)[1]):
            (q, q_text), (p, p_text) = _printing.signature(self.q), _printing.signature(self.p)
        return _printing.log_mean(self.q, count, _printing.Term(rf"\frac{{{p}}}{{{q}}}", f"{p_text}/{q_text}"))

    def _appearance(self):
        names = list(self.q.cond_var + self.q.var)
        return names + [n for n in Loss._appearance(self) if n not in names]

    def _free(self):
        out = _needs(self.q)
        for v in self.p.var + self.p.required_var:
            if v not in self.q.var:
                out.setdefault(v, self.p.prob_text)
        return out

    def _distributions(self):
        return [self.p, self.q]


def ELBO(p, q, sample_shape=1, enumerate=False, estimator=None, baseline=None):
    r"""The evidence lower bound of ``p`` (a joint over the data and the latents) with inference model ``q``,
    per example (maximize it; train on ``-ELBO(p, q).mean()``).

    Where ``p`` has a factor :math:`p(z)` for exactly ``q``'s latent with a closed-form KL against ``q``,
    the bound is written :math:`\mathbb{E}_{q(z|x)}[\log p(x|z)] - D_{KL}[q(z|x)\|p(z)]` (the KL exact);
    otherwise :math:`\mathbb{E}_{q(z|x)}[\log p(x,z) - \log q(z|x)]`.

    The expectation is an :class:`E` over ``q``, and ``sample_shape``, ``enumerate``, ``estimator`` and
    ``baseline`` are its: ``ELBO(p, q, enumerate=True)`` is the exact bound for a small discrete latent,
    ``ELBO(p, q, baseline="moving_average")`` the score-function one with a control variate.

    >>> from pgm.distributions import Bernoulli, Normal
    >>> p = Bernoulli("p(x|z)", net=lambda z: {"logits": z}) * Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    >>> q = Normal("q(z|x)", net=lambda x: {"loc": x, "scale": x.exp()})
    >>> ELBO(p, q).latex()
    '\\mathbb{E}_{q(z|x)}\\left[\\log p(x|z)\\right] - D_{KL}\\left[q(z|x)\\|p(z)\\right]'
    """
    _check_distribution("ELBO", p)
    _check_distribution("ELBO", q)
    missing = [v for v in q.var if v not in p.var]
    if missing:
        raise ValueError(f"ELBO: {q.prob_text} generates {missing}, which {p.prob_text} does not; p must be the "
                         f"joint over the data and the latents, e.g. p_x * prior.")
    factors = list(getattr(p, "factors", [p]))
    prior = next((f for f in factors if f.var == q.var), None)
    if prior is not None and len(factors) > 1 and _kl.has_closed_form(q, prior):
        rest = [f for f in factors if f is not prior]
        likelihood = rest[0] if len(rest) == 1 else JointDistribution(rest)
        return E(q, LogProb(likelihood), sample_shape, enumerate, estimator, baseline) - KL(q, prior)
    return E(q, LogProb(p) - LogProb(q), sample_shape, enumerate, estimator, baseline)
