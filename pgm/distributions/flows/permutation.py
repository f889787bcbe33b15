r"""Fixed permutations of the features (vectors) or channels (images): log-determinant 0."""
from __future__ import annotations

import torch

from ._layer import Layer, channels_shape_error


class Permutation(Layer):
    r""":math:`y_i = x_{\pi(i)}` along dim 1 of ``(N, *event)`` (the features of a vector, the channels of an
    image); :math:`\log|\det| = 0`, inverse :math:`x = y_{\pi^{-1}}`. The permutation is a buffer (saved).

    Args:
        permutation: a permutation of ``range(D)``.
    """

    def __init__(self, permutation):
        super().__init__()
        perm = torch.as_tensor(permutation, dtype=torch.long)
        if perm.dim() != 1 or not torch.equal(perm.sort().values, torch.arange(len(perm))):
            raise ValueError(f"{type(self).__name__}: {perm.tolist()} is not a permutation of range({len(perm)}).")
        self.register_buffer("permutation", perm)
        self.register_buffer("inverse_permutation", perm.argsort())

    def forward(self, x, *cond):
        return x.index_select(1, self.permutation), x.new_zeros(x.shape[0])

    def inverse(self, y, *cond):
        return y.index_select(1, self.inverse_permutation), y.new_zeros(y.shape[0])

    def shape_error(self, shape):
        return channels_shape_error(self, len(self.permutation), shape, lambda d: f"{type(self).__name__}({d})")

    def extra_repr(self) -> str:
        return f"{len(self.permutation)}"


class Reverse(Layer):
    r""":math:`y_i = x_{D-1-i}` along dim 1 (features or channels), for any size; :math:`\log|\det| = 0`."""

    def forward(self, x, *cond):
        return x.flip(1), x.new_zeros(x.shape[0])

    def inverse(self, y, *cond):
        return y.flip(1), y.new_zeros(y.shape[0])

    def shape_error(self, shape):
        return None if len(shape) >= 1 else ("takes events of at least one dim", None)


class Shuffle(Permutation):
    r"""A fixed random permutation of D features or channels, drawn once at construction (from ``generator``
    or torch's global generator) and kept as a buffer; :math:`\log|\det| = 0`."""

    def __init__(self, features, generator=None):
        super().__init__(torch.randperm(int(features), generator=generator))
