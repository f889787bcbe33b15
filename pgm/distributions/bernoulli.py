"""Bernoulli distribution, independent over the event dims."""
import torch.distributions as td
from torch.nn import functional as F

from ._family import Family, _sum_right


class Bernoulli(Family):
    r"""Bernoulli :math:`p^x(1-p)^{1-x}` from ``probs`` or ``logits``.

    ``log_prob`` accepts values in [0, 1] (the usual likelihood for grey-level images), not only {0, 1}.
    """

    family = td.Bernoulli
    parameter_sets = (("logits",), ("probs",))
    has_reparam = False

    def _log_prob_of_params(self, params, lead_shape, value):
        logits = params.get("logits")
        if logits is None or logits.shape != value.shape:
            return None
        # what torch computes, without building its distribution (at every step of a Sum)
        out = -F.binary_cross_entropy_with_logits(logits, value, reduction="none")
        return _sum_right(out, self._event_dims(params, lead_shape))
