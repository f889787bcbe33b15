"""DMM: a deep Markov model (Krishnan, Shalit & Sontag, "Structured Inference Networks for Nonlinear State Space
Models", AAAI 2017) of bouncing-ball videos, written with pgm.losses.Sum.

    p(z_t|z_{t-1}) gated transition,  p(x_t|z_t) Bernoulli emission,  z_0 learned;
    q(z_t|z_{t-1}, x_{t:T}): the paper's combiner of z_{t-1} and h_t, a backward GRU's state over x_{t:T};
    ELBO(x) = sum_t E_q[log p(x_t|z_t)] - KL(q(z_t|z_{t-1}, x_{t:T}) || p(z_t|z_{t-1}))      (maximized)

Data, generated offline (examples/common/sequences.py): a ball bouncing in a box, SIZExSIZE binary frames, sequences
of random lengths between STEPS/2 and STEPS (padded, with a mask). Reports the test ELBO per time step (nats per
frame), and draws test videos, their reconstructions and videos generated from the prior to <out>/sequences.png.

    python examples/dmm.py                                # 1,000 videos of up to 16 frames of 12x12, 100 epochs
    python examples/dmm.py --steps 24 --size 16 --sequences 2000 --epochs 200
"""

import torch
from torch import nn
from torch.nn import functional as F

from common import results, sequences, training
from pgm.distributions import Bernoulli, Deterministic, Normal
from pgm.losses import E, KL, LogProb, Sum
from pgm.models import Model


class Transition(nn.Module):
    """The paper's gated transition: loc = (1 - g) * Linear(z) + g * proposal(z), scale from the proposal."""

    def __init__(self, latent, hidden):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, latent), nn.Sigmoid())
        self.proposal = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, latent))
        self.linear, self.scale = nn.Linear(latent, latent), nn.Linear(latent, latent)
        nn.init.eye_(self.linear.weight), nn.init.zeros_(self.linear.bias)  # the identity to start with

    def forward(self, z_prev):
        gate, proposal = self.gate(z_prev), self.proposal(z_prev)
        loc = (1 - gate) * self.linear(z_prev) + gate * proposal
        return {"loc": loc, "scale": F.softplus(self.scale(F.relu(proposal))) + 1e-4}


class Combiner(nn.Module):
    """q(z_t|z_{t-1}, h_t): h = (tanh(Linear(z_{t-1})) + h_t) / 2, then a Gaussian head."""

    def __init__(self, latent, rnn):
        super().__init__()
        self.z_to_h, self.loc, self.scale = nn.Linear(latent, rnn), nn.Linear(rnn, latent), nn.Linear(rnn, latent)

    def forward(self, h, z_prev):
        combined = 0.5 * (torch.tanh(self.z_to_h(z_prev)) + h)
        return {"loc": self.loc(combined), "scale": F.softplus(self.scale(combined)) + 1e-4}


class Emitter(nn.Module):
    def __init__(self, latent, hidden, frame):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, frame))

    def forward(self, z):
        return {"logits": self.net(z)}


class BackwardRNN(nn.Module):
    """h_t, the state of a GRU run from x_T back to x_t: (batch, T, D) -> (batch, T, rnn)."""

    def __init__(self, frame, rnn):
        super().__init__()
        self.gru = nn.GRU(frame, rnn, batch_first=True)

    def forward(self, x):
        return {"loc": self.gru(x.flip(1))[0].flip(1)}


def build(frame, latent=8, hidden=64, rnn=64):
    """The DMM's ELBO per sequence (a pgm loss over x (batch, T, frame) and mask (batch, T)), its sum over the
    steps, and its distributions f(h|x), q(z|h,z_prev), p(z|z_prev), p(x|z)."""
    rnn_x = Deterministic("f(h|x)", net=BackwardRNN(frame, rnn))
    q = Normal("q(z|h,z_prev)", net=Combiner(latent, rnn))
    prior = Normal("p(z|z_prev)", net=Transition(latent, hidden))
    p = Bernoulli("p(x|z)", net=Emitter(latent, hidden, frame))
    z_0 = nn.Parameter(torch.zeros(latent))
    step = E(q, LogProb(p)) - KL(q, prior)
    steps = Sum(step, series=["x", "h"], carry={"z_prev": "z"}, initial={"z_prev": z_0}, mask="mask")
    return E(rnn_x, steps), steps, [rnn_x, q, prior, p]


def main(argv=None):
    parser = sequences.parser(__doc__.splitlines()[0], __file__, "backward GRU's state size")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    paired = sequences.load(args, device)
    print(f"Data: {paired.description}")

    elbo, steps, (rnn_x, q, prior, p) = build(args.size ** 2, args.latent, args.hidden, args.rnn)
    print(f"Objective (maximized):\n{elbo.latex()}")
    steps.initial.to(device)
    model = Model(-elbo.mean(), [d.to(device) for d in (rnn_x, q, prior, p)], **training.model_options(args))
    history, scores, test = sequences.train(model, paired, args, out)
    with torch.no_grad():  # 3 test videos, their reconstructions (means of p(x_t|z_t), z_t ~ q) and 3 from the prior
        shown = {"x": test["x"][:3], "mask": test["mask"][:3]}
        z = steps.draws(rnn_x.sample(shown))["z"]
        recon = p.sample_mean({"z": z}) * shown["mask"][..., None]
        z_prev, generated = steps.initial.z_prev.expand(3, -1), []
        for _ in range(args.steps):
            z_prev = prior.sample({"z_prev": z_prev})["z"]
            generated.append(p.sample_mean({"z": z_prev}))
    sequences.videos_figure(out / "sequences.png", shown["x"], recon, torch.stack(generated, 1), args.size,
                            f"DMM: test ELBO {scores['ELBO per frame']:.2f} nats per frame")
    return results.write(out, "DMM: test ELBO per frame and per video (nats)", {"DMM": scores}, args,
                         paired.description, elbo.latex(), history)


if __name__ == "__main__":
    training.run(main)
