"""The tiny VAE networks the engine tests share: q(z|x) over 6-d x and 2-d z, p(x|z) Bernoulli logits."""
from torch import nn


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(6, 4)

    def forward(self, x):
        loc, scale = self.net(x).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale) + 1e-3}


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(2, 6)

    def forward(self, z):
        return {"logits": self.net(z)}
