"""A family: a named conditional distribution whose parameters come from a network, backed by torch.distributions."""
from __future__ import annotations

import math

import torch
from torch import nn

from .._errors import EventShapeError, MissingInputError, TooManyConfigurationsError
from .._scope import Context, NetworkOutput
from .._values import broadcast_shapes
from . import _family_messages as _messages
from ._base import _VALIDATION, Distribution
from .learned import Learned

def _shape(t):
    return tuple(t.shape)


class Family(Distribution):
    """A conditional distribution ``name(var|cond_var)`` whose parameters come from a network or are fixed.

    Args:
        signature: ``"q(a|x,w)"``; or give ``var=``, ``cond_var=`` and ``name=`` instead.
        net: a callable taking the conditioning variables in signature order, each of shape
            ``(batch, *event)``, and returning a dict of the family's parameters, each ``(batch, *event)``.
            Subclasses may define ``forward`` instead. Without conditioning variables (``"q(w)"``), a network
            of no inputs gives **learned parameters** of a global variable, each of the event's shape and no
            batch dim, shared by every example: ``forward()`` returning ``{"loc": self.loc, "scale":
            softplus(self.raw_scale)}`` keeps the scale positive, which fixed ``nn.Parameter`` values do not.
        features_shape: the event shape of fixed parameters given as numbers, e.g. ``[64]``.
        **fixed: fixed parameter values (numbers or tensors) for distributions without a network.

    Subclasses (one per family) declare ``family`` (the torch.distributions class), ``parameter_sets``
    (the alternative sets of parameter names a network may return), ``event_ndim`` (event dims of one
    draw of ``family`` itself, 1 for one-hot categoricals) and ``has_reparam``; a family whose torch class
    has ``enumerate_support`` can be summed over exactly (``has_enumerate_support``). For example::

        class Gumbel(Family):
            family = torch.distributions.Gumbel
            parameter_sets = (("loc", "scale"),)

    A family whose torch class takes more than its parameters overrides :meth:`torch_distribution_of`; one
    that computes its parameters from its inputs otherwise than by a network (a product of experts) overrides
    :meth:`parameters_given`, and then has no ``net=``, ``forward`` or fixed parameters.
    """

    family: type = None
    kl_family: type = None  # the torch family whose closed-form KL stands for this one (default: family)
    parameter_sets: tuple = ()
    _parameter_set_options = frozenset()  # parameter_sets as frozensets (set for each subclass)
    fixed_parameters: tuple = ()  # parameters always set at construction, never by the network
    event_ndim: int = 0
    has_reparam: bool = True
    has_entropy = True
    max_enumerated = 2 ** 16  # the most values E(..., enumerate=True) sums over

    def __init__(self, signature=None, *, var=None, cond_var=None, name=None, net=None,
                 features_shape=None, **fixed):
        super().__init__()
        self._init_names(signature, var, cond_var, name, single=True)
        self.net = net
        uses_forward = self._uses_forward = type(self).forward is not Family.forward
        if net is not None and uses_forward:
            raise ValueError(f"{self.prob_text}: pass net= or define forward(), not both.")
        # parameters computed otherwise than by a network (a product of experts)
        self._computes = type(self).parameters_given is not Family.parameters_given
        self._has_network = net is not None or uses_forward or self._computes
        self._fixed = []
        self._set_fixed(fixed, features_shape)
        if self.cond_var and not self._has_network:
            raise ValueError(
                f"{self.prob_text} is conditioned on {self.cond_var} but has no network: pass net=..., "
                f"or subclass {type(self).__name__} and define forward({', '.join(self.cond_var)})."
            )
        self._seen_shapes = None

    @property
    def has_network(self) -> bool:
        """Whether the parameters are computed from the inputs (``net=``, ``forward`` or an overridden
        :meth:`parameters_given`); ``False`` for fixed parameters, the same for every input."""
        return self._has_network

    def extra_repr(self) -> str:
        params = " or ".join(", ".join(s) for s in self.parameter_sets)
        family = next(c for c in type(self).__mro__ if c.__module__.startswith(__package__))  # Normal for a subclass
        text = f"{self.prob_text}: {family.__name__}({params})"
        if self.net is not None and not isinstance(self.net, nn.Module):  # a Module prints as a child already
            text += f", net={getattr(self.net, '__qualname__', type(self.net).__name__)}"
        return text

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
        tensors = {k: v.init if isinstance(v, Learned) else v for k, v in fixed.items()
                   if isinstance(v, (torch.Tensor, Learned)) and k not in self.fixed_parameters}
        try:
            torch.broadcast_shapes(*(v.shape for v in tensors.values()), *([shape] if shape is not None else []))
        except RuntimeError:
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items())
            given = f" and features_shape={list(shape)}" if shape is not None else ""
            raise ValueError(f"{self.prob_text}: its parameters' shapes do not fit together: {shapes}{given}; give "
                             f"each the event shape, or one that broadcasts to it.") from None
        learned = {k: fixed.pop(k) for k in list(fixed) if isinstance(fixed[k], Learned)}
        if learned:
            self.learned = nn.ModuleDict({k: v.bind(self.prob_text, k, self.family.arg_constraints[k], shape)
                                          for k, v in learned.items()})
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
        self._check_values(self._fixed_values())

    def _fixed_values(self):
        """The parameters given at construction (fixed, or :class:`Learned` in their domain)."""
        params = {k: getattr(self, k) for k in self._fixed}
        if "learned" in self._modules:
            params.update({k: m() for k, m in self._modules["learned"].items()})
        return params

    def _fixed_are_numbers(self, fixed):
        given = [v.init if isinstance(v, Learned) else v for k, v in fixed.items() if k not in self.fixed_parameters]
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
                    + _messages.constraint_hint(key)
                )

    def _net_params(self, args, given):
        """Call the network on ``args`` (each ``(n, *event)``), flattened from the inputs ``given`` (named in the
        messages of a failed call)."""
        try:
            # forward itself where no hook is set on this distribution: nn.Module.__call__ costs a few microseconds,
            # paid per step of a Sum (its network's own modules are called, with their hooks, as usual)
            if self._forward_hooks or self._forward_pre_hooks or self._backward_hooks or self._backward_pre_hooks:
                out = self(*args)
            elif self._uses_forward:
                out = self.forward(*args)
            else:  # the network itself (nn.Module's __getattr__ would find it in Python, at every call)
                net = self._modules.get("net")
                out = (self.__dict__["net"] if net is None else net)(*args)
        except (RuntimeError, ValueError, TypeError) as error:
            raise ValueError(_messages.input_shape(self, args, [a.shape for a in given], error)) from error
        if not isinstance(out, dict):
            example = ", ".join(f"'{n}': ..." for n in self.parameter_sets[0])
            raise TypeError(
                f"{self.prob_text}: its network must return a dict of parameters such as {{{example}}}; "
                f"got {type(out).__name__}."
            )
        keys = frozenset(out)
        if keys not in self._parameter_set_options:
            options = " or ".join(str(sorted(s)) for s in self.parameter_sets)
            raise ValueError(
                f"{self.prob_text} ({type(self).__name__}) expects its network to return the parameters "
                f"{options}; got {sorted(keys)}."
            )
        if self._seen_shapes is None:
            self._seen_shapes = [_shape(a)[1:] for a in args]
        # under autocast a network returns bfloat16/float16; the density, its sum over the event (784 pixels) and
        # the KL are kept in float32, where a low-precision sum would lose the loss's last digits
        for value in out.values():
            if isinstance(value, torch.Tensor) and value.dtype in _LOW_PRECISION:
                return {k: v.float() if isinstance(v, torch.Tensor) and v.dtype in _LOW_PRECISION else v
                        for k, v in out.items()}
        return out

    def parameters_given(self, context: Context):
        """The parameters for the inputs in ``context`` and the leading shape they carry.

        Args:
            context: the evaluation's :class:`~pgm.Context`, holding the conditioning variables (each
                ``(*lead, *event)``).

        Returns:
            ``(params, lead_shape)``: a dict of the parameters by name, each ``(*lead_shape, *event)`` (a fixed
            parameter is ``event`` alone, and ``lead_shape`` is then ``()``), and the ``torch.Size`` of their
            leading (sample and batch) dims. A network runs once per context and inputs; the result is kept in
            ``context``.
        """
        given = self._given(context)
        return given.params, given.lead_shape

    def _given(self, context):
        """The :class:`Given` parameters for the inputs in ``context``: kept in ``context`` for a network (its
        torch distribution too, built once), made anew for fixed parameters or an overridden
        :meth:`parameters_given`."""
        if self._computes:
            return Given(*self.parameters_given(context))
        if not self._has_network:
            return Given(self._fixed_values(), torch.Size())
        values, lead = context.values, context.lead
        args, leads = [], []
        for c in self.cond_var:
            value = values.get(c)
            if value is None:
                raise MissingInputError(self._missing_message(c, values))
            args.append(value)
            leads.append(lead[c])
        # the network runs once per evaluation and inputs: KL(q, p) and E(q, ...) share q's output (and a
        # BatchNorm inside updates its statistics once), as in a hand-written step (the key: see pgm._scope)
        key = NetworkOutput(self, tuple(args), tuple(leads))
        hit = context.lookup(key)
        if hit is not None:
            return hit
        if not args:  # a network of no inputs (learned global parameters): no leading dims, like fixed ones
            out, lead_shape = self._net_params(args, args), torch.Size()
        elif _one_batch_dim(args, leads):  # the inputs go to the network as they are
            out, lead_shape = self._net_params(args, args), args[0].shape[:1]
        else:
            flat, lead_shape = context.flat(self.cond_var)
            out = self._net_params(flat, args)
            # a parameter shared by every example (a learned scale of shape (D,)) broadcasts first, as torch does
            names = [k for k, v in out.items() if torch.is_tensor(v)]
            together = torch.broadcast_tensors(*(out[k] for k in names))
            out = {**out, **{k: v.reshape(lead_shape + v.shape[1:]) for k, v in zip(names, together)}}
        if self.fixed_parameters:  # into a new dict: the network's own may be kept by it
            out = {**out, **{k: getattr(self, k) for k in self.fixed_parameters}}
        if _VALIDATION["enabled"]:  # validation_enabled(), read without a call
            self._check_values(out)
        given = Given(out, lead_shape)
        context.store(key, given)
        return given

    def _missing_message(self, name, values):
        given = sorted(values) or "nothing"
        return (f"{self.prob_text} needs input `{name}`; got {given}. "
                f"Pass it in the inputs dict, e.g. {{'{name}': tensor}}, or sample it first.")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # the sets of parameter names a network may return, as frozensets: checked against each network output
        cls._parameter_set_options = frozenset(frozenset(names) for names in cls.parameter_sets)
        if "_torch" in vars(cls):  # the hook's earlier name, which would now be ignored
            raise TypeError(f"{cls.__name__}: the method that builds the torch distribution is now "
                            f"torch_distribution_of(self, params); rename {cls.__name__}._torch to it.")

    def torch_distribution_of(self, params):
        """The ``torch.distributions`` object of ``params`` (a dict as :meth:`parameters_given` returns, each
        ``(*lead, *event)``), elementwise: its batch shape is the parameters' shape, without validation.
        Override it for a torch class that takes more than the parameters (``Multinomial``'s ``total_count``)."""
        return self.family(**params, validate_args=False)

    def _event_dims(self, params, lead_shape):
        """How many trailing dims of a value belong to the event beyond ``event_ndim``."""
        # the widest parameter: fixed ``loc=0.0, scale=torch.ones(3)`` broadcast to an event of shape (3,)
        ndim, fixed = 0, self.fixed_parameters
        for k, v in params.items():
            if k not in fixed and v.dim() > ndim:
                ndim = v.dim()
        return ndim - len(lead_shape) - self.event_ndim

    # ------------------------------------------------- operations in a context
    def _distribution(self, context):
        given = self._given(context)
        return self._torch_of(given), given.params, given.lead_shape

    def _torch_of(self, given):
        """The torch distribution of ``given``'s parameters, built once per network output (``E(q, ...)`` and
        ``KL(q, p)`` share q's)."""
        if given.torch is None:
            given.torch = self.torch_distribution_of(given.params)
        return given.torch

    def _sample(self, context: Context, sample_shape=torch.Size(), reparam=True):
        """Draw the variables once per context (cached); returns (values, lead ndim)."""
        # a family without a reparameterized sampler draws the same way whatever is asked: one draw, shared
        # by the score-function E (which asks reparam=False) and by a Term or a joint that ask reparam=True
        reparam = reparam and self.has_reparam

        def draw():
            dist, params, lead_shape = self._distribution(context)
            if lead_shape == context.lead_shape:  # the parameters have the context's leading dims: the usual case
                draws = self._draw(dist, params, sample_shape, reparam)
                return {self.var[0]: draws}, len(sample_shape) + len(lead_shape)
            # draw for every leading dim of the context the parameters lack (e.g. a prior inside a batch)
            missing = context.lead_shape[: max(len(context.lead_shape) - len(lead_shape), 0)]
            wanted = context.lead_shape[len(missing):]
            if lead_shape != wanted and len(lead_shape) == len(wanted):
                # parameters shared along a dim the context has (given a global variable only, inside a data-set
                # average): one draw per example still, so the parameters are broadcast to it first
                lead_shape = broadcast_shapes(lead_shape, wanted)
                params = {k: v.expand(lead_shape + v.shape[len(wanted):]) if k not in self.fixed_parameters
                          and torch.is_tensor(v) and v.dim() >= len(wanted) else v for k, v in params.items()}
                dist = self.torch_distribution_of(params)
            shape = torch.Size(sample_shape) + missing
            return {self.var[0]: self._draw(dist, params, shape, reparam)}, len(shape) + len(lead_shape)
        return context.drawn(self, sample_shape, reparam, draw)

    def _draw(self, dist, params, shape, reparam):
        return dist.rsample(shape) if reparam else dist.sample(shape)

    def _log_prob(self, context: Context):
        value = context.values.get(self.var[0])
        if value is None:
            raise MissingInputError(self._missing_message(self.var[0], context.values))
        given = self._given(context)
        if value.is_floating_point():  # a shortcut of the family's own (Bernoulli's), where it has one
            out = self._log_prob_of_params(given.params, given.lead_shape, value)
            if out is not None:
                return out
        try:
            return self.log_prob_given(self._torch_of(given), given.params, given.lead_shape, value)
        except EventShapeError as error:
            raise EventShapeError(f"{error}{_messages.drawn_by(context, self.var[0], value)}") from None

    def log_prob_given(self, dist, params, lead_shape, value):
        """The log density of ``value`` under ``dist``, summed over the event.

        Args:
            dist: the torch distribution of ``params`` (:meth:`torch_distribution_of`).
            params: the parameters by name, each ``(*lead_shape, *event)``, as :meth:`parameters_given` returns.
            lead_shape: the parameters' leading (sample and batch) dims.
            value: ``(*sample, *lead_shape, *event)``, or a shape that broadcasts to it; integer or boolean data
                is scored as floats.

        Returns:
            ``(*sample, *lead_shape)``: one log density per draw and example.
        """
        if not value.is_floating_point():  # integer or boolean data (0/1 pixels, counts): exact as floats
            value = value.to(next(v.dtype for v in params.values() if torch.is_tensor(v) and v.is_floating_point()))
        self._check_value(value, dist, lead_shape)
        out = self._elementwise_log_prob(dist, params, value)
        return _sum_right(out, self._event_dims(params, lead_shape))

    def _check_value(self, value, dist, lead_shape):
        """A value scored must end with the event's shape (after its sample and batch dims)."""
        full = dist.batch_shape + dist.event_shape
        if value.shape == full:  # one value per draw and example: the usual case
            return
        event = full[len(lead_shape):]
        k = len(event)
        if value.dim() >= k + bool(lead_shape) and all(a == b or a == 1 for a, b in
                                                       zip(value.shape[value.dim() - k:], event)):
            return
        per = " per example, a value of shape (batch, " + ", ".join(map(str, event)) + ")" if lead_shape else ""
        raise EventShapeError(f"{self.prob_text} scores `{self.var[0]}` with event shape {tuple(event)}{per}; got "
                              f"a tensor of shape {tuple(value.shape)}.")

    def _elementwise_log_prob(self, dist, params, value):
        return dist.log_prob(value)

    def _log_prob_of_params(self, params, lead_shape, value):
        """The log density of ``value``, of the parameters' own shape, computed from ``params`` without building the
        torch distribution, or ``None`` where the family has no such shortcut (the default)."""
        return None

    def _entropy(self, context: Context):
        dist, params, lead_shape = self._distribution(context)
        return _sum_right(self._elementwise_entropy(dist, params), self._event_dims(params, lead_shape))

    def _elementwise_entropy(self, dist, params):
        return dist.entropy()

    def _kl_view(self, dist, params):
        """The torch distribution whose closed-form KL stands for this one (itself for most families)."""
        return dist

    def _mean(self, context):
        dist, params, lead_shape = self._distribution(context)
        try:
            return dist.mean
        except NotImplementedError:  # torch has none (the relaxed families): the interface's message
            return super()._mean(context)

    def _variance(self, context):
        dist, params, lead_shape = self._distribution(context)
        try:
            return dist.variance
        except NotImplementedError:
            return super()._variance(context)

    @property
    def has_enumerate_support(self):
        """Whether the torch family has a finite support that ``enumerate_support`` lists (Bernoulli, Categorical)."""
        return bool(getattr(self.family, "has_enumerate_support", False))

    def _enumerate(self, context):
        """Every value of the event, ``(N, *lead, *event)``: all combinations of its elements' values."""
        dist, params, lead_shape = self._distribution(context)
        elements = dist.batch_shape[len(lead_shape):]  # independent elements of one event, e.g. (D,) bits
        support = dist.enumerate_support(expand=False)  # (n, 1, ..., 1, *family event)
        values = support.reshape((support.shape[0],) + support.shape[support.dim() - self.event_ndim:])
        n, cells = values.shape[0], math.prod(elements)
        if n ** cells > self.max_enumerated:
            raise TooManyConfigurationsError(
                f"{self.prob_text}: enumerating its {cells} elements of {n} values each is {n ** cells} "
                f"configurations (more than {self.max_enumerated})",
                "use the score-function estimator (E(q, f, estimator='score_function')) or a relaxed family instead."
            )
        index = torch.cartesian_prod(*[torch.arange(n, device=values.device)] * cells).reshape(n ** cells, cells)
        rows = values[index].reshape((n ** cells,) + tuple(elements) + values.shape[1:])
        lead = broadcast_shapes(context.lead_shape, lead_shape)
        return rows.reshape((rows.shape[0],) + (1,) * len(lead) + rows.shape[1:]).expand(
            (rows.shape[0],) + tuple(lead) + rows.shape[1:])

    def get_params(self, inputs=None):
        """The family's parameters for ``inputs`` (a dict, or a context) as a dict of tensors."""
        return self.parameters_given(Context.of(inputs))[0]

    def torch_distribution(self, inputs=None, independent=False):
        """The ``torch.distributions`` object for ``inputs`` (a dict, or a context).

        ``independent=True`` reinterprets the event dims (``td.Independent``), so that its ``log_prob`` and
        ``entropy`` are one value per batch element, as pgm's are.
        """
        dist, params, lead_shape = self._distribution(Context.of(inputs))
        n = self._event_dims(params, lead_shape)
        return torch.distributions.Independent(dist, n, validate_args=False) if independent and n > 0 else dist

    def kl_distribution(self, inputs=None, batch_shape=None):
        """``(torch distribution, event dims)`` whose closed-form KL stands for this family (the categorical
        for a relaxed one); with ``batch_shape``, its parameters broadcast to that batch shape first."""
        dist, params, lead_shape = self._distribution(Context.of(inputs))
        event_dims = self._event_dims(params, lead_shape)
        if batch_shape is not None and dist.batch_shape != batch_shape:
            # built anew from broadcast parameters rather than with torch's ``Distribution.expand``, whose
            # ``object.__new__`` TorchDynamo (torch 2.11) cannot trace
            n = len(dist.batch_shape)
            params = {k: v.expand(batch_shape + v.shape[n:] if v.dim() >= n else batch_shape)
                      if k in dist.arg_constraints and torch.is_tensor(v) else v for k, v in params.items()}
            dist = self.torch_distribution_of(params)
        return self._kl_view(dist, params), event_dims


_LOW_PRECISION = (torch.bfloat16, torch.float16)


def _one_batch_dim(args, leads):
    """Whether the inputs have one leading dim each, of one batch size."""
    n = args[0].size(0) if leads[0] == 1 else None
    for a, k in zip(args, leads):
        if k != 1 or a.size(0) != n:
            return False
    return True


class Given:
    """A family's parameters on one evaluation's inputs (the entry of a :class:`~pgm._scope.NetworkOutput`): the
    parameters by name, their leading shape, and the torch distribution of them once built."""

    __slots__ = ("params", "lead_shape", "torch")

    def __init__(self, params, lead_shape):
        self.params, self.lead_shape, self.torch = params, lead_shape, None


def _sum_right(t, n):
    if n == 1:
        return t.sum(-1)
    return t.sum(dim=tuple(range(-n, 0))) if n > 0 else t


LOG_2PI = math.log(2 * math.pi)
