"""Product of Gaussian experts (Wu & Goodman 2018): the joint posterior of a multimodal VAE."""
from __future__ import annotations

import torch
from torch import nn

from .._errors import MissingInputError
from .normal import Normal


class ProductOfNormal(Normal):
    r"""The Gaussian proportional to :math:`p(z)\prod_{m} q(z|x_m)` over the experts whose inputs are given.

    Precisions add: :math:`\sigma^{-2} = 1 + \sum_m \sigma_m^{-2}` and
    :math:`\mu = \sigma^2 \sum_m \sigma_m^{-2}\mu_m` (the 1 and the missing :math:`\mu_0 = 0` term are the
    standard-normal prior expert, included unless ``prior_expert=False``). An expert is left out when any
    of its inputs is absent from the inputs (or ``None``).

    Args:
        experts: Normal distributions of the same variable, e.g. ``[q(z|x), q(z|w)]``.
        name: the name in the signature (default: the experts' name).
        prior_expert: include the N(0, I) expert.
    """

    def __init__(self, experts, *, name=None, prior_expert=True):
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
        nn.Module.__init__(self)
        self.name, self.var, self.cond_var = name or experts[0].name, list(var), cond
        self.experts = nn.ModuleList(experts)
        self.prior_expert = prior_expert
        self._has_network, self._fixed, self._seen_shapes, self.net = True, [], None, None

    @property
    def required_var(self):
        return []

    def extra_repr(self) -> str:
        prior = f"p({','.join(self.var)}) " if self.prior_expert else ""
        return f"{self.prob_text} ∝ {prior}" + "".join(e.prob_text for e in self.experts)

    def _renamed(self, mapping):
        experts = [e._renamed({k: v for k, v in mapping.items() if k in e.var + e.cond_var}) for e in self.experts]
        return ProductOfNormal(experts, name=self.name, prior_expert=self.prior_expert)

    def _params(self, scope):
        present = [e for e in self.experts if all(c in scope.values for c in e.required_var)]
        if not present:
            raise MissingInputError(
                f"{self.prob_text} needs the inputs of at least one expert "
                f"({', '.join(e.prob_text for e in self.experts)}); got {sorted(scope.values) or 'nothing'}."
            )
        precision, weighted, lead = (1.0, 0.0, torch.Size()) if self.prior_expert else (0.0, 0.0, torch.Size())
        for e in present:
            p, lead_e = e._params(scope)
            inv = p["scale"].pow(-2)
            precision = precision + inv
            weighted = weighted + inv * p["loc"]
            lead = lead_e if len(lead_e) > len(lead) else lead
        return {"loc": weighted / precision, "scale": precision.rsqrt()}, lead
