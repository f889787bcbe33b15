"""A :class:`~pgm.losses.Sum` evaluated by unrolling its steps: each step drawn afresh, its draws carried on.

Step t is the step's loss evaluated in a context of its own (:meth:`~pgm.Context.afresh`): the series at t, the
carried values, and an empty cache, so the step draws its variables afresh and its terms share those draws. The
values it carries to step t+1 are read from what it drew (:meth:`~pgm.Context.draws_of`), or drawn after it from
a carried distribution. The per-step values are stacked and summed once, masked steps adding 0; a step is masked
by the ``mask``/``length`` input or, with ``present=``, once an earlier step drew a presence of 0. The ``final``
term is evaluated after the last step, on the carried values as they are then.

A discrete draw of step t that a later step depends on (a carried one, one a carried distribution is computed
from, the presence) gets a score term weighted by the sum of the later steps and the final term: step t's own
``E`` weighs it by step t's value only.
"""
from __future__ import annotations

import torch

from ..distributions import Distribution, JointDistribution
from ._estimators import score_term
from ._steps import hold, initial_values, length, padding_may_lead, series_slices, step_context, step_mask


def unroll(loss, context, keep=False):
    """``loss`` (a Sum) summed over its steps, ``(*lead,)``; with ``keep``, also every variable drawn in the steps
    and every carried one, as a list per step (``(total, {name: [value at t, ...]})``)."""
    steps = length(loss, context)
    given = step_mask(loss, context, steps)
    carried = initial_values(loss, context)
    slices = series_slices(loss, context)
    # a padded step must leave the state as it was where a real step or the final term reads it after
    holding = keep or loss.final is not None or bool(loss.carry) and padding_may_lead(loss, given)
    lead_shape, per_step, reals, kept, scores = context.lead_shape, [], [], {}, []
    alive = None  # with present=: (*lead,) booleans, true while every earlier presence was 1
    drawers = loss._drawers  # the distributions whose draws a step may carry (a copied loss: its copies)
    for t in range(steps):
        this_step = step_context(context, t, slices, carried)  # each step draws afresh; its terms share its draws
        value = loss.step._eval(this_step)
        if not isinstance(value, torch.Tensor):
            like = next(iter(this_step.values.values()))  # a number: filled on the device (no copy from the host)
            value = like.new_full(lead_shape, value)
        per_step.append(value)
        if loss.present:
            reals.append(_and(None if given is None else given[..., t], alive))
        if not (loss.carry or keep or loss.present):
            continue
        found, other = _step_draws(this_step, drawers)
        if keep:
            for var, hits in list(found.items()) + [(k, [(None, this_step.values[k])]) for k in loss.carry]:
                kept.setdefault(var, []).append(hits[0][1])
        if t + 1 == steps and loss.final is None:
            continue
        new = _carried(loss, this_step, found, other)
        if loss._may_score:
            scores += [(t, log_q) for log_q in _scores(loss, this_step, found, new)]
        real = None  # read only where the state is held (an index costs microseconds, paid per step)
        if holding:
            real = reals[t] if loss.present else None if given is None else given[..., t]
        carried = new if real is None else hold(new, carried, real)
        if loss.present:
            alive = _and(alive, _presence(loss, this_step, found, given, t))
    values = torch.stack(per_step, -1)  # (*lead, T): one sum (and one masking) for all the steps
    mask = _stacked(reals) if loss.present else given
    if mask is not None:  # (batch, T), aligned with the right of (*lead, T)
        values = torch.where(mask, values, values.new_zeros(()))
    total = values.sum(-1)
    final = None
    if loss.final is not None:
        final = _final(loss, context, carried)
        total = total + final
    if scores:
        with torch.no_grad():
            later = values.flip(-1).cumsum(-1).flip(-1) - values
            if final is not None:
                later = later + final.detach().unsqueeze(-1)
        for t, log_q in scores:
            weight = later[..., t] if mask is None else torch.where(mask[..., t], later[..., t], 0.0)
            total = total + score_term(weight, log_q)
    return total, kept


def _and(a, b):
    """``a & b`` of two masks, either of which may be None (every step real)."""
    return b if a is None else a if b is None else a & b


def _stacked(reals):
    """The masks of the steps stacked, ``(*lead, T)``, or None where every step is real."""
    if all(r is None for r in reals):
        return None
    every = next(r for r in reals if r is not None)
    return torch.stack([every.new_ones(()).expand_as(every) if r is None else r for r in reals], -1)


def _presence(loss, this_step, found, given, t):
    """Whether each sequence goes on after step t: its draw of the presence variable is not 0 (a padded step,
    whose draw does not count, leaves it going on)."""
    hits = found.get(loss.present, [])
    if len(hits) != 1:
        what = ("did not draw it (take an expectation over its distribution in the step, E(q_pres, ...))" if not hits
                else f"drew it with several distributions ({', '.join(h[0].prob_text for h in hits)})")
        raise ValueError(f"Sum over {loss.over}: present={loss.present!r} is the presence drawn at each step, but "
                         f"step {loss.over} {what}.")
    _, value, lead = hits[0]
    event = value.shape[lead:]
    if event.numel() != 1:
        raise ValueError(f"Sum over {loss.over}: present={loss.present!r} must be one 0/1 value per sequence (a "
                         f"Bernoulli of event shape () or (1,)); {hits[0][0].prob_text} draws event shape "
                         f"{tuple(event)}.")
    going = value.reshape(value.shape[:lead]) != 0
    return going if given is None else going | ~given[..., t]


