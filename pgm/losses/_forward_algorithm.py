r"""A discrete state summed out of a :class:`~pgm.losses.Sum` by the forward algorithm, and decoded.

``Sum(step, ..., marginalize="y")`` is :math:`\log \sum_{y_{1:T}} \exp \sum_t f_t(y_t, y_{t-1})` with
:math:`f_t` the step's value. Nothing in the step but the series (and a series carried, ``x_prev``) depends on t,
so the step is not evaluated step by step: it is evaluated on a grid ``(steps, K, P, *lead)`` of every step at
once, the K values of :math:`y_t` along dim 1 and the P candidates of :math:`y_{t-1}` along dim 2, the series
entering time first (``x`` as ``(T, 1, 1, *lead, *event)``). A factor reads only the axes of its inputs: the
emission :math:`p(x_t|y_t)` is computed once per step and value, the transition :math:`p(y_t|y_{t-1})` once
for every step. Without a mask two grids suffice, the first step from the initial value (P = 1) and the others
from the K values (P = K, not repeated per example); with one, a single grid of the K + 1 candidates. The
recursion is then a loop of two tensor operations per step, with no Python work of the step's inside it:

    :math:`\alpha_t(j) = \log \sum_k \exp(\alpha_{t-1}(k) + f_t(j, k))`.

:func:`posterior` differentiates the result with respect to a zero added to every :math:`f_t(j, \cdot)`
(forward-backward), :func:`most_probable` takes maxima instead of sums and follows the pointers back (Viterbi).
"""
from __future__ import annotations

import torch

from .._errors import TooManyConfigurationsError
from .._scope import one_per_value
from .._values import broadcast_shapes
from ._steps import initial_values, length, step_mask


def log_likelihood(loss, context):
    """``log sum_y exp sum_t f_t``, ``(*lead,)``."""
    return log_sum_exp(forward(loss, context)[0], 0)


def posterior(loss, context):
    """The smoothed mean of the state at every step, ``(*lead, T, *event)``, 0 at padded steps."""
    with torch.enable_grad():
        probe = []
        alpha, support = forward(loss, context, probe=probe)
        marginals, = torch.autograd.grad(log_sum_exp(alpha, 0).sum(), probe)  # (T, K, *lead): p(y_t = k|x)
    lead = len(context.lead_shape)
    event = support.shape[1 + lead:]
    means = (marginals.reshape(marginals.shape + (1,) * len(event)) * support).sum(1)  # (T, *lead, *event)
    return means.movedim(0, lead).detach()


@torch.no_grad()
def most_probable(loss, context):
    """The values of the most probable path of the state, ``(*lead, T, *event)``, 0 at padded steps."""
    pointers = []
    alpha, support = forward(loss, context, pointers=pointers)
    lead_shape, k = context.lead_shape, support.shape[0]
    event = support.shape[1 + len(lead_shape):]
    mask = step_mask(loss, context, len(pointers))
    values = support.expand((k,) + lead_shape + event)
    state, path = alpha.argmax(0), []  # (*lead): the best last value (the initial one where no step is real)
    for t in reversed(range(len(pointers))):
        index = state.clamp(max=k - 1).reshape((1,) + lead_shape + (1,) * len(event))
        value = values.gather(0, index.expand((1,) + lead_shape + event))[0]
        if mask is not None:  # a padded step holds the state of the real one before it: no value of its own
            value = torch.where(mask[..., t].reshape(mask.shape[:-1] + (1,) * len(event)), value, 0)
        path.append(value)
        state = pointers[t].gather(0, state.unsqueeze(0))[0]  # the previous value on the best path to this one
    return torch.stack(path[::-1], len(lead_shape))


