"""Checks of the values a user hands to every layer of pgm (sample shapes, Parameter values), and shapes broadcast
together."""
from __future__ import annotations

import torch


def as_shape(sample_shape):
    """``sample_shape`` as a tuple: an int K is ``(K,)`` (1 is ``()``, one draw), a sequence is itself."""
    if isinstance(sample_shape, int):
        if sample_shape < 1:
            raise ValueError(f"sample_shape must be at least 1; got {sample_shape}.")
        return () if sample_shape == 1 else (sample_shape,)
    return tuple(sample_shape)


def check_parameter_values(params, where):
    """Each value given for a :class:`~pgm.losses.Parameter` is a number or a tensor."""
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
            raise TypeError(f"{where}: Parameter {name!r} takes a number or a tensor; got {type(value).__name__} "
                            f"{value!r}.")


def broadcast_shapes(*shapes):
    """``torch.broadcast_shapes`` of shapes (tuples of ints), computed in a few Python operations where torch's costs
    some twenty microseconds a call (an evaluation calls it per term); a mismatch raises torch's RuntimeError."""
    ndim = max(map(len, shapes), default=0)
    out = [1] * ndim
    for shape in shapes:
        offset = ndim - len(shape)
        for i, size in enumerate(shape):
            if size != 1:
                j = offset + i
                if out[j] == 1:
                    out[j] = size
                elif out[j] != size:
                    return torch.broadcast_shapes(*shapes)  # raises its own message
    return torch.Size(out)
