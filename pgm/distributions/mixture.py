"""Mixtures of distributions of one variable: the MMVAE posterior ``1/2 q(z|x) + 1/2 q(z|w)``, and one
distribution mixed over K values of its inputs, the VampPrior ``1/K sum_k q(z|u_k)``."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .._errors import MissingInputError
from .._scope import Context, MixtureWeights
from .._signature import check_names, latex_signatures, subscript
from .._values import broadcast_shapes
from ._base import Distribution
from ._family import Family


class Mixture(Distribution):
    r"""The mixture :math:`q(z|x,w) = \sum_k \pi_k q_k(z)`, with :math:`\sum_k \pi_k = 1`.

    :math:`\log q(z) = \operatorname{logsumexp}_k (\log \pi_k + \log q_k(z))`. A draw picks a component
    :math:`k \sim \pi` per example and returns that component's draw; picking has no reparameterization, so
    ``E(mixture, f)`` uses the stratified estimator :math:`\sum_k \pi_k \mathbb{E}_{q_k}[f]` with one
    reparameterized draw per component (MMVAE, Shi et al. 2019), whose gradient reaches the components and
    the weights. The estimator reads the mixture through ``mixture.components`` (an ``nn.ModuleList``) and
    :meth:`component_weights`.

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

    @staticmethod
    def at(component, weights=None, *, name="p", **inputs):
        r"""``component`` mixed over K values of some of its inputs, :math:`\sum_k \pi_k q(z|u_k)`: e.g. the
        VampPrior ``Mixture.at(q, x=nn.Parameter(torch.rand(K, D)))``; see :class:`InputMixture`."""
        return InputMixture(component, weights, name=name, **inputs)

    def _set_weights(self, weights, k):
        self.weights_net, self.uniform = None, weights is None
        where = f"Mixture {self.prob_text}"
        if _set_logits(self, weights, k, where):
            pass
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
        return latex_signatures(f"{self.prob_text} = " + " + ".join(terms))

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
        key = MixtureWeights(self, tuple(args), tuple(leads))  # the tensors themselves (see pgm._scope)
        hit = context.lookup(key)
        if hit is not None:  # one network call per evaluation and inputs
            return hit
        lead = broadcast_shapes(*(a.shape[:n] for a, n in zip(args, leads)))
        flat = [a.expand(lead + a.shape[n:]).reshape((-1,) + a.shape[n:]) for a, n in zip(args, leads)]
        out, k = self.weights_net(*flat), len(self.components)
        if not isinstance(out, torch.Tensor) or out.shape != (lead.numel(), k):
            got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"Mixture {self.prob_text}: its weights network must return logits of shape "
                             f"(batch, K) = ({lead.numel()}, {k}); got {got}.")
        out = torch.log_softmax(out.reshape(lead + (k,)), -1)
        context.store(key, out)
        return out

    def _joint_log_prob(self, context):
        """log pi_k + log q_k(value), ``(..., K)``."""
        parts = torch.broadcast_tensors(*(c.log_prob(context) for c in self.components))
        return torch.stack(parts, -1) + self._log_weights(context)

    def component_weights(self, inputs=None):
        """The mixing weights pi_k: ``(K,)`` for fixed or learned weights, ``(batch, K)`` for a network of the
        conditioning variables given in ``inputs`` (a dict, or the evaluation's :class:`~pgm.Context`, where the
        network runs once per evaluation and inputs). ``components`` holds the K components in the same order."""
        return self._log_weights(Context.of(inputs)).exp()

    def component_posterior(self, inputs):
        """p(k | value) per example, ``(batch, K)``: the softmax of log pi_k + log q_k(value)."""
        return torch.softmax(self._joint_log_prob(Context.of(inputs)), -1)

    # ------------------------------------------------------------- the hooks
    def _log_prob(self, context):
        return torch.logsumexp(self._joint_log_prob(context), -1)

    def _sample(self, context, sample_shape=torch.Size(), reparam=True):
        return _drawn_once(self, context, sample_shape, reparam, self._draw)

    def _draw(self, context, sample_shape, reparam):
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
        return {v: stacked.gather(len(full), index).squeeze(len(full))}, len(full)

    def _weights_for(self, context, means):
        """pi_k shaped to multiply the components' means ``(*lead, *event)``."""
        w = self._log_weights(context).exp()
        if w.dim() == 1:
            return list(w)
        # the event dims: a family knows its parameters' leading dims; otherwise a mean is (*lead, *event)
        leads = [len(c.parameters_given(context)[1]) if isinstance(c, Family)
                 else len(context.lead_shape) * bool(c.cond_var) for c in self.components]
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


