r"""Affine coupling (RealNVP, Dinh et al. 2017) with its masks: half / alternating for vectors, checkerboard /
channel for images ``(C, H, W)``."""
from __future__ import annotations

import torch
from torch import nn

from ._layer import Layer

VECTOR_MASKS, IMAGE_MASKS = ("half", "alternating"), ("checkerboard", "channel")


def make_mask(kind, shape, parity=0):
    """A 0/1 mask of event ``shape`` (ones: the part kept and conditioned on); ``parity=1`` flips it.

    ``"half"``: the first ``D // 2`` features; ``"alternating"``: the even features; ``"checkerboard"``:
    pixels with even ``i + j``, in every channel; ``"channel"``: the first ``C // 2`` channels.
    """
    if kind == "half":
        mask = (torch.arange(shape[0]) < shape[0] // 2)
    elif kind == "alternating":
        mask = torch.arange(shape[0]) % 2 == 0
    elif kind == "checkerboard":
        c, h, w = shape
        mask = ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 == 0).expand(c, h, w)
    elif kind == "channel":
        mask = (torch.arange(shape[0]) < shape[0] // 2)[:, None, None].expand(shape)
    else:
        raise ValueError(f"unknown mask {kind!r}")
    mask = mask.to(torch.get_default_dtype())
    return 1 - mask if parity else mask


class _MLP(nn.Module):
    """The default network of a coupling on vectors: the kept features (and the conditions) -> 2 D."""

    def __init__(self, features, cond_features, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features + cond_features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2 * features))
        nn.init.zeros_(self.net[-1].weight)  # starts as the identity map
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x, *cond):
        return self.net(torch.cat([x, *(c.reshape(c.shape[0], -1) for c in cond)], -1))


class _CNN(nn.Module):
    """The default network of a coupling on images: conv 3x3, conv 1x1, conv 3x3 to 2 C channels; vector
    conditions are broadcast over the pixels as extra channels."""

    def __init__(self, channels, cond_features, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels + cond_features, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 2 * channels, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x, *cond):
        extra = [c.reshape(c.shape[0], -1, 1, 1).expand(-1, -1, *x.shape[2:]) for c in cond]
        return self.net(torch.cat([x, *extra], 1))


class AffineCoupling(Layer):
    r"""Affine coupling (RealNVP): with a 0/1 mask :math:`m` (ones: kept),

    :math:`y = m \odot x + (1 - m) \odot \left(x \odot e^{s(m \odot x)} + t(m \odot x)\right)`,
    :math:`\log|\det \partial y/\partial x| = \sum (1 - m) \odot s(m \odot x)`, and the inverse
    :math:`x = m \odot y + (1 - m) \odot (y - t(m \odot y)) \odot e^{-s(m \odot y)}`.
    The log-scale is soft-clamped, :math:`s = c \tanh(\tilde s / c)` (``clamp=c``; ``None``: :math:`s = \tilde s`).

    Args:
        features: D for vectors, or ``(C, H, W)`` for images.
        mask: ``"half"`` or ``"alternating"`` (vectors), ``"checkerboard"`` or ``"channel"`` (images), or a 0/1
            tensor of the event shape; stack couplings with ``parity=0`` and ``1`` so every element changes.
        parity: 1 flips the mask.
        net: ``net(m * x, *cond)`` returning ``(s, t)``, or one tensor of twice the channels (dim 1) split into
            them; by default an MLP (vectors) or a small CNN (images) whose last layer starts at zero (identity).
        hidden: the width of the default network.
        cond_var: names of conditioning variables, given to the network after the masked input.
        cond_features: their total size, for the default network (vectors flattened, concatenated).
        clamp: the soft bound on :math:`|s|`.
    """

    def __init__(self, features, mask=None, *, parity=0, net=None, hidden=64, cond_var=None, cond_features=0,
                 clamp=5.0):
        super().__init__(cond_var)
        shape = (int(features),) if isinstance(features, int) else tuple(int(f) for f in features)
        self.event_shape, self.clamp, self.parity = shape, clamp, int(parity)
        image = len(shape) == 3
        if len(shape) not in (1, 3):
            raise ValueError(f"AffineCoupling: features must be D (vectors) or (C, H, W) (images); got {features}.")
        mask = mask if mask is not None else ("checkerboard" if image else "alternating")
        where = f"AffineCoupling({features!r})"
        if isinstance(mask, str):
            allowed = IMAGE_MASKS if image else VECTOR_MASKS
            if mask not in allowed:
                kind = "images (C, H, W)" if image else f"vectors of {shape[0]} features"
                raise ValueError(f"{where}: mask {mask!r} is not one for {kind}; use one of {list(allowed)} or a 0/1 "
                                 f"tensor of shape {shape}.")
            self.mask_kind, mask = mask, make_mask(mask, shape, self.parity)
        else:
            mask = torch.as_tensor(mask)
            if tuple(mask.shape) != shape:
                raise ValueError(f"{where}: its mask has shape {tuple(mask.shape)}, but the layer transforms events "
                                 f"of shape {shape}; give a 0/1 mask of shape {shape}, or one of "
                                 f"{list(IMAGE_MASKS if image else VECTOR_MASKS)}.")
            mask = mask.to(torch.get_default_dtype())
            self.mask_kind = "custom"
            if parity:
                mask = 1 - mask
        if not bool(((mask == 0) | (mask == 1)).all()) or bool((mask == 0).all()) or bool((mask == 1).all()):
            raise ValueError(f"{where}: its mask must be 0/1 with both values, so that one part conditions the "
                             f"other; got {mask.flatten()[:8].tolist()}...")
        self.register_buffer("mask", mask)
        if net is None:
            net = _CNN(shape[0], cond_features, hidden) if image else _MLP(shape[0], cond_features, hidden)
        self.net = net

    def _scale_shift(self, kept, cond):
        out = self.net(kept, *cond)
        s, t = out if isinstance(out, (tuple, list)) else out.chunk(2, 1)
        if s.shape != kept.shape or t.shape != kept.shape:
            raise ValueError(f"{self.describe()}: its network must return (s, t) of the input's shape "
                             f"{tuple(kept.shape)} (or one tensor of twice the channels); got "
                             f"{tuple(s.shape)} and {tuple(t.shape)}.")
        if self.clamp is not None:
            s = self.clamp * torch.tanh(s / self.clamp)
        free = 1 - self.mask
        return s * free, t * free

    def forward(self, x, *cond):
        s, t = self._scale_shift(x * self.mask, cond)
        return x * torch.exp(s) + t, s.reshape(x.shape[0], -1).sum(1)

    def inverse(self, y, *cond):
        s, t = self._scale_shift(y * self.mask, cond)
        return (y - t) * torch.exp(-s), -s.reshape(y.shape[0], -1).sum(1)

    def shape_error(self, shape):
        if tuple(shape) == self.event_shape:
            return None
        size = self.event_shape[0] if len(self.event_shape) == 1 else self.event_shape
        fits = (f"AffineCoupling({shape[0] if len(shape) == 1 else tuple(shape)}, mask={self.mask_kind!r})"
                if len(shape) in (1, 3) and self.mask_kind != "custom" else None)
        return f"takes events of shape {self.event_shape} (features={size})", fits

    def input_shape(self):
        return self.event_shape

    def extra_repr(self) -> str:
        size = self.event_shape[0] if len(self.event_shape) == 1 else self.event_shape
        text = f"{size}, mask={self.mask_kind!r}, parity={self.parity}"
        return text + (f", cond_var={self.cond_var}" if self.cond_var else "")

