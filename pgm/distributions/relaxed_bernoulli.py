"""Binary Concrete (relaxed Bernoulli) distribution, independent over the event dims."""
import torch.distributions as td
from torch.distributions.relaxed_bernoulli import LogitRelaxedBernoulli

from ._family import Family
from ._relaxed import TemperatureMixin


class RelaxedBernoulli(TemperatureMixin, Family):
    r"""Relaxed Bernoulli (binary Concrete) with a ``temperature``, from ``probs`` or ``logits``.

    Sampling is reparameterized on (0, 1). ``log_prob`` is the Bernoulli log-probability
    :math:`x\log p + (1-x)\log(1-p)` of the value (exact for binary values); ``entropy`` and closed-form
    ``KL`` are those of ``Bernoulli(p)``.
    """

    family = td.RelaxedBernoulli
    kl_family = td.Bernoulli
    parameter_sets = (("logits",), ("probs",))

    def __init__(self, signature=None, *, temperature=1.0, **kwargs):
        super().__init__(signature, temperature=temperature, **kwargs)

    def torch_distribution_of(self, params):
        # td.RelaxedBernoulli does not pass validate_args on to its LogitRelaxedBernoulli, which then checks
        # the parameters anyway (a device sync, and an error pgm's validation switch cannot turn off); build
        # the same object as its __init__ does, with the check off.
        dist = td.RelaxedBernoulli.__new__(td.RelaxedBernoulli)
        base = LogitRelaxedBernoulli(**params, validate_args=False)
        td.TransformedDistribution.__init__(dist, base, td.transforms.SigmoidTransform(), validate_args=False)
        return dist

    def _elementwise_log_prob(self, dist, params, value):
        return self._kl_view(dist, params).log_prob(value)

    def _elementwise_entropy(self, dist, params):
        return self._kl_view(dist, params).entropy()

    def _kl_view(self, dist, params):
        return td.Bernoulli(logits=dist.logits, validate_args=False)
