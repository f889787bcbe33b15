r"""Layers that only change the shape of an event (log-determinant 0): Squeeze, Unsqueeze, Flatten."""
from __future__ import annotations

import math

from torch.distributions.transforms import ReshapeTransform

from ._layer import Layer, TransformLayer


def _squeeze(x, f):
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // f, f, w // f, f).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, c * f * f, h // f, w // f)


def _unsqueeze(x, f):
    n, c, h, w = x.shape
    x = x.reshape(n, c // (f * f), f, f, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // (f * f), h * f, w * f)


class Squeeze(Layer):
    r"""RealNVP's squeeze: ``(C, H, W) -> (C f^2, H/f, W/f)``, each ``f x f`` block of pixels to channels;
    :math:`\log|\det| = 0`. Its inverse is :class:`Unsqueeze`."""

    def __init__(self, factor=2):
        super().__init__()
        self.factor = int(factor)

    def forward(self, x, *cond):
        return _squeeze(x, self.factor), x.new_zeros(x.shape[0])

    def inverse(self, y, *cond):
        return _unsqueeze(y, self.factor), y.new_zeros(y.shape[0])

    def out_shape(self, shape):
        c, h, w = shape
        return (c * self.factor ** 2, h // self.factor, w // self.factor)

    def in_shape(self, shape):
        c, h, w = shape
        return (c // self.factor ** 2, h * self.factor, w * self.factor)

    def shape_error(self, shape):
        f = self.factor
        if len(shape) == 3 and shape[1] % f == 0 and shape[2] % f == 0:
            return None
        return f"takes images (C, H, W) with H and W divisible by {f}", None

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class Unsqueeze(Squeeze):
    r"""The inverse of :class:`Squeeze`: ``(C, H, W) -> (C/f^2, H f, W f)``; :math:`\log|\det| = 0`."""

    def forward(self, x, *cond):
        return Squeeze.inverse(self, x)

    def inverse(self, y, *cond):
        return Squeeze.forward(self, y)

    def out_shape(self, shape):
        return Squeeze.in_shape(self, shape)

    def in_shape(self, shape):
        return Squeeze.out_shape(self, shape)

    def shape_error(self, shape):
        if len(shape) == 3 and shape[0] % self.factor ** 2 == 0:
            return None
        return f"takes images (C, H, W) with C divisible by {self.factor ** 2}", None


class Flatten(TransformLayer):
    r"""An event of ``shape`` (e.g. ``(C, H, W)``) to a vector of ``prod(shape)`` features and back, through
    torch's ``ReshapeTransform``; :math:`\log|\det| = 0`.

    Args:
        shape: the event shape of its input (needed to unflatten a value it did not flatten).
    """

    def __init__(self, shape):
        shape = tuple(int(s) for s in shape)
        super().__init__(ReshapeTransform(shape, (math.prod(shape),)))
        self.shape = shape

    def shape_error(self, shape):
        return None if tuple(shape) == self.shape else (f"takes events of shape {self.shape}",
                                                        f"Flatten({tuple(shape)})")

    def input_shape(self):
        return self.shape

    def extra_repr(self) -> str:
        return f"{self.shape}"
