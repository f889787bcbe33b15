"""Checks of the values a user hands to every layer of pgm: sample shapes and Parameter values."""
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
