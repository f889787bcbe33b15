"""A point mass at a network's output: the 'distribution' of an autoencoder's code."""
from torch.distributions import constraints

from ._base import Distribution


class _PointMass:
    # torch.distributions has no point mass; this is the part of its interface pgm uses
    arg_constraints = {"loc": constraints.real}
    has_rsample = True

    def __init__(self, loc, validate_args=None):
        self.loc = loc

    def rsample(self, sample_shape=()):
        return self.loc.expand(tuple(sample_shape) + self.loc.shape)

    sample = rsample


class Deterministic(Distribution):
    """``z = loc(x)`` exactly; its network returns ``{"loc": ...}``. It has no density or entropy."""

    family = _PointMass
    parameter_sets = (("loc",),)

    def _elementwise_log_prob(self, dist, params, value):
        raise ValueError(f"{self.prob_text} is Deterministic and has no density; use it inside E(...) only.")

    def _elementwise_entropy(self, dist, params):
        raise ValueError(f"{self.prob_text} is Deterministic and has no entropy.")
