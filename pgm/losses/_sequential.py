"""A loss repeated over the steps of a sequence: ``Sum(step, over="t", series=["x"], carry={"z_prev": "z"})``.

The step is an ordinary loss over ordinary distributions (``q(z|x,z_prev)``, ``p(x|z)``...). At step t the
series inputs give their slice ``x[:, t]``, each carried variable the value its source took at step t-1 (its
initial value at the first step), and the step's terms draw their variables afresh; the per-step values are
summed over t (steps a mask leaves out add 0). It prints as :math:`\\sum_{t=1}^{T}` with subscripted variables.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from .._errors import MissingInputError
from .._scope import Context, one_per_value
from .._signature import subscript
from ..distributions import Distribution, JointDistribution, validation_enabled
from ..distributions._base import capturing
from . import _printing
from ._base import Loss
from ._terms import LogProb


def _identifier(where, name):
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{where}: names must be identifiers such as 'x' or 'z_prev'; got {name!r}.")
    return name


def _names(where, value):
    names = [value] if isinstance(value, str) else list(value or ())
    for n in names:
        _identifier(where, n)
    if len(set(names)) != len(names):
        raise ValueError(f"{where} repeats a name: {names}.")
    return names


def _flat(distributions):
    """The distributions and, for a product, its factors (each factor caches its own draw)."""
    out = []
    for d in distributions:
        for f in [d] + (list(d.factors) if isinstance(d, JointDistribution) else []):
            if all(f is not o for o in out):
                out.append(f)
    return out


_SIGNATURE = re.compile(r"(?P<head>[A-Za-z_][A-Za-z0-9_]*(?:[_^]\{[^{}()]*\})*)\((?P<args>[A-Za-z0-9_ ,|]*)\)")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _rename_text(text, names):
    """Rename the variables inside every signature ``p(x|z)`` of a printed term."""
    if text in names:  # an Input printed as its name
        return names[text]
    return _SIGNATURE.sub(lambda m: m["head"] + "(" + _WORD.sub(lambda w: names.get(w[0], w[0]), m["args"]) + ")",
                          text)


def _rename(expr, names):
    """The sympy tree of a printed step with its variables subscripted (leaves' strings rewritten)."""
    import sympy
    from sympy.core.symbol import Str

    if isinstance(expr, Str):
        return Str(_rename_text(expr.name, names))
    if not expr.args:
        return expr
    args = [_rename(a, names) for a in expr.args]
    if type(expr).__module__ == _printing.__name__:
        return sympy.Basic.__new__(type(expr), *args)
    try:
        return expr.func(*args, evaluate=False)
    except TypeError:
        return expr.func(*args)


class Sum(Loss):
    r"""A loss summed over the steps of sequences, :math:`\sum_{t=1}^{T} \mathcal{L}_t`, per example.

    ``step`` is written with ordinary distributions, one step's variables plain (``x``, ``z``) and the previous
    step's under names of their own (``z_prev``). At each step t:

    - every ``series`` input, given as ``(batch, T, ...)`` (the time axis right after the batch dim), is its
      slice at t, ``x[:, t]``;
    - every carried variable takes the value its source took at step t-1: ``carry={"z_prev": "z"}`` carries the
      draw of ``z`` made in step t-1 (by ``E(q, ...)``, the one draw every term of that step shares);
      ``carry={"h_prev": f}`` carries the variable of the distribution ``f`` (e.g. a
      :class:`~pgm.distributions.Deterministic` RNN cell ``f(h|x,z,h_prev)``), drawn after the step's terms
      from the step's inputs and draws where the step itself did not draw it;
    - at the first step, a carried variable takes its initial value: ``initial={"z_prev": ...}`` gives an input's
      name (one value per sequence), or a tensor of the variable's event shape (the same for every sequence;
      an ``nn.Parameter`` is learned); without one, the input of the carried variable's own name;
    - the step's terms draw their variables afresh (each once per step, shared by the step's terms).

    The per-step values are summed; with ``mask`` (an input ``(batch, T)``, true at the real steps) or
    ``length`` (an input ``(batch,)`` of sequence lengths) the other steps add 0, so sequences of unequal
    lengths are padded to a common T (with finite values, e.g. zeros) and masked. A carried variable must be
    one draw per sequence (no ``sample_shape`` on its expectation); for K trajectories per sequence, repeat the
    batch K times. Compiled (``Model(compile=...)``), the T steps are unrolled into one graph: compiling takes
    longer as T grows, and a new T compiles once more.

    It prints as :math:`\sum_{t=1}^{T}\left[\dots\right]` with the step's variables subscripted: series and
    the step's draws :math:`x_t, z_t`, carried ones by their source, :math:`z_{t-1}`.

    >>> import torch
    >>> from pgm.distributions import Bernoulli, Normal
    >>> from pgm.losses import E, KL, LogProb
    >>> gaussian = lambda *v: {"loc": torch.cat(v, -1)[..., :2], "scale": torch.ones(2)}
    >>> q = Normal("q(z|x,z_prev)", net=gaussian)
    >>> prior = Normal("p(z|z_prev)", net=gaussian)
    >>> p = Bernoulli("p(x|z)", net=lambda z: {"logits": z.repeat(1, 2)})
    >>> loss = Sum(KL(q, prior) - E(q, LogProb(p)), series=["x"], carry={"z_prev": "z"},
    ...            initial={"z_prev": torch.zeros(2)})
    >>> print(loss.latex())
    \sum_{t=1}^{T} \left[D_{KL}\left[q(z_t|x_t,z_{t-1})\|p(z_t|z_{t-1})\right] - \mathbb{E}_{q(z_t|x_t,z_{t-1})}\left[\log p(x_t|z_t)\right]\right]
    >>> loss.eval({"x": torch.rand(3, 5, 4).round()}).shape       # 3 sequences of 5 steps
    torch.Size([3])

    Args:
        step: the loss of one step, per example.
        over: the name of the step index, printed in the sum (``"t"``; the number of steps prints in capitals).
        series: the names of the inputs read step by step along dim 1.
        carry: ``{carried name: source}``; a source is a variable's name (drawn in the step, or a series, e.g.
            ``{"x_prev": "x"}``) or a distribution generating one variable.
        initial: ``{carried name: input name, tensor or nn.Parameter}``, the values at the first step.
        mask: the name of a ``(batch, T)`` input, true (or 1) at the steps that count.
        length: the name of a ``(batch,)`` input of integer sequence lengths (instead of ``mask``).
        steps: the number of steps, where there is no series to read it from.
        marginalize: the name of a discrete variable of the step (a Categorical's, a Bernoulli's) to sum out of
            the whole sequence exactly, by the forward algorithm; see below.

    **Summing a discrete state out.** With ``marginalize="y"``, the step is a log-density
    :math:`\log p(x_t, y_t|y_{t-1})` given ``y`` (e.g. ``LogProb(p_x * p_y)`` with ``p_y`` the transition
    ``p(y|y_prev)``), and the loss is :math:`\log \sum_{y_{1:T}} \prod_{t=1}^{T} p(x_t,y_t|y_{t-1})`: the exact
    :math:`\log p(x_{1:T})` of a hidden Markov model, its value and gradient, with no draw. It is computed by the
    forward recursion :math:`\alpha_t(j) = \log \sum_k \exp(\alpha_{t-1}(k) + f_t(k, j))` over the K values
    of ``y``, the step evaluated once per step on all :math:`K \times K` pairs :math:`(y_{t-1}, y_t)`: cost
    :math:`T K^2` evaluations of the step instead of :math:`K^T` paths. ``y`` may be carried (once, as
    ``carry={"y_prev": "y"}`` with its initial value) or not (then each step sums over ``y_t`` on its own); the
    other carried variables may only be series (``{"x_prev": "x"}``). Padded steps (``mask``, ``length``) leave
    the sum as it was, wherever they are. For any other step loss the value is
    :math:`\log \sum_{y_{1:T}} \exp \sum_t \mathcal{L}_t`, which prints so. :meth:`posterior` and
    :meth:`most_probable` decode the state: its smoothed posterior at each step, its most probable path.

    >>> from pgm.distributions import Categorical
    >>> p_y = Categorical("p(y|y_prev)", net=lambda y_prev: {"logits": y_prev @ torch.eye(3)})
    >>> p_x = Categorical("p(x|y)", net=lambda y: {"logits": y @ torch.ones(3, 5)})
    >>> log_px = Sum(LogProb(p_x * p_y), series=["x"], carry={"y_prev": "y"}, initial={"y_prev": torch.zeros(3)},
    ...              marginalize="y")
    >>> print(log_px.latex())
    \log \sum_{y_{1:T}} \prod_{t=1}^{T} p(x_t,y_t|y_{t-1})

    Attributes:
        initial: an ``nn.Module`` holding the initial values given as tensors, by carried name
            (``loss.initial.z_prev``); move it with the distributions (``loss.initial.to(device)``).
    """

    def __init__(self, step, over="t", *, series=(), carry=None, initial=None, mask=None, length=None, steps=None,
                 marginalize=None):
        if not isinstance(step, Loss):
            raise TypeError(f"Sum takes the loss of one step, e.g. Sum(KL(q, prior) - E(q, LogProb(p)), ...); "
                            f"got {type(step).__name__}.")
        self.over = _identifier("Sum(over=...)", over)
        where = f"Sum over {over}"
        self.step, self.children = step, (step,)
        self.series = _names(f"{where}: series", series)
        if not isinstance(carry or {}, dict):
            raise TypeError(f"{where}: carry must be a dict {{carried name: source}}, e.g. {{'z_prev': 'z'}}; got "
                            f"{type(carry).__name__}.")
        self.carry = dict(carry or {})
        for name in (mask, length):
            if name is not None:
                _identifier(f"{where}: mask/length", name)
        if mask is not None and length is not None:
            raise ValueError(f"{where}: give mask= or length=, not both.")
        self.mask, self.length = mask, length
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ValueError(f"{where}: steps must be a positive integer; got {steps!r}.")
        if not self.series and steps is None:
            raise ValueError(f"{where}: the number of steps comes from the series inputs; name them "
                             f"(series=['x'] for an input x of shape (batch, T, ...)) or give steps=T.")
        self.steps = steps
        self.marginalize = None if marginalize is None else _identifier(f"{where}: marginalize", marginalize)
        self._check_carry(where)
        if self.marginalize is not None:
            self._check_marginalize(where)
        # the distributions whose draws a step may carry (a step's cache is keyed by their ids)
        self._drawers = _flat(self.step._distributions()) + self._carry_distributions
        self._initial_names, self.initial = {}, nn.Module()
        self._check_initial(where, dict(initial or {}) if isinstance(initial, dict) or initial is None else initial)

    # ------------------------------------------------------------ checks
    def _step_drawn(self):
        """The variables the step's own distributions generate (drawn at each step)."""
        return [v for d in _flat(self.step._distributions()) for v in d.var]

    def _check_carry(self, where):
        drawn = self._step_drawn()
        self._carry_distributions = []
        used = set(self.step._free()) | {v for d in _flat(self.step._distributions()) for v in d.cond_var}
        for name, source in self.carry.items():
            _identifier(f"{where}: carry", name)
            if name in self.series:
                raise ValueError(f"{where}: `{name}` is both a series and carried; a variable is read from the "
                                 f"inputs step by step or carried from the previous step, not both.")
            if isinstance(source, Distribution):
                if len(source.var) != 1:
                    raise ValueError(f"{where}: carry={{{name!r}: {source.prob_text}}}: a carried distribution must "
                                     f"generate one variable; it generates {source.var}.")
                if not source.has_sample:
                    raise ValueError(f"{where}: carry={{{name!r}: {source.prob_text}}}: {type(source).__name__} "
                                     f"cannot be sampled.")
                self._carry_distributions.append(source)
                used |= set(source.cond_var)
            elif isinstance(source, str):
                if source not in drawn and source not in self.series:
                    raise ValueError(
                        f"{where}: carry={{{name!r}: {source!r}}}: no distribution of the step generates `{source}` "
                        f"and it is not a series (the step draws {drawn or 'nothing'}; the series are "
                        f"{self.series or 'none'}). Carry a variable the step draws, a series, or a distribution: "
                        f"carry={{{name!r}: f}} with f generating it."
                    )
            else:
                raise TypeError(f"{where}: carry[{name!r}] must be a variable's name or a distribution; got "
                                f"{type(source).__name__}.")
        unused = [n for n in self.carry if n not in used]
        if unused:
            raise ValueError(f"{where}: the carried {unused} are not used by any distribution of the step; name "
                             f"them as a condition, e.g. q(z|x,{unused[0]}), or leave them out of carry.")

    def _check_marginalize(self, where):
        var = self.marginalize
        makers = [d for d in _flat(self.step._distributions()) if d.var == [var]]
        if not makers:
            raise ValueError(f"{where}: marginalize={var!r}: no distribution of the step generates `{var}` alone "
                             f"(it generates {self._step_drawn() or 'nothing'}); name the discrete variable to sum out, "
                             f"e.g. marginalize='y' with p(y|y_prev) in the step.")
        enumerable = [d for d in makers if d.has_enumerate_support]
        if not enumerable:
            raise ValueError(f"{where}: marginalize={var!r}: {type(makers[0]).__name__} {makers[0].prob_text} has no "
                             f"finite support to sum over; only a discrete variable (Categorical, Bernoulli) can be "
                             f"summed out exactly.")
        self._enumerator = enumerable[0]
        if var in self.series:
            raise ValueError(f"{where}: marginalize={var!r}: `{var}` is a series, read from the inputs; only a latent "
                             f"variable of the step is summed out.")
        if var not in self.step._free():
            raise ValueError(f"{where}: marginalize={var!r}: the step draws `{var}` itself (an expectation over it), "
                             f"while the sum runs over every value of it; write the step as a log-density given "
                             f"`{var}`, e.g. LogProb(p_x * p_y).")
        from_var = [name for name, source in self.carry.items() if source == var]
        if len(from_var) > 1:
            raise ValueError(f"{where}: marginalize={var!r}: {from_var} all carry `{var}`; the forward algorithm "
                             f"sums over a first-order chain, so carry it once (e.g. carry={{'{from_var[0]}': "
                             f"'{var}'}}).")
        other = [name for name, source in self.carry.items() if source != var and source not in self.series]
        if other:
            raise ValueError(f"{where}: marginalize={var!r}: the carried {other} come from draws or distributions, "
                             f"which a sum over every path of `{var}` cannot follow; carry only `{var}` and series "
                             f"(e.g. {{'x_prev': 'x'}}).")
        self._marginal_carry = from_var[0] if from_var else None

    def _check_initial(self, where, initial):
        if not isinstance(initial, dict):
            raise TypeError(f"{where}: initial must be a dict {{carried name: value}}, e.g. "
                            f"{{'z_prev': torch.zeros(8)}}; got {type(initial).__name__}.")
        for name, value in initial.items():
            if name not in self.carry:
                raise ValueError(f"{where}: initial names `{name}`, which is not carried; the carried variables are "
                                 f"{list(self.carry) or 'none'} (carry={{...}}).")
            if isinstance(value, str):
                self._initial_names[name] = _identifier(f"{where}: initial", value)
            elif isinstance(value, nn.Parameter):
                self.initial.register_parameter(name, value)
            elif isinstance(value, torch.Tensor):
                self.initial.register_buffer(name, value.detach().clone())
            else:
                raise TypeError(f"{where}: initial[{name!r}] must be an input's name, a tensor of the variable's "
                                f"event shape or an nn.Parameter; got {type(value).__name__}.")

    # ------------------------------------------------------------ formula
    def _source(self, name):
        source = self.carry[name]
        return source if isinstance(source, str) else source.var[0]

    def _has_initial(self, name):
        return name in self._initial_names or hasattr(self.initial, name)

    def _free(self):
        drawn = set(self._step_drawn())
        out = {}
        for k, v in self.step._free().items():
            if k == self.marginalize:
                continue
            if k in self.carry and not self._has_initial(k):
                out[k] = (f"Sum over {self.over}, as the initial value of the carried `{k}` (`{self._source(k)}` "
                          f"at step 0); pass it, or set initial={{'{k}': ...}}")
            elif k not in self.carry:
                out.setdefault(k, v)
        for d in self._carry_distributions:
            for c in d.required_var:
                if c not in self.carry and c not in drawn and c not in d.var:
                    out.setdefault(c, d.prob_text)
        for k, v in self._initial_names.items():
            out.setdefault(v, f"Sum over {self.over}, as the initial value of `{k}`")
        return out

    def _distributions(self):
        out = Loss._distributions(self)
        return out + [d for d in self._carry_distributions if all(d is not o for o in out)]

    def _modules(self):
        own = [self.initial] if list(self.initial.parameters()) else []
        return own + Loss._modules(self)

    def _names(self):
        """How each step variable prints: series and draws at t, carried ones at t-1."""
        t = self.over
        names = {v: subscript(v, t) for v in self.series}
        for d in _flat(self.step._distributions()) + self._carry_distributions:
            names.update({v: subscript(v, t) for v in d.var})
        names.update({k: subscript(self._source(k), f"{t}-1") for k in self.carry})
        return names

    def _sym(self):
        t = self.over
        end = t.upper() if len(t) == 1 and t.upper() != t else f"T_{{{t}}}"
        if self.marginalize is None:
            return _printing.Wrapped(rf"\sum_{{{t}=1}}^{{{end}}} \left[", r"\right]", f"sum_{{{t}=1}}^{{{end}}} [",
                                     "]", _rename(self.step._sym(), self._names()))
        paths = subscript(self.marginalize, f"1:{end}")
        if isinstance(self.step, LogProb):  # log sum_y prod_t p(x_t, y_t|y_{t-1})
            p = self.step.p
            inner = _rename(_printing.Term(p.symbol, p.prob_text), self._names())
            return _printing.Wrapped(rf"\log \sum_{{{paths}}} \prod_{{{t}=1}}^{{{end}}} ", "",
                                     f"log sum_{{{paths}}} prod_{{{t}=1}}^{{{end}}} ", "", inner)
        return _printing.Wrapped(rf"\log \sum_{{{paths}}} \exp \sum_{{{t}=1}}^{{{end}}} \left[", r"\right]",
                                 f"log sum_{{{paths}}} exp sum_{{{t}=1}}^{{{end}}} [", "]",
                                 _rename(self.step._sym(), self._names()))

    def __repr__(self):
        carried = ", ".join(f"{k} <- {self._source(k)}" for k in self.carry)
        return f"<Sum over {self.over} (series {self.series}; carried {carried or 'none'}): {self}>"

    # ------------------------------------------------------------ evaluation
    def _eval(self, scope):
        if self.marginalize is not None:
            return _log_sum_exp(self._forward(scope)[0], 0)
        return self._run(scope)[0]

    def draws(self, inputs=None, **params):
        """Evaluate the steps on ``inputs`` and return every variable drawn in them and every carried one (its
        value as each step saw it), stacked along a time axis after the batch dim: ``{"z": (batch, T, ...),
        "z_prev": (batch, T, ...)}`` (e.g. the posterior trajectory of a state-space model)."""
        if self.marginalize is not None:
            raise ValueError(f"Sum over {self.over}: it sums `{self.marginalize}` out of every path (marginalize="
                             f"{self.marginalize!r}) and draws nothing; build the same Sum without marginalize, over "
                             f"E(q, ...), to draw trajectories.")
        scope = Context.from_inputs(inputs, params)
        self.check_inputs(scope.values, params, scope.datasets)
        return {k: torch.stack(v, len(scope.lead_shape)) for k, v in self._run(scope, keep=True)[1].items()}

    def posterior(self, inputs=None, **params):
        r"""The posterior of the summed-out state at every step given the whole sequence, :math:`p(y_t|x_{1:T})`
        (the forward-backward smoother), as its mean :math:`\mathbb{E}[y_t|x_{1:T}]` stacked along a time axis after
        the batch dim, ``(batch, T, *event)``: for a one-hot Categorical state, the probabilities of its K classes;
        for a Bernoulli state, the probability of each bit. Padded steps are 0. Only with ``marginalize``."""
        scope = self._decoding_scope("posterior() is the posterior", inputs, params)
        probes = []
        with torch.enable_grad():
            alpha, support = self._forward(scope, probes)
            marginals = torch.autograd.grad(_log_sum_exp(alpha, 0).sum(), probes)  # (K, *lead): p(y_t = k|x)
        event = support.shape[1 + len(scope.lead_shape):]
        means = [(m.reshape(m.shape + (1,) * len(event)) * support).sum(0) for m in marginals]
        return torch.stack(means, len(scope.lead_shape)).detach()

    @torch.no_grad()
    def most_probable(self, inputs=None, **params):
        r"""The most probable path of the summed-out state given the whole sequence,
        :math:`\arg\max_{y_{1:T}} \prod_t p(x_t,y_t|y_{t-1})` (the Viterbi algorithm), its values stacked along a
        time axis after the batch dim, ``(batch, T, *event)``: one-hot rows for a Categorical state, bits for a
        Bernoulli one. Padded steps are 0. Only with ``marginalize``."""
        scope = self._decoding_scope("most_probable() is the best path", inputs, params)
        pointers = []
        alpha, support = self._forward(scope, pointers=pointers)
        lead_shape, k = scope.lead_shape, support.shape[0]
        event = support.shape[1 + len(lead_shape):]
        mask = self._step_mask(scope, len(pointers))
        state, path = alpha.argmax(0), []  # (*lead): the best last value (the initial one where no step is real)
        for t in reversed(range(len(pointers))):
            index = state.clamp(max=k - 1).reshape((1,) + lead_shape + (1,) * len(event))
            value = support.expand((k,) + lead_shape + event).gather(0, index.expand((1,) + lead_shape + event))[0]
            if mask is not None:  # a padded step holds the state of the real one before it: no value of its own
                value = torch.where(mask[..., t].reshape(mask.shape[:-1] + (1,) * len(event)), value, 0)
            path.append(value)
            state = pointers[t].gather(0, state.unsqueeze(0))[0]  # the previous value on the best path to this one
        return torch.stack(path[::-1], len(lead_shape))

    def _values(self, step_scope):
        """Every value of the summed-out state, (K, *lead, *event), refused with Sum's advice where too many."""
        try:
            return self._enumerator.enumerate_support(step_scope)
        except ValueError as error:
            if not _too_many(error):
                raise
            count = str(error).split("; use")[0]
            raise ValueError(f"Sum over {self.over}: marginalize={self.marginalize!r}: {count}; the forward algorithm "
                             f"would evaluate the step on every pair of them at each step. Use a state of fewer "
                             f"values, or sample it (a Sum over E(q, ...), without marginalize).") from None

    def _decoding_scope(self, what, inputs, params):
        """The context of ``inputs`` for a method that decodes the summed-out state (``what`` it gives)."""
        if self.marginalize is None:
            raise ValueError(f"Sum over {self.over}: {what} of a state summed out of the sequence; build the Sum "
                             f"with marginalize='y' (y the discrete state).")
        scope = Context.from_inputs(inputs, params)
        self.check_inputs(scope.values, params, scope.datasets)
        return scope

    def _length(self, scope):
        where = f"Sum over {self.over}"
        lengths = {}
        for name in self.series:
            value = scope.values.get(name)
            if value is None:
                raise MissingInputError(f"{where} reads the series `{name}` step by step; pass it as an input of "
                                        f"shape (batch, T, ...).")
            n = scope.lead[name]
            if value.dim() <= n:
                raise ValueError(f"{where}: the series `{name}` needs a time axis after the batch dim, shape "
                                 f"(batch, T, ...); got shape {tuple(value.shape)}.")
            lengths[name] = value.shape[n]
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"`{k}` has {v}" for k, v in lengths.items())
            raise ValueError(
                f"{where}: the series are of unequal lengths ({listed} steps along dim 1). Pad them to a common "
                f"length T (e.g. torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True)) and say which steps "
                f"are real: mask='mask' with an input (batch, T) true at the real steps, or length='length' with "
                f"an input (batch,) of lengths."
            )
        if self.steps is not None and lengths and self.steps != next(iter(lengths.values())):
            raise ValueError(f"{where}: steps={self.steps} but the series have {next(iter(lengths.values()))} steps; "
                             f"leave steps out to read T from the series.")
        steps = self.steps if self.steps is not None else next(iter(lengths.values()))
        if steps == 0:
            raise ValueError(f"{where}: the series {self.series} have no steps (T = 0 along dim 1); give sequences of "
                             f"at least one step (pad an empty one and mask it out).")
        return steps

    def _step_mask(self, scope, steps):
        """``(batch, T)`` booleans, or None without mask or length."""
        where = f"Sum over {self.over}"
        name = self.mask or self.length
        if name is None:
            return None
        value = scope.values.get(name)
        if value is None:
            kind = "mask (batch, T), true at the real steps" if self.mask else "length (batch,) of sequence lengths"
            raise MissingInputError(f"{where}: pass the input `{name}`, its {kind}; got {sorted(scope.values)}.")
        n = scope.lead[name]
        if self.length is not None:
            if value.dim() != n or value.is_floating_point():
                raise ValueError(f"{where}: length `{name}` must hold one integer per sequence, shape (batch,); got "
                                 f"{value.dtype} of shape {tuple(value.shape)}.")
            # checked where it costs no wait for the device: on the first step, or with the lengths on the CPU
            # (never while a CUDA graph is captured, nor on a deferred step's device tensor)
            check = validation_enabled() or value.device.type == "cpu"
            if check and not capturing() and bool(((value < 0) | (value > steps)).any()):
                raise ValueError(f"{where}: length `{name}` must lie in [0, {steps}] (T = {steps} steps); got values "
                                 f"from {int(value.min())} to {int(value.max())}.")
            return torch.arange(steps, device=value.device) < value.unsqueeze(-1)
        if value.dim() != n + 1 or value.shape[n] != steps:
            raise ValueError(f"{where}: mask `{name}` must be (batch, T) = (batch, {steps}), true at the real steps; "
                             f"got shape {tuple(value.shape)}.")
        return value if value.dtype == torch.bool else value != 0

    def _initial_values(self, scope):
        values = {}
        for name in self.carry:
            if name in self._initial_names:
                source = self._initial_names[name]
                values[name] = scope.values[source], scope.lead[source]
            elif hasattr(self.initial, name):
                value = getattr(self.initial, name)
                # the data's floating dtype (a mask or lengths given first have none)
                like = next((v for v in scope.values.values() if v.is_floating_point()),
                            next(iter(scope.values.values()), None))
                if like is not None and (value.device != like.device or
                                         (like.is_floating_point() and value.dtype != like.dtype)):
                    value = value.to(like.device, like.dtype if like.is_floating_point() else value.dtype)
                shape = scope.lead_shape
                values[name] = value.expand(shape + value.shape), len(shape)
            elif name in scope.values:
                values[name] = scope.values[name], scope.lead[name]
            else:
                raise MissingInputError(
                    f"Sum over {self.over}: the carried `{name}` takes `{self._source(name)}` from the previous step, "
                    f"so the first step needs its initial value; pass it as the input `{name}` (batch, ...), or set "
                    f"initial={{'{name}': torch.zeros(...)}} (an nn.Parameter to learn it)."
                )
        return values

    def _draws(self, samples, lead_shape, by_id):
        """var -> [(distribution, value, lead)] of the one-per-example draws cached in a step's evaluation."""
        found, other = {}, {}
        for key, entry in samples.items():
            if not (isinstance(key, tuple) and len(key) >= 4 and key[0] in by_id):
                continue
            values, lead = entry
            target = found if key[1] == () and key[3] == lead_shape else other
            for var, value in values.items():
                bucket = target.setdefault(var, [])
                if all(value is not v for _, v, _ in bucket):
                    bucket.append((by_id[key[0]], value, lead))
        return found, other

    def _carried(self, step_scope, found, other):
        """The values carried to the next step, and the log q of those drawn without a reparameterized sampler
        (their score term must also weigh the later steps, which depend on them through the carry)."""
        where = f"Sum over {self.over}"
        out, scores = {}, []

        def drawn():  # the step's one-per-example draws, as a scope to score or draw in
            unique = {v: hits[0] for v, hits in found.items() if len(hits) == 1}
            return step_scope.child({v: h[1] for v, h in unique.items()}, {v: h[2] for v, h in unique.items()},
                                    step_scope.lead_shape)

        def score(d, name):
            if not d.has_reparam and d.has_log_prob:
                value, lead = out[name]
                scores.append(d.log_prob(drawn().child({d.var[0]: value}, {d.var[0]: lead}, step_scope.lead_shape)))

        for name, source in self.carry.items():
            if isinstance(source, Distribution):
                hits = [h for h in found.get(source.var[0], []) if h[0] is source
                        or (isinstance(source, JointDistribution) and any(h[0] is f for f in source.factors))]
                if hits:
                    out[name] = hits[0][1:]
                    score(hits[0][0], name)
                    continue
                inner = source.sample(drawn())
                out[name] = inner[source.var[0]], inner.lead[source.var[0]]
                score(source, name)
                continue
            hits = found.get(source, [])
            if len(hits) > 1:
                raise ValueError(
                    f"{where}: carry={{{name!r}: {source!r}}}: step {self.over} drew `{source}` with several "
                    f"distributions ({', '.join(h[0].prob_text for h in hits)}); carry the one meant: "
                    f"carry={{{name!r}: d}} with d one of them."
                )
            if hits:
                out[name] = hits[0][1:]
                score(hits[0][0], name)
            elif source in step_scope.values:
                out[name] = step_scope.values[source], step_scope.lead[source]
            elif source in other:
                raise ValueError(
                    f"{where}: carry={{{name!r}: {source!r}}}: the step drew `{source}` only with a sample_shape; a "
                    f"carried variable is one draw per sequence (leave sample_shape out of its expectation, or "
                    f"repeat the batch for several trajectories)."
                )
            elif _enumerates(self.step, source):
                raise ValueError(
                    f"{where}: carry={{{name!r}: {source!r}}}: step {self.over} sums over every value of `{source}` "
                    f"(E(..., enumerate=True)), so there is no one draw of it to carry; sample it instead (the "
                    f"score-function estimator, E's default for a discrete q), carry the distribution itself: "
                    f"carry={{{name!r}: q}}, or sum it out of the whole sequence: Sum(LogProb(p_x * p_y), ..., "
                    f"marginalize={source!r})."
                )
            else:
                raise ValueError(
                    f"{where}: carry={{{name!r}: {source!r}}}: step {self.over} did not draw `{source}` (no term of "
                    f"the step samples a distribution of it); take an expectation over it, E(q, ...), or carry the "
                    f"distribution itself: carry={{{name!r}: q}}."
                )
        return out, scores

    @staticmethod
    def _hold(new, old, real):
        """``new`` carried values where the step is real (``real``: (batch,)), ``old`` where it is padding: a
        masked step leaves the state as it was."""
        held = {}
        for name, (value, lead) in new.items():
            before, before_lead = old[name]
            shape = real.shape + (1,) * (value.dim() - lead)
            held[name] = torch.where(real.reshape(shape), value, before), max(lead, before_lead)
        return held

    def _step_scope(self, scope, t, carried, samples):
        """The context of step t: the series at t, the carried values, the step's own cache of draws."""
        values, lead = dict(scope.values), dict(scope.lead)
        for name in self.series:
            values[name] = scope.values[name].select(scope.lead[name], t)
        for name, (value, n) in carried.items():
            values[name], lead[name] = value, n
        return Context(values, lead, scope.lead_shape, scope.params, samples, scope.datasets)

    def _run(self, scope, keep=False):
        steps = self._length(scope)
        mask = self._step_mask(scope, steps)
        carried = self._initial_values(scope)
        lead_shape, per_step, kept, scores = scope.lead_shape, [], {}, []
        by_id = {id(d): d for d in self._drawers}  # ids now, not when written: a copied loss has copied distributions
        for t in range(steps):
            samples = {}  # each step draws afresh; its terms share its draws
            step_scope = self._step_scope(scope, t, carried, samples)
            values = step_scope.values
            value = self.step._eval(step_scope)
            if not isinstance(value, torch.Tensor):
                like = next(iter(values.values()))  # a number: filled on the device (no copy from the host)
                value = like.new_full(lead_shape, value)
            per_step.append(value)
            if self.carry or keep:
                found, other = self._draws(samples, lead_shape, by_id)
                if keep:
                    for var, hits in list(found.items()) + [(k, [(None, values[k])]) for k in self.carry]:
                        kept.setdefault(var, []).append(hits[0][1])
                if t + 1 < steps:
                    new, step_scores = self._carried(step_scope, found, other)
                    carried = new if mask is None else self._hold(new, carried, mask[..., t])
                    scores += [(t, log_q) for log_q in step_scores]
        values = torch.stack(per_step, -1)  # (*lead, T): one sum (and one masking) for all the steps
        if mask is not None:  # (batch, T), aligned with the right of (*lead, T)
            values = torch.where(mask, values, values.new_zeros(()))
        total = values.sum(-1)
        if scores:
            # a discrete draw carried from step t changes every later step: its score term, zero in value, is
            # weighted by their sum too (step t's own E weighs it by step t's value only)
            with torch.no_grad():
                later = values.flip(-1).cumsum(-1).flip(-1) - values
            for t, log_q in scores:
                weight = later[..., t] if mask is None else torch.where(mask[..., t], later[..., t], 0.0)
                total = total + weight * (log_q - log_q.detach())
        return total, kept


    def _forward(self, scope, probes=None, pointers=None):
        """log sum over every path of the marginalized variable of exp(sum_t step_t), by the forward recursion.

        ``alpha`` holds, for each candidate value of the previous state (P of them: the initial value at first, then
        the K values; with a mask the K values and the initial one throughout, so that a padded step holds alpha
        wherever it is), the log-sum over the paths so far that end there. ``probes``, a list, receives one zero
        tensor (K, *lead) per step added to the step's values of y_t: the gradient of the result with respect to it
        is the posterior probability of each value of y_t. ``pointers``, a list, turns the sums over the previous
        value into maxima (Viterbi) and receives, per step, the best previous candidate of each value (K, *lead).
        Returns the final ``alpha`` (P, *lead) and the K values, (K, 1, ..., 1, *event)."""
        steps = self._length(scope)
        mask = self._step_mask(scope, steps)
        carried = self._initial_values(scope)
        var, prev, lead_shape = self.marginalize, self._marginal_carry, scope.lead_shape
        support = alpha = previous = None
        for t in range(steps):
            step_scope = self._step_scope(scope, t, carried, {})
            if support is None:  # the K values, the same at every step: (K, *lead, *event)
                support = self._values(step_scope)
                k, event = support.shape[0], support.shape[1 + len(lead_shape):]
                support = one_per_value(support, 1 + len(lead_shape))  # (K, 1, ..., 1, *event)
                alpha = support.new_zeros((1,) + lead_shape)
                if prev is not None:
                    first, n = carried[prev]
                    previous = first.expand(lead_shape + first.shape[n:]).unsqueeze(0)
                if mask is not None:  # the K values first, never reached before a real step, then the initial one
                    alpha = torch.cat([alpha.new_full((k,) + lead_shape, float("-inf")), alpha])
                    previous = None if prev is None else torch.cat([support.expand((k,) + previous.shape[1:]),
                                                                    previous])
            grid = (alpha.shape[0], k) + lead_shape
            # y_t along dim 1 and y_{t-1} along dim 0, not expanded: a factor of the step reading only one of them
            # (the emission p(x_t|y_t)) is evaluated K times per step, not K^2
            new_values, new_lead = {var: support.unsqueeze(0)}, {var: len(grid)}
            if prev is not None:
                new_values[prev], new_lead[prev] = previous.unsqueeze(1), len(grid)
            f = self.step._eval(step_scope.child(new_values, new_lead, torch.Size(grid)))
            if not isinstance(f, torch.Tensor) or f.shape != grid:
                f = (f.to(alpha.dtype) if isinstance(f, torch.Tensor) else alpha.new_full((), f)).expand(grid)
            if probes is not None:
                probes.append(f.new_zeros(grid[1:], requires_grad=True))
                f = f + probes[-1]
            if pointers is None:
                new = _log_sum_exp(alpha.unsqueeze(1) + f, 0)  # (K, *lead): over the previous value
            else:
                new, best = (alpha.unsqueeze(1) + f).max(0)
            if mask is None:
                alpha, previous = new, support if prev is not None else None
                if pointers is not None:
                    pointers.append(best)
            else:
                new = torch.cat([new, new.new_full((1,) + lead_shape, float("-inf"))])
                alpha = torch.where(mask[..., t], new, alpha)
                if pointers is not None:  # a padded step leaves every candidate where it was
                    stay = torch.arange(k + 1, device=best.device).reshape((k + 1,) + (1,) * len(lead_shape))
                    best = torch.cat([best, best.new_full((1,) + lead_shape, k)])
                    pointers.append(torch.where(mask[..., t], best, stay.expand_as(best)))
            for name, source in self.carry.items():  # series carried to the next step (x_prev <- x)
                if name != prev and t + 1 < steps:
                    moved = {name: (step_scope.values[source], step_scope.lead[source])}
                    carried.update(moved if mask is None else self._hold(moved, {name: carried[name]}, mask[..., t]))
        return alpha, support


def _too_many(error):
    """Whether ``error`` is a family's refusal to enumerate more values than it sums over."""
    return isinstance(error, ValueError) and "configurations (more than" in str(error)


def _log_sum_exp(x, dim):
    """``torch.logsumexp`` whose gradient is 0, not nan, where every term is -inf (a value impossible both by its
    transition and by its emission): the terms are clamped to the dtype's lowest finite number first, as
    ``Categorical`` clamps a -inf logit, so such a slice sums to about that number instead of -inf."""
    return torch.logsumexp(x.clamp(min=torch.finfo(x.dtype).min), dim)


def _enumerates(loss, var):
    """Whether an expectation in ``loss`` sums over every value of ``var`` (``enumerate=True``)."""
    if getattr(loss, "estimator", None) == "enumerate" and var in loss.q.var:
        return True
    return any(_enumerates(child, var) for child in getattr(loss, "children", ()))
