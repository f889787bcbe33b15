"""Gumbel-softmax (Concrete) relaxation of a categorical over one-hot vectors."""
import torch.distributions as td

from ._family import Family
from .categorical import one_hot_log_prob
from ._relaxed import TemperatureMixin


class RelaxedCategorical(TemperatureMixin, Family):
    r"""Gumbel-softmax relaxed categorical (Jang et al. 2017; Maddison et al. 2017) with a ``temperature``.

    Sampling draws a reparameterized point on the simplex. Scoring follows the categorical the relaxation
    stands for, which is what the semi-supervised objectives need for one-hot labels:

    - ``log_prob`` is :math:`\sum_k y_k \log \pi_k` (the categorical log-probability of a one-hot ``y``);
      pass ``density="concrete"`` to score with the Concrete density instead;
    - ``entropy`` and closed-form ``KL`` are those of the categorical ``Cat(pi)``.

    ``temperature`` can be set between steps (``q.temperature = 0.5``) for annealing.
    """

    family = td.RelaxedOneHotCategorical
    kl_family = td.OneHotCategorical
    parameter_sets = (("logits",), ("probs",))
    event_ndim = 1

    def __init__(self, signature=None, *, temperature=1.0, density="categorical", **kwargs):
        if density not in ("categorical", "concrete"):
            raise ValueError(f"density must be 'categorical' or 'concrete'; got {density!r}.")
        super().__init__(signature, temperature=temperature, **kwargs)
        self.density = density

    def _elementwise_log_prob(self, dist, params, value):
        if self.density == "concrete":
            return dist.log_prob(value)
        return one_hot_log_prob(value, dist.logits)

    def _elementwise_entropy(self, dist, params):
        return self._kl_view(dist, params).entropy()

    def _kl_view(self, dist, params):
        return td.OneHotCategorical(logits=dist.logits, validate_args=False)
