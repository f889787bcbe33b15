"""Time one training step of a VAE with a planar-flow posterior: pgm (eager, compiled) against hand-written PyTorch.

q_0(z|x) = N(loc, softplus(scale)) from a 784-h-h MLP (bench_vae.py's), then K planar layers z' = z + u_hat
tanh(w.z + b) with learned u, w, b (Rezende & Mohamed 2015), p(x|z) Bernoulli from a z-h-h-784 MLP, p(z) = N(0, I);
loss -E_q_K(z|x)[log p(x|z) + log p(z) - log q_K(z|x)], one reparameterized draw; batch 128 of 784-d binary data;
Adam (lr 1e-3). Every implementation starts from the same weights and runs in the same process, interleaved.
First, pgm's loss and the hand-written one are computed on the same weights and draws; their largest difference
over the batches is printed.

    python benchmarks/bench_flow_vae.py                             # every configuration, CUDA if there is one
    python benchmarks/bench_flow_vae.py --device cpu --threads 1 --steps 100 --warmup 10 --configs 10x400x8 \
        --impls "pytorch eager,pgm eager"

Configurations are LATENTxHIDDENxLAYERS; the hand-captured CUDA graph and pgm's CUDA-graph step need CUDA.
"""
from __future__ import annotations

import copy
import math
import os
import sys

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # pgm from the checkout

import _common  # noqa: E402
from bench_vae import BATCH, LR, X_DIM, Decoder, Encoder  # noqa: E402
from pgm.distributions import Bernoulli, Flow, Normal  # noqa: E402
from pgm.distributions.flows import Planar  # noqa: E402
from pgm.losses import E, LogProb  # noqa: E402
from pgm.models import Model  # noqa: E402

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def negative_elbo(encoder, planars, decoder, x):
    """The hand-written loss; ``planars`` only hold each layer's u, w, b (their forward is not used)."""
    q = encoder(x)
    loc, scale = q["loc"], q["scale"]
    eps = torch.randn_like(loc)
    z = loc + scale * eps
    log_q = (-0.5 * eps.square() - scale.log() - HALF_LOG_2PI).sum(-1)
    for layer in planars:
        u, w, b = layer.u, layer.w, layer.b
        wu = w @ u
        u_hat = u + (F.softplus(wu) - 1 - wu) * w / (w @ w)  # so that w.u_hat >= -1: invertible
        h = torch.tanh(z @ w + b)
        log_q = log_q - torch.log(torch.abs(1 + (1 - h.square()) * (w @ u_hat)))  # log|1 + u_hat.psi(z)|
        z = z + u_hat * h.unsqueeze(-1)
    log_px = -F.binary_cross_entropy_with_logits(decoder(z)["logits"], x, reduction="none").sum(-1)
    log_pz = (-0.5 * z.square() - HALF_LOG_2PI).sum(-1)
    return -(log_px + log_pz - log_q).mean()


def pgm_loss(encoder, planars, decoder):
    """pgm's loss of the same model and its distributions."""
    q = Flow(Normal("q_0(z|x)", net=encoder), planars)
    p = Bernoulli("p(x|z)", net=decoder)
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[encoder.loc.out_features]).to(encoder.loc.weight.device)
    return -E(q, LogProb(p) + LogProb(prior) - LogProb(q)).mean(), [q, p, prior]


def both_losses(modules, x, seed):
    """pgm's and the hand-written loss (tensors, with their graphs) on the same weights and the same draws."""
    loss, _ = pgm_loss(*modules)
    torch.manual_seed(seed)
    ours = loss.eval({"x": x})
    torch.manual_seed(seed)
    return ours, negative_elbo(*modules, x)


def pytorch_eager(modules, data, device):
    encoder, planars, decoder = modules
    optimizer = torch.optim.Adam([p for m in modules for p in m.parameters()], lr=LR)

    def step(i):
        loss = negative_elbo(encoder, planars, decoder, data[i % len(data)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def pytorch_cuda_graph(modules, data, device):
    optimizer = torch.optim.Adam([p for m in modules for p in m.parameters()], lr=LR, capturable=True)
    step = _common.capture_step(lambda x: negative_elbo(*modules, x), optimizer, [data[0].clone()], device)
    return lambda i: step(data[i % len(data)])


def pgm_model(compile):
    def build(modules, data, device):
        loss, distributions = pgm_loss(*modules)
        model = Model(loss, distributions, optimizer_params={"lr": LR}, compile=compile)
        return lambda i: model.train({"x": data[i % len(data)]})
    return build


def main(argv=None):
    args = _common.parser(__doc__.splitlines()[0], "10x400x8,30x400x8").parse_args(argv)
    device = _common.setup(args)
    print(f"Flow VAE step, batch {BATCH}, {X_DIM}-d binary data, Adam; device: {_common.describe(device)}")
    impls = _common.chosen(args, _common.implementations(device, pytorch_eager, pytorch_cuda_graph, pgm_model))
    rows, differences = [], {}
    for latent, hidden, layers in args.configs:
        torch.manual_seed(args.seed)
        modules = (Encoder(latent, hidden).to(device), torch.nn.ModuleList(Planar(latent) for _ in range(layers))
                   .to(device), Decoder(latent, hidden).to(device))
        generator = torch.Generator(device="cpu").manual_seed(args.seed)
        data = [(torch.rand(BATCH, X_DIM, generator=generator) < 0.5).float().to(device) for _ in range(8)]
        with torch.no_grad():
            pairs = [both_losses(modules, x, args.seed + i) for i, x in enumerate(data)]
        name = f"latent {latent}, hidden {hidden}, {layers} planar layers"
        differences[name] = max(abs(a.item() - b.item()) for a, b in pairs)
        print(f"{name}: loss {pairs[0][0].item():.6g} (pgm), {pairs[0][1].item():.6g} (by hand); largest "
              f"difference over {len(pairs)} batches {differences[name]:.3g}")
        steps = {impl: build(copy.deepcopy(modules), data, device) for impl, build in impls.items()}
        for impl, (ms, warm, loss) in _common.measure(steps, args, device).items():
            rows.append((name, impl, ms, warm, loss))
    print(_common.table(rows, _common.REFERENCE))
    return rows, differences


if __name__ == "__main__":
    main()
