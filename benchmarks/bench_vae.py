"""Time one VAE training step: pgm (eager, compiled) against hand-written PyTorch, Pixyz and Pyro.

The VAE of the Pixyz authors' timings (docs/papers.md section 11): q(z|x) = N(loc, softplus(scale)) from a
784-h-h MLP, p(x|z) Bernoulli from a z-h-h-784 MLP, prior N(0, I), analytic KL, one reparameterized sample;
batch 128 of 784-d binary data; Adam (lr 1e-3). Every implementation starts from the same weights and runs in the same process, interleaved.

    python benchmarks/bench_vae.py                                  # every configuration, CUDA if there is one
    python benchmarks/bench_vae.py --device cpu --steps 30 --warmup 5 --configs 10x400
    python benchmarks/bench_vae.py --impls "pytorch eager,pgm eager"

Configurations are LATENTxHIDDEN. Pixyz and Pyro are timed when importable (a note says so otherwise); the
hand-captured CUDA graph and pgm's CUDA-graph step need CUDA.
"""
from __future__ import annotations

import copy
import os
import sys

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # pgm from the checkout

import _common  # noqa: E402
from pgm.distributions import Bernoulli, Normal  # noqa: E402
from pgm.models import VAE  # noqa: E402

X_DIM, BATCH, LR = 784, 128, 1e-3
REFERENCE = _common.REFERENCE


class Encoder(nn.Module):
    def __init__(self, latent, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(X_DIM, hidden), nn.Linear(hidden, hidden)
        self.loc, self.scale = nn.Linear(hidden, latent), nn.Linear(hidden, latent)

    def forward(self, x):
        h = F.relu(self.fc2(F.relu(self.fc1(x))))
        return {"loc": self.loc(h), "scale": F.softplus(self.scale(h))}


class Decoder(nn.Module):
    def __init__(self, latent, hidden):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(latent, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, X_DIM)

    def forward(self, z):
        return {"logits": self.fc3(F.relu(self.fc2(F.relu(self.fc1(z)))))}


def negative_elbo(encoder, decoder, x):
    """The hand-written loss: what pgm's VAE computes, written out."""
    q = encoder(x)
    loc, scale = q["loc"], q["scale"]
    z = loc + scale * torch.randn_like(loc)
    logits = decoder(z)["logits"]
    reconstruction = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    kl = (0.5 * (scale.square() + loc.square() - 1) - scale.log()).sum(-1)
    return (kl - reconstruction).mean()


def pytorch(compiled):
    def build(encoder, decoder, data, device):
        return _common.hand_written(lambda x: negative_elbo(encoder, decoder, x),
                                    [*encoder.parameters(), *decoder.parameters()],
                                    lambda i: (data[i % len(data)],), LR, compiled)
    return build


def pytorch_cuda_graph(encoder, decoder, data, device):
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=LR, capturable=True)
    step = _common.capture_step(lambda x: negative_elbo(encoder, decoder, x), optimizer, [data[0].clone()], device)
    return lambda i: step(data[i % len(data)])


def pgm_model(compile):
    def build(encoder, decoder, data, device):
        latent = encoder.loc.out_features
        q, p = Normal("q(z|x)", net=encoder), Bernoulli("p(x|z)", net=decoder)
        prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[latent]).to(device)
        model = VAE(q, p, prior=prior, optimizer_params={"lr": LR}, compile=compile)
        sync = _common.sync(device)
        return lambda i: model.train({"x": data[i % len(data)]}, sync=sync)
    return build


