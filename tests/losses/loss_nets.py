"""Tiny networks the loss tests share."""
import torch
from torch import nn


class Gaussian(nn.Module):
    """A linear Gaussian head over the concatenated inputs."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * out_features)

    def forward(self, *inputs):
        loc, scale = self.linear(torch.cat(inputs, -1)).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale) + 1e-3}


class Logits(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, *inputs):
        return {"logits": self.linear(torch.cat(inputs, -1))}