class InputMixture(Distribution):
    r"""One conditional distribution mixed over K values of its inputs, :math:`\sum_k \pi_k q(z|u_k)`: the
    VampPrior (Tomczak & Welling 2018), :math:`p(z) = \frac{1}{K}\sum_k q(z|u_k)` with learned pseudo-inputs
    :math:`u_k`, written ``Mixture.at(q, x=u)`` with ``u = nn.Parameter(...)`` of shape ``(K, *x's event)``.

    The component's network runs once on the K inputs per evaluation (not once per component), and its
    parameters are shared with ``q``: the prior moves with the encoder, as the VampPrior's does. The component's
    other conditioning variables stay conditions of the mixture (``Mixture.at(q_zxy, x=u)`` is ``p(z|y)``). A
    BatchNorm in that network sees the K inputs as one batch, and in training mode counts them in its running
    statistics too.
    :math:`\log p(z) = \operatorname{logsumexp}_k (\log \pi_k + \log q(z|u_k))`; a draw picks
    :math:`k \sim \pi` per example, then draws from :math:`q(z|u_k)` (reparameterized given k). There is no
    closed-form KL against it: ``KL(q, prior)`` is the Monte Carlo estimate over q's draws.

    Args:
        component: the distribution mixed, e.g. the encoder ``q(z|x)``.
        weights: ``None`` (uniform), K fixed positive numbers (normalized), or an ``nn.Parameter`` of K logits
            (learned, softmax).
        name: the name in the signature (default ``p``).
        **inputs: for each input mixed over, its K values, ``(K, *event)``: a tensor (fixed) or an
            ``nn.Parameter`` (learned), registered on the mixture.
    """

    has_reparam = False  # choosing a component is not reparameterizable

    def __init__(self, component, weights=None, *, name="p", **inputs):
        nn.Module.__init__(self)
        if not isinstance(component, Distribution) or len(getattr(component, "var", [])) != 1:
            raise TypeError("Mixture.at takes one pgm distribution of one variable and its inputs' K values, e.g. "
                            f"Mixture.at(q, x=pseudo_inputs); got {type(component).__name__}.")
        where = f"Mixture.at({component.prob_text}, ...)"
        if not inputs:
            raise ValueError(f"{where}: name the inputs to mix over and their K values, e.g. x=nn.Parameter("
                             f"torch.rand(K, D)); {component.prob_text} takes {component.cond_var}.")
        unknown = [n for n in inputs if n not in component.cond_var]
        if unknown:
            raise ValueError(f"{where}: {unknown} are not inputs of {component.prob_text}; it takes "
                             f"{component.cond_var}.")
        counts = {}
        for n, value in inputs.items():
            if not isinstance(value, torch.Tensor) or value.dim() < 1 or not value.is_floating_point():
                got = f"a {value.dtype} tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) \
                    else type(value).__name__
                raise TypeError(f"{where}: {n}= must be K values as a floating tensor (K, *event) or an "
                                f"nn.Parameter; got {got}.")
            counts[n] = value.shape[0]
        if len(set(counts.values())) > 1:
            raise ValueError(f"{where}: the inputs must hold the same number K of values along dim 0; got "
                             f"{counts}.")
        k = next(iter(counts.values()))
        if k < 1:
            raise ValueError(f"{where}: the inputs hold no values (K = 0 along dim 0); a mixture needs at least one.")
        self.component, self.inputs = component, nn.Module()
        for n, value in inputs.items():
            if isinstance(value, nn.Parameter):
                self.inputs.register_parameter(n, value)
            else:
                self.inputs.register_buffer(n, value.detach().clone())
        self.name, self.var = name, list(component.var)
        self.cond_var = [c for c in component.cond_var if c not in inputs]
        check_names(self.prob_text, self.var, self.cond_var)
        self.has_sample, self.has_log_prob = component.has_sample, component.has_log_prob
        if not component.has_log_prob:
            self.no_log_prob_reason = f"its component {component.prob_text}: {component.no_log_prob_reason}"
        self.uniform, self.k = weights is None, k
        if not _set_logits(self, weights, k, where):
            raise TypeError(f"{where}: weights must be None (uniform), K positive numbers or an nn.Parameter of K "
                            f"logits; got {type(weights).__name__}.")

    def latex(self) -> str:
        term = _with_index(self.component, self._mixed())
        if self.uniform:
            return latex_signatures(rf"{self.prob_text} = \frac{{1}}{{K}}\sum_{{k=1}}^{{K}} {term}")
        return latex_signatures(rf"{self.prob_text} = \sum_{{k=1}}^{{K}} \pi_k {term}")

    def extra_repr(self) -> str:
        shapes = ", ".join(f"{n}: {tuple(u.shape)}" for n, u in self._mixed().items())
        return f"{self.latex()}, K={self.k} ({shapes})"

    def _renamed(self, mapping):
        """The same mixture with its variable or its other conditions renamed (through its component, whose
        network and inputs' values it shares); the inputs mixed over are no variables of it."""
        mapping = {k: v for k, v in mapping.items() if k in self.var + self.cond_var}
        if not mapping:
            return self
        weights = None if self.uniform else self.logits if isinstance(self.logits, nn.Parameter) else \
            self.logits.exp()
        return InputMixture(self.component._renamed(mapping), weights, name=self.name, **self._mixed())

    def _mixed(self):
        return {n: t for n, t in [*self.inputs.named_parameters(recurse=False), *self.inputs.named_buffers(
            recurse=False)]}

    # the most elements of one elementwise log-density (K x the value's): about 32 MB in float32
    chunk_elements = 2 ** 23

    @contextlib.contextmanager
    def _naming_the_inputs(self):
        """A component's error on the K values (a width its network does not take) says they are the mixture's."""
        try:
            yield
        except ValueError as error:
            given = ", ".join(f"`{n}` of shape {tuple(u.shape)}" for n, u in self._mixed().items())
            raise ValueError(f"{self.prob_text}, {self.component.prob_text} mixed over the K values {given} "
                             f"(Mixture.at): {error}") from None

    def _check_conditions(self, context):
        missing = [c for c in self.cond_var if c not in context.values]
        if missing:
            raise MissingInputError(f"{self.prob_text} needs input `{missing[0]}`; got "
                                    f"{sorted(context.values) or 'nothing'}.")

    def _log_prob(self, context):
        """logsumexp_k (log pi_k + log q(value|u_k)): the component scored at the K inputs at once."""
        self._check_conditions(context)
        v = self.var[0]
        if not context.lead_shape and v in context.values:  # one value, no batch: scored as a batch of one
            value = context.values[v]
            return self._log_prob(context.child({v: value.unsqueeze(0)}, {v: 1}, torch.Size([1]))).squeeze(0)
        inner = self._at_inputs(context)
        with self._naming_the_inputs():
            scores = self._scores(inner)  # (K, *lead)
        log_pi = torch.log_softmax(self.logits, -1).reshape((self.k,) + (1,) * (scores.dim() - 1))
        return torch.logsumexp(scores + log_pi, 0)

    def _at_inputs(self, context):
        """``context`` with the K values of the inputs mixed over along a new leading dim: (K, *lead)."""
        lead_shape = context.lead_shape
        values = {n: u.reshape((self.k,) + (1,) * len(lead_shape) + u.shape[1:]) for n, u in self._mixed().items()}
        return context.child(values, dict.fromkeys(values, 1 + len(lead_shape)), (self.k,) + tuple(lead_shape))

    def _moments(self, context):
        """The components' means and variances at the K inputs, (K, *lead, *event) each, and pi shaped to weigh
        them."""
        self._check_conditions(context)
        inner = self._at_inputs(context)
        with self._naming_the_inputs():
            mean, variance = self.component.sample_mean(inner), self.component.sample_variance(inner)
        v = self.var[0]
        mean, variance = (m[v] if isinstance(m, dict) else m for m in (mean, variance))
        full = (self.k,) + tuple(context.lead_shape) + mean.shape[1 + len(context.lead_shape):]
        pi = torch.softmax(self.logits, -1).reshape((self.k,) + (1,) * (len(full) - 1))
        return mean.expand(full), variance.expand(full), pi

    def _mean(self, context):
        mean, _, pi = self._moments(context)
        return (pi * mean).sum(0)

    def _variance(self, context):
        """sum_k pi_k (var_k + (mean_k - mean)^2): the law of total variance."""
        mean, variance, pi = self._moments(context)
        return (pi * (variance + (mean - (pi * mean).sum(0)).pow(2))).sum(0)

    def _scores(self, inner):
        """log q(value|u_k) for every k, (K, *lead). The elementwise densities of K components times many values
        (an importance-sampled log-likelihood scores thousands of draws per example) would not fit in memory at
        once: a family's are computed K/chunks at a time, from its parameters computed once on the K inputs."""
        component, value = self.component, inner.values.get(self.var[0])
        if not isinstance(component, Family) or value is None or self.k * value.numel() <= self.chunk_elements:
            return component.log_prob(inner)
        params, lead_shape = component.parameters_given(inner)  # (K, ...): the network once on the K inputs
        step = max(1, self.chunk_elements // value.numel())
        scores = []
        for start in range(0, self.k, step):
            part = {n: v if n in component.fixed_parameters else v[start:start + step] for n, v in params.items()}
            scores.append(component.log_prob_given(component.torch_distribution_of(part), part,
                                                   (min(step, self.k - start),) + lead_shape[1:], value))
        return torch.cat(scores)

    def _sample(self, context, sample_shape=torch.Size(), reparam=True):
        return _drawn_once(self, context, sample_shape, reparam, self._draw)

    def _draw(self, context, sample_shape, reparam):
        self._check_conditions(context)
        full = torch.Size(sample_shape) + context.lead_shape
        pick = torch.distributions.Categorical(logits=self.logits.expand(full + (self.k,)), validate_args=False)
        index = pick.sample()  # (*full): the component of each draw
        values = {n: u[index] for n, u in self._mixed().items()}  # (*full, *event)
        with self._naming_the_inputs():
            inner = self.component.sample(context.child(values, dict.fromkeys(values, len(full)), full),
                                          reparam=reparam)
        v = self.var[0]
        return {v: inner[v]}, inner.lead[v]


def _set_logits(module, weights, k, where):
    """Register ``weights`` as ``module.logits``: an ``nn.Parameter`` of k logits (learned), or ``None`` (uniform)
    or k positive numbers (fixed, normalized). False for any other kind (left to the caller)."""
    if isinstance(weights, nn.Parameter):
        if weights.shape != (k,):
            raise ValueError(f"{where}: its weights must be {k} logits, one per component; got an nn.Parameter of "
                             f"shape {tuple(weights.shape)}.")
        module.logits = weights
        return True
    if weights is None or isinstance(weights, (torch.Tensor, list, tuple)):
        w = torch.ones(k) if weights is None else torch.as_tensor(weights)
        w = w if w.is_floating_point() else w.to(torch.get_default_dtype())
        if w.shape != (k,):
            raise ValueError(f"{where}: its weights must be {k} numbers, one per component; got shape "
                             f"{tuple(w.shape)}.")
        if not bool((w > 0).all()):
            raise ValueError(f"{where}: its weights must be positive; got {w.tolist()}. Give fixed weights such as "
                             f"[0.3, 0.7], or logits as an nn.Parameter to learn them.")
        module.register_buffer("logits", (w / w.sum()).log().detach().clone())
        return True
    return False


def _drawn_once(mixture, context, sample_shape, reparam, draw):
    """``draw(context, sample_shape, reparam)`` once per evaluation, conditions and shape: every term sampling the
    mixture on the same inputs shares the draw."""
    return context.drawn(mixture, sample_shape, reparam, lambda: draw(context, sample_shape, reparam))


def _with_index(component, mixed):
    """``q(z|x_k)``: the component's signature with each input mixed over indexed by k (``x_obs`` as
    ``x_{obs,k}``)."""
    cond = [subscript(c, "k") if c in mixed else c for c in component.cond_var]
    return f"{component.name}({','.join(component.var)}|{','.join(cond)})"
