r"""Normalizing flows: :class:`Flow` pushes a base distribution through layers, with the density by change of
variables, and the layers researchers use, each a ``torch.nn.Module`` with its log-determinant.

- :class:`Flow` (``direction="forward"`` for variational inference, ``"inverse"`` for density estimation);
- :class:`Planar`, :class:`Radial` (Rezende & Mohamed 2015);
- :class:`AffineCoupling` (RealNVP) with ``"half"``, ``"alternating"``, ``"checkerboard"``, ``"channel"`` masks;
- :class:`Permutation`, :class:`Reverse`, :class:`Shuffle`; :class:`InvertibleConv1x1` (Glow);
- :class:`BatchNormFlow`, :class:`ActNorm`; :class:`Squeeze`, :class:`Unsqueeze`, :class:`Flatten`;
- :class:`FactorOut` (the multi-scale architecture of RealNVP and Glow: channels leave the flow, scored by a prior);
- :class:`Logit` (dequantization and RealNVP's logit) and :func:`bits_per_dim`;
- :class:`Layer` to write one, :class:`TransformLayer` to use a ``torch.distributions`` transform.
"""
from ._layer import Layer, TransformLayer
from .conv1x1 import InvertibleConv1x1
from .coupling import AffineCoupling, make_mask
from .factor_out import FactorOut
from .flow import Flow
from .logit import Logit, bits_per_dim
from .normalization import ActNorm, BatchNormFlow
from .permutation import Permutation, Reverse, Shuffle
from .planar import Planar
from .radial import Radial
from .shapes import Flatten, Squeeze, Unsqueeze

__all__ = ["Flow", "Layer", "TransformLayer", "Planar", "Radial", "AffineCoupling", "make_mask", "Permutation",
           "Reverse", "Shuffle", "InvertibleConv1x1", "BatchNormFlow", "ActNorm", "Squeeze", "Unsqueeze",
           "Flatten", "FactorOut", "Logit", "bits_per_dim"]
