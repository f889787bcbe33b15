"""sympy objects for the terms of a loss, so that sympy prints formulas in the order they were written.

Each term is a real sympy expression: sums are built with ``evaluate=False`` and printed with
``order="none"``, and the terms print themselves through sympy's printer protocol.
"""
import sympy
from sympy.core.symbol import Str


class Term(sympy.Expr):
    """A leaf such as ``\\log p(x|z)``: fixed LaTeX and plain text."""

    is_commutative = True

    def __new__(cls, latex, text):
        return sympy.Expr.__new__(cls, Str(latex), Str(text))

    def _latex(self, printer):
        return self.args[0].name

    def _sympystr(self, printer):
        return self.args[1].name


class Wrapped(sympy.Expr):
    """An operator around one expression, such as ``\\mathbb{E}_{q(z|x)}\\left[ ... \\right]``."""

    is_commutative = True

    def __new__(cls, latex_open, latex_close, text_open, text_close, inner):
        return sympy.Expr.__new__(cls, Str(latex_open), Str(latex_close), Str(text_open), Str(text_close), inner)

    def _latex(self, printer):
        return self.args[0].name + printer._print(self.args[4]) + self.args[1].name

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
