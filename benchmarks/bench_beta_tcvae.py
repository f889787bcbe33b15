"""Time one beta-TCVAE training step: pgm (eager, compiled) against hand-written PyTorch.

beta-TCVAE (Chen et al. 2018; examples/beta_tcvae.py) on scikit-learn's 8x8 digits (64-d, in [0, 1]):
q(z|x) = N(loc, softplus(scale)) from a 64-h MLP, p(x|z) Bernoulli from a z-h-64 MLP, p(z) = N(0, I), one
reparameterized draw, the objective

    E_q[log p(x|z)] - alpha E_q[log q(z|x) - log q(z)] - beta E_q[log q(z) - sum_d log q(z_d)]
                    - gamma E_q[sum_d log q(z_d) - log p(z)],       alpha = gamma = 1, beta = 6,

log q(z) and log q(z_d) by minibatch-weighted sampling over the batch (N = 1,797 digits); Adam (lr 1e-3). pgm's
terms read q's parameters through ParametersOf(q) (the encoder runs once); the row "pgm eager (q rerun)" is the same
objective with a Term that runs q's network again (what one wrote before ParametersOf). Every implementation starts
from the same weights and runs in the same process, interleaved. First, pgm's loss and the hand-written one are
computed on the same weights and draws; their largest difference over the batches is printed.

    python benchmarks/bench_beta_tcvae.py                           # every configuration, CUDA if there is one
    python benchmarks/bench_beta_tcvae.py --device cpu --threads 1 --steps 200 --rounds 5 --configs 10x400x100 \
        --impls "pytorch eager,pgm eager"

Configurations are LATENTxHIDDENxBATCH; the hand-captured CUDA graph and pgm's CUDA-graph step need CUDA.
"""
from __future__ import annotations

import copy
import math
import os
import sys

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # pgm from the checkout

import _common  # noqa: E402
from pgm import Shared  # noqa: E402
from pgm.distributions import Bernoulli, Normal  # noqa: E402
from pgm.losses import E, LogProb, Parameter, ParametersOf, Term  # noqa: E402
from pgm.models import Model  # noqa: E402

X_DIM, LR = 64, 1e-3
WEIGHTS = {"alpha": 1.0, "beta": 6.0, "gamma": 1.0}
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Encoder(nn.Module):
    def __init__(self, latent, hidden):
        super().__init__()
        self.hidden = nn.Linear(X_DIM, hidden)
        self.loc, self.scale = nn.Linear(hidden, latent), nn.Linear(hidden, latent)

    def forward(self, x):
        h = F.relu(self.hidden(x))
        return {"loc": self.loc(h), "scale": F.softplus(self.scale(h))}


class Decoder(nn.Module):
    def __init__(self, latent, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, X_DIM))

    def forward(self, z):
        return {"logits": self.net(z)}


def digits():
    """scikit-learn's 1,797 digits, (N, 64) in [0, 1]."""
    from sklearn.datasets import load_digits
    return torch.as_tensor(load_digits().data / 16.0, dtype=torch.float32)


def aggregate_log_densities(z, loc, scale, dataset_size):
    """MWS: log q(z) (M,) and sum_d log q(z_d) (M,) of the draws z (M, D) under the batch's posteriors (M, D)."""
    pairs = -0.5 * ((z.unsqueeze(-2) - loc) / scale).square() - scale.log() - HALF_LOG_2PI  # (M_i, M_j, D)
    normalizer = math.log(dataset_size * z.shape[-2])
    return (torch.logsumexp(pairs.sum(-1), -1) - normalizer,
            (torch.logsumexp(pairs, -2) - normalizer).sum(-1))


def negative_objective(encoder, decoder, x, dataset_size, alpha=1.0, beta=6.0, gamma=1.0):
    """The hand-written loss: what pgm's terms compute, written out."""
    q = encoder(x)
    loc, scale = q["loc"], q["scale"]
    eps = torch.randn_like(loc)
    z = loc + scale * eps
    log_px = -F.binary_cross_entropy_with_logits(decoder(z)["logits"], x, reduction="none").sum(-1)
    log_qzx = (-0.5 * eps.square() - scale.log() - HALF_LOG_2PI).sum(-1)
    log_pz = (-0.5 * z.square() - HALF_LOG_2PI).sum(-1)
    log_qz, log_qzd = aggregate_log_densities(z, loc, scale, dataset_size)
    objective = (log_px - alpha * (log_qzx - log_qz) - beta * (log_qz - log_qzd) - gamma * (log_qzd - log_pz))
    return -objective.mean()


