"""Learned parameters of a distribution without a network, kept in their domain (a positive scale)."""
from __future__ import annotations

import torch
from torch import nn
from torch.distributions import transform_to


class Learned:
    r"""A parameter of a distribution that is learned, starting from ``init``: ``Normal("q(w)",
    loc=Learned(torch.zeros(3)), scale=Learned(torch.ones(3)))`` is Bayes by backprop's :math:`q(w)`.

    The distribution keeps it in its domain, the support of torch's ``arg_constraints`` for that parameter:
    it trains an unconstrained value :math:`u` and uses :math:`T(u)` with ``torch.distributions.transform_to``'s
    :math:`T` (``exp`` for a positive scale, a sigmoid for a probability, the identity for a mean), so no
    optimizer step can leave the domain. :class:`~pgm.models.Model` trains it with the distribution's other
    parameters. (A fixed parameter given as a plain ``nn.Parameter`` trains too, but nothing keeps it in its
    domain.)

    >>> from pgm.distributions import Normal
    >>> q_w = Normal("q(w)", loc=Learned(torch.zeros(3)), scale=Learned(torch.full((3,), 0.1)))
    >>> [round(s, 6) for s in q_w.get_params()["scale"].tolist()]
    [0.1, 0.1, 0.1]
    >>> [name for name, _ in q_w.named_parameters()]
    ['learned.loc.unconstrained', 'learned.scale.unconstrained']

    Args:
        init: the starting value, of the event's shape (or one that broadcasts to it), inside the domain.
    """

    def __init__(self, init):
        if isinstance(init, bool) or not isinstance(init, (torch.Tensor, int, float)):
            raise TypeError(f"Learned takes the starting value, a tensor or a number; got {type(init).__name__}.")
        self.init = torch.as_tensor(init, dtype=torch.get_default_dtype()) if not isinstance(init, torch.Tensor) \
            or not init.is_floating_point() else init

    def bind(self, where, name, constraint, shape=None):
        """The module that holds this parameter for the distribution ``where`` (its signature): ``name``'s
        unconstrained value, mapped into ``constraint`` when called."""
        init = self.init.detach().clone()
        if shape is not None and init.shape != shape:
            init = init.expand(shape).clone()
        if not bool(constraint.check(init).all()):
            raise ValueError(f"{where}: Learned({name}=...) must start inside the parameter's domain "
                             f"({constraint}); got {init.flatten()[:6].tolist()}.")
        return LearnedParameter(init, constraint)


class LearnedParameter(nn.Module):
    """One learned parameter: an unconstrained ``nn.Parameter`` and the transform into the domain."""

    def __init__(self, init, constraint):
        super().__init__()
        self.constraint, self.transform = constraint, transform_to(constraint)
        self.unconstrained = nn.Parameter(self.transform.inv(init).detach().clone())

    def forward(self) -> torch.Tensor:
        return self.transform(self.unconstrained)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.unconstrained.shape)}, in {self.constraint}"
