"""Multinomial distribution over count vectors (the last dim holds the K categories)."""
import numbers

import torch.distributions as td

from ._family import Family


class Multinomial(Family):
    r"""Multinomial :math:`\frac{n!}{\prod_k x_k!}\prod_k \pi_k^{x_k}` over counts ``x`` of shape ``(..., K)``
    summing to ``total_count`` (n), from ``probs`` or ``logits`` of shape ``(..., K)``.

    ``total_count`` is a positive int fixed at construction, e.g.
    ``Multinomial("p(x|z)", net=decoder, total_count=10)``. Samples are drawn without gradient.
    """

    family = td.Multinomial
    parameter_sets = (("logits",), ("probs",))
    event_ndim = 1
    has_reparam = False

    def __init__(self, signature=None, *, total_count, **kwargs):
        super().__init__(signature, **kwargs)
        if isinstance(total_count, bool) or not isinstance(total_count, numbers.Integral) or total_count < 1:
            raise ValueError(
                f"{self.prob_text}: Multinomial needs total_count, the number of draws each count vector sums "
                f"to, as a positive int; got {total_count!r}. Pass e.g. total_count=10."
            )
        # a plain int, not a buffer: td.Multinomial takes an int, and reading one back from a device buffer
        # would synchronise on every call
        self.total_count = int(total_count)

    def torch_distribution_of(self, params):
        return self.family(self.total_count, **params, validate_args=False)