def pgm_loss(encoder, decoder, dataset_size, rerun=False):
    """pgm's loss of the same model and its distributions; with ``rerun``, the Terms take x and run q's network
    again instead of reading its parameters with ParametersOf."""
    q, p = Normal("q(z|x)", net=encoder), Bernoulli("p(x|z)", net=decoder)
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[encoder.loc.out_features]).to(encoder.loc.weight.device)

    def estimate(z, loc, scale):
        return aggregate_log_densities(z, loc, scale, dataset_size)
    if rerun:
        log_q_z = Term(lambda z, x: estimate(z, *encoder(x).values())[0], r"\log q(z)")
        log_q_z_d = Term(lambda z, x: estimate(z, *encoder(x).values())[1], r"\sum_{d} \log q(z_d)")
    else:
        # log q(z) and sum_d log q(z_d) from the same (M, M, D) scores, computed once per evaluation
        estimate = Shared(estimate)
        inputs = {"q_params": ParametersOf(q)}
        log_q_z = Term(lambda z, q_params: estimate(z, q_params["loc"], q_params["scale"])[0], r"\log q(z)",
                       inputs=inputs)
        log_q_z_d = Term(lambda z, q_params: estimate(z, q_params["loc"], q_params["scale"])[1],
                         r"\sum_{d} \log q(z_d)", inputs=inputs)
    objective = (E(q, LogProb(p)) - Parameter("alpha") * E(q, LogProb(q) - log_q_z)
                 - Parameter("beta") * E(q, log_q_z - log_q_z_d)
                 - Parameter("gamma") * E(q, log_q_z_d - LogProb(prior)))
    return -objective.mean(), [q, p, prior]


def both_losses(modules, x, dataset_size, seed):
    """pgm's and the hand-written loss (tensors, with their graphs) on the same weights and the same draws."""
    loss, _ = pgm_loss(*modules, dataset_size)
    torch.manual_seed(seed)
    ours = loss.eval({"x": x}, **WEIGHTS)
    torch.manual_seed(seed)
    return ours, negative_objective(*modules, x, dataset_size, **WEIGHTS)


def pytorch(compiled):
    def build(modules, data, dataset_size, device):
        encoder, decoder = modules
        return _common.hand_written(lambda x: negative_objective(encoder, decoder, x, dataset_size, **WEIGHTS),
                                    [*encoder.parameters(), *decoder.parameters()],
                                    lambda i: (data[i % len(data)],), LR, compiled)
    return build


def pytorch_cuda_graph(modules, data, dataset_size, device):
    encoder, decoder = modules
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=LR, capturable=True)
    step = _common.capture_step(lambda x: negative_objective(encoder, decoder, x, dataset_size, **WEIGHTS),
                                optimizer, [data[0].clone()], device)
    return lambda i: step(data[i % len(data)])


def pgm_model(compile, rerun=False):
    def build(modules, data, dataset_size, device):
        loss, distributions = pgm_loss(*modules, dataset_size, rerun=rerun)
        model = Model(loss, distributions, optimizer_params={"lr": LR}, compile=compile)
        sync = _common.sync(device)
        return lambda i: model.train({"x": data[i % len(data)]}, sync=sync, **WEIGHTS)
    return build


def implementations(device):
    impls = _common.implementations(device, pytorch(False), pytorch_cuda_graph, pgm_model, pytorch(True))
    impls["pgm eager (q rerun)"] = pgm_model(False, rerun=True)
    return impls


def main(argv=None):
    parser = _common.parser(__doc__.splitlines()[0], "10x400x100,10x400x256")
    args = parser.parse_args(argv)
    images = digits()
    too_large = [batch for *_, batch in args.configs if batch > len(images)]
    if too_large:
        parser.error(f"--configs: a batch of {too_large[0]} is more than the {len(images):,} digits; use at most "
                     f"{len(images)}")
    device = _common.setup(args)
    print(f"beta-TCVAE step, scikit-learn digits ({len(images):,} x {X_DIM}), Adam, beta {WEIGHTS['beta']:g}; "
          f"device: {_common.describe(device)}")
    impls = _common.chosen(args, implementations(device))
    rows, differences = [], {}
    for latent, hidden, batch in args.configs:
        torch.manual_seed(args.seed)
        modules = (Encoder(latent, hidden).to(device), Decoder(latent, hidden).to(device))
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))
        data = [images[order[i:i + batch]].to(device) for i in range(0, len(images) - batch + 1, batch)][:8]
        with torch.no_grad():
            pairs = [both_losses(modules, x, len(images), args.seed + i) for i, x in enumerate(data)]
        name = f"latent {latent}, hidden {hidden}, batch {batch}"
        differences[name] = max(abs(a.item() - b.item()) for a, b in pairs)
        print(f"{name}: loss {pairs[0][0].item():.6g} (pgm), {pairs[0][1].item():.6g} (by hand); largest "
              f"difference over {len(pairs)} batches {differences[name]:.3g}")
        steps = {impl: build(copy.deepcopy(modules), data, len(images), device) for impl, build in impls.items()}
        for impl, (ms, warm, loss) in _common.measure(steps, args, device).items():
            rows.append((name, impl, ms, warm, loss))
    print(_common.table(rows, _common.REFERENCE))
    return rows, differences


if __name__ == "__main__":
    main()
