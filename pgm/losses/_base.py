"""The symbolic ``Loss``: a formula tree that evaluates to a tensor and prints itself through sympy."""
from __future__ import annotations

import difflib
import numbers

import sympy
import torch

from .._errors import MissingInputError
from .._scope import ACTIVE, Context
from .._values import check_parameter_values
from . import _printing


class Loss:
    """A formula over distributions. Nothing is computed until :meth:`eval`.

    Combine losses with ``+ - * /``, unary ``-``, ``abs()``, numbers and :class:`Parameter`; reduce the
    per-example value over the batch with :meth:`mean` or :meth:`sum`.
    """

    children = ()

    # ------------------------------------------------------------- interface
    def _eval(self, context: Context):
        raise NotImplementedError

    def _sym(self):
        raise NotImplementedError

    def _free(self) -> dict:
        """The data variables this formula needs, each mapped to the signature of a distribution using it."""
        out = {}
        for child in self.children:
            for k, v in child._free().items():
                out.setdefault(k, v)
        return out

    def _parameters(self) -> list:
        out = []
        for child in self.children:
            out.extend(n for n in child._parameters() if n not in out)
        return out

    def _distributions(self) -> list:
        out = []
        for child in self.children:
            out.extend(d for d in child._distributions() if all(d is not o for o in out))
        return out

    def _modules(self) -> list:
        out = []
        for child in self.children:
            out.extend(m for m in child._modules() if all(m is not o for o in out))
        return out

    # ---------------------------------------------------------------- public
    @property
    def input_var(self) -> list:
        """The names of the data this loss needs, in order of appearance."""
        return list(self._free())

    @property
    def parameters(self) -> list:
        """The names of the :class:`Parameter` values this loss needs."""
        return self._parameters()

    @property
    def distributions(self) -> list:
        """Every distribution that appears in the formula."""
        return self._distributions()

    @property
    def modules(self) -> list:
        """The networks of the formula that are not distributions (a learned baseline, a term's network):
        :class:`~pgm.models.Model` trains them with the distributions."""
        return self._modules()

    def terms(self, inputs=None) -> list:
        """``(term, its inputs)`` for each term of the formula's top-level sum, found through reductions
        (``.mean()``, ``.sum()``), negation and ``abs``; a term under ``.mean("labelled")`` comes with the
        inputs of that data set. A formula without a sum is its own one term."""
        out = []

        def visit(node, inputs):
            if isinstance(node, _Add):
                for term in node._terms():
                    visit(term, inputs)
            elif isinstance(node, (_Reduce, _Neg, _Abs)) and _reaches_sum(node):
                data = getattr(node, "data", None)
                if data is not None and isinstance(inputs, dict) and isinstance(inputs.get(data), dict):
                    inputs = inputs[data]
                visit(node.children[0], inputs)
            else:
                out.append((node, inputs))

        visit(self, inputs)
        return out

    def eval(self, inputs=None, **params) -> torch.Tensor:
        """Evaluate on ``inputs`` (a dict of tensors, batch first) with :class:`Parameter` values ``params``.

        Each variable is drawn once per evaluation and distribution, and shared by every term using it.
        """
        check_parameter_values(params, "loss.eval")
        averages = self._has_average()
        context = Context.from_inputs(inputs, params, global_level=averages)
        self.check_inputs(context.values, params, context.datasets)
        ACTIVE.append(context)  # for a pgm.Shared network; a try/finally, which TorchDynamo traces as it is
        try:
            value = self._eval(context)
        finally:
            ACTIVE.pop()
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value, dtype=torch.get_default_dtype())
        if averages and value.dim() == 1 and value.shape[0] == 1:  # the batch dim held as a 1 outside the averages
            value = value.reshape(())
        return value

    def _has_average(self) -> bool:
        """Whether the formula holds a data-set average (``.mean()``, ``.sum()``) anywhere: it is then evaluated
        from outside the averages, where a drawn variable is global (see :attr:`pgm.Context.global_level`)."""
        found = self.__dict__.get("_averages")
        if found is None:
            found = self.__dict__["_averages"] = isinstance(self, _Reduce) or any(
                child._has_average() for child in self.children)
        return found

    def check_inputs(self, values, params, datasets=()):
        """Raise :class:`KeyError` naming each input or :class:`Parameter` value the formula needs and lacks.

        Args:
            values: the given inputs by name (a dict or a :class:`~pgm.Context`'s values).
            params: the given :class:`Parameter` values by name.
            datasets: the names of the given data sets (see :meth:`mean`).
        """
        free = self.__dict__.get("_needs")
        if free is None:  # a formula does not change once written: what it needs is read once, not every step
            free = self.__dict__["_needs"] = self._free()
        missing = [k for k in free if k not in values and k not in datasets]
        if missing:
            uses = "; ".join(f"`{k}` is used by {free[k]}" for k in missing)
            example = ", ".join(f"'{k}': ..." for k in free)
            raise MissingInputError(
                f"the loss needs input {', '.join(f'`{k}`' for k in missing)} ({uses}); got "
                f"{sorted(list(values) + list(datasets)) or 'nothing'}.{self._misspelled(missing)} Pass every "
                f"input it needs: loss.eval({{{example}}})."
            )
        named = self.__dict__.get("_named")
        if named is None:
            named = self.__dict__["_named"] = self._parameters()
        absent = [n for n in named if n not in params]
        if absent:
            example = ", ".join(f"{n}=..." for n in absent)
            raise MissingInputError(
                f"the loss needs the value of Parameter {', '.join(repr(n) for n in absent)}; pass it as a "
                f"keyword: loss.eval(inputs, {example}) or model.train(inputs, {example})."
            )

    def _misspelled(self, missing) -> str:
        """For each missing input whose name is close to a variable a distribution of the formula draws (a
        misspelled ``p(x|zz)`` beside ``q(z|x)``): `` Did you mean `z` (drawn by q(z|x))?``; else empty."""
        drawn = {}
        for d in self._distributions():
            for v in d.var:
                drawn.setdefault(v, d.prob_text)
        hints = []
        for k in missing:
            close = difflib.get_close_matches(k, [v for v in drawn if v != k], n=1)
            if close:
                hints.append(f" Did you mean `{close[0]}` (drawn by {drawn[close[0]]}) for `{k}`?")
        return "".join(hints)

    def latex(self) -> str:
        """The formula in LaTeX, terms in the order written."""
        return _printing.latex(self._printed())

    def __str__(self) -> str:
        return _printing.text(self._printed())

    def _printed(self):
        """The sympy expression of the whole formula, each reduction (``.mean()``, ``.sum()``) listing its data's
        variables in the order they first appear in the formula (:meth:`_appearance`), so that every
        :math:`p_{data}(\\cdot)` of it lists them alike."""
        with _printing.variable_order(self._appearance()):
            return self._sym()

    def _appearance(self) -> list:
        """The variables of the formula in the order they first appear in its printed form, each signature read
        from its conditions to its variables (``q(y|x)``: x, then y), so that what a variable is drawn from
        comes before it, as papers write :math:`p_{data}(x,y)`: a leaf's distributions', then the inputs it reads
        by name; a node's children's in order. A term that prints a distribution before its inside (``E``)
        overrides it."""
        out = []
        names = [v for d in self._distributions() for v in d.cond_var + d.var] if not self.children else []
        for child in self.children:
            names.extend(child._appearance())
        for n in names + list(self._free()):
            if n not in out:
                out.append(n)
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self}>"

    def _repr_latex_(self):
        return f"${self.latex()}$"

    # ------------------------------------------------------------ arithmetic
    def __add__(self, other):
        return _Add(self, as_loss(other))

    def __radd__(self, other):
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self  # sum(losses) starts from 0: the formula is the losses', without a leading "0 +"
        return _Add(as_loss(other), self)

    def __sub__(self, other):
        return _Add(self, _Neg(as_loss(other)))

    def __rsub__(self, other):
        return _Add(as_loss(other), _Neg(self))

    def __mul__(self, other):
        return _Mul(self, as_loss(other))

    def __rmul__(self, other):
        return _Mul(as_loss(other), self)

    def __truediv__(self, other):
        return _Div(self, as_loss(other))

    def __rtruediv__(self, other):
        return _Div(as_loss(other), self)

    def __neg__(self):
        return _Neg(self)

    def __abs__(self):
        return _Abs(self)

    def mean(self, data=None):
        """The mean over the data batch: :math:`\\mathbb{E}_{p_{data}}[\\cdot]`.

        ``data`` names a data set of its own: ``L.mean("labelled") + U.mean("unlabelled")`` is evaluated on
        ``{"labelled": {"x": ..., "y": ...}, "unlabelled": {"x": ...}}`` and prints
        :math:`\\mathbb{E}_{p_{labelled}(x,y)}[L] + \\mathbb{E}_{p_{unlabelled}(x)}[U]`.
        """
        return _Mean(self, data)

    def sum(self, data=None, size=None):
        """The sum over the data batch (of the data set named ``data``, as in :meth:`mean`).

        With ``size`` N, the sum over a whole data set of N examples, of which each batch is a minibatch:
        estimated without bias as N times the batch mean, and printed :math:`\\sum_{n=1}^{N}` with the data
        indexed by n. Bayes by backprop's objective, the KL counted once per data set, is
        ``E(q_w, LogProb(p).sum(size=N)) - KL(q_w, p_w)``:
        :math:`\\mathbb{E}_{q(w)}\\left[\\sum_{n=1}^{N} \\log p(y_n|x_n,w)\\right] - D_{KL}\\left[q(w)\\|p(w)\\right]`.
        """
        return _Sum(self, data, size)


