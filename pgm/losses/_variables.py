r"""Variables inside formulas: ``Var("z_e")``, their sums, differences and multiples, their stop-gradient
(``detach``), and the reductions over the event that make them per-example losses (``squared_norm``, ``norm``,
``dot``).

VQ-VAE's codebook and commitment terms, :math:`\left\|\mathrm{sg}\left[z_{e}\right] - e\right\|_{2}^{2}` and
:math:`\beta \left\|z_{e} - \mathrm{sg}\left[e\right]\right\|_{2}^{2}`, are written
``squared_norm(detach(z_e) - e)`` and ``beta * squared_norm(z_e - detach(e))`` with ``z_e, e = Var("z_e"),
Var("e")``.

A variable expression is a value with an event, ``(*lead, *event)``: the leading (sample and batch) dims of the
context it is evaluated in, then the variable's event dims. It is not a per-example loss; a reduction sums over
its event and gives one value per example (and per draw inside an ``E``), shape ``(*lead)``.
"""
from __future__ import annotations

import numbers

import sympy

from .._errors import EventShapeError
from . import _printing
from ._base import Loss


class VarExpression:
    """A value with an event computed from the variables of a formula: ``Var("z")``, ``a - b``, ``2 * a``,
    ``detach(a)``. Reduce it with :func:`squared_norm`, :func:`norm` or :func:`dot` to get a loss."""

    # ------------------------------------------------------------- interface
    def _value(self, context):
        """``(tensor, lead)``: the value ``(*lead_shape, *event)`` in ``context`` and its number of leading dims."""
        raise NotImplementedError

    def _sym(self):
        raise NotImplementedError

    def _names(self) -> list:
        """The variables it reads, in order of appearance."""
        raise NotImplementedError

    def __str__(self):
        return _printing.text(self._sym())

    def __repr__(self):
        return f"<{type(self).__name__}: {self}>"

    def latex(self) -> str:
        """The expression in LaTeX, e.g. ``\\mathrm{sg}\\left[z_{e}\\right] - e``."""
        return _printing.latex(self._sym())

    # ------------------------------------------------------------ arithmetic
    def __add__(self, other):
        return _Add(self, _as_expression(other, self, "+"))

    def __radd__(self, other):
        return _Add(_as_expression(other, self, "+"), self)

    def __sub__(self, other):
        return _Add(self, _Neg(_as_expression(other, self, "-")))

    def __rsub__(self, other):
        return _Add(_as_expression(other, self, "-"), _Neg(self))

    def __neg__(self):
        return _Neg(self)

    def __mul__(self, other):
        return _Scale(_as_number(other, self, "*"), self)

    __rmul__ = __mul__

    def __truediv__(self, other):
        number = _as_number(other, self, "/")
        if number == 0:
            raise ZeroDivisionError(f"{self} / 0: a variable divided by zero.")
        return _Scale(1 / number, self, divisor=number)

    def __rtruediv__(self, other):
        raise TypeError(f"{other!r} / ({self}): a number divided by a variable is not a linear expression; "
                        f"reduce the variable first, e.g. {other!r} / norm({self}).")

    def mean(self, data=None):
        """Refused with the reductions to use: a mean over the batch needs one value per example first."""
        raise TypeError(_unreduced(self))

    sum = mean

    def _unreduced_message(self) -> str:
        """What ``as_loss`` says when this expression is combined with a loss without a reduction."""
        return _unreduced(self)


def _unreduced(expression):
    text = str(expression)
    return (f"{text} is a variable with an event (one vector per example), not a per-example loss; reduce it over "
            f"its event first: squared_norm(...) for ||{text}||_2^2, norm(...) for ||{text}||_2, or dot(..., other) "
            f"for an inner product. (A number per example given with the inputs is Input('w').)")


def _as_expression(other, this, operator):
    if isinstance(other, VarExpression):
        return other
    if isinstance(other, Loss):
        raise TypeError(_unreduced(this))
    if isinstance(other, numbers.Number):
        raise TypeError(f"{this} {operator} {other!r}: only variables of the same event shape add to a variable; "
                        f"multiply it by a number (2 * z) or add the number to a reduced term "
                        f"(squared_norm(z) {operator} {other!r}).")
    raise TypeError(f"{this} {operator} {type(other).__name__}: a variable adds to other variables of its event "
                    f"shape only; give the tensor with the inputs and name it: {this} {operator} Var('name').")


