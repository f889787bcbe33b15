"""The terms of an objective: log-likelihoods, expectations, divergences and entropies."""
from __future__ import annotations

import math

import torch

from ..distributions import Categorical, Distribution
from . import _kl, _printing
from ._base import Loss, as_loss


def _check_distribution(where, d):
    if not isinstance(d, Distribution):
        raise TypeError(f"{where} takes pgm distributions; got {type(d).__name__}.")


def _sample_shape(sample_shape):
    if isinstance(sample_shape, int):
        if sample_shape < 1:
            raise ValueError(f"sample_shape must be at least 1; got {sample_shape}.")
        return () if sample_shape == 1 else (sample_shape,)
    return tuple(sample_shape)


def _needs(d, skip=()):
    return {v: d.prob_text for v in d.required_var if v not in skip}


def _reduce_samples(value, scope):
    """Average a value over the sample dims an expectation added in front of ``scope``'s dims."""
    if not isinstance(value, torch.Tensor):
        return value
    extra = value.dim() - len(scope.lead_shape)
    return value.mean(dim=tuple(range(extra))) if extra > 0 else value


class LogProb(Loss):
    r""":math:`\log p(x|z)`, per example: the log-density of ``p``'s variables given its conditions."""

    def __init__(self, p):
        _check_distribution("LogProb", p)
        self.p = p

    def _eval(self, scope):
        return self.p._log_prob(scope)

    def _sym(self):
        return _printing.Term(rf"\log {self.p.prob_text}", f"log {self.p.prob_text}")

    def _free(self):
        return {**{v: self.p.prob_text for v in self.p.var}, **_needs(self.p)}

    def _distributions(self):
        return [self.p]


class E(Loss):
    r""":math:`\mathbb{E}_{q}[f]`, estimated with reparameterized samples of ``q`` (one by default).

    Args:
        q: the distribution to sample; it must have a reparameterized sampler unless ``enumerate``.
        f: a loss evaluated with ``q``'s variables added to the inputs.
        sample_shape: the number (or shape) of samples, drawn in one batched call.
        enumerate: for a ``Categorical`` q, sum over its K classes weighted by their probabilities
            (exact, K network passes in one batch) instead of sampling.
    """

    def __init__(self, q, f, sample_shape=1, enumerate=False):
        _check_distribution("E", q)
        self.q, self.f = q, as_loss(f)
        self.children = (self.f,)
        self.sample_shape = _sample_shape(sample_shape)
        self.enumerate = enumerate
        if enumerate and not isinstance(q, Categorical):
            raise ValueError(f"E(..., enumerate=True) sums over the classes of a Categorical; {q.prob_text} is "
                             f"{type(q).__name__}.")
        if not enumerate and not q.has_reparam:
            hint = ("use enumerate=True to sum over its classes, or RelaxedCategorical (Gumbel-softmax) to sample"
                    if isinstance(q, Categorical) else "use a family that has one (e.g. RelaxedBernoulli)")
            raise ValueError(
                f"E over {q.prob_text}: {type(q).__name__} has no reparameterized sampler, so no gradient "
                f"would flow through the sample; {hint}."
            )

    def _eval(self, scope):
        if self.enumerate:
            return self._eval_enumerated(scope)
        values, lead = self.q._sample(scope, self.sample_shape)
        inner = scope.child(values, dict.fromkeys(values, lead), torch.Size(self.sample_shape) + scope.lead_shape)
        return _reduce_samples(self.f._eval(inner), scope)

    def _eval_enumerated(self, scope):
        dist, _, _ = self.q._distribution(scope)
        probs = dist.probs
        classes = probs.shape[-1]
        lead = scope.lead_shape
        onehot = torch.eye(classes, dtype=probs.dtype, device=probs.device)
        onehot = onehot.view((classes,) + (1,) * len(lead) + (classes,)).expand((classes,) + lead + (classes,))
        inner = scope.child({self.q.var[0]: onehot}, {self.q.var[0]: 1 + len(lead)}, torch.Size((classes,)) + lead)
        value = self.f._eval(inner)
        return (probs.movedim(-1, 0) * value).sum(0)

    def _sym(self):
        return _printing.Wrapped(rf"\mathbb{{E}}_{{{self.q.prob_text}}}\left[", r"\right]",
                                 f"E_{self.q.prob_text}[", "]", self.f._sym())

    def _free(self):
        out = _needs(self.q)
        for k, v in self.f._free().items():
            if k not in self.q.var:
                out.setdefault(k, v)
        return out

    def _distributions(self):
        return [self.q] + [d for d in self.f._distributions() if d is not self.q]


