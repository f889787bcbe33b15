"""Product of Gaussian experts (Wu & Goodman 2018): the joint posterior of a multimodal VAE."""
from __future__ import annotations

import torch
from torch import nn

from .._errors import MissingInputError
from ._base import validation_enabled
from .normal import Normal


class ProductOfNormal(Normal):
    r"""The Gaussian proportional to :math:`p(z)\prod_{m} q(z|x_m)` over the experts whose inputs are given.

    Precisions add: :math:`\sigma^{-2} = 1 + \sum_m \sigma_m^{-2}` and
    :math:`\mu = \sigma^2 \sum_m \sigma_m^{-2}\mu_m` (the 1 and the missing :math:`\mu_0 = 0` term are the
    standard-normal prior expert, included unless ``prior_expert=False``). An expert is left out when any
    of its inputs is absent from the inputs (or ``None``); with a ``mask``, per example as well: an expert
    whose mask entry is 0 contributes no precision to that example, :math:`\sigma^{-2} = 1 + \sum_m
    b_m \sigma_m^{-2}`.

    Args:
        experts: Normal distributions of the same variable, e.g. ``[q(z|x), q(z|w)]``.
        name: the name in the signature (default: the experts' name).
        prior_expert: include the N(0, I) expert.
        mask: the name of an input of shape ``(batch, number of experts)``, 1 where an expert is present
            and 0 where it is missing, column m for ``experts[m]``; a conditioning variable that must be given.
    """

    def __init__(self, experts, *, name=None, prior_expert=True, mask=None):
        experts = list(experts)
        if not experts or not all(isinstance(e, Normal) for e in experts):
            raise TypeError("ProductOfNormal takes a non-empty list of Normal experts, e.g. [q_x, q_w].")
        var = experts[0].var
        for e in experts:
            if e.var != var:
                raise ValueError(f"experts must generate the same variable; {e.prob_text} generates {e.var}, not {var}.")
        cond = []
        for e in experts:
            cond.extend(c for c in e.cond_var if c not in cond)
        if mask is not None:
            if not isinstance(mask, str):
                raise TypeError(f"ProductOfNormal: mask must be the name of an input, e.g. mask='m'; got "
                                f"{type(mask).__name__}.")
            cond = cond + [mask] if mask not in cond else cond
        # overriding parameters_given, it has a network as far as Family is concerned: no net=, no fixed parameters
        super().__init__(var=var, cond_var=cond, name=name or experts[0].name)
        self.experts = nn.ModuleList(experts)
        self.prior_expert, self.mask = prior_expert, mask

    @property
    def required_var(self):
        return [] if self.mask is None else [self.mask]

    def extra_repr(self) -> str:
        prior = f"p({','.join(self.var)}) " if self.prior_expert else ""
        masked = "" if self.mask is None else f", masked by {self.mask}"
        return f"{self.prob_text} ∝ {prior}" + "".join(e.prob_text for e in self.experts) + masked

    def _renamed(self, mapping):
        experts = [e._renamed({k: v for k, v in mapping.items() if k in e.var + e.cond_var}) for e in self.experts]
        mask = None if self.mask is None else mapping.get(self.mask, self.mask)
        return ProductOfNormal(experts, name=self.name, prior_expert=self.prior_expert, mask=mask)

    def parameters_given(self, context):
        present = [e for e in self.experts if all(c in context.values for c in e.required_var)]
        if not present:
            raise MissingInputError(
                f"{self.prob_text} needs the inputs of at least one expert "
                f"({', '.join(e.prob_text for e in self.experts)}); got {sorted(context.values) or 'nothing'}."
            )
        mask, mask_lead = self._mask(context)
        lead = mask_lead
        precision, weighted = (1.0, 0.0) if self.prior_expert else (0.0, 0.0)
        coverage = 0.0
        for i, e in enumerate(self.experts):
            if not any(e is q for q in present):
                continue
            p, lead_e = e.parameters_given(context)
            inv = p["scale"].pow(-2)
            if mask is not None:  # column i of the mask, broadcast over the expert's event dims
                self._check_mask_batch(mask, mask_lead, lead_e)
                m = mask[..., i].to(inv.dtype)
                coverage = coverage + m
                inv = inv * m.reshape(m.shape + (1,) * (inv.dim() - len(lead_e)))
            precision = precision + inv
            weighted = weighted + inv * p["loc"]
            lead = lead_e if len(lead_e) > len(lead) else lead
        if mask is not None and not self.prior_expert and validation_enabled() and bool((coverage == 0).any()):
            rows = torch.nonzero(coverage == 0)[:5, -1].tolist()
            raise ValueError(f"{self.prob_text}: examples {rows} have no expert present in the mask `{self.mask}` "
                             f"and there is no prior expert (prior_expert=False); their product is undefined.")
        return {"loc": weighted / precision, "scale": precision.rsqrt()}, lead

    def _mask(self, context):
        """The mask ``(*lead, number of experts)`` and its leading shape, or ``(None, ())`` without one."""
        if self.mask is None:
            return None, torch.Size()
        mask, k = context.values.get(self.mask), len(self.experts)
        if mask is None:
            raise MissingInputError(
                f"{self.prob_text} needs its mask `{self.mask}` of shape (batch, {k}), 1 where an expert "
                f"({', '.join(e.prob_text for e in self.experts)}) is present; "
                f"got {sorted(context.values) or 'nothing'}."
            )
        lead = context.lead[self.mask]
        if mask.dim() != lead + 1 or mask.shape[-1] != k:
            raise ValueError(
                f"{self.prob_text}: its mask `{self.mask}` must have shape (batch, {k}), one column per expert "
                f"({', '.join(e.prob_text for e in self.experts)}); got a tensor of shape {tuple(mask.shape)}."
            )
        return mask, mask.shape[:lead]

    def _check_mask_batch(self, mask, lead, lead_e):
        try:
            torch.broadcast_shapes(lead, lead_e)
        except RuntimeError:
            raise ValueError(
                f"{self.prob_text}: its mask `{self.mask}` must have shape (batch, {len(self.experts)}) with the "
                f"batch of its experts, {tuple(lead_e)}; got a tensor of shape {tuple(mask.shape)}."
            ) from None