def _as_number(other, this, operator):
    if isinstance(other, numbers.Number) and not isinstance(other, bool):
        return other
    if isinstance(other, VarExpression):
        kind = "product" if operator == "*" else "quotient"
        raise TypeError(f"({this}) {operator} ({other}): the elementwise {kind} of two variables is not offered; "
                        f"their inner product over the event is dot({this}, {other}).")
    if isinstance(other, Loss):
        raise TypeError(_unreduced(this))
    raise TypeError(f"{this} {operator} {type(other).__name__}: a variable is scaled by numbers only; "
                    f"scale its reduced term instead, e.g. Parameter('beta') * squared_norm(z).")


class Var(VarExpression):
    r"""A variable inside a formula, by name: given with the inputs or drawn by an enclosing :class:`E`.

    Its value is the variable's, ``(*lead, *event)``: the leading (sample and batch) dims of the context, then
    its event dims (``(D,)`` for a ``(batch, D)`` input or a ``D``-dim draw, ``(N, D)`` for ``(batch, N, D)``).
    Variables add and subtract (``a - b``, of the same event shape), scale by numbers (``0.5 * a``, ``a / 2``),
    stop their gradient (:func:`detach`), and become per-example losses through a reduction over the event:
    :func:`squared_norm`, :func:`norm`, :func:`dot`. A multi-letter name prints with a braced subscript
    (``z_e`` is :math:`z_{e}`), a Greek letter's name as the letter.

    >>> from pgm.losses import detach, squared_norm
    >>> z_e, e = Var("z_e"), Var("e")
    >>> print(squared_norm(detach(z_e) - e).latex())
    \left\|\mathrm{sg}\left[z_{e}\right] - e\right\|_{2}^{2}

    Args:
        name: the variable's name, an identifier: an input's key or a variable a distribution generates.
    """

    def __init__(self, name: str):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"a Var's name must be an identifier, the name of an input or of a drawn variable "
                             f"such as 'z_e'; got {name!r}.")
        self.name = name

    def _value(self, context):
        return context[self.name], context.lead[self.name]

    def _sym(self):
        return sympy.Symbol(self.name)

    def _names(self):
        return [self.name]


class _Add(VarExpression):
    def __init__(self, a, b):
        self.children = (a, b)

    def _value(self, context):
        (a, lead_a), (b, lead_b) = (c._value(context) for c in self.children)
        event_a, event_b = tuple(a.shape[lead_a:]), tuple(b.shape[lead_b:])
        if event_a != event_b:
            first, second = self.children[0], _positive(self.children[1])
            raise EventShapeError(
                f"{self}: {first} has event shape {event_a} (a tensor of shape {tuple(a.shape)}) and {second} "
                f"has {event_b} (shape {tuple(b.shape)}); a sum or difference of variables needs one event shape. "
                f"Give both the same event shape (the size of a network's output, or features_shape=[...])."
            )
        # equal events: torch's right-aligned broadcasting aligns the leading dims (innermost sample dims first)
        return a + b, max(lead_a, lead_b)

    def _terms(self):
        for child in self.children:
            yield from child._terms() if isinstance(child, _Add) else (child,)

    def _sym(self):
        return _printing.add([t._sym() for t in self._terms()])

    def _names(self):
        return _merged(self.children)


def _positive(expression):
    return expression.children[0] if isinstance(expression, _Neg) else expression


class _Neg(VarExpression):
    def __init__(self, a):
        self.children = (a,)

    def _value(self, context):
        value, lead = self.children[0]._value(context)
        return -value, lead

    def _sym(self):
        return _printing.negate(self.children[0]._sym())

    def _names(self):
        return self.children[0]._names()


class _Scale(VarExpression):
    def __init__(self, factor, a, divisor=None):
        self.children, self.factor, self.divisor = (a,), factor, divisor

    def _value(self, context):
        value, lead = self.children[0]._value(context)
        return (value / self.divisor if self.divisor is not None else self.factor * value), lead

    def _sym(self):
        inner = self.children[0]._sym()
        if self.divisor is not None:
            return _printing.divide(inner, _printing.number(self.divisor))
        return _printing.multiply(_printing.number(self.factor), inner)

    def _names(self):
        return self.children[0]._names()


class _Detached(VarExpression):
    def __init__(self, a):
        self.children = (a,)

    def _value(self, context):
        value, lead = self.children[0]._value(context)
        return value.detach(), lead

    def _sym(self):
        return _printing.Wrapped(r"\mathrm{sg}\left[", r"\right]", "sg[", "]", self.children[0]._sym())

    def _names(self):
        return self.children[0]._names()


