"""Time one SS-HMVAE-kl training step: pgm (eager, compiled) against the same objective written by hand.

The objective and networks of examples/ss_hmvae_kl.py (docs/papers.md sections 6, 7c and 9): hmMNIST halves
(x, w 392-d binary), 10 classes, a 128-d, z 64-d, DkBR layers of 512, a labelled and an unlabelled batch of
512 each, Gumbel-softmax over the unknown label, alpha = 1, beta = 0.1, Adam (lr 1e-3).

    python benchmarks/bench_ss_hmvae_kl.py
    python benchmarks/bench_ss_hmvae_kl.py --device cpu --steps 6 --warmup 2 --threads 1
"""
from __future__ import annotations

import copy
import math
import os
import sys

import torch
from torch.nn import functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))  # the papers' network blocks
sys.path.insert(0, os.path.dirname(HERE))

import _common  # noqa: E402
from common.networks import Gaussian, Join, Logits, mlp  # noqa: E402
from pgm.distributions import Bernoulli, Categorical, Normal, RelaxedCategorical  # noqa: E402
from pgm.losses import E, KL, LogProb, Parameter  # noqa: E402
from pgm.models import Model  # noqa: E402

DX = DW = 392
K, DA, DZ = 10, 128, 64
ALPHA, BETA, TEMPERATURE, LR = 1.0, 0.1, 0.5, 1e-3
REFERENCE = _common.REFERENCE


def networks(hidden):
    h = hidden
    return {
        "p_x": Logits(mlp(DA, [h, h]), DX), "p_w": Logits(mlp(DA, [h, h]), DW),
        "p_a": Gaussian(Join([DZ, K], [[], []], [h, h]), DA),
        "q_a": Gaussian(Join([DX, DW], [[h, h], [h, h]], [h]), DA),
        "q_z": Gaussian(Join([DA, K], [[], []], [h, h]), DZ),
        "q_y": Logits(mlp(DA, [h]), K),
        "q_ax": Gaussian(mlp(DX, [h, h]), DA), "q_aw": Gaussian(mlp(DW, [h, h]), DA),
    }


def pgm_model(compile):
    def build(nets, data, device):
        p_x, p_w = Bernoulli("p(x|a)", net=nets["p_x"]), Bernoulli("p(w|a)", net=nets["p_w"])
        p_a = Normal("p(a|z,y)", net=nets["p_a"])
        p_z = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[DZ])
        p_y = Categorical("p(y)", probs=torch.full((K,), 1.0 / K))
        q_a, q_z = Normal("q(a|x,w)", net=nets["q_a"]), Normal("q(z|a,y)", net=nets["q_z"])
        q_y = RelaxedCategorical("q(y|a)", net=nets["q_y"], temperature=TEMPERATURE)
        q_ax, q_aw = Normal("q(a|x)", net=nets["q_ax"]), Normal("q(a|w)", net=nets["q_aw"])
        p = p_x * p_w * p_a * p_z * p_y
        alpha, beta = Parameter("alpha"), Parameter("beta")
        divergence = KL(q_a, q_ax) + KL(q_a, q_aw)
        labelled = (E(q_a * q_z, LogProb(p) - LogProb(q_a * q_z)) + alpha * E(q_a, LogProb(q_y))
                    - beta * divergence)
        unlabelled = E(q_a * q_z * q_y, LogProb(p) - LogProb(q_a * q_z * q_y)) - beta * divergence
        loss = -(labelled.mean("labelled") + unlabelled.mean("unlabelled"))
        distributions = [p_x, p_w, p_a, p_z, p_y, q_a, q_z, q_y, q_ax, q_aw]
        for d in distributions:
            d.to(device)
        model = Model(loss, distributions, optimizer_params={"lr": LR}, compile=compile)

        def step(i):
            (x, w, y), (xu, wu) = data[i % len(data)]
            return model.train({"labelled": {"x": x, "w": w, "y": y}, "unlabelled": {"x": xu, "w": wu}},
                               alpha=ALPHA, beta=BETA, sync=sync)
        sync = _common.sync(device)
        return step
    return build


LOG_2PI = math.log(2 * math.pi)


def normal_log_prob(v, q):
    return (-0.5 * ((v - q["loc"]) / q["scale"]).square() - q["scale"].log() - 0.5 * LOG_2PI).sum(-1)


def standard_normal_log_prob(v):
    return (-0.5 * v.square() - 0.5 * LOG_2PI).sum(-1)


