"""Poisson distribution over counts {0, 1, 2, ...}, independent over the event dims."""
import torch.distributions as td

from ._family import Family


class Poisson(Family):
    r"""Poisson :math:`\lambda^x e^{-\lambda}/x!` from ``rate`` (lambda).

    Discrete: samples are drawn without gradient (use the score-function estimator in ``E``), and there is
    no closed-form entropy. ``KL`` between two Poissons is closed-form.
    """

    family = td.Poisson
    parameter_sets = (("rate",),)
    has_reparam = False
    has_entropy = False
