"""The data-set averages of a formula, ``.mean()`` and ``.sum()``: over the batch of the inputs or of a named data
set, and, outside every one of them, the global level where a drawn variable is shared by every example (see
:attr:`pgm.Context.global_level`)."""
from __future__ import annotations

import numbers

import sympy
import torch

from .._errors import MissingInputError
from .._signature import subscript
from . import _printing
from ._base import Loss


class _Reduce(Loss):
    """A mean or sum over the batch of the inputs, or of the named data set ``data``."""

    def __init__(self, a, data=None):
        if data is not None and (not isinstance(data, str) or not data.isidentifier()):
            raise ValueError(f"a data set's name must be an identifier such as 'labelled'; got {data!r}.")
        self.children, self.data = (a,), data

    def _free(self):
        if self.data is None:
            return Loss._free(self)
        return {self.data: f"the data set `{self.data}` (a dict of its inputs)"}

    def _inner_context(self, context):
        inner = context.over_data(self.data)
        if self.data is not None:
            try:
                self.children[0].check_inputs(inner.values, context.params, inner.datasets)
            except MissingInputError as error:
                raise MissingInputError(f"data set `{self.data}`: {error}") from None
        return inner

    def _eval(self, context):
        inner = self._inner_context(context)
        value = self.children[0]._eval(inner)
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value, dtype=torch.get_default_dtype())
        if not context.global_level:  # nested in another average: the whole of it
            return self._reduce_all(value, inner.lead_shape)
        # outside the averages: over the batch dim only (the last leading one), kept as a 1, so that the sample
        # dims of the expectations of global variables around it stay for them to average
        extra = value.dim() - len(inner.lead_shape)
        if extra > 0:  # dims in front that no expectation around averages: reduced whole, as inside an average
            value = self._reduce_dims(value, tuple(range(extra)))
        return self._reduce_batch(value, inner.lead_shape[-1])

    def _variables(self):
        """The data's variables, in the order of the formula being printed (:meth:`Loss._printed`)."""
        names = self.children[0].input_var if self.data is not None else self.input_var
        return ",".join(_printing.ordered(names))


class _Mean(_Reduce):
    def _sym(self):
        data, name = self._variables(), self.data or "data"
        return _printing.Wrapped(rf"\mathbb{{E}}_{{p_{{{name}}}({data})}}\left[", r"\right]",
                                 f"E_p_{name}({data})[", "]", self.children[0]._sym())

    def _reduce_all(self, value, lead_shape):
        return value.mean()

    def _reduce_dims(self, value, dims):
        return value.mean(dim=dims)

    def _reduce_batch(self, value, batch):
        return value.mean(-1, keepdim=True) if value.dim() else value


class _Sum(_Reduce):
    def __init__(self, a, data=None, size=None):
        super().__init__(a, data)
        if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1):
            raise ValueError(f"sum(size=...) is the number of examples in the whole data set, a positive integer "
                             f"such as len(train_set); got {size!r}.")
        self.size = None if size is None else int(size)

    def _sym(self):
        if self.size is not None:  # the whole data set of N examples: the sum over n, the data indexed by n
            names = _printing.ordered(self.children[0].input_var if self.data is not None else self.input_var)
            with _printing.renamed({v: subscript(v, "n") for v in names}):
                inner = self.children[0]._sym()
            end = f"N_{{{self.data}}}" if self.data else "N"
            if isinstance(inner, sympy.Add):
                return _printing.Wrapped(rf"\sum_{{n=1}}^{{{end}}} \left[", r"\right]", f"sum_{{n=1}}^{{{end}}} [", "]",
                                         inner)
            return _printing.Wrapped(rf"\sum_{{n=1}}^{{{end}}} ", "", f"sum_{{n=1}}^{{{end}}} ", "", inner)
        data = self._variables() + (rf" \in {self.data}" if self.data else "")
        text = self._variables() + (f" in {self.data}" if self.data else "")
        return _printing.Wrapped(rf"\sum_{{{data}}}\left[", r"\right]", f"sum_{text}[", "]", self.children[0]._sym())

    def _reduce_all(self, value, lead_shape):
        if value.dim() < len(lead_shape):
            value = value.expand(lead_shape)
        if self.size is not None:  # N times the mean of the minibatch: the data set's sum, without bias
            return value.mean() * self.size
        return value.sum()

    def _reduce_dims(self, value, dims):
        return value.sum(dim=dims)

    def _reduce_batch(self, value, batch):
        if self.size is not None:
            return (value.mean(-1, keepdim=True) if value.dim() else value) * self.size
        if not value.dim():
            return value * batch
        total = value.sum(-1, keepdim=True)
        return total if value.shape[-1] == batch else total * batch  # a value the same for every example
