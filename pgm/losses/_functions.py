"""Writing your own terms: ``Term(fn, latex)``, ``Input``, and the elementwise functions of losses
(``detach``, ``log``, ``exp``, ``sqrt``, ``logsumexp``, ``minimum``, ``maximum``, ``LogMeanExp``)."""
from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from ..distributions import Distribution
from . import _printing
from ._base import Loss, as_loss
from ._estimators import _log_mean_exp
from ._sources import _Evaluated
from ._terms import E
from ._variables import VarExpression, detach_variable


class Input(Loss):
    """A tensor given with the inputs, by name: per-example weights, rewards, masks.

    ``(Input("w") * LogProb(p)).mean()`` evaluated on ``{"x": x, "w": w}`` weighs each example's
    log-likelihood by ``w`` (shape ``(batch,)``). Prints as its name, or as ``latex`` if given.
    """

    def __init__(self, name: str, latex: str | None = None):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"an Input's name must be an identifier such as 'w'; got {name!r}.")
        self.name, self._latex = name, latex or name

    def _eval(self, context):
        value = context[self.name]
        lead = context.lead.get(self.name, value.dim())
        if value.dim() > lead:  # an event (a drawn z, a (batch, D) input) would broadcast against the batch
            event = tuple(value.shape[lead:])
            names = ", ".join(f"-{i}" for i in range(len(event), 0, -1))
            dims = f"({names})" if len(event) > 1 else f"-{len(event)}"
            raise ValueError(
                f"Input({self.name!r}): `{self.name}` has event shape {event} after its {lead} leading dim(s) "
                f"(shape {tuple(value.shape)}); an Input is one number per example, shape (batch,). Reduce its "
                f"event in a term of your own: Term(lambda {self.name}: {self.name}.sum({dims}), "
                f"r'\\sum {self.name}')."
            )
        return value

    def _sym(self):
        name = _printing.variable(self.name)  # x_n inside a sum over the examples n
        return _printing.Term(name if self._latex == self.name else self._latex, name)

    def _free(self):
        return {self.name: f"Input({self.name!r})"}