def forward(loss, context, probe=None, pointers=None):
    """The forward recursion over the steps of ``loss`` (a Sum with ``marginalize``).

    ``alpha`` holds, for each candidate of the previous value, the log-sum over the paths so far that end there:
    the K values (after the first step); with a mask, the K values and the initial one throughout (the K never
    reached before a real step, the initial one left at the first), so that a padded step holds alpha wherever it
    is. ``probe``, a list, receives a zero tensor (T, K, *lead) added to every step's values of y_t: the gradient
    of the result with respect to it is the posterior probability of each value of y_t. ``pointers``, a list,
    turns the sums over the previous value into maxima (Viterbi) and receives, per step, the best previous
    candidate of each value (K or, with a mask, K + 1, *lead). Returns the final ``alpha`` (K or K + 1, *lead) and
    the K values, (K, 1, ..., 1, *event)."""
    steps = length(loss, context)
    mask = step_mask(loss, context, steps)
    support, per_step = _step_values(loss, context, steps, mask)  # T tensors (K, P, *lead)
    k, lead_shape = support.shape[0], context.lead_shape
    if probe is not None:
        probe.append(per_step[0].new_zeros((steps, k) + lead_shape, requires_grad=True))
        per_step = [f_t + p.unsqueeze(1) for f_t, p in zip(per_step, probe[0].unbind(0))]
    if mask is None:  # P = 1 at the first step (the initial value), then K (the K values)
        alpha = per_step[0][:, 0]
        if pointers is not None:
            pointers.append(torch.zeros((k,) + lead_shape, dtype=torch.long, device=alpha.device))
        for f_t in per_step[1:]:
            if pointers is None:
                alpha = torch.logsumexp(alpha + f_t, 1)
            else:
                alpha, best = (alpha + f_t).max(1)
                pointers.append(best)
        return alpha, support
    # P = K + 1 at every step: the K values first, never reached before a real step, then the initial value
    alpha = torch.cat([support.new_full((k,) + lead_shape, float("-inf")), support.new_zeros((1,) + lead_shape)])
    unreached = alpha[:1]
    if pointers is not None:  # a padded step leaves every candidate where it was
        stay = torch.arange(k + 1, device=alpha.device).reshape((k + 1,) + (1,) * len(lead_shape))
    for f_t, real in zip(per_step, mask.movedim(-1, 0).unbind(0)):
        if pointers is None:
            new = torch.logsumexp(alpha + f_t, 1)
        else:
            new, best = (alpha + f_t).max(1)
            pointers.append(torch.where(real, torch.cat([best, best.new_full((1,) + lead_shape, k)]), stay))
        alpha = torch.where(real, torch.cat([new, unreached]), alpha)
    return alpha, support


def _step_values(loss, context, steps, mask):
    """The K values of the state, (K, 1, ..., 1, *event), and the step's value at every step t for every value j
    of the state and every candidate k of the previous one: T tensors ``f_t[j, k]``, ``(K, P, *lead)``.

    The candidates are the initial value and the K values: without a mask, the initial one alone at the first
    step (P = 1) and the K values after it (P = K, the same for every example), in two grids; with a mask, all
    K + 1 at every step, in one grid. A state not carried has P = 1 throughout, in one grid. The grids share one
    cache, and the values of the state are one tensor: a factor of the state alone (the emission's network) runs
    once for both, and the support is enumerated on the first grid's inputs (the transition's network once)."""
    prev, lead_shape = loss._marginal_carry, context.lead_shape
    n = len(lead_shape)
    carried = initial_values(loss, context)
    series = {name: _time_first(context.values[name], context.lead[name], n) for name in loss.series}
    series.update({name: _carried_series(context, source, carried[name], mask, n)
                   for name, source in loss.carry.items() if name != prev})  # x_prev <- x
    first = {name: value[:1] for name, value in series.items()}  # the first step's inputs
    initial = None
    if prev is not None:
        value, lead = carried[prev]
        initial = value.expand(lead_shape + value.shape[lead:]).reshape((1, 1, 1) + lead_shape + value.shape[lead:])
        first[prev] = initial
    inner = context.afresh({}, {})  # the grids' cache
    support = _support(loss, inner.child(first, dict.fromkeys(first, 3 + n), torch.Size((1, 1, 1) + lead_shape)))
    k, event = support.shape[0], support.shape[1 + n:]
    state = {loss.marginalize: support.reshape((1, k, 1) + (1,) * n + event)}

    def grid(given, p, count):
        """The step's values at ``count`` steps with P = ``p`` candidates of the previous value, floored."""
        given = {**given, **state}
        shape = torch.Size((count, k, p) + lead_shape)
        f = loss.step._eval(inner.child(given, dict.fromkeys(given, len(shape)), shape))
        if not isinstance(f, torch.Tensor):
            f = support.new_full((), f)
        f = f.to(torch.promote_types(f.dtype, support.dtype))
        return _floor(f if f.shape == shape else f.expand(shape), steps)

    if prev is None:
        return support, list(grid(series, 1, steps).unbind(0))
    if mask is not None:
        previous = torch.cat([support.expand((k,) + initial.shape[3:]), initial[0, 0]])  # (K + 1, *lead, *event)
        return support, list(grid({**series, prev: previous.reshape((1, 1) + previous.shape)}, k + 1,
                                  steps).unbind(0))
    per_step = [grid(first, 1, 1)[0]]
    if steps > 1:
        rest = {name: value[1:] for name, value in series.items()}
        rest[prev] = support.reshape((1, 1, k) + (1,) * n + event)
        per_step += grid(rest, k, steps - 1).unbind(0)
    return support, per_step


