"""Dirichlet distribution on the simplex (the last dim is the simplex)."""
import torch.distributions as td

from ._family import Family


class Dirichlet(Family):
    r"""Dirichlet :math:`\Gamma(\sum_k\alpha_k)/\prod_k\Gamma(\alpha_k)\prod_k x_k^{\alpha_k-1}`: ``concentration``."""

    family = td.Dirichlet
    parameter_sets = (("concentration",),)
    event_ndim = 1