class Term(Loss):
    r"""A term of your own: ``fn`` of named inputs and samples, printed as ``latex``.

    Args:
        fn: a function (or ``nn.Module``, whose parameters :class:`~pgm.models.Model` then trains) whose
            arguments are filled by name. It returns one value per example, shape ``(batch,)`` (the leading
            dims of the context it runs in), or a single number for the batch, shape ``()``.
        latex: how the term prints, e.g. ``r"\mathrm{MMD}\left[q(z|x), p(z)\right]"``.
        text: how it prints as text (default: ``latex``).
        inputs: where each argument comes from: a variable's name (from the inputs or an enclosing ``E``), or
            a distribution, whose variable is drawn for this evaluation (reparameterized where it can be, and
            shared with every other term that samples it), or :class:`ParametersOf` / :class:`TorchDistributionOf`
            a distribution, whose parameters (or torch distribution) at this evaluation it gets without running
            the network again. Arguments not named here are read as variables of
            the same name. A discrete distribution's draw carries no gradient: to train it through this term,
            put the term inside ``E(q, ...)``, which adds the score-function gradient.

    >>> import torch
    >>> from pgm.distributions import Normal
    >>> prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    >>> mean_square = Term(lambda z: z.pow(2).sum(-1), r"\lVert z \rVert^2", inputs={"z": prior})
    >>> (mean_square.mean()).latex()
    '\\mathbb{E}_{p_{data}()}\\left[\\lVert z \\rVert^2\\right]'
    """

    def __init__(self, fn, latex: str, text: str | None = None, *, inputs=None):
        if not callable(fn):
            raise TypeError(f"Term takes a function of the named inputs; got {type(fn).__name__}.")
        if not isinstance(latex, str):
            raise TypeError(f"Term needs its LaTeX as a string, e.g. r'\\mathrm{{MMD}}'; got {type(latex).__name__}.")
        self.fn, self.latex_text, self.text = fn, latex, text or latex
        names = _argument_names(fn, self.text)
        inputs = dict(inputs or {})
        unknown = [k for k in inputs if k not in names]
        if unknown:
            raise ValueError(f"Term {self.text}: inputs names {unknown}, which are not arguments of its function "
                             f"{names}.")
        for k, v in inputs.items():
            if not isinstance(v, (str, Distribution, _Evaluated)):
                raise TypeError(f"Term {self.text}: inputs[{k!r}] must be a variable's name, a distribution, "
                                f"ParametersOf(q) or TorchDistributionOf(q); got {type(v).__name__}.")
        self.sources = {n: inputs.get(n, n) for n in names}

    def _eval(self, context):
        args = []
        for name, source in self.sources.items():
            if isinstance(source, Distribution):
                args.append(source.sample(context)[source.var[0]])
            elif isinstance(source, _Evaluated):
                args.append(source.value(context))
            else:
                args.append(context[source])
        value = self.fn(*args)
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"Term {self.text}: its function must return a tensor; got {type(value).__name__}.")
        if value.dim() and tuple(value.shape) != tuple(context.lead_shape)[-value.dim():]:
            raise ValueError(
                f"Term {self.text}: its function must return one value per example, shape "
                f"{tuple(context.lead_shape)}, or one number, shape (); got shape {tuple(value.shape)}. Sum the "
                f"event dims (e.g. .sum(-1)) or reduce over the batch (.mean())."
            )
        return value

    def _sym(self):
        return _printing.Term(self.latex_text, self.text)

    def _free(self):
        out = {}
        for source in self.sources.values():
            if isinstance(source, Distribution):
                out.update({v: source.prob_text for v in source.required_var if v not in out})
            elif isinstance(source, _Evaluated):
                out.update({v: source.distribution.prob_text for v in source.distribution.cond_var if v not in out})
            else:
                out.setdefault(source, f"Term {self.text}")
        return out

    def _distributions(self):
        out = []
        for s in self.sources.values():
            d = s.distribution if isinstance(s, _Evaluated) else s
            if isinstance(d, Distribution) and all(d is not o for o in out):
                out.append(d)
        return out

    def _modules(self):
        return [self.fn] if isinstance(self.fn, nn.Module) else []


def _argument_names(fn, where):
    target = fn.forward if isinstance(fn, nn.Module) else fn
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        raise TypeError(f"Term {where}: cannot read the argument names of {fn!r}; pass a function with named "
                        f"arguments, e.g. lambda z_q, z_p: ...") from None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind not in kinds for p in parameters if p.default is inspect.Parameter.empty):
        raise TypeError(f"Term {where}: its function must take named positional arguments (no *args/**kwargs).")
    return [p.name for p in parameters if p.kind in kinds and p.default is inspect.Parameter.empty]


class _Unary(Loss):
    def __init__(self, a, fn, latex_open, latex_close, text_name):
        self.children = (as_loss(a),)
        self.fn, self.printed = fn, (latex_open, latex_close, text_name + "(", ")")

    def _eval(self, context):
        value = self.children[0]._eval(context)
        return self.fn(value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=torch.get_default_dtype()))

    def _sym(self):
        return _printing.Wrapped(*self.printed, self.children[0]._sym())


def detach(loss):
    r"""The value of ``loss`` with no gradient (stop-gradient), printed :math:`\mathrm{sg}\left[\cdot\right]`.

    ``loss`` is a loss (a GAN's discriminator step on the generator's samples) or a variable expression, which
    stays one: VQ-VAE's codebook term :math:`\left\|\mathrm{sg}\left[z_{e}\right] - e\right\|_{2}^{2}` is
    ``squared_norm(detach(Var("z_e")) - Var("e"))``, its gradient reaching ``e`` only.
    """
    if isinstance(loss, VarExpression):
        return detach_variable(loss)
    return _Unary(loss, torch.Tensor.detach, r"\mathrm{sg}\left[", r"\right]", "sg")


def log(loss):
    r""":math:`\log\left(\cdot\right)`, elementwise."""
    return _Unary(loss, torch.log, r"\log\left(", r"\right)", "log")


def exp(loss):
    r""":math:`\exp\left(\cdot\right)`, elementwise."""
    return _Unary(loss, torch.exp, r"\exp\left(", r"\right)", "exp")