class KL(Loss):
    r""":math:`D_{KL}[q\|p]` per example: closed form from the KL registry, or Monte Carlo if ``analytic=False``."""

    def __init__(self, q, p, analytic=True, sample_shape=1):
        _check_distribution("KL", q)
        _check_distribution("KL", p)
        if q.var != p.var:
            raise ValueError(f"KL[{q.prob_text}||{p.prob_text}] compares distributions of different variables "
                             f"({q.var} and {p.var}); rename one with replace_var.")
        self.q, self.p, self.analytic = q, p, analytic
        if analytic and not _kl.has_closed_form(q, p):
            raise ValueError(
                f"KL[{q.prob_text}||{p.prob_text}]: no closed form for {type(q).__name__} || {type(p).__name__}; "
                f"pass analytic=False to estimate it by Monte Carlo (with sample_shape=...), or register one "
                f"with pgm.losses.register_kl."
            )
        self._estimate = None if analytic else E(q, LogProb(q) - LogProb(p), sample_shape)

    def _eval(self, scope):
        if self._estimate is not None:
            return self._estimate._eval(scope)
        q_dist, q_params, q_lead = self.q._distribution(scope)
        p_dist, p_params, _ = self.p._distribution(scope)
        value = _kl.closed_form(self.q, self.p, q_dist, q_params, p_dist, p_params)
        n = self.q._event_dims(q_params, q_lead)
        return value.sum(dim=tuple(range(-n, 0))) if n > 0 else value

    def _sym(self):
        q, p = self.q.prob_text, self.p.prob_text
        return _printing.Term(rf"D_{{KL}}\left[{q}\|{p}\right]", f"KL[{q}||{p}]")

    def _free(self):
        return {**_needs(self.q), **_needs(self.p)}

    def _distributions(self):
        return [self.q, self.p]


class Entropy(Loss):
    r""":math:`\mathcal{H}[q]` per example: closed form, or Monte Carlo :math:`-\log q` if ``analytic=False``."""

    def __init__(self, q, analytic=True, sample_shape=1):
        _check_distribution("Entropy", q)
        self.q = q
        self._estimate = None if analytic else E(q, -LogProb(q), sample_shape)

    def _eval(self, scope):
        if self._estimate is not None:
            return self._estimate._eval(scope)
        try:
            return self.q._entropy(scope)
        except NotImplementedError:
            raise ValueError(f"H[{self.q.prob_text}]: {type(self.q).__name__} has no closed-form entropy; "
                             f"pass analytic=False to estimate it by Monte Carlo.") from None

    def _sym(self):
        return _printing.Term(rf"\mathcal{{H}}\left[{self.q.prob_text}\right]", f"H[{self.q.prob_text}]")

    def _free(self):
        return _needs(self.q)

    def _distributions(self):
        return [self.q]


class CrossEntropy(Loss):
    r""":math:`-\mathbb{E}_{q}[\log p]` per example: :math:`\mathcal{H}[q] + D_{KL}[q\|p]` in closed form
    where both exist, else a reparameterized Monte Carlo estimate."""

    def __init__(self, q, p, sample_shape=1):
        _check_distribution("CrossEntropy", q)
        _check_distribution("CrossEntropy", p)
        self.q, self.p = q, p
        if q.var == p.var and _kl.has_closed_form(q, p):
            self._value = Entropy(q) + KL(q, p)
        else:
            self._value = E(q, -LogProb(p), sample_shape)

    def _eval(self, scope):
        return self._value._eval(scope)

    def _sym(self):
        q, p = self.q.prob_text, self.p.prob_text
        return _printing.Term(rf"\mathcal{{H}}\left[{q}, {p}\right]", f"H[{q}, {p}]")

    def _free(self):
        return self._value._free()

    def _distributions(self):
        return [self.q, self.p]


class IWAE(Loss):
    r"""Importance-weighted estimate of :math:`\log p(x)` (Burda et al. 2016), per example:

    :math:`\log \frac{1}{K}\sum_{k=1}^{K} p(x, z_k) / q(z_k|x)` with :math:`z_k \sim q(z|x)`, a lower bound
    that tightens as K grows. ``p`` is the joint over the data and the latents ``q`` generates.
    """

    def __init__(self, p, q, sample_shape=1):
        _check_distribution("IWAE", p)
        _check_distribution("IWAE", q)
        self.p, self.q = p, q
        self.sample_shape = _sample_shape(sample_shape)
        missing = [v for v in q.var if v not in p.var + p.cond_var]
        if missing:
            raise ValueError(f"IWAE: {q.prob_text} generates {missing}, which {p.prob_text} does not use.")

    def _eval(self, scope):
        values, lead = self.q._sample(scope, self.sample_shape)
        inner = scope.child(values, dict.fromkeys(values, lead), torch.Size(self.sample_shape) + scope.lead_shape)
        log_w = self.p._log_prob(inner) - self.q._log_prob(inner)
        extra = log_w.dim() - len(scope.lead_shape)
        if extra <= 0:
            return log_w
        count = math.prod(log_w.shape[:extra])
        return torch.logsumexp(log_w.reshape((count,) + log_w.shape[extra:]), 0) - math.log(count)

    def _sym(self):
        p, q = self.p.prob_text, self.q.prob_text
        return _printing.Term(rf"\log \mathbb{{E}}_{{{q}}}\left[\frac{{{p}}}{{{q}}}\right]", f"log E_{q}[{p}/{q}]")

    def _free(self):
        out = _needs(self.q)
        for v in self.p.var + self.p.required_var:
            if v not in self.q.var:
                out.setdefault(v, self.p.prob_text)
        return out

    def _distributions(self):
        return [self.p, self.q]
