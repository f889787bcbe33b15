"""Time one maximum-likelihood training step of a hidden Markov model: pgm's forward algorithm
(Sum(LogProb(p_x * p_y), ..., marginalize="y"), eager and compiled) against the forward algorithm written by hand
in PyTorch (eager, under torch.compile).

The HMM of examples/hmm.py --estimator exact: K states, V symbols, learned initial, transition and emission tables
(the example's own networks, one-hot rows picking table rows), loss -log p(x_{1:T}) per sequence by the forward
algorithm, batch 64 of sequences drawn from a random HMM, Adam (lr 0.02). The hand-written step is the example's
log_likelihood (Rabiner's alpha recursion) on the same tables. Every implementation starts from the same weights
and runs in the same process, interleaved. First, pgm's loss and the hand-written one are computed on the same
weights; their largest difference over the batches is printed.

    python benchmarks/bench_hmm.py --device cpu --threads 1 --impls "pytorch eager,pgm eager"
    python benchmarks/bench_hmm.py --configs 20x4x10,50x16x32

Configurations are STEPSxSTATESxSYMBOLS; the hand-captured CUDA graph and pgm's CUDA-graph step need CUDA.
"""
from __future__ import annotations

import copy
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # pgm from the checkout
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))

import _common  # noqa: E402
import hmm  # noqa: E402
from pgm.models import Model  # noqa: E402

BATCH, LR = 64, 0.02


def negative_log_likelihood(modules, x):
    """The hand-written loss: the forward algorithm on the tables of the same networks."""
    p_y, p_x = modules
    return -hmm.log_likelihood(x, *p_y.net.log_tables(), p_x.net.table.log_softmax(-1)).mean()


def build(states, symbols, device):
    """pgm's loss and the distributions it trains, p(y|y_prev) and p(x|y)."""
    log_px, distributions = hmm.build(states, symbols, 1, "exact")
    log_px.initial.to(device)
    return -log_px.mean(), [d.to(device) for d in distributions]


def pytorch_step(compiled):
    def build_step(built, data, device):
        _, modules = built
        return _common.hand_written(lambda x: negative_log_likelihood(modules, x),
                                    [p for m in modules for p in m.parameters()], lambda i: (data[i % len(data)],),
                                    LR, compiled)
    return build_step


def pytorch_cuda_graph(built, data, device):
    _, modules = built
    optimizer = torch.optim.Adam([p for m in modules for p in m.parameters()], lr=LR, capturable=True)
    step = _common.capture_step(lambda x: negative_log_likelihood(modules, x), optimizer, [data[0].clone()], device)
    return lambda i: step(data[i % len(data)])


def pgm_model(compile):
    def build_step(built, data, device):
        loss, modules = built
        model, sync = Model(loss, modules, optimizer_params={"lr": LR}, compile=compile), _common.sync(device)
        return lambda i: model.train({"x": data[i % len(data)]}, sync=sync)
    return build_step


def main(argv=None):
    args = _common.parser(__doc__.splitlines()[0], "20x4x10,50x16x32").parse_args(argv)
    device = _common.setup(args)
    print(f"HMM maximum-likelihood step, batch {BATCH}, Adam; device: {_common.describe(device)}")
    impls = _common.chosen(args, _common.implementations(device, pytorch_step(False), pytorch_cuda_graph, pgm_model,
                                                         pytorch_step(True)))
    rows, differences = [], {}
    for steps, states, symbols in args.configs:
        truth = hmm.random_hmm(states, symbols, args.seed)
        torch.manual_seed(args.seed)
        built = build(states, symbols, device)
        data = [hmm.sample(truth, BATCH, steps, args.seed + i).to(device) for i in range(8)]
        with torch.no_grad():
            pairs = [(built[0].eval({"x": x}), negative_log_likelihood(built[1], x)) for x in data]
        name = f"T {steps}, K {states}, V {symbols}"
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
