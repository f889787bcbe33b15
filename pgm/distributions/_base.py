"""The base class of every pgm distribution: a named conditional density backed by torch.distributions."""
from __future__ import annotations

import copy
import math
import re

import torch
from torch import nn

from .._errors import MissingInputError
from .._scope import Scope
from .._signature import check_names, format_signature, parse_signature

_VALIDATION = {"enabled": True}


def set_validation(enabled: bool) -> None:
    """Turn checking of parameter values (e.g. a negative ``scale``) on or off for all distributions.

    Checking costs a device synchronisation per distribution and call; ``Model`` checks its first step
    and then runs without it.
    """
    _VALIDATION["enabled"] = bool(enabled)


def validation_enabled() -> bool:
    return _VALIDATION["enabled"]


def _shape(t):
    return tuple(t.shape)


class Distribution(nn.Module):
    """A conditional distribution ``name(var|cond_var)`` whose parameters come from a network or are fixed.

    Args:
        signature: ``"q(a|x,w)"``; or give ``var=``, ``cond_var=`` and ``name=`` instead.
        net: a callable taking the conditioning variables in signature order, each of shape
            ``(batch, *event)``, and returning a dict of the family's parameters, each ``(batch, *event)``.
            Subclasses may define ``forward`` instead.
        features_shape: the event shape of fixed parameters given as numbers, e.g. ``[64]``.
        **fixed: fixed parameter values (numbers or tensors) for distributions without a network.

    Subclasses (one per family) declare ``family`` (the torch.distributions class), ``parameter_sets``
    (the alternative sets of parameter names a network may return), ``event_ndim`` (event dims of one
    draw of ``family`` itself, 1 for one-hot categoricals) and ``has_reparam``.
    """

    family: type = None
    kl_family: type = None  # the torch family whose closed-form KL stands for this one (default: family)
    parameter_sets: tuple = ()
    fixed_parameters: tuple = ()  # parameters always set at construction, never by the network
    event_ndim: int = 0
    has_reparam: bool = True

    def __init__(self, signature=None, *, var=None, cond_var=None, name=None, net=None,
                 features_shape=None, **fixed):
        super().__init__()
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
        if len(var) != 1:
            raise ValueError(
                f"{format_signature(name, var, cond_var)}: a {type(self).__name__} generates one variable, not "
                f"{len(var)}; write the joint as a product of one distribution per variable, e.g. p_x * p_w."
            )
        self.name, self.var, self.cond_var = name, list(var), list(cond_var)
        self.net = net
        uses_forward = type(self).forward is not Distribution.forward
        if net is not None and uses_forward:
            raise ValueError(f"{self.prob_text}: pass net= or define forward(), not both.")
        self._has_network = net is not None or uses_forward
        self._fixed = []
        self._set_fixed(fixed, features_shape)
        if self.cond_var and not self._has_network:
            raise ValueError(
                f"{self.prob_text} is conditioned on {self.cond_var} but has no network: pass net=..., "
                f"or subclass {type(self).__name__} and define forward({', '.join(self.cond_var)})."
            )
        self._seen_shapes = None

    # ----------------------------------------------------------------- naming
    @property
    def prob_text(self) -> str:
        """The signature, e.g. ``"q(a|x,w)"``."""
        return format_signature(self.name, self.var, self.cond_var)

    @property
    def required_var(self):
        """Conditioning variables that must be given (all of them, except for products of experts)."""
        return self.cond_var

    def latex(self) -> str:
        return self.prob_text

    def extra_repr(self) -> str:
        params = " or ".join(", ".join(s) for s in self.parameter_sets)
        family = next(c for c in type(self).__mro__ if c.__module__.startswith(__package__))  # Normal for a subclass
        text = f"{self.prob_text}: {family.__name__}({params})"
        if self.net is not None and not isinstance(self.net, nn.Module):  # a Module prints as a child already
            text += f", net={getattr(self.net, '__qualname__', type(self.net).__name__)}"
        return text

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
        # a shallow copy would share these dicts; the modules and tensors inside stay shared on purpose
        new._modules, new._parameters, new._buffers = dict(self._modules), dict(self._parameters), dict(self._buffers)
        new.var = [mapping.get(v, v) for v in self.var]
        new.cond_var = [mapping.get(v, v) for v in self.cond_var]
        check_names(new.prob_text, new.var, new.cond_var)
        return new

    def marginalize_var(self, *names):
        raise ValueError(
            f"{self.prob_text}: only a joint distribution (a product such as p_x * p_z) can marginalize "
            f"a variable."
        )

    # ------------------------------------------------------------ parameters
    def _set_fixed(self, fixed, features_shape):
        names = {n for s in self.parameter_sets for n in s} | set(self.fixed_parameters)
        unknown = [k for k in fixed if k not in names]
        if unknown:
            raise TypeError(f"{type(self).__name__} has no parameter {unknown}; its parameters are {sorted(names)}.")
        given = [k for k in fixed if k not in self.fixed_parameters]
        if given and self._has_network:
            raise ValueError(f"{self.prob_text}: parameters {given} are fixed but a network is given too; choose one.")
        if not self._has_network and not self.cond_var:
            if not any(set(s) == set(given) for s in self.parameter_sets):
                options = " or ".join(str(list(s)) for s in self.parameter_sets)
                raise ValueError(
                    f"{self.prob_text} has no network, so give its parameters: {options}, "
                    f"e.g. {type(self).__name__}('{self.prob_text}', "
                    f"{', '.join(f'{n}=...' for n in self.parameter_sets[0])}, features_shape=[64])."
                )
        if features_shape is None and not self.cond_var and self._fixed_are_numbers(fixed):
            raise ValueError(
                f"{self.prob_text}: its parameters {sorted(k for k in fixed if k not in self.fixed_parameters)} are "
                f"numbers, so give the event shape: features_shape=[64] for a 64-d variable (or [] for a scalar)."
            )
        shape = None if features_shape is None else torch.Size(features_shape)
        for key, value in fixed.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
            if key not in self.fixed_parameters and shape is not None:
                tensor = tensor.expand(shape).clone() if tensor.shape != shape else tensor
            elif key in self.fixed_parameters and tensor is value:  # updated in place later: never the caller's
                tensor = tensor.detach().clone()
            if isinstance(value, nn.Parameter):
                self.register_parameter(key, value)
            else:
                self.register_buffer(key, tensor.to(torch.get_default_dtype()) if not tensor.is_floating_point() else tensor)
            self._fixed.append(key)
        self._check_values({k: getattr(self, k) for k in self._fixed})

    def _fixed_are_numbers(self, fixed):
        given = [v for k, v in fixed.items() if k not in self.fixed_parameters]
        return bool(given) and all(not isinstance(v, torch.Tensor) or v.dim() == 0 for v in given)

    def forward(self, *cond):
        return self.net(*cond)

    def _check_values(self, params):
        constraints = self.family.arg_constraints
        for key, value in params.items():
            constraint = constraints.get(key)
            if constraint is None or not isinstance(value, torch.Tensor):
                continue
            ok = constraint.check(value)
            if not bool(ok.all()):
                bad = value[~ok] if ok.shape == value.shape else value
                raise ValueError(
                    f"{self.prob_text}: parameter `{key}` must satisfy {constraint}; got values such as "
                    f"{bad.flatten()[:3].tolist()} (a tensor of shape {_shape(value)}). "
                    + _constraint_hint(key)
                )

    def _net_params(self, args, shown):
        """Call the network on ``args`` (each ``(n, *event)``); ``shown`` are the inputs' shapes as given."""
        try:
            out = self(*args)
        except (RuntimeError, ValueError, TypeError) as error:
            raise ValueError(self._input_shape_message(args, shown, error)) from error
        if not isinstance(out, dict):
            example = ", ".join(f"'{n}': ..." for n in self.parameter_sets[0])
            raise TypeError(
                f"{self.prob_text}: its network must return a dict of parameters such as {{{example}}}; "
                f"got {type(out).__name__}."
            )
        keys = set(out)
        if not any(keys == set(s) for s in self.parameter_sets):
            options = " or ".join(str(sorted(s)) for s in self.parameter_sets)
            raise ValueError(
                f"{self.prob_text} ({type(self).__name__}) expects its network to return the parameters "
                f"{options}; got {sorted(keys)}."
            )
        if self._seen_shapes is None:
            self._seen_shapes = [_shape(a)[1:] for a in args]
        return out

    def _input_shape_message(self, args, shown, error):
        shown = [tuple(s) for s in shown]
        if self._seen_shapes is not None:  # the event shapes of the last successful call are the expected ones
            for n, a, s, expected in zip(self.cond_var, args, shown, self._seen_shapes):
                if _shape(a)[1:] != expected:
                    return f"{self.prob_text} needs input `{n}` (event shape {expected}); got a tensor of shape {s}."
        # before any successful call: a linear layer's error names the size it takes ("... (8x5 and 4x6)")
        match = _MATMUL_ERROR.search(str(error))
        if match is not None:
            rows, cols, expected = int(match[1]), int(match[2]), int(match[3])
            culprits = [i for i, a in enumerate(args) if _shape(a) == (rows, cols)]
            if len(culprits) == 1:
                i = culprits[0]
                return (f"{self.prob_text} needs input `{self.cond_var[i]}` (event shape ({expected},), the input "
                        f"size of a linear layer of its network); got a tensor of shape {shown[i]}.")
        names = ", ".join(f"`{n}` of shape {s}" for n, s in zip(self.cond_var, shown))
        return (f"{self.prob_text}: its network failed on inputs {names} ({error}). Check that each input "
                f"has the event shape the network expects, in the signature's order {self.cond_var}.")

    def _params(self, scope: Scope):
        """The parameters for the inputs in ``scope`` and the leading shape they carry."""
        if not self._has_network:
            params = {k: getattr(self, k) for k in self._fixed}
            return params, torch.Size()
        values = scope.values
        for c in self.cond_var:
            if c not in values:
                raise MissingInputError(self._missing_message(c, values))
        args = [values[c] for c in self.cond_var]
        leads = [scope.lead[c] for c in self.cond_var]
        # the network runs once per evaluation and inputs: KL(q, p) and E(q, ...) share q's output (and a
        # BatchNorm inside updates its statistics once), as in a hand-written step. The entry keeps the inputs
        # it is keyed by (their ids) alive, so no later tensor of the evaluation can take one of those ids.
        key = ("params", id(self), *(id(a) for a in args), *leads)
        hit = scope.samples.get(key)
        if hit is not None:
            return hit[0]
        if all(n == 1 for n in leads) and len({a.shape[0] for a in args}) == 1:
            out, lead_shape = self._net_params(args, [a.shape for a in args]), args[0].shape[:1]
        else:
            lead_shape = torch.broadcast_shapes(*(a.shape[:n] for a, n in zip(args, leads)))
            flat = [a.expand(lead_shape + a.shape[n:]).reshape((-1,) + a.shape[n:]) for a, n in zip(args, leads)]
            out = self._net_params(flat, [a.shape for a in args])
            out = {k: v.reshape(lead_shape + v.shape[1:]) for k, v in out.items()}
        for k in self.fixed_parameters:
            out[k] = getattr(self, k)
        if validation_enabled():
            self._check_values(out)
        scope.samples[key] = (out, lead_shape), args
        return out, lead_shape

    def _missing_message(self, name, values):
        given = sorted(values) or "nothing"
        return (f"{self.prob_text} needs input `{name}`; got {given}. "
                f"Pass it in the inputs dict, e.g. {{'{name}': tensor}}, or sample it first.")

    def _torch(self, params):
        return self.family(**params, validate_args=False)

    def _event_dims(self, params, lead_shape):
        """How many trailing dims of a value belong to the event beyond ``event_ndim``."""
        # the widest parameter: fixed ``loc=0.0, scale=torch.ones(3)`` broadcast to an event of shape (3,)
        ndim = max(params[k].dim() for k in params if k not in self.fixed_parameters)
        return ndim - len(lead_shape) - self.event_ndim

    # ------------------------------------------------------ scoped operations
    def _distribution(self, scope):
        params, lead_shape = self._params(scope)
        return self._torch(params), params, lead_shape

    def _sample(self, scope: Scope, sample_shape=torch.Size(), reparam=True):
        """Draw the variables once per scope (cached); returns (values, lead ndim)."""
        key = (id(self), tuple(sample_shape), reparam, scope.lead_shape,
               tuple(id(scope.values.get(c)) for c in self.cond_var))
        hit = scope.samples.get(key)
        if hit is not None:
            return hit[0]
        dist, params, lead_shape = self._distribution(scope)
        # draw for every leading dim of the scope the parameters lack (e.g. a prior inside a batch)
        missing = scope.lead_shape[: max(len(scope.lead_shape) - len(lead_shape), 0)]
        shape = torch.Size(sample_shape) + missing
        value = self._draw(dist, params, shape, reparam)
        result = ({self.var[0]: value}, len(shape) + len(lead_shape))
        scope.samples[key] = result, [scope.values.get(c) for c in self.cond_var]  # keeps the keyed inputs alive
        return result

    def _draw(self, dist, params, shape, reparam):
        # a family without a reparameterized sampler draws without gradient; E refuses such families upfront
        return dist.rsample(shape) if reparam and self.has_reparam else dist.sample(shape)

    def _log_prob(self, scope: Scope):
        value = scope.values.get(self.var[0])
        if value is None:
            raise MissingInputError(self._missing_message(self.var[0], scope.values))
        dist, params, lead_shape = self._distribution(scope)
        out = self._elementwise_log_prob(dist, params, value)
        return _sum_right(out, self._event_dims(params, lead_shape))

    def _elementwise_log_prob(self, dist, params, value):
        return dist.log_prob(value)

    def _entropy(self, scope: Scope):
        dist, params, lead_shape = self._distribution(scope)
        return _sum_right(self._elementwise_entropy(dist, params), self._event_dims(params, lead_shape))

    def _elementwise_entropy(self, dist, params):
        return dist.entropy()

    def _kl_view(self, dist, params):
        """The torch distribution whose closed-form KL stands for this one (itself for most families)."""
        return dist

    # ------------------------------------------------------------ public API
    def sample(self, inputs=None, sample_shape=(), reparam=True):
        """Draw the variables given ``inputs``; returns ``inputs`` plus the new variables.

        ``reparam=True`` uses the reparameterized sampler (gradients flow into the parameters) where the family
        has one; discrete families (``Bernoulli``, ``Categorical``) always draw without gradient.
        A value has shape ``(*sample_shape, batch, *event)``; a distribution without conditioning
        variables draws one value per batch element of the inputs (none when ``inputs`` is empty).
        """
        scope = Scope.from_inputs(inputs)
        new, _ = self._sample(scope, torch.Size(_as_shape(sample_shape)), reparam)
        return {**(inputs or {}), **new}

    def log_prob(self, inputs):
        """log density of ``var`` given ``cond_var``, summed over the event dims: shape ``(batch,)``.

        The value may carry sample dims in front, ``(*sample_shape, batch, *event)``; the conditioning
        inputs may not: dim 0 of each is taken as the batch dim (flatten sample dims into it first).
        """
        return self._log_prob(Scope.from_inputs(inputs))

    def entropy(self, inputs=None):
        return self._entropy(Scope.from_inputs(inputs))

    def get_params(self, inputs=None):
        """The family's parameters for ``inputs`` as a dict of tensors."""
        return self._params(Scope.from_inputs(inputs))[0]

    def torch_distribution(self, inputs=None):
        """The ``torch.distributions`` object for ``inputs`` (event dims not reinterpreted)."""
        return self._distribution(Scope.from_inputs(inputs))[0]


def _as_shape(sample_shape):
    if isinstance(sample_shape, int):
        return () if sample_shape == 1 else (sample_shape,)
    return tuple(sample_shape)


def _sum_right(t, n):
    return t.sum(dim=tuple(range(-n, 0))) if n > 0 else t


def _constraint_hint(key):
    if key in ("scale", "concentration", "concentration0", "concentration1", "temperature"):
        return "End the network with softplus (or exp) to keep it positive."
    if key == "probs":
        return "End the network with sigmoid/softmax, or return 'logits' instead."
    return ""


LOG_2PI = math.log(2 * math.pi)
_MATMUL_ERROR = re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")
