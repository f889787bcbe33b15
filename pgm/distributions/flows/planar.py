r"""Planar flow (Rezende & Mohamed 2015), a layer without an inverse."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ._layer import Layer, vector_shape_error


def amortized(layer, cond, names):
    """The parameters ``names`` a layer's network returns for ``cond``, each ``(N, ...)``."""
    out = layer.net(*cond)
    if not isinstance(out, dict) or set(out) != set(names):
        got = sorted(out) if isinstance(out, dict) else type(out).__name__
        raise ValueError(f"{layer.describe()}: its network must return a dict with {sorted(names)}, one row per "
                         f"example; got {got}.")
    return [out[n] for n in names]


def check_amortized(layer, net):
    if net is not None and not layer.cond_var:
        raise ValueError(f"{type(layer).__name__}: net= computes the parameters from conditioning variables; "
                         f"name them with cond_var=, e.g. cond_var=['x'].")
    if layer.cond_var and net is None:
        raise ValueError(f"{type(layer).__name__}: cond_var={layer.cond_var} needs net=, a network of them "
                         f"returning the layer's parameters per example.")


class VectorLayer(Layer):
    """A layer of vectors of ``features`` elements whose parameters may come from a network of ``cond_var``
    (what Planar and Radial share: the shape check, the event shape and the repr)."""

    def __init__(self, features, cond_var=None, net=None):
        super().__init__(cond_var)
        check_amortized(self, net)
        self.features, self.net = int(features), net

    def shape_error(self, shape):
        return vector_shape_error(self, self.features, shape, lambda d: f"{type(self).__name__}({d})")

    def input_shape(self):
        return (self.features,)

    def extra_repr(self) -> str:
        return f"{self.features}" + (f", cond_var={self.cond_var}" if self.cond_var else "")


class Planar(VectorLayer):
    r"""Planar flow :math:`f(z) = z + \hat u \tanh(w^\top z + b)` (Rezende & Mohamed 2015), on vectors.

    :math:`\log|\det \partial f/\partial z| = \log|1 + \hat u^\top \psi(z)|`, with
    :math:`\psi(z) = (1 - \tanh^2(w^\top z + b))\, w`. Invertibility needs :math:`w^\top \hat u \ge -1`,
    enforced by the paper's reparametrization
    :math:`\hat u = u + (m(w^\top u) - w^\top u)\, w / \|w\|^2`, :math:`m(a) = -1 + \log(1 + e^a)`.
    The inverse has no closed form, so a flow with this layer scores the draws it made itself (cached in the
    evaluation), not other values.

    Args:
        features: D, the size of the vectors.
        cond_var: names of conditioning variables for amortized parameters (van den Berg et al. 2018).
        net: with ``cond_var``, a network of them returning ``{"u": (N, D), "w": (N, D), "b": (N,)}``.
    """

    has_inverse = False

    def __init__(self, features, *, cond_var=None, net=None):
        super().__init__(features, cond_var, net)
        if net is None:
            bound = 1 / math.sqrt(self.features)
            self.u = nn.Parameter(torch.empty(self.features).uniform_(-bound, bound))
            self.w = nn.Parameter(torch.empty(self.features).uniform_(-bound, bound))
            self.b = nn.Parameter(torch.zeros(()))

    def _parameters_for(self, cond):
        if self.net is None:
            return self.u, self.w, self.b.reshape(1)
        u, w, b = amortized(self, cond, ("u", "w", "b"))
        return u, w, b.reshape(-1)

    def forward(self, z, *cond):
        u, w, b = self._parameters_for(cond)
        wu = (w * u).sum(-1, keepdim=True)
        u_hat = u + (F.softplus(wu) - 1 - wu) * w / (w * w).sum(-1, keepdim=True)
        h = torch.tanh((z * w).sum(-1) + b).unsqueeze(-1)  # (N, 1)
        log_det = torch.log(torch.abs(1 + (1 - h.squeeze(-1) ** 2) * (w * u_hat).sum(-1)))
        return z + u_hat * h, log_det.expand(z.shape[0])

