"""How a :class:`~pgm.losses.Sum` prints: its step with the variables subscripted by the step (series and draws
:math:`x_t`, carried values :math:`z_{t-1}`), its final term on the values after the last step (:math:`c_T`), and
the forward algorithm's :math:`\\log \\sum_{y_{1:T}} \\prod_t`. Only what changes with t is subscripted: a fixed
input (a label, an :class:`~pgm.losses.Input` weight) prints as it is.
"""
from __future__ import annotations

import re

import sympy
from sympy.core.symbol import Str

from .._signature import subscript
from . import _printing
from ._terms import LogProb


_SIGNATURE = re.compile(r"(?P<head>[A-Za-z_][A-Za-z0-9_]*(?:[_^]\{[^{}()]*\})*)\((?P<args>[A-Za-z0-9_ ,|]*)\)")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _rename_text(text, names):
    """Rename the variables inside every signature ``p(x|z)`` of a printed term."""
    if text in names:  # an Input printed as its name
        return names[text]
    return _SIGNATURE.sub(lambda m: m["head"] + "(" + _WORD.sub(lambda w: names.get(w[0], w[0]), m["args"]) + ")",
                          text)


def _rename(expr, names):
    """The sympy tree of a printed step with its variables subscripted (leaves' strings rewritten)."""
    if isinstance(expr, Str):
        return Str(_rename_text(expr.name, names))
    if not expr.args:
        return expr
    args = [_rename(a, names) for a in expr.args]
    if type(expr).__module__ == _printing.__name__:
        return sympy.Basic.__new__(type(expr), *args)
    try:
        return expr.func(*args, evaluate=False)
    except TypeError:
        return expr.func(*args)


def names(loss):
    """How each step variable of ``loss`` (a Sum) prints: series and draws at t, carried ones at t-1."""
    t = loss.over
    out = {v: subscript(v, t) for v in loss.series}
    for d in loss._drawers:  # the step's distributions and the carried ones
        out.update({v: subscript(v, t) for v in d.var})
    out.update({k: subscript(loss._source(k), f"{t}-1") for k in loss.carry})
    return out


def sum_sym(loss):
    """The sympy expression of ``loss`` (a Sum)."""
    t = loss.over
    end = t.upper() if len(t) == 1 and t.upper() != t else f"T_{{{t}}}"
    if loss.marginalize is None:
        steps = _printing.Wrapped(rf"\sum_{{{t}=1}}^{{{end}}} \left[", r"\right]", f"sum_{{{t}=1}}^{{{end}}} [",
                                  "]", _rename(loss.step._sym(), names(loss)))
        if loss.final is None:
            return steps
        last = {}  # the carried values after the last step, c_T
        for k in loss.carry:
            last[k] = last[loss._source(k)] = subscript(loss._source(k), end)
        return _printing.add([steps, _rename(loss.final._sym(), last)])
    paths = subscript(loss.marginalize, f"1:{end}")
    if isinstance(loss.step, LogProb):  # log sum_y prod_t p(x_t, y_t|y_{t-1})
        p = loss.step.p
        inner = _rename(_printing.Term(p.symbol, p.prob_text), names(loss))
        return _printing.Wrapped(rf"\log \sum_{{{paths}}} \prod_{{{t}=1}}^{{{end}}} ", "",
                                 f"log sum_{{{paths}}} prod_{{{t}=1}}^{{{end}}} ", "", inner)
    return _printing.Wrapped(rf"\log \sum_{{{paths}}} \exp \sum_{{{t}=1}}^{{{end}}} \left[", r"\right]",
                             f"log sum_{{{paths}}} exp sum_{{{t}=1}}^{{{end}}} [", "]",
                             _rename(loss.step._sym(), names(loss)))
