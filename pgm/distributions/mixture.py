"""Mixtures of distributions of one variable: the MMVAE posterior ``1/2 q(z|x) + 1/2 q(z|w)``."""
from __future__ import annotations

import torch
from torch import nn

from .._errors import MissingInputError
from .._scope import Context
from .._signature import check_names
from ._base import Distribution
from ._family import Family


class Mixture(Distribution):
    r"""The mixture :math:`q(z|x,w) = \sum_k \pi_k q_k(z)`, with :math:`\sum_k \pi_k = 1`.

    :math:`\log q(z) = \operatorname{logsumexp}_k (\log \pi_k + \log q_k(z))`. A draw picks a component
    :math:`k \sim \pi` per example and returns that component's draw; picking has no reparameterization, so
    ``E(mixture, f)`` uses the stratified estimator :math:`\sum_k \pi_k \mathbb{E}_{q_k}[f]` with one
    reparameterized draw per component (MMVAE, Shi et al. 2019), whose gradient reaches the components and
    the weights.

    Args:
        components: two or more distributions of the same single variable, e.g. ``[q(z|x), q(z|w)]``; the
            mixture is conditioned on all their conditioning variables.
        weights: ``None`` (uniform); ``K`` fixed positive numbers (normalized); an ``nn.Parameter`` of ``K``
            logits (learned, softmax); or a network taking the mixture's conditioning variables in order and
            returning logits of shape ``(batch, K)``.
        name: the name in the signature (default: the components' common name, else ``p``).
    """

    has_reparam = False  # choosing a component is not reparameterizable

    def __init__(self, components, weights=None, *, name=None):
        nn.Module.__init__(self)
        components = list(components)
        if not all(isinstance(c, Distribution) for c in components):
            raise TypeError("Mixture takes a list of pgm distributions of one variable, e.g. Mixture([q_x, q_w]); "
                            f"got {[type(c).__name__ for c in components]}.")
        listed = ", ".join(c.prob_text for c in components)
        if len(components) < 2:
            raise ValueError(f"Mixture([{listed}]): a mixture needs at least 2 components; use the distribution "
                             f"itself for one.")
        var = components[0].var
        for c in components:
            if c.var != var or len(c.var) != 1:
                raise ValueError(
                    f"Mixture([{listed}]): its components must generate the same single variable; {c.prob_text} "
                    f"generates {c.var}, {components[0].prob_text} {var}. Rename with replace_var, e.g. "
                    f"d.replace_var({c.var[0]}='{var[0]}')."
                )
        cond = []
        for c in components:
            cond.extend(v for v in c.cond_var if v not in cond)
        names = {c.name for c in components}
        self.name = name or (names.pop() if len(names) == 1 else "p")
        self.var, self.cond_var = list(var), cond
        check_names(self.prob_text, self.var, self.cond_var)
        self.components = nn.ModuleList(components)
        self.has_sample = all(c.has_sample for c in components)
        self.has_log_prob = all(c.has_log_prob for c in components)
        bad = next((c for c in components if not c.has_log_prob), None)
        if bad is not None:
            self.no_log_prob_reason = f"its component {bad.prob_text}: {bad.no_log_prob_reason}"
        self._set_weights(weights, len(components))

    def _set_weights(self, weights, k):
        self.weights_net, self.uniform = None, weights is None
        where = f"Mixture {self.prob_text}"
        if isinstance(weights, nn.Parameter):
            if weights.shape != (k,):
                raise ValueError(f"{where}: its weights must be {k} logits, one per component; got an "
                                 f"nn.Parameter of shape {tuple(weights.shape)}.")
            self.logits = weights
        elif weights is None or isinstance(weights, (torch.Tensor, list, tuple)):
            w = torch.ones(k) if weights is None else torch.as_tensor(weights)
            w = w if w.is_floating_point() else w.to(torch.get_default_dtype())
            if w.shape != (k,):
                raise ValueError(f"{where}: its weights must be {k} numbers, one per component; got shape "
                                 f"{tuple(w.shape)}.")
            if not bool((w > 0).all()):
                raise ValueError(f"{where}: its weights must be positive; got {w.tolist()}. Give fixed weights "
                                 f"such as [0.3, 0.7], or logits as an nn.Parameter to learn them.")
            self.register_buffer("logits", (w / w.sum()).log().detach().clone())
        elif callable(weights):
            if not self.cond_var:
                raise ValueError(f"{where} has no conditioning variables for a network of weights; give fixed "
                                 f"weights or an nn.Parameter of {k} logits.")
            self.weights_net = weights
        else:
            raise TypeError(f"{where}: weights must be None, {k} numbers, an nn.Parameter of {k} logits or a "
                            f"network; got {type(weights).__name__}.")

    @property
    def required_var(self):
        out = list(self.cond_var) if self.weights_net is not None else []
        for c in self.components:
            out.extend(v for v in c.required_var if v not in out)
        return out

    def latex(self) -> str:
        k = len(self.components)
        if self.uniform:
            terms = [rf"\frac{{1}}{{{k}}} {c.prob_text}" for c in self.components]
        elif self.weights_net is None and not isinstance(self.logits, nn.Parameter):
            terms = [f"{w:.3g} {c.prob_text}" for w, c in zip(self.logits.exp().tolist(), self.components)]
        else:
            given = f"({','.join(self.cond_var)})" if self.weights_net is not None else ""
            terms = [rf"\pi_{{{i + 1}}}{given} {c.prob_text}" for i, c in enumerate(self.components)]
        return f"{self.prob_text} = " + " + ".join(terms)

    def extra_repr(self) -> str:
        net = self.weights_net
        return self.latex() + (f", weights={getattr(net, '__qualname__', type(net).__name__)}"
                               if net is not None and not isinstance(net, nn.Module) else "")

    def _renamed(self, mapping):
        parts = [c._renamed({k: v for k, v in mapping.items() if k in c.var + c.cond_var}) for c in self.components]
        if self.weights_net is not None or self.uniform:
            weights = self.weights_net
        else:  # the learned Parameter itself (shared), or the fixed numbers
            weights = self.logits if isinstance(self.logits, nn.Parameter) else self.logits.exp()
        return Mixture(parts, weights, name=self.name)

    # -------------------------------------------------------------- weights
    def _log_weights(self, context):
        """log pi, ``(*lead, K)``: ``(K,)`` for fixed or learned weights, per example for a network."""
        if self.weights_net is None:
            return torch.log_softmax(self.logits, -1)
        for c in self.cond_var:
            if c not in context.values:
                raise MissingInputError(f"{self.prob_text} needs input `{c}` for its weights; got "
                                        f"{sorted(context.values) or 'nothing'}.")
        args, leads = [context[c] for c in self.cond_var], [context.lead[c] for c in self.cond_var]
        key = ("weights", id(self), *args, *leads)  # the tensors themselves, as in Family._params
        hit = context.samples.get(key)
        if hit is not None:  # one network call per evaluation and inputs
            return hit
        lead = torch.broadcast_shapes(*(a.shape[:n] for a, n in zip(args, leads)))
        flat = [a.expand(lead + a.shape[n:]).reshape((-1,) + a.shape[n:]) for a, n in zip(args, leads)]
        out, k = self.weights_net(*flat), len(self.components)
        if not isinstance(out, torch.Tensor) or out.shape != (lead.numel(), k):
            got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"Mixture {self.prob_text}: its weights network must return logits of shape "
                             f"(batch, K) = ({lead.numel()}, {k}); got {got}.")
        out = torch.log_softmax(out.reshape(lead + (k,)), -1)
        context.samples[key] = out
        return out

    def _joint_log_prob(self, context):
        """log pi_k + log q_k(value), ``(..., K)``."""
        parts = torch.broadcast_tensors(*(c.log_prob(context) for c in self.components))
        return torch.stack(parts, -1) + self._log_weights(context)

    def component_posterior(self, inputs):
        """p(k | value) per example, ``(batch, K)``: the softmax of log pi_k + log q_k(value)."""
        return torch.softmax(self._joint_log_prob(Context.of(inputs)), -1)

    # ------------------------------------------------------------- the hooks
    def _log_prob(self, context):
        return torch.logsumexp(self._joint_log_prob(context), -1)

    def _sample(self, context, sample_shape=torch.Size(), reparam=True):
        key = (id(self), tuple(sample_shape), reparam, context.lead_shape,
               tuple(context.values.get(c) for c in self.cond_var))
        hit = context.samples.get(key)
        if hit is not None:
            return hit
        full, v = torch.Size(sample_shape) + context.lead_shape, self.var[0]
        draws = []
        for c in self.components:  # every component draws (shared with other terms sampling it)
            inner = c.sample(context, sample_shape, reparam)
            value, lead = inner[v], inner.lead[v]
            draws.append(value.reshape((1,) * (len(full) - lead) + value.shape))
        event = draws[0].shape[len(full):]
        stacked = torch.stack([d.expand(full + event) for d in draws], len(full))  # (*full, K, *event)
        logits = self._log_weights(context)
        pick = torch.distributions.Categorical(logits=logits.expand(full + logits.shape[-1:]), validate_args=False)
        index = pick.sample().reshape(full + (1,) * (1 + len(event))).expand(full + (1,) + event)
        result = {v: stacked.gather(len(full), index).squeeze(len(full))}, len(full)
        context.samples[key] = result
        return result

    def stratified_expectation(self, context, evaluate_f, sample_shape=()):
        r""":math:`\sum_k \pi_k \mathbb{E}_{q_k}[f]`, each expectation over ``sample_shape`` reparameterized draws
        of component k, averaged; gradients reach the components (by the score function for one without a
        reparameterized sampler) and the weights."""
        weights, total = self._log_weights(context).exp(), 0
        for k, c in enumerate(self.components):
            inner = c.sample(context, sample_shape)
            value = evaluate_f(inner)
            if not c.has_reparam and c.has_log_prob and isinstance(value, torch.Tensor):
                log_q = c.log_prob(inner)  # a discrete component: add its score-function gradient (value unchanged)
                value = value + value.detach() * (log_q - log_q.detach())
            if isinstance(value, torch.Tensor) and value.dim() > len(context.lead_shape):
                value = value.mean(dim=tuple(range(value.dim() - len(context.lead_shape))))
            total = total + weights[..., k] * value
        return total

    def _weights_for(self, context, means):
        """pi_k shaped to multiply the components' means ``(*lead, *event)``."""
        w = self._log_weights(context).exp()
        if w.dim() == 1:
            return list(w)
        # the event dims: a family knows its parameters' leading dims; otherwise a mean is (*lead, *event)
        leads = [len(c._params(context)[1]) if isinstance(c, Family) else len(context.lead_shape) * bool(c.cond_var)
                 for c in self.components]
        event = max(m.dim() - n for m, n in zip(means, leads))
        return [w[..., k].reshape(w.shape[:-1] + (1,) * event) for k in range(len(means))]

    def _component_means(self, context):
        means = [c.sample_mean(context) for c in self.components]
        return [m[self.var[0]] if isinstance(m, dict) else m for m in means]

    def _mean(self, context):
        means = self._component_means(context)
        return sum(w * m for w, m in zip(self._weights_for(context, means), means))

    def _variance(self, context):
        """sum_k pi_k (var_k + (mean_k - mean)^2): the law of total variance."""
        means = self._component_means(context)
        weights = self._weights_for(context, means)
        mean = sum(w * m for w, m in zip(weights, means))
        variances = [c.sample_variance(context) for c in self.components]
        return sum(w * (s + (m - mean).pow(2)) for w, s, m in zip(weights, variances, means))
