"""Baselines (control variates) for the score-function estimator of ``E``.

A baseline :math:`b` is subtracted from :math:`f` in the score term :math:`(f(z) - b)\\nabla\\log q(z)`. It
leaves the gradient unbiased as long as it does not depend on the sample :math:`z` it scores: a moving
average of earlier steps, or a network of ``q``'s conditioning variables only.
"""
from __future__ import annotations

import torch
from torch import nn


class MovingAverageBaseline(nn.Module):
    """An exponential moving average of :math:`f` over training steps: :math:`b \\leftarrow d\\,b + (1-d)\\bar f`.

    It is read before it is updated with the current step's mean, so it never depends on the samples it
    scores. With :math:`\\bar f_t` the mean of :math:`f` over step t's draws and examples, step t scores with
    :math:`b_t`: :math:`b_1 = 0` (no history yet), :math:`b_2 = \\bar f_1` (the first step is not decayed
    towards that 0), then :math:`b_{t+1} = d\\,b_t + (1-d)\\bar f_t` for t >= 2. A step whose mean is not
    finite (refused by the model) leaves it as it was, and does not count as its first. It is a buffer of the
    model, saved in checkpoints. Updated only while gradients are enabled (training), not by
    :meth:`Model.test`.
    """

    def __init__(self, decay=0.9):
        super().__init__()
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"MovingAverageBaseline: decay must be in [0, 1); got {decay!r}.")
        self.decay = float(decay)
        self.register_buffer("value", torch.zeros(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, context, signal):
        # the first step has no history: b = 0 then
        b = self.value.clone()
        if torch.is_grad_enabled():
            with torch.no_grad():
                mean = signal.mean().to(self.value.dtype)
                decay = torch.where(self.steps > 0, self.decay, 0.0)
                # a non-finite step (refused by the model) leaves it as it was: an inf would stay in it for good
                finite = torch.isfinite(mean)
                self.value.copy_(torch.where(finite, decay * self.value + (1 - decay) * mean, self.value))
                self.steps.add_(finite.long())
        return b

    def extra_repr(self):
        return f"decay={self.decay}"


class NetworkBaseline(nn.Module):
    """A learned baseline :math:`b(x)`: a network of ``q``'s conditioning variables, one value per example."""

    def __init__(self, net, q):
        super().__init__()
        self.net, self.cond_var, self.where = net, list(q.cond_var), f"the baseline of E over {q.prob_text}"

    def forward(self, context, signal):
        # q's conditions may carry different leading dims (x from the data, z drawn by an enclosing E): the
        # network takes them broadcast and flattened, as q's own network does
        flat, lead_shape = context.flat(self.cond_var)
        out = self.net(*flat)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"{self.where} must return a tensor; got {type(out).__name__}.")
        n = flat[0].shape[0]
        if out.shape == (n, 1):
            out = out.squeeze(-1)
        if out.shape != (n,):
            raise ValueError(f"{self.where} must return one value per example, shape {(n,)} "
                             f"(or {(n, 1)}); got {tuple(out.shape)}.")
        return out.reshape(lead_shape)


class _FitBaseline(torch.autograd.Function):
    r"""Zero in value; its gradient moves ``b`` towards ``f`` (the gradient of :math:`\frac{1}{2}(f - b)^2`),
    scaled by the size of the gradient the loss sends to this term but never by its sign: a baseline is fitted
    to f whether the expectation enters the loss as ``+E`` or ``-E``."""

    @staticmethod
    def forward(ctx, b, f):
        ctx.save_for_backward(b, f)
        return torch.zeros_like(b)

    @staticmethod
    def backward(ctx, grad):
        b, f = ctx.saved_tensors
        return grad.abs() * (b - f), None


def fit_baseline(b, f):
    """A zero-valued term whose gradient fits the learned baseline ``b`` to the detached ``f``."""
    return _FitBaseline.apply(b, f)


def as_baseline(baseline, q):
    if baseline is None or isinstance(baseline, MovingAverageBaseline):
        return baseline
    if baseline == "moving_average":
        return MovingAverageBaseline()
    if isinstance(baseline, nn.Module):
        missing = [c for c in q.cond_var]
        if not missing:
            raise ValueError(f"E over {q.prob_text}: a network baseline takes q's conditioning variables, and "
                             f"{q.prob_text} has none; use baseline='moving_average'.")
        return NetworkBaseline(baseline, q)
    raise ValueError(
        f"E over {q.prob_text}: baseline must be 'moving_average', a MovingAverageBaseline(decay) or a network "
        f"(an nn.Module taking {q.cond_var}); got {baseline!r}."
    )
