r"""The interface of one step of a flow, and a layer made from a ``torch.distributions`` transform.

A layer maps a batch ``x`` of shape ``(N, *event)`` (one batch dim: the flow flattens sample and batch dims
into it) to ``y = f(x)`` and returns ``(y, log_det)`` with ``log_det[n]`` :math:`= \log|\det \partial y_n /
\partial x_n|`; ``inverse(y)`` returns ``(x, log|det dx/dy|)``, i.e. minus the forward's at ``x``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.distributions.transforms import Transform


def sum_per_example(t, n):
    """``t`` broadcast to a leading dim of ``n`` and summed over every other dim: ``(n,)``."""
    t = t.reshape(t.shape[0], -1).sum(1) if t.dim() > 1 else t
    return t.expand(n) if t.dim() == 0 or t.shape[0] != n else t


def as_names(cond_var):
    """``None``, ``"x"`` or ``["x", "w"]`` as a list of names."""
    if cond_var is None:
        return []
    return [cond_var] if isinstance(cond_var, str) else list(cond_var)


class Layer(nn.Module):
    r"""One step :math:`y = f(x)` of a normalizing flow with its :math:`\log|\det \partial y / \partial x|`.

    Subclasses implement ``forward(x, *cond) -> (y, log_det)`` and, where :math:`f` has an inverse,
    ``inverse(y, *cond) -> (x, log_det)`` with :math:`\log|\det \partial x / \partial y|`; ``x`` is
    ``(N, *event)`` and ``log_det`` ``(N,)``. ``cond`` are the values of the layer's conditioning variables
    ``cond_var`` (named, taken from the flow's inputs), each ``(N, *their event)``.

    Shape-changing layers override ``out_shape`` / ``in_shape`` (event shapes); a layer built for one event
    shape says what it takes in ``shape_error``, which the flow turns into an error naming the layer.

    A layer that ``factors_out`` part of its input (:class:`FactorOut`) returns, in place of ``log_det``, the
    log-density of that part under its ``prior``; only a density-estimation flow may hold it.
    """

    has_inverse = True
    factors_out = False

    def __init__(self, cond_var=None):
        super().__init__()
        self.cond_var = as_names(cond_var)

    def inverse(self, y, *cond):
        raise NotImplementedError(f"{type(self).__name__} has no inverse.")

    def out_shape(self, shape):
        """The event shape of the output for an input of event shape ``shape``."""
        return tuple(shape)

    def in_shape(self, shape):
        """The event shape of the input for an output of event shape ``shape``."""
        return tuple(shape)

    def shape_error(self, shape):
        """``None`` if the layer takes events of ``shape``; else ``(what it takes, a layer that would fit)``."""
        return None

    def input_shape(self):
        """The one event shape the layer takes, if it is built for one (``None``: several)."""
        return None

    def describe(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def vector_shape_error(layer, features, shape, example):
    """The shape check of a layer of vectors of ``features`` elements; ``example(d)`` builds one for ``d``."""
    if tuple(shape) == (features,):
        return None
    fits = example(shape[0]) if len(shape) == 1 else None
    return f"takes vectors of {features} features (event shape ({features},))", fits


def channels_shape_error(layer, channels, shape, example):
    """The shape check of a layer acting on dim 1 (vector features or image channels) of ``channels``."""
    if len(shape) >= 1 and shape[0] == channels:
        return None
    fits = example(shape[0]) if len(shape) >= 1 else None
    return f"takes events with {channels} features or channels (event shape ({channels}, ...))", fits


def apply_transform(t, x):
    """``(t(x), log|det| per example)`` for a torch transform ``t`` and ``x`` of shape ``(N, *event)``."""
    y = t(x)
    ld = t.log_abs_det_jacobian(x, y)
    # elementwise (event_dim 0): to x's shape; else to the batch dims x has beyond the transform's event
    ld = torch.broadcast_to(ld, x.shape[: x.dim() - t.domain.event_dim])
    return y, sum_per_example(ld, x.shape[0])


class TransformLayer(Layer):
    r"""A layer made from a ``torch.distributions.transforms.Transform`` without learned parameters.

    :math:`y = t(x)` and :math:`\log|\det \partial y/\partial x|` summed over the event dims; the inverse is
    ``t.inv`` where ``t.bijective``. An elementwise transform's log-derivative is broadcast to the input's
    shape before summing (torch's own ``event_dim`` reduction undercounts a broadcast parameter), so e.g.
    ``TransformLayer(TanhTransform())`` or ``TransformLayer(AffineTransform(0.0, 2.0))`` are exact.

    >>> from torch.distributions.transforms import AffineTransform
    >>> y, log_det = TransformLayer(AffineTransform(1.0, 2.0))(torch.zeros(3, 4))
    >>> y[0].tolist(), round(log_det[0].item(), 4)  # 4 log 2
    ([1.0, 1.0, 1.0, 1.0], 2.7726)
    """

    def __init__(self, transform, cond_var=None):
        super().__init__(cond_var)
        if not isinstance(transform, Transform):
            raise TypeError(f"TransformLayer takes a torch.distributions.transforms.Transform; got "
                            f"{type(transform).__name__}.")
        self.transform = transform
        self.has_inverse = bool(transform.bijective)

    def forward(self, x, *cond):
        return apply_transform(self.transform, x)

    def inverse(self, y, *cond):
        if not self.has_inverse:
            raise NotImplementedError(f"{self.describe()} is not bijective.")
        return apply_transform(self.transform.inv, y)

    def out_shape(self, shape):
        return tuple(self.transform.forward_shape(tuple(shape)))

    def in_shape(self, shape):
        return tuple(self.transform.inverse_shape(tuple(shape)))

    def extra_repr(self) -> str:
        return type(self.transform).__name__

