"""VRNN: a variational recurrent neural network (Chung, Kastner, Dinh, Goel, Courville & Bengio, "A Recurrent Latent
Variable Model for Sequential Data", NeurIPS 2015) of bouncing-ball videos, written with pgm.losses.Sum.

    h_t = GRU([phi_x(x_t), phi_z(z_t)], h_{t-1}) carried from step to step, h_0 = 0;
    p(z_t|h_{t-1}) prior,  q(z_t|x_t, h_{t-1}) encoder,  p(x_t|z_t, h_{t-1}) Bernoulli decoder;
    ELBO(x) = sum_t E_q[log p(x_t|z_t,h_{t-1})] - KL(q(z_t|x_t,h_{t-1}) || p(z_t|h_{t-1}))      (maximized)

Data: the bouncing-ball videos of examples/dmm.py (examples/common/sequences.py; the same sizes and seeds, so the two
ELBOs compare). Reports the test ELBO per time step (nats per frame), and draws test videos, their reconstructions and
generated videos to <out>/sequences.png.

    python examples/vrnn.py                               # 1,000 videos of up to 16 frames of 12x12, 100 epochs
"""

import torch
from torch import nn
from torch.nn import functional as F

from common import results, sequences, training
from pgm.distributions import Bernoulli, Deterministic, Normal
from pgm.losses import E, KL, LogProb, Sum
from pgm.models import Model


class Head(nn.Module):
    """An MLP over its inputs (each through its own feature network first, if given), then a parameter head."""

    def __init__(self, features, in_features, hidden, out, kind):
        super().__init__()
        self.features, self.kind = nn.ModuleList(features), kind
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, out * (2 if kind == "normal" else 1)))

    def forward(self, *inputs):
        out = self.net(torch.cat([f(v) for f, v in zip(self.features, inputs)] + list(inputs[len(self.features):]), -1))
        if self.kind == "logits":
            return {"logits": out}
        loc, scale = out.chunk(2, -1)
        return {"loc": loc, "scale": F.softplus(scale) + 1e-4}


class Recurrence(nn.Module):
    """h_t = GRUCell([phi_x(x_t), phi_z(z_t)], h_{t-1})."""

    def __init__(self, phi_x, phi_z, features, rnn):
        super().__init__()
        self.phi_x, self.phi_z, self.cell = phi_x, phi_z, nn.GRUCell(2 * features, rnn)

    def forward(self, x, z, h_prev):
        return {"loc": self.cell(torch.cat([self.phi_x(x), self.phi_z(z)], -1), h_prev)}


def build(frame, latent=8, hidden=64, rnn=64):
    """The VRNN's ELBO per sequence (over x (batch, T, frame) and mask (batch, T)) and its distributions."""
    phi_x = nn.Sequential(nn.Linear(frame, hidden), nn.ReLU())  # feature extractors shared by the networks
    phi_z = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU())
    prior = Normal("p(z|h_prev)", net=Head([], rnn, hidden, latent, "normal"))
    q = Normal("q(z|x,h_prev)", net=Head([phi_x], hidden + rnn, hidden, latent, "normal"))
    p = Bernoulli("p(x|z,h_prev)", net=Head([phi_z], hidden + rnn, hidden, frame, "logits"))
    f = Deterministic("f(h|x,z,h_prev)", net=Recurrence(phi_x, phi_z, hidden, rnn))
    step = E(q, LogProb(p)) - KL(q, prior)
    elbo = Sum(step, series=["x"], carry={"h_prev": f}, initial={"h_prev": torch.zeros(rnn)}, mask="mask")
    return elbo, [q, prior, p, f]


def main(argv=None):
    parser = sequences.parser(__doc__.splitlines()[0], __file__, "size of the state h_t")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    paired = sequences.load(args, device)
    print(f"Data: {paired.description}")

    elbo, (q, prior, p, f) = build(args.size ** 2, args.latent, args.hidden, args.rnn)
    print(f"Objective (maximized):\n{elbo.latex()}")
    elbo.initial.to(device)
    model = Model(-elbo.mean(), [d.to(device) for d in (q, prior, p, f)], **training.model_options(args))
    history, scores, test = sequences.train(model, paired, args, out)
    with torch.no_grad():  # 3 test videos, their reconstructions and 3 videos generated step by step
        shown = {"x": test["x"][:3], "mask": test["mask"][:3]}
        recon = p.sample_mean(elbo.draws(shown)) * shown["mask"][..., None]
        h, generated = torch.zeros(3, args.rnn, device=device), []
        for _ in range(args.steps):
            z = prior.sample({"h_prev": h})["z"]
            generated.append(p.sample_mean({"z": z, "h_prev": h}))
            h = f.sample({"x": generated[-1].bernoulli(), "z": z, "h_prev": h})["h"]
    sequences.videos_figure(out / "sequences.png", shown["x"], recon, torch.stack(generated, 1), args.size,
                            f"VRNN: test ELBO {scores['ELBO per frame']:.2f} nats per frame")
    return results.write(out, "VRNN: test ELBO per frame and per video (nats)", {"VRNN": scores}, args,
                         paired.description, elbo.latex(), history)


if __name__ == "__main__":
    training.run(main)
