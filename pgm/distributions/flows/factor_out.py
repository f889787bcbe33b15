r"""Factor-out, the step of a multi-scale flow (RealNVP, Dinh et al. 2017, section 3.6; Glow's split, Kingma &
Dhariwal 2018): part of the channels leave the flow, scored by a distribution of their own."""
from __future__ import annotations

import torch

from .._base import Distribution
from .._family import Family
from ._layer import Layer
from .flow import static_event_shape


class FactorOut(Layer):
    r"""Half of the channels leave a density-estimation flow and are scored directly; the other half go on.

    Towards the base (the forward map of a ``Flow(..., direction="inverse")``), an input :math:`h` of shape
    ``(N, C, ...)`` splits along dim 1 into :math:`h_l`, its first ``keep`` channels, which the following layers
    transform, and :math:`z_l`, the other :math:`C - \text{keep}`, scored by ``prior`` :math:`p(z_l|h_l)`:

    .. math::
        (h_l, z_l) = \operatorname{split}(h), \qquad
        \log p(x) = \log p_0(h_K) + \sum_{l} \log p(z_l|h_l) + \sum_k \log\left|\det
        \frac{\partial h_k}{\partial h_{k-1}}\right|,

    exact because :math:`x \mapsto (h_K, z_1, \dots, z_L)` is a bijection. The layer returns
    :math:`\log p(z_l|h_l)` where a layer returns its log-determinant, so the flow adds it to its sum. In Glow
    the prior is a learned Gaussian :math:`\mathcal{N}(z_l; \mu(h_l), \sigma(h_l))` (a zero-initialized
    convolution of :math:`h_l`); in RealNVP a standard normal. Towards the value (sampling), the inverse draws
    :math:`z_l \sim p(z_l|h_l)` and returns :math:`h = [h_l, z_l]` with :math:`-\log p(z_l|h_l)`, so a draw's
    log-density from the sampling pass is the same sum.

    Only a flow with ``direction="inverse"`` may hold it: its forward map drops :math:`z_l`.

    Args:
        channels: C, the channels of an image ``(C, H, W)`` (or features of a vector ``(C,)``) it splits.
        prior: a pgm distribution of one variable, the factored-out :math:`z_l`, of event shape
            ``(C - keep, ...)``; conditioned on at most one variable besides ``cond_var``, the kept
            :math:`h_l` (event shape ``(keep, ...)``), e.g. ``Normal("p(z_1|h_1)", net=...)`` (Glow) or
            ``Normal("p(z_1)", loc=0.0, scale=1.0, features_shape=[2, 4, 4])`` (RealNVP).
        keep: the channels that stay in the flow (default ``C // 2``).
        cond_var: names of the flow's conditioning variables the prior also takes (e.g. a class ``y``).

    >>> import torch
    >>> from pgm.distributions import Normal
    >>> split = FactorOut(4, Normal("p(z_1)", loc=0.0, scale=1.0, features_shape=[2, 3, 3]))
    >>> h, log_p = split(torch.zeros(5, 4, 3, 3))
    >>> tuple(h.shape), round(log_p[0].item(), 4)  # 18 elements of N(0, 1) at 0: -9 log(2 pi)
    ((5, 2, 3, 3), -16.5409)
    """

    factors_out = True

    def __init__(self, channels, prior, keep=None, *, cond_var=None):
        super().__init__(cond_var)
        self.channels = int(channels)
        self.keep = self.channels // 2 if keep is None else int(keep)
        where = f"FactorOut({self.channels})"
        if not 1 <= self.keep < self.channels:
            raise ValueError(f"{where}: keep must leave at least one channel in the flow and factor out at least "
                             f"one, 1 <= keep < {self.channels}; got keep={self.keep}.")
        if not isinstance(prior, Distribution):
            raise TypeError(f"{where}: the prior of the factored-out channels must be a pgm distribution, e.g. "
                            f"Normal('p(z_1|h_1)', net=...); got {type(prior).__name__}.")
        if len(prior.var) != 1:
            raise ValueError(f"{where}: its prior {prior.prob_text} generates {prior.var}; it must generate one "
                             f"variable, the factored-out channels.")
        missing = [c for c in self.cond_var if c not in prior.cond_var]
        if missing:
            raise ValueError(f"{where}: cond_var names {missing}, but its prior {prior.prob_text} does not take "
                             f"them; give the prior those conditioning variables or leave them out of cond_var.")
        kept = [c for c in prior.cond_var if c not in self.cond_var]
        if len(kept) > 1:
            raise ValueError(f"{where}: its prior {prior.prob_text} is conditioned on {kept}, but it can be given "
                             f"only the kept channels (one variable) and the flow's inputs named in cond_var; "
                             f"name the flow's inputs there, e.g. FactorOut({self.channels}, prior, "
                             f"cond_var={kept[1:]!r}).")
        self.prior = prior
        self.kept_var = kept[0] if kept else None

    @property
    def factored_var(self):
        """The name of the factored-out variable, the prior's (:math:`z_l`)."""
        return self.prior.var[0]

    def forward(self, h, *cond):
        kept, factored = h[:, : self.keep], h[:, self.keep:]
        return kept, self.prior.log_prob({**self._given(kept, cond), self.factored_var: factored})

    def inverse(self, kept, *cond):
        given = self._given(kept, cond)
        # a prior conditioned on nothing draws one value per element of sample_shape
        draw = self.prior.sample(given, sample_shape=() if given else kept.shape[0])
        return (self._concatenate(kept, draw[self.factored_var]), -self.prior.log_prob(draw))

    def _given(self, kept, cond):
        given = dict(zip(self.cond_var, cond))
        if self.kept_var is not None:
            given[self.kept_var] = kept
        return given

    def _concatenate(self, kept, factored):
        expected = (kept.shape[0], self.channels - self.keep, *kept.shape[2:])
        if tuple(factored.shape) != expected:
            raise ValueError(f"{self.describe()}: its prior {self.prior.prob_text} drew values of shape "
                             f"{tuple(factored.shape)} for kept channels of shape {tuple(kept.shape)}; it must draw "
                             f"{expected}.")
        return torch.cat([kept, factored], 1)

    # ----------------------------------------------------------------- shapes
    def _prior_shape(self):
        """The prior's event shape where its parameters are fixed (``None``: a network's, known when it runs)."""
        return static_event_shape(self.prior) if isinstance(self.prior, Family) else None

    def out_shape(self, shape):
        return (self.keep, *shape[1:])

    def in_shape(self, shape):
        return (shape[0] + self.channels - self.keep, *shape[1:])

    def shape_error(self, shape):
        if len(shape) < 1 or shape[0] != self.channels:
            fits = f"FactorOut({shape[0]}, prior)" if len(shape) >= 1 else None
            return f"takes events with {self.channels} features or channels (event shape ({self.channels}, ...))", fits
        expected, factored = self._prior_shape(), (self.channels - self.keep, *shape[1:])
        if expected is not None and tuple(expected) != factored:
            return (f"factors out {self.channels - self.keep} channels scored by its prior {self.prior.prob_text} of "
                    f"event shape {tuple(expected)}", f"FactorOut({self.channels}, a prior with features_shape="
                                                      f"{list(factored)})")
        return None

    def extra_repr(self) -> str:
        text = f"{self.channels}, {self.prior.prob_text}, keep={self.keep}"
        return text + (f", cond_var={self.cond_var}" if self.cond_var else "")
