"""A distribution given by your own log-density function: a target known up to its formula."""
from __future__ import annotations

import inspect

import torch

from .._errors import MissingInputError
from .._signature import latex_signatures
from ._base import Distribution


class Density(Distribution):
    r"""The distribution whose log-density is ``log_prob(var, *cond_var)``, a function you write.

    It can be scored (``LogProb``, the ``p`` of ``KL(q, p, analytic=False)``, a target of variational inference,
    an unnormalized energy) but not sampled. The function takes the variable and then the conditioning
    variables, by the signature's names and order, each ``(*batch, *event)``, and returns the log-density
    summed over the event dims, ``(*batch)``.

    >>> import torch
    >>> ring = Density("p(z)", lambda z: -(z.norm(dim=-1) - 2).pow(2) / 0.08)
    >>> ring.log_prob({"z": torch.zeros(5, 2)}).shape
    torch.Size([5])

    Args:
        signature: e.g. ``"p(z)"`` or ``"p(x|z)"``.
        log_prob: the log-density function; an ``nn.Module`` is a submodule (its parameters train).
        latex: how the density is written, by :meth:`latex` and inside formulas (``LogProb``, ``KL``, ...),
            e.g. ``r"\tilde p(z)"`` (default: the signature).
    """

    has_reparam = False
    has_sample = False

    def __init__(self, signature, log_prob, *, latex=None):
        super().__init__()
        self._init_names(signature, single=True)
        if not callable(log_prob):
            raise TypeError(f"{self.prob_text}: Density takes a log-density function of "
                            f"({', '.join(self.var + self.cond_var)}); got {type(log_prob).__name__}.")
        self.function = log_prob
        self._latex = latex
        target = log_prob.forward if isinstance(log_prob, torch.nn.Module) else log_prob
        try:
            count = len([p for p in inspect.signature(target).parameters.values()
                         if p.default is inspect.Parameter.empty and p.kind != inspect.Parameter.VAR_KEYWORD])
        except (TypeError, ValueError):
            count = None
        if count is not None and count != len(self.var + self.cond_var):
            raise TypeError(f"{self.prob_text}: its log-density function must take "
                            f"({', '.join(self.var + self.cond_var)}); it takes {count} arguments.")

    def latex(self) -> str:
        return latex_signatures(self.symbol)

    @property
    def symbol(self) -> str:
        return self._latex or self.prob_text

    def extra_repr(self) -> str:
        return f"{self.prob_text}: Density({getattr(self.function, '__qualname__', type(self.function).__name__)})"

    def _log_prob(self, context):
        names = self.var + self.cond_var
        for n in names:
            if n not in context:
                raise MissingInputError(f"{self.prob_text} needs input `{n}`; got {sorted(context.values) or 'nothing'}.")
        value = self.function(*(context[n] for n in names))
        shape = context[self.var[0]].shape
        expected = shape[:context.lead[self.var[0]]]
        if (not isinstance(value, torch.Tensor) or value.dim() < len(expected) or value.dim() >= len(shape)
                or value.shape != shape[:value.dim()]):
            shown = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{self.prob_text}: its log-density function must return one value per example, "
                             f"shape {tuple(expected)} (summed over the event dims); got {shown}.")
        return value
