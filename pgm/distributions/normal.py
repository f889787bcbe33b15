"""Normal (Gaussian) distribution: N(x; loc, scale^2), independent over the event dims."""
import torch
import torch.distributions as td

from ._family import Family


class Normal(Family):
    r"""Diagonal Gaussian :math:`\mathcal{N}(x;\mu,\mathrm{diag}\,\sigma^2)` with parameters ``loc``, ``scale``.

    >>> Normal("p(z)", loc=0.0, scale=1.0, features_shape=[64]).sample({}, sample_shape=[5])["z"].shape
    torch.Size([5, 64])
    """

    family = td.Normal
    parameter_sets = (("loc", "scale"),)

    def _draw(self, dist, params, shape, reparam):
        if not reparam:
            return dist.sample(shape)
        # torch's rsample, loc + eps * scale with eps ~ N(0, 1) drawn alike, without its per-call shape bookkeeping
        # (a few microseconds, paid at every step of a Sum)
        loc = dist.loc
        return loc + torch.randn(shape + dist.batch_shape, dtype=loc.dtype, device=loc.device) * dist.scale
