"""Laplace distribution: Laplace(x; loc, scale), independent over the event dims."""
import torch.distributions as td

from ._family import Family


class Laplace(Family):
    r"""Laplace :math:`\frac{1}{2b}\exp(-|x-\mu|/b)` with parameters ``loc`` (mu) and ``scale`` (b)."""

    family = td.Laplace
    parameter_sets = (("loc", "scale"),)
