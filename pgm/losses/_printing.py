"""sympy objects for the terms of a loss, so that sympy prints formulas in the order they were written.

Each term is a real sympy expression: sums are built with ``evaluate=False`` and printed with
``order="none"``, and the terms print themselves through sympy's printer protocol. A leaf holds its signatures as
written (``q(z_top|x)``, which is what :class:`~pgm.losses.Sum` renames per step) and prints their names as
LaTeX (``q(z_{top}|x)``, :func:`~pgm._signature.latex_signatures`).

While a formula's expression is built, two values travel with it: the order of its variables, in which every
reduction lists its data's (:func:`variable_order`), and the names its distributions' variables print under
(:func:`renamed`: inside ``IWAE`` and ``LogMeanExp``, a latent drawn K times prints as :math:`z_k`).
"""
import contextlib
import contextvars
import math

import sympy
from sympy.core.symbol import Str

from .._signature import format_signature, latex_signatures, latex_variable, subscript

_ORDER = contextvars.ContextVar("variable_order", default=None)
_RENAMED = contextvars.ContextVar("renamed", default={})
_DRAWN = contextvars.ContextVar("drawn", default=())


@contextlib.contextmanager
def variable_order(names):
    """Within the block, reductions list their variables in the order of ``names`` (the whole formula's)."""
    token = _ORDER.set(list(names))
    try:
        yield
    finally:
        _ORDER.reset(token)


def ordered(names):
    """The data among ``names`` (not those an enclosing expectation draws, :func:`drawn`), in the order of the
    formula being printed (:func:`variable_order`); names that order lacks last."""
    names = [n for n in names if n not in _DRAWN.get()]
    order = _ORDER.get()
    if order is None:
        return names
    rank = {n: i for i, n in enumerate(order)}
    return sorted(names, key=lambda n: rank.get(n, len(rank)))


@contextlib.contextmanager
def drawn(names):
    """Within the block (the inside of an expectation), ``names`` are drawn, not data: a sum over the data
    inside :math:`\\mathbb{E}_{q(w)}` is :math:`\\sum_{x,y}`, not :math:`\\sum_{w,x,y}`."""
    token = _DRAWN.set(tuple(_DRAWN.get()) + tuple(names))
    try:
        yield
    finally:
        _DRAWN.reset(token)


@contextlib.contextmanager
def renamed(names):
    """Within the block, each distribution's variable ``v`` prints as ``names[v]`` (e.g. ``z`` as ``z_k``)."""
    token = _RENAMED.set({**_RENAMED.get(), **names})
    try:
        yield
    finally:
        _RENAMED.reset(token)


def variable(name):
    """How the variable ``name`` prints here: its name, or the one :func:`renamed` gives it."""
    return _RENAMED.get().get(name, name)


def signature(d):
    """``(latex, text)`` of the distribution ``d`` inside a formula: its signature with the variables renamed
    by :func:`renamed`; a distribution written otherwise (a :class:`~pgm.distributions.Density` given
    ``latex=``) as it is written."""
    names = _RENAMED.get()
    text = format_signature(d.name, [names.get(v, v) for v in d.var], [names.get(v, v) for v in d.cond_var])
    return (text if d.symbol == d.prob_text else d.symbol), text


def sample_count(sample_shape):
    """K, the number of draws of a sample shape: ``(5,)`` is 5, ``(2, 3)`` is 6 (drawn and averaged as one
    flat set), ``()`` is 1."""
    return math.prod(sample_shape)


def log_mean(d, count, inner):
    """:math:`\\mathbb{E}_{z_{1:K} \\sim q(z|x)}\\left[\\log \\frac{1}{K}\\sum_{k=1}^{K} \\cdot\\right]` with
    K = ``count`` draws of ``d``, around ``inner`` (written with draw k's names, :func:`renamed`)."""
    draws, _ = draws_of(d, count)
    latex, text = signature(d)
    return Wrapped(rf"\mathbb{{E}}_{{{draws} \sim {latex}}}\left[\log \frac{{1}}{{{count}}}\sum_{{k=1}}^{{{count}}} ",
                   r"\right]", f"E_{{{draws} ~ {text}}}[log 1/{count} sum_{{k=1}}^{{{count}}} ", "]", inner)