def pixyz(encoder, decoder, data, device):
    from pixyz.distributions import Bernoulli as PixyzBernoulli
    from pixyz.distributions import Normal as PixyzNormal
    from pixyz.losses import KullbackLeibler
    from pixyz.models import VAE as PixyzVAE

    class Inference(PixyzNormal):
        def __init__(self):
            super().__init__(var=["z"], cond_var=["x"], name="q")
            self.net = encoder

        def forward(self, x):
            return self.net(x)

    class Generator(PixyzBernoulli):
        def __init__(self):
            super().__init__(var=["x"], cond_var=["z"], name="p")
            self.net = decoder

        def forward(self, z):
            return {"probs": torch.sigmoid(self.net(z)["logits"])}

    latent = encoder.loc.out_features
    q, p = Inference().to(device), Generator().to(device)
    prior = PixyzNormal(loc=torch.tensor(0.0), scale=torch.tensor(1.0), var=["z"], features_shape=[latent],
                        name="p_prior").to(device)
    model = PixyzVAE(encoder=q, decoder=p, regularizer=KullbackLeibler(q, prior), optimizer=torch.optim.Adam,
                     optimizer_params={"lr": LR})

    def step(i):
        # a new tensor per step, as a data loader gives: Pixyz 0.3.3 memoizes get_params on the inputs' identity
        # (an LRU cache across steps), so a batch seen before would reuse a graph that was already backpropagated
        loss = model.train({"x": data[i % len(data)].clone()})
        return loss.item() if isinstance(loss, torch.Tensor) else float(loss)
    return step


def pyro(encoder, decoder, data, device):
    import pyro as pyro_
    import pyro.distributions as dist
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    pyro_.clear_param_store()
    latent = encoder.loc.out_features

    def model(x):
        pyro_.module("decoder", decoder)
        with pyro_.plate("data", x.shape[0]):
            z = pyro_.sample("z", dist.Normal(x.new_zeros(x.shape[0], latent), 1.0).to_event(1))
            pyro_.sample("x", dist.Bernoulli(logits=decoder(z)["logits"]).to_event(1), obs=x)

    def guide(x):
        pyro_.module("encoder", encoder)
        with pyro_.plate("data", x.shape[0]):
            q = encoder(x)
            pyro_.sample("z", dist.Normal(q["loc"], q["scale"]).to_event(1))

    svi = SVI(model, guide, Adam({"lr": LR}), loss=Trace_ELBO())
    return lambda i: svi.step(data[i % len(data)]) / BATCH


def implementations(device):
    impls = _common.implementations(device, pytorch(False), pytorch_cuda_graph, pgm_model, pytorch(True))
    impls["pixyz"], impls["pyro"] = pixyz, pyro
    return impls


def importable(name):
    """None if ``name`` imports, else why not."""
    try:
        __import__({"pixyz": "pixyz.models", "pyro": "pyro.infer"}.get(name, name))
        return None
    except ImportError as error:
        return str(error)


def main(argv=None):
    args = _common.parser(__doc__.splitlines()[0], "10x400,10x2000,30x400,30x2000").parse_args(argv)
    device = _common.setup(args)
    print(f"VAE step, batch {BATCH}, {X_DIM}-d binary data, Adam; device: {_common.describe(device)}")
    impls = _common.chosen(args, implementations(device))
    for library in ("pixyz", "pyro"):
        problem = importable(library) if library in impls else None
        if problem is not None:
            print(f"note: {library} skipped, it does not import here ({problem}); "
                  f"pip install {library}{'-ppl' if library == 'pyro' else ''}")
            del impls[library]
    rows = []
    for latent, hidden in args.configs:
        torch.manual_seed(args.seed)
        encoder, decoder = Encoder(latent, hidden).to(device), Decoder(latent, hidden).to(device)
        generator = torch.Generator(device="cpu").manual_seed(args.seed)
        data = [(torch.rand(BATCH, X_DIM, generator=generator) < 0.5).float().to(device) for _ in range(8)]
        steps = {name: build(copy.deepcopy(encoder), copy.deepcopy(decoder), data, device)
                 for name, build in impls.items()}
        for name, (ms, warm, loss) in _common.measure(steps, args, device).items():
            rows.append((f"latent {latent}, hidden {hidden}", name, ms, warm, loss))
    print(_common.table(rows, REFERENCE))
    return rows


if __name__ == "__main__":
    main()
