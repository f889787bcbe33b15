"""A network shared by several distributions that runs once per evaluation and inputs."""
from __future__ import annotations

from torch import nn

from ._scope import SharedOutput, active_caches


class Shared(nn.Module):
    r"""``module`` run once per evaluation of a loss for the same input tensors, however many distributions call it.

    A ladder VAE's top-down pass feeds both the prior :math:`p(z_1|z_2)` and the posterior :math:`q(z_1|x,z_2)`;
    written plainly, each distribution's network calls it, so it runs twice per step. Wrapped as
    ``top_down = Shared(TopDown())`` and called from both networks, it runs once: the second call with the very
    same tensors (not merely equal ones) returns the first call's output, kept in the evaluation's caches (see
    :class:`pgm.Context`) and dropped with them. Outside the evaluation of a loss (a plain call, a ``sample``
    given a dict) it is just ``module``. Its parameters are ``module``'s; a BatchNorm inside updates once.

    >>> import torch
    >>> from pgm.distributions import Normal
    >>> calls, linear = [], torch.nn.Linear(2, 2)
    >>> _ = linear.register_forward_hook(lambda *args: calls.append(1))  # counts the runs of the linear layer
    >>> trunk = Shared(linear)
    >>> p = Normal("p(x|z)", net=lambda z: {"loc": trunk(z), "scale": torch.ones(2)})
    >>> q = Normal("q(y|z)", net=lambda z: {"loc": -trunk(z), "scale": torch.ones(2)})
    >>> from pgm.losses import LogProb
    >>> (LogProb(p) + LogProb(q)).eval({"z": torch.randn(3, 2), "x": torch.randn(3, 2), "y": torch.randn(3, 2)}).shape
    torch.Size([3])
    >>> len(calls)
    1

    Args:
        module: the network, called with positional tensors.
    """

    def __init__(self, module):
        super().__init__()
        if not callable(module):
            raise TypeError(f"Shared takes a network (an nn.Module or a function); got {type(module).__name__}.")
        self.module = module

    def forward(self, *inputs):
        caches = active_caches()
        if caches is None:
            return self.module(*inputs)
        return caches.cached(SharedOutput(self, inputs), lambda: self.module(*inputs))
