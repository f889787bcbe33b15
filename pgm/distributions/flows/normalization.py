r"""Normalization layers of flows: batch normalization (RealNVP) and Glow's ActNorm, per feature or channel."""
from __future__ import annotations

import torch
from torch import nn
from torch.distributions.transforms import AffineTransform

from ._layer import Layer, apply_transform, channels_shape_error


def _per_channel(t, x):
    """A ``(C,)`` tensor shaped to broadcast along dim 1 of ``x`` ``(N, C, ...)``."""
    return t.reshape((1, -1) + (1,) * (x.dim() - 2))


def _channel_stats(x):
    """Mean and (biased) variance over every dim but 1: ``(C,)`` each."""
    dims = [0] + list(range(2, x.dim()))
    return x.mean(dims), x.var(dims, unbiased=False)


class BatchNormFlow(Layer):
    r"""Batch normalization as a flow (Dinh et al. 2017): per feature (vectors) or channel (images),

    :math:`y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} e^{\gamma} + \beta`,
    :math:`\log|\det \partial y/\partial x| = S \sum_c \left(\gamma_c - \tfrac12 \log(\sigma_c^2 + \epsilon)\right)`
    with :math:`S` the pixels per channel (1 for vectors). In training mode :math:`\mu, \sigma^2` are the
    batch's (over every dim but the channel one) and update the running averages (``momentum``); in eval mode
    they are the running ones. The inverse always uses the running statistics, so it inverts the eval-mode map.

    Args:
        features: C, the features of a vector or the channels of an image.
        momentum: the weight of a new batch in the running statistics.
        eps: :math:`\epsilon`.
    """

    def __init__(self, features, momentum=0.1, eps=1e-5):
        super().__init__()
        self.features, self.momentum, self.eps = int(features), momentum, eps
        self.log_gamma = nn.Parameter(torch.zeros(self.features))
        self.beta = nn.Parameter(torch.zeros(self.features))
        self.register_buffer("running_mean", torch.zeros(self.features))
        self.register_buffer("running_var", torch.ones(self.features))

    def _log_det(self, var, x):
        return (x[0, 0].numel() * (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum()).expand(x.shape[0])

    def forward(self, x, *cond):
        if self.training:
            mean, var = _channel_stats(x)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - _per_channel(mean, x)) / _per_channel(torch.sqrt(var + self.eps), x)
        y = x_hat * _per_channel(self.log_gamma.exp(), x) + _per_channel(self.beta, x)
        return y, self._log_det(var, x)

    def inverse(self, y, *cond):
        mean, var = self.running_mean, self.running_var
        x_hat = (y - _per_channel(self.beta, y)) * _per_channel((-self.log_gamma).exp(), y)
        return x_hat * _per_channel(torch.sqrt(var + self.eps), y) + _per_channel(mean, y), -self._log_det(var, y)

    def shape_error(self, shape):
        return channels_shape_error(self, self.features, shape, lambda c: f"BatchNormFlow({c})")

    def extra_repr(self) -> str:
        return f"{self.features}, momentum={self.momentum}, eps={self.eps}"


class ActNorm(Layer):
    r"""Activation normalization (Glow, Kingma & Dhariwal 2018): :math:`y = x \odot e^{s} + b` per feature or
    channel, :math:`\log|\det \partial y/\partial x| = S \sum_c s_c` (:math:`S` pixels per channel), built on
    torch's ``AffineTransform``.

    Data-dependent initialization: the first batch it sees sets :math:`s, b` so that its output has zero mean
    and unit variance per channel (or, if the first call is ``inverse``, so that the inverse's output has);
    a buffer ``initialized`` keeps that in the state dict, so a loaded layer is not initialized again.

    Args:
        features: C, the features of a vector or the channels of an image.
        eps: added to the standard deviation at initialization.
    """

    def __init__(self, features, eps=1e-6):
        super().__init__()
        self.features, self.eps = int(features), eps
        self.log_scale = nn.Parameter(torch.zeros(self.features))
        self.bias = nn.Parameter(torch.zeros(self.features))
        self.register_buffer("initialized", torch.tensor(False))
        self._ready = False  # a Python mirror of the buffer: no device sync once initialized

    def _initialize(self, data, forward):
        if self._ready or bool(self.initialized):
            self._ready = True
            return
        with torch.no_grad():
            mean, var = _channel_stats(data)
            std = var.sqrt() + self.eps
            if forward:   # (x - mean) / std: s = -log std, b = -mean / std
                self.log_scale.copy_(-std.log())
                self.bias.copy_(-mean / std)
            else:         # x = (y - b) e^{-s} standardized: b = mean, s = log std
                self.log_scale.copy_(std.log())
                self.bias.copy_(mean)
            self.initialized.fill_(True)
        self._ready = True

    def _transform(self, x):
        # event_dim 0 and our own sum: torch's event_dim reduction would not count the pixels per channel
        return AffineTransform(_per_channel(self.bias, x), _per_channel(self.log_scale.exp(), x))

    def forward(self, x, *cond):
        self._initialize(x, True)
        return apply_transform(self._transform(x), x)

    def inverse(self, y, *cond):
        self._initialize(y, False)
        return apply_transform(self._transform(y).inv, y)

    def shape_error(self, shape):
        return channels_shape_error(self, self.features, shape, lambda c: f"ActNorm({c})")

    def extra_repr(self) -> str:
        return f"{self.features}"
