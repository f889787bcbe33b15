"""The one registry of closed-form KL divergences that ``KL`` uses.

A pair of pgm families has a closed form when a function is registered here for it, or else when
torch.distributions has one for the torch families that stand for them (``kl_family``; the relaxed
families stand for their categorical / Bernoulli originals).
"""
import torch.distributions as td
from torch.distributions.kl import _dispatch_kl

from .._errors import EventShapeError
from .._values import broadcast_shapes

_REGISTRY = {}


def register_kl(type_q, type_p):
    """Register ``fn(q_dist, p_dist) -> elementwise KL`` for pgm families ``type_q`` and ``type_p``.

    The arguments are the torch distributions of ``q`` and ``p`` on the current inputs (their
    ``kl_distribution``); the result is elementwise and summed over the event dims by ``KL``::

        @register_kl(MyFamily, Normal)
        def _(q, p):
            return ...  # a tensor of q's batch shape
    """
    def decorator(fn):
        _REGISTRY[(type_q, type_p)] = fn
        _FOUND.clear()
        return fn
    return decorator


_FOUND = {}  # (type of q, type of p) -> the registered function found for them, or None


def _custom(q, p):
    types = (type(q), type(p))
    if types not in _FOUND:
        _FOUND[types] = next((_REGISTRY[(tq, tp)] for tq in types[0].__mro__ for tp in types[1].__mro__
                              if (tq, tp) in _REGISTRY), None)
    return _FOUND[types]


def _kl_family(d):
    return getattr(d, "kl_family", None) or getattr(d, "family", None)


def has_closed_form(q, p) -> bool:
    if _custom(q, p) is not None:
        return True
    tq, tp = _kl_family(q), _kl_family(p)
    if tq is None or tp is None or not issubclass(tq, td.Distribution) or not issubclass(tp, td.Distribution):
        return False
    return _dispatch_kl(tq, tp) is not NotImplemented


def closed_form(q, p, context):
    """The closed-form KL per example (summed over the event dims) on the inputs in ``context``."""
    q_dist, event_dims = q.kl_distribution(context)
    p_dist, p_event_dims = p.kl_distribution(context)
    same_batch = q_dist.batch_shape == p_dist.batch_shape
    if not same_batch or event_dims != p_event_dims:  # else the event shapes are the same
        _check_event_shapes(q, p, _event_shape(q_dist, event_dims), _event_shape(p_dist, p_event_dims))
    if not same_batch:  # some of torch's KLs (Bernoulli's) index without broadcasting
        shape = broadcast_shapes(q_dist.batch_shape, p_dist.batch_shape)
        if q_dist.batch_shape != shape:
            q_dist = q.kl_distribution(context, shape)[0]
        if p_dist.batch_shape != shape:  # a prior of fixed parameters, broadcast over the batch
            p_dist = p.kl_distribution(context, shape)[0]
    fn = _custom(q, p)
    value = fn(q_dist, p_dist) if fn is not None else td.kl_divergence(q_dist, p_dist)
    if event_dims == 1:
        return value.sum(-1)
    return value.sum(dim=tuple(range(-event_dims, 0))) if event_dims > 0 else value


def _event_shape(dist, event_dims):
    """The event shape of a torch distribution whose last ``event_dims`` batch dims belong to the event."""
    full = dist.batch_shape + dist.event_shape
    return full[len(full) - event_dims - len(dist.event_shape):]


def _check_event_shapes(q, p, q_event, p_event):
    """Two distributions of the same variable must give it event shapes that fit (equal, or 1 that broadcasts):
    shapes only, read without touching the values."""
    if all(a == b or a == 1 or b == 1 for a, b in zip(reversed(q_event), reversed(p_event))):
        return
    var = ", ".join(q.var)
    raise EventShapeError(
        f"KL[{q.prob_text}||{p.prob_text}]: {q.prob_text} gives {var} of event shape {tuple(q_event)} but "
        f"{p.prob_text} has event shape {tuple(p_event)}; give both the same event shape (the size of "
        f"{q.prob_text}'s network output, or {p.prob_text}'s features_shape=[...] / parameters' shape)."
    )
