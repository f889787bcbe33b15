"""Laplace distribution: Laplace(x; loc, scale), independent over the event dims."""
import torch.distributions as td

from ._base import Distribution


class Laplace(Distribution):
    r"""Laplace :math:`\frac{1}{2b}\exp(-|x-\mu|/b)` with parameters ``loc`` (mu) and ``scale`` (b)."""

    family = td.Laplace
    parameter_sets = (("loc", "scale"),)
