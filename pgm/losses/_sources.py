"""What a :class:`~pgm.losses.Term` can take from the evaluation besides variables: a distribution's parameters or
its torch distribution, as the evaluation computed them (its network is not run again)."""
from __future__ import annotations

from ..distributions import Family


class _Evaluated:
    """A value of ``distribution`` at this evaluation, for ``Term(..., inputs={name: ...})``."""

    def __init__(self, distribution):
        if not isinstance(distribution, Family):
            raise TypeError(f"{type(self).__name__} takes a distribution of one family (Normal, Categorical, ...); "
                            f"got {type(distribution).__name__}.")
        self.distribution = distribution

    def __repr__(self):
        return f"{type(self).__name__}({self.distribution.prob_text})"


class ParametersOf(_Evaluated):
    r"""``q``'s parameters at this evaluation, a dict by name (``{"loc": ..., "scale": ...}``), each
    ``(*lead, *event)`` with the leading dims of the conditions they were computed from (the batch dim for an
    encoder ``q(z|x)``; none for fixed parameters): the ones every other term of the evaluation uses, so ``q``'s
    network is not run again.

    beta-TCVAE's minibatch-weighted estimate of :math:`\log q(z)` scores each draw :math:`z_i` under every
    example's posterior :math:`q(z|x_j)`:

    >>> import math, torch
    >>> from pgm.distributions import Normal
    >>> from pgm.losses import E, Term
    >>> q = Normal("q(z|x)", net=lambda x: {"loc": x, "scale": torch.ones_like(x)})
    >>> def log_q_z(z, q_params):  # z (..., B, D); the parameters (B, D)
    ...     pairs = torch.distributions.Normal(q_params["loc"], q_params["scale"]).log_prob(z.unsqueeze(-2))
    ...     return torch.logsumexp(pairs.sum(-1), -1) - math.log(z.shape[-2])
    >>> term = Term(log_q_z, r"\log q(z)", inputs={"q_params": ParametersOf(q)})
    >>> E(q, term).eval({"x": torch.randn(5, 2)}).shape
    torch.Size([5])

    Args:
        q: a distribution of one family (a :class:`~pgm.distributions.Family`).
    """

    def value(self, context):
        """The parameters by name in ``context`` (the evaluation's :class:`~pgm.Context`)."""
        return self.distribution.parameters_given(context)[0]


class TorchDistributionOf(_Evaluated):
    """``q``'s ``torch.distributions`` object at this evaluation, its event dims reinterpreted
    (``td.Independent``) so that ``log_prob`` and ``entropy`` are one value per example as pgm's are; built from
    the parameters every other term of the evaluation uses.

    Args:
        q: a distribution of one family (a :class:`~pgm.distributions.Family`).
    """

    def value(self, context):
        """The ``torch.distributions`` object in ``context`` (the evaluation's :class:`~pgm.Context`)."""
        return self.distribution.torch_distribution(context, independent=True)