def bernoulli_log_prob(v, logits):
    return -F.binary_cross_entropy_with_logits(logits, v, reduction="none").sum(-1)


def kl_normal(q, p):
    return ((p["scale"] / q["scale"]).log()
            + (q["scale"].square() + (q["loc"] - p["loc"]).square()) / (2 * p["scale"].square()) - 0.5).sum(-1)


def rsample(q):
    return q["loc"] + q["scale"] * torch.randn_like(q["loc"])


def negative_objective(n, x, w, y, xu, wu):
    """The hand-written loss: the same formula as the pgm one, written out."""
    log_prior_y = math.log(1.0 / K)

    def bound(x, w, y, logits_y=None):
        q_a = n["q_a"](x, w)
        a = rsample(q_a)
        if y is None:  # unlabelled: a Gumbel-softmax draw of the label
            logits_y = n["q_y"](a)["logits"]
            y = F.gumbel_softmax(logits_y, tau=TEMPERATURE)
        q_z = n["q_z"](a, y)
        z = rsample(q_z)
        log_p = (bernoulli_log_prob(x, n["p_x"](a)["logits"]) + bernoulli_log_prob(w, n["p_w"](a)["logits"])
                 + normal_log_prob(a, n["p_a"](z, y)) + standard_normal_log_prob(z) + (y * log_prior_y).sum(-1))
        log_q = normal_log_prob(a, q_a) + normal_log_prob(z, q_z)
        if logits_y is not None:
            log_q = log_q + (y * F.log_softmax(logits_y, -1)).sum(-1)
        divergence = kl_normal(q_a, n["q_ax"](x)) + kl_normal(q_a, n["q_aw"](w))
        return log_p - log_q - BETA * divergence, a

    labelled, a = bound(x, w, y)
    labelled = labelled + ALPHA * (y * F.log_softmax(n["q_y"](a)["logits"], -1)).sum(-1)
    unlabelled, _ = bound(xu, wu, None)
    return -(labelled.mean() + unlabelled.mean())


def pytorch(compiled):
    def build(nets, data, device):
        def inputs(i):
            (x, w, y), (xu, wu) = data[i % len(data)]
            return x, w, y, xu, wu
        return _common.hand_written(lambda *batch: negative_objective(nets, *batch),
                                    [p for net in nets.values() for p in net.parameters()], inputs, LR, compiled)
    return build


def pytorch_cuda_graph(nets, data, device):
    optimizer = torch.optim.Adam([p for net in nets.values() for p in net.parameters()], lr=LR, capturable=True)
    (x, w, y), (xu, wu) = data[0]
    static = [t.clone() for t in (x, w, y, xu, wu)]
    step = _common.capture_step(lambda *inputs: negative_objective(nets, *inputs), optimizer, static, device)

    def run(i):
        (x, w, y), (xu, wu) = data[i % len(data)]
        return step(x, w, y, xu, wu)
    return run


def implementations(device):
    return _common.implementations(device, pytorch(False), pytorch_cuda_graph, pgm_model, pytorch(True))


def batches(batch, device, generator, count=4):
    def binary(n, d):
        return (torch.rand(n, d, generator=generator) < 0.5).float().to(device)
    out = []
    for _ in range(count):
        y = F.one_hot(torch.randint(0, K, (batch,), generator=generator), K).float().to(device)
        out.append(((binary(batch, DX), binary(batch, DW), y), (binary(batch, DX), binary(batch, DW))))
    return out


def main(argv=None):
    parser = _common.parser(__doc__.splitlines()[0], "512")
    parser.add_argument("--hidden", type=int, default=512, help="DkBR width (default: 512, the paper's)")
    parser.set_defaults(steps=50, warmup=10)
    args = parser.parse_args(argv)
    device = _common.setup(args)
    print(f"SS-HMVAE-kl step, hidden {args.hidden}, labelled + unlabelled batches, Adam; "
          f"device: {_common.describe(device)}")
    impls = _common.chosen(args, implementations(device))
    rows = []
    for (batch,) in args.configs:
        torch.manual_seed(args.seed)
        nets = {name: net.to(device) for name, net in networks(args.hidden).items()}
        data = batches(batch, device, torch.Generator().manual_seed(args.seed))
        steps = {name: build(copy.deepcopy(nets), data, device) for name, build in impls.items()}
        for name, (ms, warm, loss) in _common.measure(steps, args, device).items():
            rows.append((f"batch {batch} + {batch}", name, ms, warm, loss))
    print(_common.table(rows, REFERENCE))
    return rows


if __name__ == "__main__":
    main()