def as_loss(value):
    if isinstance(value, Loss):
        return value
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return Constant(value)
    unreduced = getattr(value, "_unreduced_message", None)
    if unreduced is not None:  # a variable expression (``_variables.py``): a vector per example until reduced
        raise TypeError(unreduced())
    if isinstance(value, torch.Tensor):
        raise TypeError(
            f"a loss can be combined with numbers, Parameters and other losses; got a Tensor of shape "
            f"{tuple(value.shape)}. A formula is evaluated anew on each batch, so pass per-example values as "
            f"inputs and name them in it: Input('w') * LogProb(p) evaluated with {{'w': w, ...}}; or compute "
            f"a term from the inputs and samples with Term(fn, latex)."
        )
    raise TypeError(
        f"a loss can be combined with numbers, Parameters and other losses; got {type(value).__name__}. "
        f"Wrap a variable's log-density as LogProb(p), or any function of the inputs as Term(fn, latex)."
    )


class Constant(Loss):
    """A number in a formula, :math:`c`: what ``2 * KL(q, p)`` or ``loss + 1.5`` wrap their number in.

    It evaluates to ``float(value)`` whatever the inputs, and prints as an integer where the value is one
    (``2``, not ``2.0``). Numbers are wrapped automatically, so you rarely write ``Constant`` yourself.
    """

    def __init__(self, value):
        self.value = float(value)
        self._symbol = _printing.number(value)

    def _eval(self, context):
        return self.value

    def _sym(self):
        return self._symbol

    def _free(self):
        return {}