def _final(loss, context, carried):
    """The final term on the carried values after the last step, each under its carried name and its source's
    (``c_prev`` and ``c`` both hold :math:`c_T`), ``(*lead,)``."""
    values, lead = {}, {}
    for name, (value, n) in carried.items():
        for key in (name, loss._source(name)):
            values[key], lead[key] = value, n
    value = loss.final._eval(context.afresh(values, lead))
    if not isinstance(value, torch.Tensor):
        value = next(iter(values.values())).new_full(context.lead_shape, value)
    return value.expand(context.lead_shape) if value.dim() < len(context.lead_shape) else value


def _step_draws(this_step, drawers):
    """var -> [(distribution, value, lead)] of the draws the step made: those one per example (no sample shape, the
    step's batch shape), and the others."""
    found, other = {}, {}
    for key, drawn, lead in this_step.draws_of(drawers):
        one_each = key.sample_shape == () and key.lead_shape == this_step.lead_shape
        target = found if one_each else other
        for var, value in drawn.items():
            bucket = target.setdefault(var, [])
            if all(value is not v for _, v, _ in bucket):
                bucket.append((key.distribution, value, lead))
    return found, other


def _carried(loss, this_step, found, other):
    """The values carried to the next step, ``{carried name: (value, leading dims)}``."""
    where = f"Sum over {loss.over}"
    out = {}
    for name, source in loss.carry.items():
        if isinstance(source, Distribution):
            hits = [h for h in found.get(source.var[0], []) if h[0] is source
                    or (isinstance(source, JointDistribution) and any(h[0] is f for f in source.factors))]
            if hits:
                out[name] = hits[0][1:]
                continue
            inner = source.sample(_drawn(this_step, found))
            out[name] = inner[source.var[0]], inner.lead[source.var[0]]
            continue
        hits = found.get(source, [])
        if len(hits) > 1:
            raise ValueError(
                f"{where}: carry={{{name!r}: {source!r}}}: step {loss.over} drew `{source}` with several "
                f"distributions ({', '.join(h[0].prob_text for h in hits)}); carry the one meant: "
                f"carry={{{name!r}: d}} with d one of them."
            )
        if hits:
            out[name] = hits[0][1:]
        elif source in this_step.values:
            out[name] = this_step.values[source], this_step.lead[source]
        elif source in other:
            raise ValueError(
                f"{where}: carry={{{name!r}: {source!r}}}: the step drew `{source}` only with a sample_shape; a "
                f"carried variable is one draw per sequence (leave sample_shape out of its expectation, or "
                f"repeat the batch for several trajectories)."
            )
        elif _enumerates(loss.step, source):
            raise ValueError(
                f"{where}: carry={{{name!r}: {source!r}}}: step {loss.over} sums over every value of `{source}` "
                f"(E(..., enumerate=True)), so there is no one draw of it to carry; sample it instead (the "
                f"score-function estimator, E's default for a discrete q), carry the distribution itself: "
                f"carry={{{name!r}: q}}, or sum it out of the whole sequence: Sum(LogProb(p_x * p_y), ..., "
                f"marginalize={source!r})."
            )
        else:
            raise ValueError(
                f"{where}: carry={{{name!r}: {source!r}}}: step {loss.over} did not draw `{source}` (no term of "
                f"the step samples a distribution of it); take an expectation over it, E(q, ...), or carry the "
                f"distribution itself: carry={{{name!r}: q}}."
            )
    return out


def _drawn(this_step, found):
    """The step's one-per-example draws, as a context to score or draw in."""
    unique = {v: hits[0] for v, hits in found.items() if len(hits) == 1}
    return this_step.child({v: h[1] for v, h in unique.items()}, {v: h[2] for v, h in unique.items()},
                           this_step.lead_shape)


def _scores(loss, this_step, found, carried):
    """The log q of each draw of the step made without a reparameterized sampler that the next steps depend on:
    a carried one, one a carried value is computed from, the presence. Each variable once."""
    wanted = {}  # var -> the distribution that drew it
    for name, source in loss.carry.items():
        var = loss._source(name)
        hits = [h for h in found.get(var, []) if h[1] is carried[name][0]]
        drawer = hits[0][0] if hits else source if isinstance(source, Distribution) else None
        if drawer is None:  # a series carried on
            continue
        wanted.setdefault(var, drawer)
        for c in drawer.cond_var:  # the draws it is computed from (a canvas from the presence)
            if len(found.get(c, [])) == 1:
                wanted.setdefault(c, found[c][0][0])
    if loss.present and len(found.get(loss.present, [])) == 1:
        wanted.setdefault(loss.present, found[loss.present][0][0])
    wanted = {v: d for v, d in wanted.items() if not d.has_reparam and d.has_log_prob}
    if not wanted:
        return []
    carried_on = {loss._source(name): carried[name] for name in loss.carry}  # var -> (value, leading dims)
    drawn = _drawn(this_step, found)
    out = []
    for var, d in wanted.items():
        value, lead = carried_on[var] if var in carried_on else (drawn.values[var], drawn.lead[var])
        out.append(d.log_prob(drawn.child({var: value}, {var: lead}, this_step.lead_shape)))
    return out


def _enumerates(loss, var):
    """Whether an expectation in ``loss`` sums over every value of ``var`` (``enumerate=True``)."""
    if getattr(loss, "estimator", None) == "enumerate" and var in loss.q.var:
        return True
    return any(_enumerates(child, var) for child in getattr(loss, "children", ()))
