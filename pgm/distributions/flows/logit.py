r"""Image pre-processing of RealNVP: uniform dequantization and the logit of a squashed value, with its
log-determinant, so that a flow's log-likelihood gives bits per dimension."""
from __future__ import annotations

import math

import torch
from torch.distributions.transforms import AffineTransform, ComposeTransform, SigmoidTransform

from ._layer import Layer, apply_transform


class Logit(Layer):
    r"""Pixels to the real line (RealNVP, Dinh et al. 2017): for pixel values :math:`x \in \{0, \dots, L-1\}`,

    :math:`y = \mathrm{logit}\left(\alpha + (1 - 2\alpha)\, \frac{x + u}{L}\right)`, :math:`u \sim U[0, 1)^D`
    (dequantization, ``dequantize=True``), and :math:`\log|\det \partial y/\partial x| = \sum_i \left[\log
    \frac{1 - 2\alpha}{L} - \log p_i - \log(1 - p_i)\right]` with :math:`p = \alpha + (1-2\alpha)(x+u)/L`.
    Put first in a ``Flow(..., direction="inverse")``, the flow's log-likelihood is that of the dequantized
    data :math:`x + u` on :math:`[0, L)^D`, a lower bound on the discrete one in expectation; see
    :func:`bits_per_dim`. Built on torch's ``AffineTransform`` and ``SigmoidTransform().inv``.

    The inverse (sampling) is the exact inverse :math:`x = L\,(\sigma(y) - \alpha) / (1 - 2\alpha)`, without
    noise, clamped to the data range: :math:`[0, L)` with ``dequantize=True`` (the largest float below
    :math:`L` at the top, so that ``floor`` gives a pixel value), :math:`[0, L]` without. The forward map
    takes :math:`[0, L]` onto :math:`[\mathrm{logit}\,\alpha, \mathrm{logit}(1 - \alpha)]` only, so a
    base draw :math:`y` beyond that interval (or rounding at its ends) would invert to a value outside the
    data range (down to :math:`-L\alpha/(1-2\alpha)`, up to :math:`L(1-\alpha)/(1-2\alpha)`); the clamp puts
    it on the nearest bound. The inverse's log-determinant is that of the unclamped map at ``y``.

    Args:
        alpha: the squashing away from 0 and 1 (RealNVP: 0.05).
        levels: L, the number of pixel values (256); ``levels=1`` for data already in :math:`[0, 1]`.
        dequantize: add uniform noise :math:`u` before the map (turn off for continuous data).
    """

    def __init__(self, alpha=0.05, levels=256, dequantize=True):
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise ValueError(f"Logit: alpha must be in [0, 0.5); got {alpha}.")
        self.alpha, self.levels, self.dequantize = float(alpha), levels, bool(dequantize)
        self.transform = ComposeTransform([AffineTransform(self.alpha, (1 - 2 * self.alpha) / levels),
                                           SigmoidTransform().inv])

    def forward(self, x, *cond):
        if self.dequantize:
            x = x + torch.rand_like(x)
        return apply_transform(self.transform, x)

    def inverse(self, y, *cond):
        x, log_det = apply_transform(self.transform.inv, y)
        top = torch.tensor(float(self.levels), dtype=x.dtype, device=x.device)
        if self.dequantize:  # dequantized pixels lie in [0, L): the float just below L
            top = torch.nextafter(top, torch.zeros_like(top))
        return torch.clamp(x, min=torch.zeros_like(top), max=top), log_det

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, levels={self.levels}, dequantize={self.dequantize}"


def bits_per_dim(log_prob, event_shape):
    r"""Bits per dimension :math:`-\log p(x) / (D \log 2)` of a log-likelihood (in nats) of events of
    ``event_shape`` (:math:`D` their size), e.g. of a flow whose first layer is :class:`Logit` (pixels in
    :math:`[0, 256)`, so that the figure is the usual one).

    >>> round(bits_per_dim(torch.tensor(-3 * 32 * 32 * math.log(256.0)), (3, 32, 32)).item(), 4)
    8.0
    """
    size = math.prod(event_shape) if not isinstance(event_shape, int) else event_shape
    return -log_prob / (size * math.log(2.0))
