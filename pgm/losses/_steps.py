"""The steps of a :class:`~pgm.losses.Sum`, read from its inputs: how many there are, which are real (``mask``,
``length``), what the carried variables start from, and the context each step is evaluated in. Shared by the
unrolled steps (``_unroll``) and the forward algorithm (``_forward_algorithm``).
"""
from __future__ import annotations

import torch

from .._capture import capturing
from .._errors import MissingInputError
from ..distributions import validation_enabled


def length(loss, context):
    """The number of steps T: the series' length along their time axis, or ``steps=``."""
    where = f"Sum over {loss.over}"
    lengths = {}
    for name in loss.series:
        value = context.values.get(name)
        if value is None:
            raise MissingInputError(f"{where} reads the series `{name}` step by step; pass it as an input of "
                                    f"shape (batch, T, ...).")
        n = context.lead[name]
        if value.dim() <= n:
            raise ValueError(f"{where}: the series `{name}` needs a time axis after the batch dim, shape "
                             f"(batch, T, ...); got shape {tuple(value.shape)}.")
        lengths[name] = value.shape[n]
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"`{k}` has {v}" for k, v in lengths.items())
        raise ValueError(
            f"{where}: the series are of unequal lengths ({listed} steps along dim 1). Pad them to a common "
            f"length T (e.g. torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True)) and say which steps "
            f"are real: mask='mask' with an input (batch, T) true at the real steps, or length='length' with "
            f"an input (batch,) of lengths."
        )
    if loss.steps is not None and lengths and loss.steps != next(iter(lengths.values())):
        raise ValueError(f"{where}: steps={loss.steps} but the series have {next(iter(lengths.values()))} steps; "
                         f"leave steps out to read T from the series.")
    steps = loss.steps if loss.steps is not None else next(iter(lengths.values()))
    if steps == 0:
        raise ValueError(f"{where}: the series {loss.series} have no steps (T = 0 along dim 1); give sequences of "
                         f"at least one step (pad an empty one and mask it out).")
    return steps


def step_mask(loss, context, steps):
    """``(batch, T)`` booleans, or None without mask or length."""
    where = f"Sum over {loss.over}"
    name = loss.mask or loss.length
    if name is None:
        return None
    value = context.values.get(name)
    if value is None:
        kind = "mask (batch, T), true at the real steps" if loss.mask else "length (batch,) of sequence lengths"
        raise MissingInputError(f"{where}: pass the input `{name}`, its {kind}; got {sorted(context.values)}.")
    n = context.lead[name]
    if loss.length is not None:
        if value.dim() != n or value.is_floating_point():
            raise ValueError(f"{where}: length `{name}` must hold one integer per sequence, shape (batch,); got "
                             f"{value.dtype} of shape {tuple(value.shape)}.")
        # checked where it costs no wait for the device: on the first step, or with the lengths on the CPU
        # (never while a CUDA graph is captured, nor on a deferred step's device tensor)
        check = validation_enabled() or value.device.type == "cpu"
        if check and not capturing() and bool(((value < 0) | (value > steps)).any()):
            raise ValueError(f"{where}: length `{name}` must lie in [0, {steps}] (T = {steps} steps); got values "
                             f"from {int(value.min())} to {int(value.max())}.")
        return torch.arange(steps, device=value.device) < value.unsqueeze(-1)
    if value.dim() != n + 1 or value.shape[n] != steps:
        raise ValueError(f"{where}: mask `{name}` must be (batch, T) = (batch, {steps}), true at the real steps; "
                         f"got shape {tuple(value.shape)}.")
    return value if value.dtype == torch.bool else value != 0


def initial_values(loss, context):
    """The carried values at the first step, ``{carried name: (value, leading dims)}``."""
    values = {}
    for name in loss.carry:
        if name in loss._initial_names:
            source = loss._initial_names[name]
            values[name] = context.values[source], context.lead[source]
        elif hasattr(loss.initial, name):
            value = getattr(loss.initial, name)
            # the data's floating dtype (a mask or lengths given first have none)
            like = next((v for v in context.values.values() if v.is_floating_point()),
                        next(iter(context.values.values()), None))
            if like is not None and (value.device != like.device or
                                     (like.is_floating_point() and value.dtype != like.dtype)):
                value = value.to(like.device, like.dtype if like.is_floating_point() else value.dtype)
            shape = context.lead_shape
            values[name] = value.expand(shape + value.shape), len(shape)
        elif name in context.values:
            values[name] = context.values[name], context.lead[name]
        else:
            raise MissingInputError(
                f"Sum over {loss.over}: the carried `{name}` takes `{loss._source(name)}` from the previous step, "
                f"so the first step needs its initial value; pass it as the input `{name}` (batch, ...), or set "
                f"initial={{'{name}': torch.zeros(...)}} (an nn.Parameter to learn it)."
            )
    return values


def series_slices(loss, context):
    """Each series at every step, ``{name: (x_1, ..., x_T)}``: sliced once, by one ``unbind`` per series, whose
    backward pass is one stack of the steps' gradients (a slice taken per step would write its gradient into a
    zero-filled copy of the whole series, once per step)."""
    return {name: context.values[name].unbind(context.lead[name]) for name in loss.series}


def step_context(context, t, slices, carried):
    """The context of step t: the series at t (``slices``, from :func:`series_slices`), the carried values, and a
    cache of the step's own (it draws afresh)."""
    values = {name: steps[t] for name, steps in slices.items()}
    lead = {}
    for name, (value, n) in carried.items():
        values[name], lead[name] = value, n
    return context.afresh(values, lead)


def padding_may_lead(loss, mask):
    """Whether a padded step may come before a real one, so that the carried state must be held through it
    (:func:`hold`). Not with ``length=`` (the real steps come first), nor with a mask on the CPU whose real steps
    come first (read where it costs no wait for the device: never on a GPU, while a CUDA graph is captured or
    while torch.compile traces the step)."""
    if mask is None or loss.length is not None:
        return False
    if mask.device.type != "cpu" or capturing():  # capturing: also while Dynamo traces
        return True
    return bool((mask[..., 1:] > mask[..., :-1]).any())  # a real step right after a padded one


def hold(new, old, real):
    """``new`` carried values where the step is real (``real``: (batch,)), ``old`` where it is padding: a masked
    step leaves the state as it was."""
    held = {}
    for name, (value, lead) in new.items():
        before, before_lead = old[name]
        shape = real.shape + (1,) * (value.dim() - lead)
        held[name] = torch.where(real.reshape(shape), value, before), max(lead, before_lead)
    return held
