"""Time one training step of a deep Markov model: pgm's Sum over t (eager, compiled) against hand-written PyTorch
(eager, under torch.compile).

The DMM of examples/dmm.py (Krishnan et al. 2017): a backward GRU over x gives h_t, the combiner q(z_t|h_t,z_{t-1}),
the gated transition p(z_t|z_{t-1}), a Bernoulli emission p(x_t|z_t), a learned z_0; loss -ELBO per video, masked
steps left out, one reparameterized draw per step; batch 64 of bouncing-ball videos (12x12 frames, 8 to T frames);
Adam (lr 1e-3). The hand-written step loops over t as the paper's algorithm does (and Pyro's DMM). Every
implementation starts from the same weights and runs in the same process, interleaved. First, pgm's loss and the
hand-written one are computed on the same weights and draws; their largest difference over the batches is printed.

    python benchmarks/bench_dmm.py --device cpu --threads 1 --impls "pytorch eager,pgm eager"
    python benchmarks/bench_dmm.py --configs 16x8x64x64,32x16x128x128

Configurations are STEPSxLATENTxHIDDENxRNN; the hand-captured CUDA graph and pgm's CUDA-graph step need CUDA.
"""
from __future__ import annotations

import copy
import os
import sys

import torch
import torch.distributions as td
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # pgm from the checkout
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))

import _common  # noqa: E402
import dmm  # noqa: E402
from common import sequences  # noqa: E402
from pgm.models import Model  # noqa: E402

BATCH, SIZE, LR = 64, 12, 1e-3


def negative_elbo(modules, x, mask, given_states=None):
    """The hand-written loss, from the layers of the same networks: the backward GRU's states h, then the steps
    (``given_states``: the function of (modules, h, x, mask) that runs them, by default ``negative_elbo_given``)."""
    h = modules[0].net.gru(x.flip(1))[0].flip(1)
    return (given_states or negative_elbo_given)(modules, h, x, mask)


def negative_elbo_given(modules, h, x, mask):
    """The loop over t, given the backward GRU's states h (batch, T, rnn)."""
    _, q, prior, p, initial = (m.net if hasattr(m, "net") else m for m in modules)
    z_prev, total = initial.z_prev.expand(len(x), -1), 0
    for t in range(x.shape[1]):
        combined = 0.5 * (torch.tanh(q.z_to_h(z_prev)) + h[:, t])
        loc, scale = q.loc(combined), F.softplus(q.scale(combined)) + 1e-4
        z = loc + scale * torch.randn_like(loc)
        gate, proposal = prior.gate(z_prev), prior.proposal(z_prev)
        transition = td.Normal((1 - gate) * prior.linear(z_prev) + gate * proposal,
                               F.softplus(prior.scale(F.relu(proposal))) + 1e-4, validate_args=False)
        kl = td.kl_divergence(td.Normal(loc, scale, validate_args=False), transition).sum(-1)
        log_px = -F.binary_cross_entropy_with_logits(p.net(z), x[:, t], reduction="none").sum(-1)
        total = total + torch.where(mask[:, t], log_px - kl, torch.zeros_like(kl))
        z_prev = z
    return -total.mean()


def build(steps, latent, hidden, rnn, device):
    """pgm's loss and the modules it trains: (f(h|x), q, p(z|z_prev), p(x|z), the initial z_0's module)."""
    elbo, sequence, distributions = dmm.build(SIZE * SIZE, latent, hidden, rnn)
    return -elbo.mean(), [d.to(device) for d in distributions] + [sequence.initial.to(device)]


def both_losses(loss, modules, x, mask, seed):
    torch.manual_seed(seed)
    ours = loss.eval({"x": x, "mask": mask})
    torch.manual_seed(seed)
    return ours, negative_elbo(modules, x, mask)


def pytorch_eager(built, data, device):
    _, modules = built
    optimizer = torch.optim.Adam([p for m in modules for p in m.parameters()], lr=LR)

    def step(i):
        loss = negative_elbo(modules, *data[i % len(data)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def pytorch_compiled(built, data, device):
    """The loss and optimizer.step each under torch.compile (see _common.hand_written), with the backward GRU left
    out of the compiled loss: Dynamo does not trace nn.GRU, and that graph break makes it run the whole loss eagerly."""
    _, modules = built
    optimizer = torch.optim.Adam([p for m in modules for p in m.parameters()], lr=LR)
    given_states, update = torch.compile(negative_elbo_given), torch.compile(optimizer.step)

    def step(i):
        loss = negative_elbo(modules, *data[i % len(data)], given_states)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        update()
        return loss.detach()
    return step


def pytorch_cuda_graph(built, data, device):
    _, modules = built
    optimizer = torch.optim.Adam([p for m in modules for p in m.parameters()], lr=LR, capturable=True)
    x, mask = data[0]
    step = _common.capture_step(lambda x, mask: negative_elbo(modules, x, mask), optimizer, [x.clone(), mask.clone()],
                                device)
    return lambda i: step(*data[i % len(data)])


def pgm_model(compile):
    def build_step(built, data, device):
        loss, modules = built
        model = Model(loss, modules[:4], optimizer_params={"lr": LR}, compile=compile)
        return lambda i: model.train({"x": data[i % len(data)][0], "mask": data[i % len(data)][1]})
    return build_step


def main(argv=None):
    args = _common.parser(__doc__.splitlines()[0], "16x8x64x64").parse_args(argv)
    device = _common.setup(args)
    print(f"DMM step, batch {BATCH}, {SIZE}x{SIZE} binary frames, Adam; device: {_common.describe(device)}")
    impls = _common.chosen(args, _common.implementations(device, pytorch_eager, pytorch_cuda_graph, pgm_model,
                                                         pytorch_compiled))
    rows, differences = [], {}
    for steps, latent, hidden, rnn in args.configs:
        torch.manual_seed(args.seed)
        built = build(steps, latent, hidden, rnn, device)
        data = []
        for i in range(8):
            x, lengths = sequences.bouncing_balls(BATCH, steps, SIZE, args.seed + i)
            data.append((x.to(device), (torch.arange(steps) < lengths[:, None]).to(device)))
        with torch.no_grad():
            pairs = [both_losses(*built, x, mask, args.seed + i) for i, (x, mask) in enumerate(data)]
        name = f"T {steps}, latent {latent}, hidden {hidden}, rnn {rnn}"
        differences[name] = max(abs(a.item() - b.item()) for a, b in pairs)
        print(f"{name}: loss {pairs[0][0].item():.6g} (pgm), {pairs[0][1].item():.6g} (by hand); largest "
              f"difference over {len(pairs)} batches {differences[name]:.3g}")
        steps_ = {impl: build_step(copy.deepcopy(built), data, device) for impl, build_step in impls.items()}
        for impl, (ms, warm, loss) in _common.measure(steps_, args, device).items():
            rows.append((name, impl, ms, warm, loss))
    print(_common.table(rows, _common.REFERENCE))
    return rows, differences


if __name__ == "__main__":
    main()
