r"""Radial flow (Rezende & Mohamed 2015); its inverse has a closed form (a quadratic in the radius)."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .planar import VectorLayer, amortized


class Radial(VectorLayer):
    r"""Radial flow :math:`f(z) = z + \beta h(\alpha, r)(z - z_0)`, :math:`h = 1/(\alpha + r)`,
    :math:`r = \|z - z_0\|` (Rezende & Mohamed 2015), on vectors of D features.

    :math:`\log|\det \partial f/\partial z| = (D - 1)\log(1 + \beta h) + \log(1 + \beta h + \beta h' r)`
    with :math:`h' = -1/(\alpha + r)^2`. Constraints: :math:`\alpha = \log(1 + e^{a}) > 0` and the
    invertibility condition :math:`\beta = -\alpha + \log(1 + e^{b}) \ge -\alpha`.
    Inverse: with :math:`s = \|y - z_0\|`, :math:`r` is the positive root of
    :math:`r^2 + (\alpha + \beta - s) r - \alpha s = 0` and :math:`z = z_0 + (y - z_0)/(1 + \beta h(\alpha, r))`.

    Args:
        features: D, the size of the vectors.
        cond_var, net: amortized parameters: a network of ``cond_var`` returning
            ``{"z0": (N, D), "alpha": (N,), "beta": (N,)}`` (unconstrained; the constraints above apply).
    """

    def __init__(self, features, *, cond_var=None, net=None):
        super().__init__(features, cond_var, net)
        if net is None:
            bound = 1 / math.sqrt(self.features)
            self.z0 = nn.Parameter(torch.empty(self.features).uniform_(-bound, bound))
            self.alpha = nn.Parameter(torch.empty(()).uniform_(-bound, bound))
            self.beta = nn.Parameter(torch.empty(()).uniform_(-bound, bound))

    def _parameters_for(self, cond):
        """z0 ``(D,)`` or ``(N, D)``; alpha > 0 and beta >= -alpha, each ``(1,)`` or ``(N,)``, with a last dim of 1."""
        if self.net is None:
            z0, a, b = self.z0, self.alpha.reshape(1), self.beta.reshape(1)
        else:
            z0, a, b = amortized(self, cond, ("z0", "alpha", "beta"))
            a, b = a.reshape(-1), b.reshape(-1)
        alpha = F.softplus(a)
        return z0, alpha.unsqueeze(-1), (-alpha + F.softplus(b)).unsqueeze(-1)

    def _log_det(self, r, alpha, beta):
        bh = beta / (alpha + r)
        return ((self.features - 1) * torch.log1p(bh) + torch.log1p(bh - beta * r / (alpha + r) ** 2)).squeeze(-1)

    def forward(self, z, *cond):
        z0, alpha, beta = self._parameters_for(cond)
        diff = z - z0
        r = diff.norm(dim=-1, keepdim=True)
        y = z + beta / (alpha + r) * diff
        return y, self._log_det(r, alpha, beta).expand(z.shape[0])

    def inverse(self, y, *cond):
        z0, alpha, beta = self._parameters_for(cond)
        diff = y - z0
        s = diff.norm(dim=-1, keepdim=True)
        c = alpha + beta - s
        root = torch.sqrt(c * c + 4 * alpha * s)
        # the positive root of r^2 + c r - alpha s, in the form that does not cancel for either sign of c
        r = torch.where(c > 0, 2 * alpha * s / (c + root), (root - c) / 2)
        z = z0 + diff / (1 + beta / (alpha + r))
        return z, -self._log_det(r, alpha, beta).expand(y.shape[0])

