"""A point mass at a network's output: the 'distribution' of an autoencoder's code."""
from torch.distributions import constraints

from ._family import Family


class _PointMass:
    # torch.distributions has no point mass; this is the part of its interface pgm uses
    arg_constraints = {"loc": constraints.real}
    has_rsample = True

    def __init__(self, loc, validate_args=None):
        self.loc = loc

    def rsample(self, sample_shape=()):
        return self.loc.expand(tuple(sample_shape) + self.loc.shape)

    sample = rsample

    @property
    def mean(self):
        return self.loc

    @property
    def variance(self):
        return self.loc.new_zeros(()).expand(self.loc.shape)


class Deterministic(Family):
    """``z = loc(x)`` exactly; its network returns ``{"loc": ...}``. It has no density or entropy."""

    family = _PointMass
    parameter_sets = (("loc",),)
    has_log_prob = False
    has_entropy = False

    @property
    def no_log_prob_reason(self):
        """Why ``LogProb`` refuses it: a point mass has no density."""
        return f"{type(self).__name__} has no density; use it inside E(...) only"
