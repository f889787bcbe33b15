r"""``Flow``: a base distribution pushed through a list of layers, with its density by change of variables."""
from __future__ import annotations

import torch
from torch import nn

from ..._errors import MissingInputError
from ..._scope import Context, FlowLogDensity
from ..._signature import check_names, format_signature, latex_signatures, latex_variable, subscript
from ..._values import as_shape, broadcast_shapes
from .._base import Distribution
from .._family import Family
from ._layer import Layer

DIRECTIONS = ("forward", "inverse")


def _default_name(base_name):
    for zero, k in (("_0", "_K"), ("_{0}", "_{K}")):
        if base_name.endswith(zero):
            return base_name[: -len(zero)] + k
    return base_name if "{" in base_name else base_name + "_K"


def _family_event_shape(base, context):
    """The event shape of a family's draws on the inputs in ``context`` (its parameters' trailing dims)."""
    params, lead = base.parameters_given(context)
    shapes = [p.shape[len(lead):] for k, p in params.items() if k not in base.fixed_parameters]
    return tuple(torch.broadcast_shapes(*shapes))


def static_event_shape(family):
    """The event shape of a family with fixed parameters, known before it runs (``None`` for one with a network)."""
    if family.has_network:
        return None
    return _family_event_shape(family, Context.from_inputs({}))


