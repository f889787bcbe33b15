"""Beta distribution on (0, 1), independent over the event dims."""
import torch.distributions as td

from ._family import Family


class Beta(Family):
    r"""Beta :math:`x^{\alpha-1}(1-x)^{\beta-1}/B(\alpha,\beta)`: ``concentration1`` (alpha), ``concentration0`` (beta)."""

    family = td.Beta
    parameter_sets = (("concentration1", "concentration0"),)