def draws_of(d, count):
    """``count`` draws of ``d``'s variables, ``z_{1:5}`` (``a_{1:5},z_{1:5}``), and the names of draw k,
    ``{"z": "z_k"}``."""
    draws = ",".join(subscript(v, f"1:{count}") for v in d.var)
    return draws, {v: subscript(v, "k") for v in d.var}


class Term(sympy.Expr):
    """A leaf such as ``\\log p(x|z)``: fixed LaTeX and plain text."""

    is_commutative = True

    def __new__(cls, latex, text):
        return sympy.Expr.__new__(cls, Str(latex), Str(text))

    def _latex(self, printer):
        latex = self.args[0].name
        return latex_variable(latex) if latex.isidentifier() else latex_signatures(latex)  # an Input's bare name

    def _sympystr(self, printer):
        return self.args[1].name


class Wrapped(sympy.Expr):
    """An operator around one expression, such as ``\\mathbb{E}_{q(z|x)}\\left[ ... \\right]``."""

    is_commutative = True

    def __new__(cls, latex_open, latex_close, text_open, text_close, inner):
        return sympy.Expr.__new__(cls, Str(latex_open), Str(latex_close), Str(text_open), Str(text_close), inner)

    def _latex(self, printer):
        return latex_signatures(self.args[0].name) + printer._print(self.args[4]) + latex_signatures(self.args[1].name)

    def _sympystr(self, printer):
        return self.args[2].name + printer._print(self.args[4]) + self.args[3].name


def number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"a loss can be combined with numbers and losses only; got {type(value).__name__}.")
    if float(value).is_integer():
        return sympy.Integer(int(value))
    return sympy.Float(value)


def add(terms):
    return sympy.Add(*terms, evaluate=False)


def negate(term):
    """``-term``, folding the sign into a number or a leading coefficient: ``- 0.5``, not ``- 1*0.5``, and
    ``-(-2 E)`` is ``2 E``, not ``- - 2 E``."""
    if term.is_Number:
        return -term
    if isinstance(term, sympy.Mul) and term.args[0].is_Number and term.args[0].is_negative:
        coefficient, rest = -term.args[0], term.args[1:]
        if coefficient != 1:
            rest = (coefficient,) + rest
        return rest[0] if len(rest) == 1 else sympy.Mul(*rest, evaluate=False)
    return sympy.Mul(sympy.Integer(-1), term, evaluate=False)


def multiply(a, b):
    return sympy.Mul(a, b, evaluate=False)


def divide(a, b):
    inverse = sympy.Pow(b, -1, evaluate=False)
    return inverse if a == 1 else sympy.Mul(a, inverse, evaluate=False)  # 1/tau, not 1 (1/tau)


def latex(expr):
    return sympy.latex(expr, order="none")


def text(expr):
    return sympy.sstr(expr, order="none")


class Call(sympy.Expr):
    """A function of several expressions, such as ``\\min\\left(a, b\\right)``."""

    is_commutative = True

    def __new__(cls, latex_name, text_name, *inner):
        return sympy.Expr.__new__(cls, Str(latex_name), Str(text_name), *inner)

    def _latex(self, printer):
        return self.args[0].name + r"\left(" + ", ".join(printer._print(a) for a in self.args[2:]) + r"\right)"

    def _sympystr(self, printer):
        return self.args[1].name + "(" + ", ".join(printer._print(a) for a in self.args[2:]) + ")"


class LogSumExp(sympy.Expr):
    """:math:`\\log\\left(e^{a} + e^{b}\\right)`, printed as written."""

    is_commutative = True

    def _latex(self, printer):
        return r"\log\left(" + " + ".join(f"e^{{{printer._print(a)}}}" for a in self.args) + r"\right)"

    def _sympystr(self, printer):
        return "logsumexp(" + ", ".join(printer._print(a) for a in self.args) + ")"