def sqrt(loss):
    r""":math:`\sqrt{\cdot}`, elementwise."""
    return _Unary(loss, torch.sqrt, r"\sqrt{", "}", "sqrt")


class _Stacked(Loss):
    def __init__(self, losses, reduce, sym):
        if len(losses) < 2:
            raise ValueError(f"{reduce.__name__.lstrip('_')} takes at least two losses; got {len(losses)}.")
        self.children, self.reduce, self.sym = tuple(as_loss(a) for a in losses), reduce, sym

    def _eval(self, context):
        values = [c._eval(context) for c in self.children]
        values = torch.broadcast_tensors(*(v if isinstance(v, torch.Tensor) else torch.as_tensor(v) for v in values))
        return self.reduce(values)

    def _sym(self):
        return self.sym(*(c._sym() for c in self.children))


def logsumexp(*losses):
    r""":math:`\log\left(e^{a} + e^{b} + \dots\right)`, elementwise and stable, e.g. the log-density of a
    mixture written out: ``logsumexp(math.log(0.5) + LogProb(q_x), math.log(0.5) + LogProb(q_w))``."""
    return _Stacked(losses, _logsumexp, _printing.LogSumExp)


def minimum(a, b):
    r""":math:`\min\left(a, b\right)`, elementwise."""
    return _Stacked((a, b), _minimum, lambda x, y: _printing.Call(r"\min", "min", x, y))


def maximum(a, b):
    r""":math:`\max\left(a, b\right)`, elementwise."""
    return _Stacked((a, b), _maximum, lambda x, y: _printing.Call(r"\max", "max", x, y))


def _logsumexp(values):
    return torch.logsumexp(torch.stack(values), 0)


def _minimum(values):
    return torch.minimum(*values)


def _maximum(values):
    return torch.maximum(*values)


class LogMeanExp(E):
    r""":math:`\log \frac{1}{K}\sum_{k=1}^{K} e^{f(z_k)}` per example, with K reparameterized draws
    :math:`z_k \sim q` (a log-sum-exp over the sample dimension): a lower bound on
    :math:`\log \mathbb{E}_{q}\left[e^{f}\right]` that tightens as K grows.

    With ``f = LogProb(p) - LogProb(q)`` this is the importance-weighted bound of Burda et al. (2016). It prints
    the bound it computes, K the number of draws (a sample shape such as ``(2, 3)`` is K = 6) and ``f`` written
    with draw k's variables, :math:`f_k`:
    :math:`\mathbb{E}_{z_{1:5} \sim q(z|x)}\left[\log \frac{1}{5}\sum_{k=1}^{5} e^{f_k}\right]`, e.g.
    :math:`f_k = \log p(x,z_k) - \log q(z_k|x)`; with K = 1 it is :math:`f(z_1)`, printed
    :math:`\mathbb{E}_{q(z|x)}\left[f\right]`.
    """

    def __init__(self, q, f, sample_shape=1):
        if isinstance(q, Distribution) and not q.has_reparam:
            raise ValueError(f"LogMeanExp over {q.prob_text}: {type(q).__name__} has no reparameterized sampler; "
                             f"use a relaxed family, IWAE(p, q, K) for the importance-weighted bound (it has a score-function "
                             f"gradient), or E(q, f, estimator='score_function').")
        super().__init__(q, f, sample_shape, estimator="reparameterized")

    def _eval(self, context):
        inner = self.q.sample(context, self.sample_shape)
        value = self.f._eval(inner)
        extra = value.dim() - len(context.lead_shape) if isinstance(value, torch.Tensor) else 0
        if extra <= 0:
            return value
        count = math.prod(value.shape[:extra])
        return _log_mean_exp(value.reshape((count,) + value.shape[extra:]), count)

    def _sym(self):
        count = _printing.sample_count(self.sample_shape)
        if count == 1:  # log exp f(z_1)
            return E._sym(self)
        with _printing.renamed(_printing.draws_of(self.q, count)[1]), _printing.drawn(self.q.var):
            inner = self.f._sym()
        return _printing.log_mean(self.q, count, _printing.Wrapped("e^{", "}", "exp(", ")", inner))
