"""Categorical distribution over one-hot vectors (the last dim holds the K classes)."""
import torch
import torch.distributions as td

from ._family import Family


class Categorical(Family):
    r"""Categorical :math:`\prod_k \pi_k^{y_k}` over one-hot ``y``, from ``probs`` or ``logits`` of shape ``(..., K)``.

    Samples are one-hot. ``log_prob`` is :math:`\sum_k y_k \log \pi_k`, which for a one-hot ``y`` is the
    categorical log-probability and stays differentiable for a relaxed (Gumbel-softmax) ``y``.
    There is no reparameterized sampler: use ``E(q, f, enumerate=True)`` to sum over the classes, or
    ``RelaxedCategorical``.
    """

    family = td.OneHotCategorical
    parameter_sets = (("logits",), ("probs",))
    event_ndim = 1
    has_reparam = False

    def _elementwise_log_prob(self, dist, params, value):
        return one_hot_log_prob(value, dist.logits)


def one_hot_log_prob(value, logits):
    """sum_k y_k log pi_k; a class of probability 0 (logit -inf) that y does not pick adds 0, not 0 * -inf = nan."""
    return (value * logits.clamp(min=torch.finfo(logits.dtype).min)).sum(-1)
