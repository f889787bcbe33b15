"""Multinomial distribution over count vectors (the last dim holds the K categories)."""
import numbers

import torch
import torch.distributions as td

from .._capture import capturing
from ._base import validation_enabled
from ._family import Family


class Multinomial(Family):
    r"""Multinomial :math:`\frac{n!}{\prod_k x_k!}\prod_k \pi_k^{x_k}` over counts ``x`` of shape ``(..., K)``
    with :math:`n = \sum_k x_k`, from ``probs`` or ``logits`` of shape ``(..., K)``.

    ``total_count`` (required) is either

    - a positive int :math:`n`, fixed at construction, e.g. ``Multinomial("p(x|z)", net=decoder,
      total_count=10)``: draws sum to :math:`n`, and every count vector scored must sum to :math:`n`; or
    - ``None``, for scoring count vectors of different totals (bags of words of documents of different
      lengths): each row is scored with its own total :math:`n_i = \sum_k x_{ik}`, i.e.
      :math:`\log p(x_i) = \log \Gamma(n_i + 1) - \sum_k \log \Gamma(x_{ik} + 1) + \sum_k x_{ik} \log \pi_{ik}`
      (as ``torch.distributions.Multinomial.log_prob``). Such a distribution has no draws (a draw needs a
      total: ``sample`` raises), no entropy, mean or variance; ``has_sample`` is ``False``, so a loss that
      would sample it says so.

    What ``log_prob`` checks (while validation is on, see :func:`~pgm.distributions.set_validation`, and not
    inside a compiled or captured step): the counts are non-negative integers, and, with an int
    ``total_count``, that each row sums to it (the error counts the rows that do not and suggests
    ``total_count=None``). Samples are drawn without gradient.
    """

    family = td.Multinomial
    parameter_sets = (("logits",), ("probs",))
    event_ndim = 1
    has_reparam = False

    def __init__(self, signature=None, *, total_count, **kwargs):
        super().__init__(signature, **kwargs)
        if total_count is not None and (isinstance(total_count, bool) or not isinstance(total_count, numbers.Integral)
                                        or total_count < 1):
            raise ValueError(
                f"{self.prob_text}: Multinomial needs total_count, the number of draws each count vector sums "
                f"to, as a positive int; got {total_count!r}. Pass e.g. total_count=10, or total_count=None to "
                f"score each count vector with its own total."
            )
        # a plain int, not a buffer: td.Multinomial takes an int, and reading one back from a device buffer
        # would synchronise on every call
        self.total_count = None if total_count is None else int(total_count)
        if self.total_count is None:  # scoring only
            self.has_sample, self.has_entropy = False, False

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, total_count={self.total_count}"

    def torch_distribution_of(self, params):
        # torch's log_prob uses each row's own sum (its total_count serves sample, mean, variance, entropy),
        # so with total_count=None any int builds it: the methods that would read it are refused below
        return self.family(1 if self.total_count is None else self.total_count, **params, validate_args=False)

    def _needs_total(self, what):
        return ValueError(
            f"{self.prob_text}: Multinomial with total_count=None scores each count vector with its own total, "
            f"but {what} needs a total; build it with total_count=n (e.g. total_count=10) for that."
        )

    def sample(self, inputs=None, sample_shape=(), reparam=True):
        if self.total_count is None:
            raise self._needs_total("a draw")
        return super().sample(inputs, sample_shape, reparam)

    def _sample(self, context, sample_shape=torch.Size(), reparam=True):
        if self.total_count is None:
            raise self._needs_total("a draw")
        return super()._sample(context, sample_shape, reparam)

    def _entropy(self, context):
        if self.total_count is None:
            raise self._needs_total("its entropy")
        return super()._entropy(context)

    def _mean(self, context):
        if self.total_count is None:
            raise self._needs_total("its mean")
        return super()._mean(context)

    def _variance(self, context):
        if self.total_count is None:
            raise self._needs_total("its variance")
        return super()._variance(context)

    def _elementwise_log_prob(self, dist, params, value):
        if validation_enabled() and not capturing():
            self._check_counts(torch.broadcast_to(value, torch.broadcast_shapes(value.shape, dist.logits.shape)))
        return dist.log_prob(value)

    def _check_counts(self, value):
        bad = (value < 0) | (value != value.floor())
        if bool(bad.any()):
            raise ValueError(
                f"{self.prob_text}: Multinomial scores counts, non-negative integers; got values such as "
                f"{value[bad][:3].tolist()} (a tensor of shape {tuple(value.shape)})."
            )
        if self.total_count is None:
            return
        totals = value.sum(-1)
        off = totals != self.total_count
        if bool(off.any()):
            raise ValueError(
                f"{self.prob_text}: Multinomial(total_count={self.total_count}) scores count vectors summing to "
                f"{self.total_count}; got {int(off.sum())} of {off.numel()} rows summing to other totals, such as "
                f"{totals[off][:3].tolist()}. Give total_count=None to score each row with its own total "
                f"(e.g. documents of different lengths)."
            )