def detach_variable(expression):
    """The stop-gradient of a variable expression, :math:`\\mathrm{sg}[\\cdot]` (what ``detach`` gives for one)."""
    return _Detached(expression)


def _merged(expressions):
    out = []
    for expression in expressions:
        out.extend(n for n in expression._names() if n not in out)
    return out


# ------------------------------------------------------------------ reductions over the event: per-example losses
class EventReduction(Loss):
    """A variable expression reduced over its event dims: one value per example (and per draw), ``(*lead)``."""

    def __init__(self, expressions, reduce, sym):
        self.expressions, self.reduce, self.sym = tuple(expressions), reduce, sym

    def _eval(self, context):
        values = [e._value(context) for e in self.expressions]
        return self.reduce(*values)

    def _sym(self):
        return self.sym(*(e._sym() for e in self.expressions))

    def _free(self):
        return {n: f"Var({n!r})" for n in _merged(self.expressions)}


def _check_expression(where, expression):
    if not isinstance(expression, VarExpression):
        hint = (" it is already a per-example loss" if isinstance(expression, Loss)
                else f" got {type(expression).__name__}")
        raise TypeError(f"{where} takes a variable expression such as Var('z') - Var('e');{hint}.")
    return expression


def _event_sum(value, lead):
    return value.sum(dim=tuple(range(lead, value.dim()))) if value.dim() > lead else value


def squared_norm(expression):
    r"""The squared Euclidean norm over the event, :math:`\left\|a\right\|_{2}^{2} = \sum_i a_i^2`, per example.

    Args:
        expression: a variable expression, ``(*lead, *event)``, e.g. ``detach(Var("z_e")) - Var("e")``.

    Returns:
        a loss whose value is ``(*lead)``: summed over every event dim (``(N, D)`` for ``N`` vectors of
        ``D`` dims each, as VQ-VAE sums over the latent positions).
    """
    _check_expression("squared_norm", expression)
    return EventReduction(
        (expression,), lambda a: _event_sum(a[0].pow(2), a[1]),
        lambda a: _printing.Wrapped(r"\left\|", r"\right\|_{2}^{2}", "||", "||_2^2", a))


def norm(expression):
    r"""The Euclidean norm over the event, :math:`\left\|a\right\|_{2} = \sqrt{\sum_i a_i^2}`, per example.

    Its gradient is undefined where the expression is zero; prefer :func:`squared_norm` when the square will do.

    Args:
        expression: a variable expression, ``(*lead, *event)``.

    Returns:
        a loss whose value is ``(*lead)``.
    """
    _check_expression("norm", expression)
    return EventReduction(
        (expression,), lambda a: _event_sum(a[0].pow(2), a[1]).sqrt(),
        lambda a: _printing.Wrapped(r"\left\|", r"\right\|_{2}", "||", "||_2", a))


def dot(a, b):
    r"""The inner product over the event, :math:`\left\langle a, b\right\rangle = \sum_i a_i b_i`, per example.

    Args:
        a, b: variable expressions of one event shape, ``(*lead_a, *event)`` and ``(*lead_b, *event)``.

    Returns:
        a loss whose value is ``(*lead)``, the two leading shapes broadcast.
    """
    _check_expression("dot", a)
    _check_expression("dot", b)

    def reduce(first, second):
        (x, lead_x), (y, lead_y) = first, second
        if tuple(x.shape[lead_x:]) != tuple(y.shape[lead_y:]):
            raise EventShapeError(
                f"dot({a}, {b}): {a} has event shape {tuple(x.shape[lead_x:])} (a tensor of shape "
                f"{tuple(x.shape)}) and {b} has {tuple(y.shape[lead_y:])} (shape {tuple(y.shape)}); an inner "
                f"product needs one event shape. Give both the same event shape."
            )
        return _event_sum(x * y, max(lead_x, lead_y))

    return EventReduction((a, b), reduce, _InnerProduct)


class _InnerProduct(sympy.Expr):
    """:math:`\\left\\langle a, b\\right\\rangle`, printed as written."""

    is_commutative = True

    def _latex(self, printer):
        return r"\left\langle " + ", ".join(printer._print(a) for a in self.args) + r"\right\rangle"

    def _sympystr(self, printer):
        return "<" + ", ".join(printer._print(a) for a in self.args) + ">"
