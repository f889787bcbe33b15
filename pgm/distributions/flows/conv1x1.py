r"""The invertible 1x1 convolution of Glow (Kingma & Dhariwal 2018), plain or LU-decomposed."""
from __future__ import annotations

import torch
from torch import nn

from ._layer import Layer, channels_shape_error


class InvertibleConv1x1(Layer):
    r"""Glow's invertible 1x1 convolution :math:`y_{:,h,w} = W x_{:,h,w}` with a learned :math:`C \times C`
    matrix, for images ``(C, H, W)`` (or vectors ``(C,)``: a learned invertible linear map).

    :math:`\log|\det \partial y/\partial x| = H W \log|\det W|`. ``lu=False``: :math:`W` is a parameter and
    :math:`\log|\det W|` comes from ``slogdet``; ``lu=True`` (the default): :math:`W = P L (U + \mathrm{diag}(
    \sigma \odot e^{v}))` with a fixed permutation :math:`P`, unit-lower :math:`L`, strictly upper :math:`U`,
    fixed signs :math:`\sigma`, and :math:`\log|\det W| = \sum v`. :math:`W` starts as a random rotation.

    Args:
        channels: C.
        lu: the LU parametrization (cheaper log-determinant and inverse).
    """

    def __init__(self, channels, lu=True):
        super().__init__()
        self.channels, self.lu = int(channels), bool(lu)
        w = torch.linalg.qr(torch.randn(self.channels, self.channels))[0]
        if not self.lu:
            self.weight = nn.Parameter(w)
            return
        p, lower, upper = torch.linalg.lu(w)
        diag = upper.diagonal()
        self.register_buffer("p", p)
        self.register_buffer("sign", diag.sign())
        self.register_buffer("lower_mask", torch.tril(torch.ones_like(w), -1))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_scale = nn.Parameter(diag.abs().log())

    def _factors(self):
        eye = torch.eye(self.channels, dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * self.log_scale.exp())
        return lower, upper

    def matrix(self):
        """:math:`W`, ``(C, C)``."""
        if not self.lu:
            return self.weight
        lower, upper = self._factors()
        return self.p @ lower @ upper

    def _log_abs_det(self):
        return self.log_scale.sum() if self.lu else torch.linalg.slogdet(self.weight)[1]

    @staticmethod
    def _mix(matrix, x):
        return torch.einsum("ij,nj...->ni...", matrix, x)

    def forward(self, x, *cond):
        pixels = x[0, 0].numel()
        return self._mix(self.matrix(), x), (pixels * self._log_abs_det()).expand(x.shape[0])

    def inverse(self, y, *cond):
        if self.lu:  # W^{-1} = U^{-1} L^{-1} P^T by triangular solves
            lower, upper = self._factors()
            eye = torch.eye(self.channels, dtype=lower.dtype, device=lower.device)
            inv_lower = torch.linalg.solve_triangular(lower, eye, upper=False, unitriangular=True)
            inverse = torch.linalg.solve_triangular(upper, inv_lower, upper=True) @ self.p.T
        else:
            inverse = torch.linalg.inv(self.weight)
        pixels = y[0, 0].numel()
        return self._mix(inverse, y), (-pixels * self._log_abs_det()).expand(y.shape[0])

    def shape_error(self, shape):
        return channels_shape_error(self, self.channels, shape, lambda c: f"InvertibleConv1x1({c})")

    def extra_repr(self) -> str:
        return f"{self.channels}, lu={self.lu}"
