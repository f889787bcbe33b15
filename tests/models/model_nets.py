"""The tiny VAE networks the engine tests share: q(z|x) Gaussian over x and z, p(x|z) Bernoulli logits, by default
6-d x and 2-d z through one linear layer (``hidden=`` puts a ReLU layer of that width between)."""
from torch import nn


def _body(i, o, hidden):
    return nn.Linear(i, o) if hidden is None else nn.Sequential(nn.Linear(i, hidden), nn.ReLU(), nn.Linear(hidden, o))


class LocScale(nn.Module):
    """The head of a Gaussian: features (..., 2 * d) to ``loc`` and a positive ``scale``."""

    def forward(self, h):
        loc, scale = h.chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale) + 1e-3}


class Logits(nn.Module):
    """The head of a Bernoulli or categorical: features as ``logits``."""

    def forward(self, h):
        return {"logits": h}


class Encoder(nn.Module):
    def __init__(self, x=6, z=2, hidden=None):
        super().__init__()
        self.net, self.head = _body(x, 2 * z, hidden), LocScale()

    def forward(self, x):
        return self.head(self.net(x))


class Decoder(nn.Module):
    def __init__(self, z=2, x=6, hidden=None):
        super().__init__()
        self.net, self.head = _body(z, x, hidden), Logits()

    def forward(self, z):
        return self.head(self.net(z))