class Parameter(Loss):
    r"""A named number supplied at evaluation, printed as its symbol: ``Parameter("beta")`` is :math:`\beta`.

    Its value is a keyword of :meth:`Loss.eval`, :meth:`Model.train <pgm.models.Model.train>` or ``fit``'s
    ``params=`` (e.g. a KL weight annealed over epochs); a compiled step keeps it in a tensor, so a new value
    never recompiles. A formula with a ``Parameter`` whose value is not given raises an error naming it.

    >>> from pgm.distributions import Normal
    >>> from pgm.losses import KL
    >>> q = Normal("q(z|x)", net=lambda x: {"loc": x, "scale": x.exp()})
    >>> prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    >>> print((Parameter("beta") * KL(q, prior)).latex())
    \beta D_{KL}\left[q(z|x)\|p(z)\right]

    Args:
        name: an identifier, e.g. ``"beta"``; Greek letter names print as the letter.
    """

    def __init__(self, name: str):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"a Parameter name must be an identifier such as 'beta'; got {name!r}.")
        self.name = name

    def _eval(self, context):
        return context.params[self.name]

    def _sym(self):
        return sympy.Symbol(self.name)

    def _free(self):
        return {}

    def _parameters(self):
        return [self.name]


class _Add(Loss):
    def __init__(self, a, b):
        self.children = (a, b)

    def _eval(self, context):
        a, b = self.children
        if type(b) is _Neg:  # a - b as one subtraction: no negation, one autograd node fewer per step
            return a._eval(context) - b.children[0]._eval(context)
        return a._eval(context) + b._eval(context)

    def _terms(self):
        for child in self.children:
            yield from child._terms() if isinstance(child, _Add) else (child,)

    def _sym(self):
        return _printing.add([t._sym() for t in self._terms()])


class _Neg(Loss):
    def __init__(self, a):
        self.children = (a,)

    def _eval(self, context):
        return -self.children[0]._eval(context)

    def _sym(self):
        return _printing.negate(self.children[0]._sym())


class _Mul(Loss):
    def __init__(self, a, b):
        self.children = (a, b)

    def _eval(self, context):
        a, b = self.children
        return a._eval(context) * b._eval(context)

    def _sym(self):
        a, b = self.children
        return _printing.multiply(a._sym(), b._sym())


class _Div(Loss):
    def __init__(self, a, b):
        self.children = (a, b)

    def _eval(self, context):
        a, b = self.children
        return a._eval(context) / b._eval(context)

    def _sym(self):
        a, b = self.children
        return _printing.divide(a._sym(), b._sym())


class _Abs(Loss):
    def __init__(self, a):
        self.children = (a,)

    def _eval(self, context):
        return abs(self.children[0]._eval(context))

    def _sym(self):
        return sympy.Abs(self.children[0]._sym(), evaluate=False)


def _reaches_sum(node):
    while isinstance(node, (_Reduce, _Neg, _Abs)):
        node = node.children[0]
    return isinstance(node, _Add)


# the data-set averages build on Loss: imported last, when Loss exists (they need it; Loss.mean and .sum need them)
from ._averages import _Mean, _Reduce, _Sum  # noqa: E402
