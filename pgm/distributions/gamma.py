"""Gamma distribution on (0, inf), independent over the event dims."""
import torch.distributions as td

from ._family import Family


class Gamma(Family):
    r"""Gamma :math:`\beta^\alpha x^{\alpha-1}e^{-\beta x}/\Gamma(\alpha)`: ``concentration`` (alpha), ``rate`` (beta).

    >>> Gamma("p(z)", concentration=2.0, rate=1.0, features_shape=[64]).sample({}, sample_shape=[5])["z"].shape
    torch.Size([5, 64])
    """

    family = td.Gamma
    parameter_sets = (("concentration", "rate"),)
