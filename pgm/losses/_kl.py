"""The one registry of closed-form KL divergences that ``KL`` uses.

A pair of pgm families has a closed form when a function is registered here for it, or else when
torch.distributions has one for the torch families that stand for them (``kl_family``; the relaxed
families stand for their categorical / Bernoulli originals).
"""
import torch.distributions as td
from torch.distributions.kl import _dispatch_kl

_REGISTRY = {}


def register_kl(type_q, type_p):
    """Register ``fn(q_dist, p_dist) -> elementwise KL`` for pgm families ``type_q`` and ``type_p``.

    The arguments are the torch distributions of ``q`` and ``p`` on the current inputs; the result is summed
    over the event dims by the caller.
    """
    def decorator(fn):
        _REGISTRY[(type_q, type_p)] = fn
        return fn
    return decorator


def _custom(q, p):
    for tq in type(q).__mro__:
        for tp in type(p).__mro__:
            fn = _REGISTRY.get((tq, tp))
            if fn is not None:
                return fn
    return None


def _kl_family(d):
    return getattr(d, "kl_family", None) or getattr(d, "family", None)


def has_closed_form(q, p) -> bool:
    if _custom(q, p) is not None:
        return True
    tq, tp = _kl_family(q), _kl_family(p)
    if tq is None or tp is None or not issubclass(tq, td.Distribution) or not issubclass(tp, td.Distribution):
        return False
    return _dispatch_kl(tq, tp) is not NotImplemented


def closed_form(q, p, q_dist, q_params, p_dist, p_params):
    fn = _custom(q, p)
    if fn is not None:
        return fn(q_dist, p_dist)
    return td.kl_divergence(q._kl_view(q_dist, q_params), p._kl_view(p_dist, p_params))
