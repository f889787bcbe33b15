"""The papers' network blocks (docs/papers.md section 9), with the widths as arguments.

Notation of the papers: ``DkBR`` is ``Linear(k) + BatchNorm1d + ReLU``; ``(x-D512BR-D512BR, w-D512BR-D512BR)-D512BR``
runs one branch per input and joins their last layers (concatenated) into a further ``D512BR``. An input with no
layers of its own (``y`` in ``(y, x-D512BR-D512BR, ...)``) joins as it is. Heads are linear:

* :class:`Gaussian` returns ``{"loc": Linear(h), "scale": sqrt(softplus(Linear(h)))}`` (the 2018 paper's
  softplus variance head), for :class:`pgm.distributions.Normal`;
* :class:`Logits` returns ``{"logits": Linear(h)}``, for ``Bernoulli``, ``Categorical`` and ``RelaxedCategorical``.

Example, q(a|x,w) of SS-HMVAE on MNIST halves::

    Gaussian(Join([392, 392], branches=[[512, 512], [512, 512]], joint=[512]), 128)
"""
from __future__ import annotations

import torch
from torch import nn

# softplus underflows to 0 for inputs below about -100 in float32; a floor keeps log-densities finite
_MIN_VARIANCE = 1e-8


def dense(in_features: int, widths) -> nn.Sequential:
    """A stack of DkBR blocks (Linear(k) + BatchNorm1d + ReLU), one per width; (B, in) -> (B, widths[-1])."""
    layers = []
    for width in widths:
        layers += [nn.Linear(in_features, width), nn.BatchNorm1d(width), nn.ReLU()]
        in_features = width
    return nn.Sequential(*layers)


class Join(nn.Module):
    """``(x-DkBR-..., w-DkBR-...)-DkBR-...``: a DkBR branch per input, concatenated, then a joint DkBR stack.

    in_features: the size of each input, in the order the inputs are passed (the signature's order).
    branches:    the widths of each input's own stack; ``[]`` passes that input through unchanged.
    joint:       the widths after the concatenation (may be empty).
    forward(*inputs (B, in_features[i])) -> (B, out_features).
    """

    def __init__(self, in_features, branches, joint=()):
        super().__init__()
        if len(in_features) != len(branches):
            raise ValueError(f"Join: {len(in_features)} inputs but {len(branches)} branches.")
        self.branches = nn.ModuleList(dense(n, widths) for n, widths in zip(in_features, branches))
        joined = sum(widths[-1] if widths else n for n, widths in zip(in_features, branches))
        self.joint = dense(joined, joint)
        self.out_features = joint[-1] if joint else joined

    def forward(self, *inputs):
        if len(inputs) != len(self.branches):
            raise ValueError(f"Join: expected {len(self.branches)} inputs; got {len(inputs)}.")
        return self.joint(torch.cat([branch(x) for branch, x in zip(self.branches, inputs)], -1))


def mlp(in_features, widths) -> Join:
    """One input through a DkBR stack: ``x-DkBR-...``."""
    return Join([in_features], [list(widths)])


class Gaussian(nn.Module):
    """A body followed by linear heads for the mean and the variance (softplus): {"loc", "scale"} (B, out)."""

    def __init__(self, body: Join, out_features: int):
        super().__init__()
        self.body = body
        self.loc = nn.Linear(body.out_features, out_features)
        self.variance = nn.Linear(body.out_features, out_features)

    def forward(self, *inputs):
        h = self.body(*inputs)
        variance = nn.functional.softplus(self.variance(h)) + _MIN_VARIANCE
        return {"loc": self.loc(h), "scale": variance.sqrt()}


class Logits(nn.Module):
    """A body followed by a linear layer: {"logits": (B, out)}."""

    def __init__(self, body: Join, out_features: int):
        super().__init__()
        self.body = body
        self.logits = nn.Linear(body.out_features, out_features)

    def forward(self, *inputs):
        return {"logits": self.logits(self.body(*inputs))}