class Flow(Distribution):
    r"""A normalizing flow :math:`q_K(z|x)`: a base :math:`q_0(z_0|x)` pushed through layers
    :math:`z_k = f_k(z_{k-1})`, :math:`z = z_K`, with the density by change of variables

    .. math::
        \log q_K(z_K|x) = \log q_0(z_0|x) - \sum_{k=1}^{K} \log \left|\det \frac{\partial z_k}{\partial z_{k-1}}\right|.

    ``direction="forward"`` (variational inference, Rezende & Mohamed 2015): a draw runs the layers forward,
    reparameterized if the base is, and its log-density is kept from that pass for the rest of the
    evaluation, so layers without an inverse (:class:`Planar`) work for the flow's own draws:
    ``E(q, LogProb(p) - LogProb(q))`` scores q's draw without inverting. Any other value (data, another
    distribution's draw as in ``KL(q, flow)``) is scored through the layers' inverses, where each has one.

    ``direction="inverse"`` (density estimation, RealNVP / Glow): the layers map a value (data) to the base,
    :math:`h_0 = z`, :math:`h_k = f_k(h_{k-1})`, :math:`\log q(z) = \log q_0(h_K) + \sum_k \log|\det
    \partial h_k / \partial h_{k-1}|`, exact with forward passes only; drawing runs the inverses backwards.
    A multi-scale flow (RealNVP, Glow) puts :class:`FactorOut` layers among the others: each sends part of the
    channels :math:`z_l` out of the flow, scored by its own prior, :math:`\log q(z) = \log q_0(h_K) + \sum_l
    \log p(z_l|h_l) + \sum_k \log|\det \partial h_k / \partial h_{k-1}|`, and drawing draws each :math:`z_l`
    from its prior.

    Layers may take conditioning variables by name (``cond_var=`` of a layer; its networks get them), so the
    flow's conditioning variables are the base's and the layers'. Values carry any leading sample and batch
    dims; the layers see them flattened into one batch dim, ``(N, *event)``, with the conditions broadcast.

    Args:
        base: the distribution of :math:`z_0`, one variable, e.g. ``Normal("q_0(z|x)", net=encoder)``.
        layers: :class:`Layer` s (``torch.nn.Module`` s), applied in list order.
        var: the name of the flow's variable (default: the base's).
        name: the name in the signature (default: the base's with ``_0`` replaced by ``_K``, or ``_K`` added).
        direction: ``"forward"`` or ``"inverse"``, as above.

    >>> from pgm.distributions import Normal
    >>> from pgm.distributions.flows import Planar
    >>> from pgm.losses import E, LogProb
    >>> base = Normal("q_0(z|x)", net=lambda x: {"loc": x, "scale": torch.ones_like(x)})
    >>> q = Flow(base, [Planar(2), Planar(2)])
    >>> q.prob_text, LogProb(q).latex()
    ('q_K(z|x)', '\\log q_K(z|x)')
    >>> print(q.latex())
    \log q_K(z|x) = \log q_0(z_0|x) - \sum_{k=1}^{K} \log \left|\det \frac{\partial z_k}{\partial z_{k-1}}\right|
    >>> prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    >>> E(q, LogProb(prior) - LogProb(q)).eval({"x": torch.zeros(5, 2)}).shape
    torch.Size([5])
    """

    has_entropy = False

    def __init__(self, base, layers, *, var=None, name=None, direction="forward"):
        nn.Module.__init__(self)
        if not isinstance(base, Distribution):
            raise TypeError(f"Flow takes a pgm distribution as its base; got {type(base).__name__}.")
        if len(base.var) != 1:
            raise ValueError(f"Flow: its base {base.prob_text} generates {base.var}; a flow transforms one variable.")
        layers = list(layers) if not isinstance(layers, Layer) else [layers]
        bad = [type(l).__name__ for l in layers if not isinstance(l, Layer)]
        if bad:
            raise TypeError(f"Flow over {base.prob_text}: its layers must be pgm.distributions.flows.Layer modules "
                            f"(Planar, AffineCoupling, ...; TransformLayer wraps a torch Transform); got {bad}.")
        if direction not in DIRECTIONS:
            raise ValueError(f"Flow over {base.prob_text}: direction must be 'forward' (sample through the layers) "
                             f"or 'inverse' (map data through them to the base); got {direction!r}.")
        factoring = [i for i, l in enumerate(layers) if l.factors_out]
        if factoring and direction == "forward":
            raise ValueError(f"Flow over {base.prob_text}: its layer {factoring[0] + 1} of {len(layers)}, "
                             f"{layers[factoring[0]].describe()}, factors channels out, which only a "
                             f"density-estimation flow can do (towards its base, scoring them by the layer's prior); "
                             f"build it with direction='inverse', or leave the layer out.")
        self.base, self.layers, self.direction = base, nn.ModuleList(layers), direction
        self.name = name or _default_name(base.name)
        self.var = [var or base.var[0]]
        self.layer_cond_var = [list(l.cond_var) for l in layers]
        cond = list(base.cond_var)
        for names in self.layer_cond_var:
            cond.extend(c for c in names if c not in cond)
        self.cond_var = cond
        check_names(self.prob_text, self.var, self.cond_var)
        self.has_reparam = base.has_reparam
        self._no_inverse = next((i for i, l in enumerate(layers) if not l.has_inverse), None)
        self.has_sample = base.has_sample and (direction == "forward" or self._no_inverse is None)
        self._check_static_shapes()

    # ----------------------------------------------------------------- naming
    @property
    def base_var(self):
        """The name of the base distribution's variable (``z_0`` in the notation of Rezende & Mohamed)."""
        return self.base.var[0]

    @property
    def required_var(self):
        out = list(self.base.required_var)
        for names in self.layer_cond_var:
            out.extend(c for c in names if c not in out)
        return out

    def latex(self) -> str:
        r"""The change of variables, e.g. :math:`\log q_K(z|x) = \log q_0(z_0|x) - \sum_{k=1}^{K} \log|\det ...|`,
        with the priors of factored-out channels, :math:`\log p(z_1|h_1)`, after the base."""
        v = self.var[0]
        step, previous = subscript(v, "k"), subscript(v, "k-1")  # z_k, z_{k-1}; z_top's z_{top,k}, z_{top,k-1}
        jacobian = rf"\log \left|\det \frac{{\partial {step}}}{{\partial {previous}}}\right|"
        if self.direction == "forward":
            base = format_signature(self.base.name, [subscript(v, "0")], self.base.cond_var)
            return latex_signatures(rf"\log {self.prob_text} = \log {base} - \sum_{{k=1}}^{{K}} {jacobian}")
        base = format_signature(self.base.name, [subscript(v, "K")], self.base.cond_var)
        factored = "".join(rf" + \log {l.prior.prob_text}" for l in self.layers if l.factors_out)
        return latex_signatures(rf"\log {self.prob_text} = \log {base}{factored} + \sum_{{k=1}}^{{K}} {jacobian}, "
                                rf"\quad {subscript(v, '0')} = {latex_variable(v)}")

    def extra_repr(self) -> str:
        return f"{self.prob_text}, base {self.base.prob_text}, {len(self.layers)} layers, direction={self.direction!r}"

    def _renamed(self, mapping):
        new = Distribution._renamed(self, mapping)
        new.base = self.base._renamed({k: v for k, v in mapping.items() if k in self.base.var + self.base.cond_var})
        new.layer_cond_var = [[mapping.get(c, c) for c in names] for names in self.layer_cond_var]
        return new

    def _layer_text(self, i):
        return f"its layer {i + 1} of {len(self.layers)}, {self.layers[i].describe()},"

    # ----------------------------------------------------------------- shapes
    def _static_base_shape(self):
        return static_event_shape(self.base) if isinstance(self.base, Family) else None

    def _check_static_shapes(self):
        """Check the layers against each other and, where the base has fixed parameters, against the base."""
        base_shape = self._static_base_shape()
        shape = base_shape if self.direction == "forward" else None
        for i, layer in enumerate(self.layers):
            if shape is not None:
                self._check_layer(i, shape, f"the output of layer {i}" if i else f"the base {self.base.prob_text}")
            else:
                shape = layer.input_shape()
            if shape is not None:
                shape = tuple(layer.out_shape(shape))
        if self.direction == "inverse" and shape is not None and base_shape is not None and shape != base_shape:
            self._base_mismatch(shape, base_shape)

    def _base_mismatch(self, shape, base_shape):
        raise ValueError(f"{self.prob_text}: its layers map `{self.var[0]}` to events of shape {tuple(shape)}, but its "
                         f"base {self.base.prob_text} has events of shape {tuple(base_shape)}; build the last layers "
                         f"or the base for the same shape.")

    def _check_layer(self, i, shape, source):
        problem = self.layers[i].shape_error(tuple(shape))
        if problem is None:
            return
        takes, fits = problem
        fix = f" Build the layer for it, e.g. {fits}, or change {source.replace('the output of ', '')}." if fits \
            else f" Change the layer or {source.replace('the output of ', '')}."
        raise ValueError(f"{self.prob_text}: {self._layer_text(i)} {takes}, but its input, {source}, has event shape "
                         f"{tuple(shape)}.{fix}")

    def _check_layer_output(self, i, shape, source):
        """Check an input of layer i's inverse: the output of the layer for some input it takes."""
        layer = self.layers[i]
        try:
            before = layer.in_shape(shape)
            fits = layer.shape_error(before) is None and tuple(layer.out_shape(before)) == tuple(shape)
        except (ValueError, TypeError, IndexError):
            fits = False
        if not fits:
            raise ValueError(f"{self.prob_text}: {self._layer_text(i)} cannot invert events of shape {tuple(shape)} "
                             f"({source}); it outputs other shapes. Build the layer for the flow's shapes.")

    def _base_event_shape(self, context):
        if isinstance(self.base, Family):
            return _family_event_shape(self.base, context)
        if isinstance(self.base, Flow):
            return self.base._value_event_shape(context)
        return None

    def _value_event_shape(self, context):
        """The event shape of the flow's values on ``context``'s inputs, or ``None`` where the base cannot say."""
        shape = self._base_event_shape(context)
        if shape is None:
            return None
        layers = self.layers if self.direction == "forward" else reversed(self.layers)
        for layer in layers:
            shape = layer.out_shape(shape) if self.direction == "forward" else layer.in_shape(shape)
        return tuple(shape)

    # -------------------------------------------------------------- the passes
    def _conditions(self, context, lead_shape):
        """Per layer, its conditioning values broadcast to ``lead_shape`` and flattened, ``(N, *event)``."""
        out = []
        for i, names in enumerate(self.layer_cond_var):
            values = []
            for c in names:
                if c not in context.values:
                    raise MissingInputError(
                        f"{self.prob_text} needs input `{c}` (for {self._layer_text(i)[4:-1]}); got "
                        f"{sorted(context.values) or 'nothing'}. Pass it in the inputs dict, e.g. {{'{c}': tensor}}.")
                value, n = context.values[c], context.lead[c]
                event = value.shape[n:]
                values.append(value.expand(lead_shape + event).reshape((-1,) + event))
            out.append(values)
        return out

    def _cond_lead(self, context):
        shapes = [context.values[c].shape[: context.lead[c]] for names in self.layer_cond_var for c in names
                  if c in context.values]
        return broadcast_shapes(*shapes) if shapes else torch.Size()

    def _run(self, h, conds, generate, source):
        """Through the layers towards the value (``generate``) or towards the base: ``(h, sum of log|det|)``
        of the maps applied."""
        use_forward = (self.direction == "forward") == generate
        order = range(len(self.layers)) if use_forward else reversed(range(len(self.layers)))
        total = h.new_zeros(h.shape[0])
        for i in order:
            layer, shape = self.layers[i], tuple(h.shape[1:])
            if use_forward:
                self._check_layer(i, shape, source)
                h, log_det = layer(h, *conds[i])
            else:
                if not layer.has_inverse:
                    self._no_inverse_error(i)
                self._check_layer_output(i, shape, source)
                h, log_det = layer.inverse(h, *conds[i])
            total = total + log_det
            source = f"the output of layer {i + 1}"
        return h, total

    def _no_inverse_error(self, i):
        v = self.var[0]
        if self.direction == "forward":
            raise ValueError(
                f"{self.prob_text}: cannot score a value of `{v}` it did not draw in this evaluation: "
                f"{self._layer_text(i)} has no inverse. A flow scores its own draws from the forward pass (as in "
                f"E(q, LogProb(p) - LogProb(q)) with q this flow, or a KL(q, p) with q this flow); to score other "
                f"values (data, KL(p, q), draws without reparameterization such as the score-function "
                f"estimator's), use invertible layers (AffineCoupling, Radial, Permutation, InvertibleConv1x1, "
                f"ActNorm, BatchNormFlow).")
        raise ValueError(
            f"{self.prob_text} cannot be sampled: direction='inverse' draws by running the layers' inverses, and "
            f"{self._layer_text(i)} has no inverse. Use invertible layers, or direction='forward' to sample "
            f"through them.")

    def _base_log_prob(self, context, z0, lead):
        inner = context.child({self.base_var: z0}, {self.base_var: lead}, z0.shape[:lead])
        return self.base._log_prob(inner)

    # ------------------------------------------------------------- the hooks
    def sample(self, inputs=None, sample_shape=(), reparam=True):
        if not self.has_sample and self.base.has_sample:
            self._no_inverse_error(self._no_inverse)
        return super().sample(inputs, sample_shape, reparam)

    def _log_density_key(self, context, value):
        # the value and the condition tensors themselves (compared by identity in a key; see pgm._scope)
        return FlowLogDensity(self, value, context.conditions(self))

    def _sample(self, context, sample_shape=torch.Size(), reparam=True):
        key = context.draw_key(self, sample_shape, reparam)
        hit = context.lookup(key)
        if hit is not None:
            return hit
        values, lead = self.base._sample(context, sample_shape, reparam)
        z0 = values[self.base_var]
        lead_shape = broadcast_shapes(z0.shape[:lead], self._cond_lead(context))
        z0 = z0.expand(lead_shape + z0.shape[lead:])
        lead = len(lead_shape)
        conds = self._conditions(context, lead_shape)
        flat = z0.reshape((-1,) + z0.shape[lead:])
        if reparam:
            h, log_det = self._run(flat, conds, True, f"the base {self.base.prob_text}")
        else:  # a draw without gradient, scored later through the inverse (the score function needs that)
            with torch.no_grad():
                h, log_det = self._run(flat, conds, True, f"the base {self.base.prob_text}")
        value = h.reshape(lead_shape + h.shape[1:])
        if reparam:
            log_q = self._base_log_prob(context, z0, lead) - log_det.reshape(lead_shape)
            # the value's density from this pass, for the rest of the evaluation
            context.store(self._log_density_key(context, value), log_q)
        result = {self.var[0]: value}, lead
        context.store(key, result)
        return result

    def _log_prob(self, context):
        v = self.var[0]
        value = context.values.get(v)
        if value is None:
            raise MissingInputError(f"{self.prob_text} needs input `{v}`; got {sorted(context.values) or 'nothing'}. "
                                    f"Pass it in the inputs dict, e.g. {{'{v}': tensor}}, or sample it first.")
        hit = context.lookup(self._log_density_key(context, value))
        if hit is not None:
            return hit
        if self.direction == "forward" and self._no_inverse is not None:
            self._no_inverse_error(self._no_inverse)
        event = self._value_event_shape(context)
        if event is None:
            lead = context.lead.get(v, 1)
        else:
            lead = value.dim() - len(event)
            if lead < 0 or tuple(value.shape[lead:]) != event:
                raise ValueError(f"{self.prob_text}: `{v}` has shape {tuple(value.shape)}, but the flow's events have "
                                 f"shape {event} (its base {self.base.prob_text} through its layers); give values of "
                                 f"shape (batch, *{event}).")
        lead_shape = broadcast_shapes(value.shape[:lead], self._cond_lead(context))
        value = value.expand(lead_shape + value.shape[lead:])
        conds = self._conditions(context, lead_shape)
        h, log_det = self._run(value.reshape((-1,) + value.shape[len(lead_shape):]), conds, False, f"the value `{v}`")
        z0 = h.reshape(lead_shape + h.shape[1:])
        return self._base_log_prob(context, z0, len(lead_shape)) + log_det.reshape(lead_shape)

    def sample_and_log_prob(self, inputs=None, sample_shape=()):
        """A reparameterized draw and its log-density from the same pass (no inverse needed):
        ``(inputs plus the draw, log q of shape (*sample_shape, batch))``."""
        context = Context.of(inputs)
        values, lead = self._sample(context, torch.Size(as_shape(sample_shape)), True)
        return {**(inputs or {}), **values}, self._log_prob(context.child(values, dict.fromkeys(values, lead),
                                                                          context.lead_shape))
