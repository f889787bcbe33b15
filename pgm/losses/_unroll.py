"""A :class:`~pgm.losses.Sum` evaluated by unrolling its steps: each step drawn afresh, its draws carried on.

Step t is the step's loss evaluated in a context of its own (:meth:`~pgm.Context.afresh`): the series at t, the
carried values, and an empty cache, so the step draws its variables afresh and its terms share those draws. The
values it carries to step t+1 are read from what it drew (:meth:`~pgm.Context.draws_of`), or drawn after it from
a carried distribution. The per-step values are stacked and summed once, masked steps adding 0.
"""
from __future__ import annotations

import torch

from ..distributions import Distribution, JointDistribution
from ._estimators import score_term
from ._steps import hold, initial_values, length, step_context, step_mask


def unroll(loss, context, keep=False):
    """``loss`` (a Sum) summed over its steps, ``(*lead,)``; with ``keep``, also every variable drawn in the steps
    and every carried one, as a list per step (``(total, {name: [value at t, ...]})``)."""
    steps = length(loss, context)
    mask = step_mask(loss, context, steps)
    carried = initial_values(loss, context)
    lead_shape, per_step, kept, scores = context.lead_shape, [], {}, []
    drawers = loss._drawers  # the distributions whose draws a step may carry (a copied loss: its copies)
    for t in range(steps):
        this_step = step_context(loss, context, t, carried)  # each step draws afresh; its terms share its draws
        values = this_step.values
        value = loss.step._eval(this_step)
        if not isinstance(value, torch.Tensor):
            like = next(iter(values.values()))  # a number: filled on the device (no copy from the host)
            value = like.new_full(lead_shape, value)
        per_step.append(value)
        if loss.carry or keep:
            found, other = _step_draws(this_step, drawers)
            if keep:
                for var, hits in list(found.items()) + [(k, [(None, values[k])]) for k in loss.carry]:
                    kept.setdefault(var, []).append(hits[0][1])
            if t + 1 < steps:
                new, step_scores = _carried(loss, this_step, found, other)
                carried = new if mask is None else hold(new, carried, mask[..., t])
                scores += [(t, log_q) for log_q in step_scores]
    values = torch.stack(per_step, -1)  # (*lead, T): one sum (and one masking) for all the steps
    if mask is not None:  # (batch, T), aligned with the right of (*lead, T)
        values = torch.where(mask, values, values.new_zeros(()))
    total = values.sum(-1)
    if scores:
        # a discrete draw carried from step t changes every later step: its score term, zero in value, is
        # weighted by their sum too (step t's own E weighs it by step t's value only)
        with torch.no_grad():
            later = values.flip(-1).cumsum(-1).flip(-1) - values
        for t, log_q in scores:
            weight = later[..., t] if mask is None else torch.where(mask[..., t], later[..., t], 0.0)
            total = total + score_term(weight, log_q)
    return total, kept


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
    """The values carried to the next step, and the log q of those drawn without a reparameterized sampler (their
    score term must also weigh the later steps, which depend on them through the carry)."""
    where = f"Sum over {loss.over}"
    out, scores = {}, []

    def drawn():  # the step's one-per-example draws, as a context to score or draw in
        unique = {v: hits[0] for v, hits in found.items() if len(hits) == 1}
        return this_step.child({v: h[1] for v, h in unique.items()}, {v: h[2] for v, h in unique.items()},
                                this_step.lead_shape)

    def score(d, name):
        if not d.has_reparam and d.has_log_prob:
            value, lead = out[name]
            scores.append(d.log_prob(drawn().child({d.var[0]: value}, {d.var[0]: lead}, this_step.lead_shape)))

    for name, source in loss.carry.items():
        if isinstance(source, Distribution):
            hits = [h for h in found.get(source.var[0], []) if h[0] is source
                    or (isinstance(source, JointDistribution) and any(h[0] is f for f in source.factors))]
            if hits:
                out[name] = hits[0][1:]
                score(hits[0][0], name)
                continue
            inner = source.sample(drawn())
            out[name] = inner[source.var[0]], inner.lead[source.var[0]]
            score(source, name)
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
            score(hits[0][0], name)
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
    return out, scores


def _enumerates(loss, var):
    """Whether an expectation in ``loss`` sums over every value of ``var`` (``enumerate=True``)."""
    if getattr(loss, "estimator", None) == "enumerate" and var in loss.q.var:
        return True
    return any(_enumerates(child, var) for child in getattr(loss, "children", ()))
