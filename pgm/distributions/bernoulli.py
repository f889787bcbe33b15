"""Bernoulli distribution, independent over the event dims."""
import torch.distributions as td

from ._family import Family


class Bernoulli(Family):
    r"""Bernoulli :math:`p^x(1-p)^{1-x}` from ``probs`` or ``logits``.

    ``log_prob`` accepts values in [0, 1] (the usual likelihood for grey-level images), not only {0, 1}.
    """

    family = td.Bernoulli
    parameter_sets = (("logits",), ("probs",))
    has_reparam = False
