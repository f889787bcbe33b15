"""The public interface every pgm distribution offers: a named conditional distribution ``q(a|x,w)``.

The methods a loss calls (``sample``, ``log_prob``, ``entropy``, ``sample_mean``, ``sample_variance``,
``enumerate_support``) are public and the same for a family, a product, a marginal, a mixture and a product
of experts. Each takes an inputs dict (batch first) or, inside a term, the evaluation's
:class:`~pgm.Context`. What a distribution cannot do it says upfront with a capability flag
(``has_sample``, ``has_reparam``, ``has_log_prob``, ``has_entropy``, ``has_enumerate_support``), so a loss refuses it when it
is written, not when it runs.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .._scope import Context, Draws
from .._signature import check_names, format_signature, latex_signatures, parse_signature
from .._values import as_shape

_VALIDATION = {"enabled": True}


def set_validation(enabled: bool) -> None:
    """Turn checking of parameter values (e.g. a negative ``scale``) on or off for all distributions.

    Checking costs a device synchronisation per distribution and call; ``Model`` checks its first step
    and then runs without it.
    """
    _VALIDATION["enabled"] = bool(enabled)


def validation_enabled() -> bool:
    """Whether parameter values are checked (see :func:`set_validation`); ``True`` unless turned off."""
    return _VALIDATION["enabled"]


class Distribution(nn.Module):
    """A named conditional distribution ``name(var|cond_var)``: the interface every pgm distribution has.

    Subclasses implement the hooks ``_sample(context, sample_shape, reparam) -> (values, lead_ndim)``,
    ``_log_prob(context)``, and where they have them ``_entropy``, ``_mean``, ``_variance``, ``_enumerate``;
    the public methods below validate their arguments once, here. To add a family backed by a
    torch.distributions class, subclass :class:`~pgm.distributions.Family` instead (about ten lines).

    Attributes:
        name: the name in the signature, e.g. ``"q"`` for ``q(a|x,w)``.
        var: the variables it generates, e.g. ``["a"]``.
        cond_var: the variables it is conditioned on, e.g. ``["x", "w"]``, in the order its network takes them.
    """

    has_sample = True
    has_reparam = True          # draws carry gradients to the parameters (reparameterized)
    has_log_prob = True
    has_entropy = False
    has_enumerate_support = False
    no_log_prob_reason = "it has no density"

    def _init_names(self, signature=None, var=None, cond_var=None, name=None, single=False):
        if signature is not None:
            if var is not None or cond_var is not None:
                raise ValueError(f"{signature!r}: give either a signature or var=/cond_var=, not both.")
            name_, var, cond_var = parse_signature(signature)
            name = name_ if name is None else name
        else:
            if var is None:
                raise ValueError("a distribution needs a signature such as 'q(z|x)', or var=['z'].")
            var, cond_var = list(var), list(cond_var or [])
            name = "p" if name is None else name
            check_names(format_signature(name, var, cond_var), var, cond_var)
        if single and len(var) != 1:
            raise ValueError(
                f"{format_signature(name, var, cond_var)}: a {type(self).__name__} generates one variable, not "
                f"{len(var)}; write the joint as a product of one distribution per variable, e.g. p_x * p_w."
            )
        self.name, self.var, self.cond_var = name, list(var), list(cond_var)

    # ----------------------------------------------------------------- naming
    @property
    def prob_text(self) -> str:
        """The signature, e.g. ``"q(a|x,w)"``."""
        return format_signature(self.name, self.var, self.cond_var)

    @property
    def symbol(self) -> str:
        """How the distribution is written inside a formula's LaTeX: its signature as written, ``q(z_top|x)``,
        whose names the printer sets as LaTeX, ``q(z_{top}|x)`` (a :class:`Density` given ``latex=`` is written
        so)."""
        return self.prob_text

    @property
    def required_var(self):
        """Conditioning variables that must be given (all of them, except for products of experts)."""
        return self.cond_var

    def latex(self) -> str:
        """How the distribution prints: its signature in LaTeX (``q(z_{top}|x)`` for ``q(z_top|x)``); a product
        or a mixture writes out its factors."""
        return latex_signatures(self.symbol)

    def __mul__(self, other):
        from ._joint import JointDistribution
        if not isinstance(other, Distribution):
            return NotImplemented
        return JointDistribution([self, other])

    def replace_var(self, **mapping):
        """The same distribution (sharing its network) with variables renamed: ``q.replace_var(z="a")``."""
        known = set(self.var) | set(self.cond_var)
        unknown = [k for k in mapping if k not in known]
        if unknown:
            raise ValueError(
                f"{self.prob_text}.replace_var: {unknown} are not variables of this distribution; "
                f"its variables are {self.var + self.cond_var}."
            )
        return self._renamed(mapping)

    def _renamed(self, mapping):
        new = copy.copy(self)
        # the copy shares the parameter and buffer dicts themselves: .to(device), .double() or a new temperature
        # on either reaches both (Module._apply puts new buffer tensors in the dict). Its own module dict, so a
        # flow's copy can hold a renamed base; the modules inside stay shared.
        new._modules = dict(self._modules)
        new.var = [mapping.get(v, v) for v in self.var]
        new.cond_var = [mapping.get(v, v) for v in self.cond_var]
        check_names(new.prob_text, new.var, new.cond_var)
        return new

    def marginalize_var(self, *names):
        """The marginal with ``names`` integrated out (a product such as ``p_x * p_z`` can do this)."""
        raise ValueError(
            f"{self.prob_text}: only a joint distribution (a product such as p_x * p_z) can marginalize "
            f"a variable."
        )

    # ------------------------------------------------------------ public API
    def sample(self, inputs=None, sample_shape=(), reparam=True):
        """Draw the variables given ``inputs``.

        Args:
            inputs: a dict of the conditioning variables, each ``(batch, *event)``; or, inside a term,
                the evaluation's :class:`~pgm.Context`.
            sample_shape: the number (or shape) of draws per batch element.
            reparam: use the reparameterized sampler (gradients flow into the parameters) where the family
                has one; discrete families always draw without gradient.

        Returns:
            given a dict, the inputs plus the new variables, each ``(*sample_shape, batch, *event)`` (a
            distribution without conditioning variables draws one value per batch element of the inputs,
            none when ``inputs`` is empty), as a dict that remembers each value's sample dims, so that it
            can be scored or sampled from again; given a context, that context extended with the draws, which
            every term sampling this distribution on the same inputs shares.
        """
        if not self.has_sample:
            raise ValueError(f"{self.prob_text}: {type(self).__name__} cannot be sampled; it can be scored "
                             f"(LogProb, the p of KL(q, p, analytic=False)).")
        shape = sample_shape if type(sample_shape) is torch.Size else torch.Size(as_shape(sample_shape))
        if isinstance(inputs, Context):
            values, lead = self._sample(inputs, shape, reparam)
            return inputs.child(values, dict.fromkeys(values, lead), shape + inputs.lead_shape)
        context = Context.from_inputs(inputs)
        values, lead = self._sample(context, shape, reparam)
        return Draws({**(inputs or {}), **values}, {**context.lead, **dict.fromkeys(values, lead)})

    def log_prob(self, inputs):
        """log density of ``var`` given ``cond_var``, summed over the event dims: shape ``(batch,)``.

        The value may carry sample dims in front, ``(*sample_shape, batch, *event)``; the conditioning
        inputs may not, unless given as ``sample`` returned them (or in a context): in a plain dict, dim 0 of
        each is taken as the batch dim.
        """
        if not self.has_log_prob:
            raise ValueError(f"{self.prob_text}: {self.no_log_prob_reason}.")
        return self._log_prob(Context.of(inputs))

    def entropy(self, inputs=None):
        """The entropy, summed over the event dims: shape ``(batch,)``."""
        if not self.has_entropy:
            raise ValueError(
                f"H[{self.prob_text}]: {type(self).__name__} has no closed-form entropy; estimate it with "
                f"Entropy(q, analytic=False) or E(q, -LogProb(q))."
            )
        return self._entropy(Context.of(inputs))

    def sample_mean(self, inputs=None):
        """The mean of ``var`` given ``inputs``, ``(batch, *event)``; e.g. the mean image of ``p(x|z)``."""
        return self._mean(Context.of(inputs))

    def sample_variance(self, inputs=None):
        """The variance of ``var`` given ``inputs``, elementwise, ``(batch, *event)``."""
        return self._variance(Context.of(inputs))

    def enumerate_support(self, inputs=None):
        """Every value of a discrete variable, ``(N, *batch, *event)``: what ``E(q, f, enumerate=True)`` sums."""
        if not self.has_enumerate_support:
            raise ValueError(
                f"{self.prob_text}: {type(self).__name__} has no finite support to enumerate; sample it instead "
                f"(E(q, f) uses the reparameterized or the score-function estimator)."
            )
        return self._enumerate(Context.of(inputs))

    # hooks a subclass may lack: the public method names the distribution and what to do instead
    def _mean(self, context):
        raise ValueError(f"{self.prob_text}: {type(self).__name__} has no closed-form mean; average samples instead.")

    def _variance(self, context):
        raise ValueError(f"{self.prob_text}: {type(self).__name__} has no closed-form variance; use samples instead.")