def _support(loss, context):
    """Every value of the summed-out state, (K, 1, ..., 1, *event), enumerated in ``context`` (the first step's, of
    batch shape (1, 1, 1, *lead)); refused with Sum's advice where too many."""
    try:
        values = loss._enumerator.enumerate_support(context)  # (K, 1, 1, 1, *lead, *event)
    except TooManyConfigurationsError as error:
        raise TooManyConfigurationsError(
            f"Sum over {loss.over}: marginalize={loss.marginalize!r}: {error.count}",
            "the forward algorithm would evaluate the step on every pair of them at each step. Use a state of fewer "
            "values, or sample it (a Sum over E(q, ...), without marginalize).") from None
    lead = len(context.lead_shape)
    values = one_per_value(values, 1 + lead)  # (K, 1, ..., 1, *event)
    return values.reshape(values.shape[:1] + (1,) * (lead - 3) + values.shape[1 + lead:])


class _Floor(torch.autograd.Function):
    """``x.clamp(min=low)`` with its gradient passed through unchanged (no mask to compute in the backward)."""

    @staticmethod
    def forward(ctx, x, low):  # the ctx form: apply binds no signature (inspect) per call
        return x.clamp(min=low)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _floor(f, steps):
    """``f`` with -inf (a value impossible both by its transition and by its emission) raised to a finite number low
    enough that ``steps`` of them still add up to a finite one, so that no sum of the recursion is -inf everywhere
    (its logsumexp would have gradient nan, not 0) and the result is finite. The gradient passes through unchanged
    (no backward pass over ``f``): what reaches a raised value is that of a term about the lowest finite number
    below the others, 0; only a sequence impossible along every path (its value about that number) can get a
    gradient other than 0 there."""
    return _Floor.apply(f, torch.finfo(f.dtype).min / (steps + 1))


def _time_first(value, lead, n):
    """A series ``(*lead, T, *event)`` as ``(T, 1, 1, 1, ..., *lead, *event)``, its leading dims on the grid's."""
    moved = value.movedim(lead, 0)
    return moved.reshape(moved.shape[:1] + (1,) * (2 + n - lead) + moved.shape[1:])


def _carried_series(context, source, initial, mask, n):
    """The values a series carried to the next step takes at every step, time first like ``_time_first``: the
    initial value at the first step, then the series at the step before, or where that one is padded, at the last
    real step before it (the initial value where there is none)."""
    series, lead = context.values[source], context.lead[source]
    first, first_lead = initial
    shape = broadcast_shapes(series.shape[:lead], first.shape[:first_lead])
    moved = series.movedim(lead, 0)
    moved = moved.expand(moved.shape[:1] + shape + moved.shape[1 + lead:])
    first = first.expand(shape + first.shape[first_lead:]).unsqueeze(0)
    steps = moved.shape[0]
    if mask is None:
        shifted = torch.cat([first, moved[:steps - 1]])
    else:
        # at step t: the series at the last real step before t, counted from 1 (0: none, the initial value)
        at = torch.where(mask, torch.arange(1, steps + 1, device=mask.device), 0).cummax(-1).values
        at = torch.cat([torch.zeros_like(at[..., :1]), at[..., :steps - 1]], -1).movedim(-1, 0)  # (T, *mask lead)
        options = torch.cat([first, moved])  # (1 + T, *lead, *event)
        index = at.reshape(at.shape[:1] + (1,) * (len(shape) + 1 - at.dim()) + at.shape[1:]
                           + (1,) * (moved.dim() - 1 - len(shape)))
        shifted = options.gather(0, index.expand(moved.shape))
    return shifted.reshape(shifted.shape[:1] + (1,) * (2 + n - len(shape)) + shifted.shape[1:])


def log_sum_exp(x, dim):
    """``torch.logsumexp`` whose gradient is 0, not nan, where every term is -inf (a value impossible both by its
    transition and by its emission): the terms are clamped to the dtype's lowest finite number first, as
    ``Categorical`` clamps a -inf logit, so such a slice sums to about that number instead of -inf."""
    return torch.logsumexp(x.clamp(min=torch.finfo(x.dtype).min), dim)
