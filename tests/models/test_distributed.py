"""Data-parallel training: two CPU processes (gloo) stay identical and match one process on the whole batch."""
import contextlib
import datetime
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from pgm.distributions import Normal
from pgm.losses import KL, LogProb
from pgm.models import Model, Objective
from pgm.models import _distributed

WORLD = 2
STEPS = 3


class Net(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(i, 8), nn.Tanh(), nn.Linear(8, 2 * o))

    def forward(self, x):
        loc, scale = self.net(x).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale) + 1e-3}


def build(seed=0, **kwargs):
    """A loss without sampling, so that every process computes exactly its share of the whole batch's."""
    torch.manual_seed(seed)
    q, p_y = Normal("q(z|x)", net=Net(6, 2)), Normal("p(y|x)", net=Net(6, 1))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    unused = Normal("q(w|x)", net=Net(6, 1))  # only the test loss uses it: DDP must not wait for its gradients
    return Model((KL(q, prior) - LogProb(p_y)).mean(), [q, p_y, unused], optimizer_params={"lr": 0.05},
                 test_loss=(KL(q, prior) + KL(unused, Normal("p(w)", loc=0.0, scale=1.0, features_shape=[1]))).mean(),
                 **kwargs)


def two_objectives(seed=0):
    """Each objective trains its own network; the first one's loss also reads the second's (not trained by it)."""
    torch.manual_seed(seed)
    q, p_y = Normal("q(z|x)", net=Net(6, 2)), Normal("p(y|x)", net=Net(6, 1))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    return Model([Objective((KL(q, prior) - 0.5 * LogProb(p_y)).mean(), [q], optimizer_params={"lr": 0.05}, name="q"),
                  Objective(-LogProb(p_y).mean(), [p_y], optimizer=torch.optim.SGD, optimizer_params={"lr": 0.1},
                            name="p")])


def batches(shard=slice(None)):
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(48, 6, generator=g), torch.randn(48, 1, generator=g)
    return [{"x": x[i:i + 16][shard], "y": y[i:i + 16][shard]} for i in range(0, 48, 16)]


def shard(rank):
    return slice(rank * 16 // WORLD, (rank + 1) * 16 // WORLD)


def train(model, data, folder):
    losses = [model.train(data[0]) for _ in range(STEPS)]
    history = model.fit(data, 3, valid_data=data[:2], checkpoint_dir=folder, checkpoint_every=2, progress=False)
    return {"losses": losses, "history": history,
            "parameters": [t.detach().clone() for t in model.distributions.parameters()]}


def worker(rank, port, folder, compile=False, several=False):
    with process_group(rank, port):
        if several:
            model = two_objectives(seed=rank)
            result = {"losses": [model.train(b) for b in batches(shard(rank))],
                      "parameters": [t.detach().clone() for t in model.distributions.parameters()]}
        elif compile:
            from pgm.models import _compile
            _compile.BACKEND = "aot_eager"  # Dynamo and AOTAutograd through DDP, without slow code generation
            model = build(seed=rank, compile="inductor")
            result = {"losses": [model.train(batches(shard(rank))[0]) for _ in range(STEPS)],
                      "parameters": [t.detach().clone() for t in model.distributions.parameters()]}
        else:
            model = build(seed=rank)  # different starting points: DDP starts every process from the first one's
            result = train(model, batches(shard(rank)), f"{folder}/checkpoints")
        torch.save(result, f"{folder}/rank{rank}.pt")


@contextlib.contextmanager
def process_group(rank=None, port=None, **kwargs):
    """A worker's life in the process group, from joining it (torchrun's environment variables when no port is
    given) to leaving the process for good.

    After its work, a process leaves together with the others (a process that tears down its gloo connections
    while another still uses them can abort in gloo's threads), then exits at once with status 0: the results
    are saved by then, and skipping the interpreter's finalization skips what once aborted a worker on CI after
    its work ("terminate called without an active exception", SIGABRT, no Python traceback): most likely a gloo
    thread dropping its last reference to a finished collective's tensors while the interpreter finalizes, when
    taking the GIL ends the thread. After an error the process leaves alone, since the other may never come, and
    the error goes on to the launcher."""
    torch.set_num_threads(1)
    if port is None:
        dist.init_process_group("gloo", **kwargs)
    else:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                                **kwargs)
    try:
        yield
    except BaseException:
        dist.destroy_process_group()
        raise
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_match_one_process_on_the_whole_batch(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    single = train(build(seed=0), batches(), tmp_path / "single")
    for a, b in zip(ranks[0]["parameters"], ranks[1]["parameters"]):
        assert torch.equal(a, b)  # the same averaged gradient, the same step
    for a, b in zip(ranks[0]["parameters"], single["parameters"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # the losses a process reports are the whole batch's: averaged over processes
    assert ranks[0]["losses"] == ranks[1]["losses"]
    torch.testing.assert_close(torch.tensor(ranks[0]["losses"]), torch.tensor(single["losses"]))
    for mine, theirs in zip(ranks[0]["history"], single["history"]):
        assert mine.keys() == theirs.keys()
        for key in ("train_loss", "valid_loss"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5)
    # the first process wrote the checkpoints, with every process's random state
    checkpoint = torch.load(tmp_path / "checkpoints" / "epoch-0003.pt", weights_only=True)
    assert checkpoint["fit"]["world_size"] == WORLD and len(checkpoint["fit"]["rng"]) == WORLD
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch-0002.pt", "epoch-0003.pt"]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_a_compiled_step_trains_data_parallel(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path), True), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    model = build(seed=0)
    losses = [model.train(batches()[0]) for _ in range(STEPS)]
    assert ranks[0]["losses"] == ranks[1]["losses"]
    torch.testing.assert_close(torch.tensor(ranks[0]["losses"]), torch.tensor(losses))
    for a, b, c in zip(ranks[0]["parameters"], ranks[1]["parameters"], model.distributions.parameters()):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_several_objectives_train_data_parallel(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path), False, True), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    model = two_objectives(seed=0)
    losses = [model.train(b) for b in batches()]
    assert ranks[0]["losses"] == ranks[1]["losses"]
    for mine, theirs in zip(ranks[0]["losses"], losses):
        assert mine == pytest.approx(theirs, rel=1e-5)
    for a, b, c in zip(ranks[0]["parameters"], ranks[1]["parameters"], model.distributions.parameters()):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c.detach(), rtol=1e-5, atol=1e-6)


def empty_valid_worker(rank, port, folder):
    """Rank 1's share of valid_data is empty: it must still take part in each reduction (not hang rank 0)."""
    with process_group(rank, port, timeout=datetime.timedelta(seconds=60)):
        model = build(seed=rank)
        data = batches(shard(rank))
        history = model.fit(data[:1], 1, valid_data=data[:2] if rank == 0 else [], progress=False)
        torch.save({"history": history, "parameters": [t.detach().clone() for t in model.distributions.parameters()]},
                   f"{folder}/rank{rank}.pt")


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_a_process_with_no_validation_batches_takes_part(tmp_path):
    mp.spawn(empty_valid_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    assert ranks[0]["history"] == ranks[1]["history"]
    model = build(seed=0)
    with torch.no_grad():
        for mine, trained in zip(model.distributions.parameters(), ranks[0]["parameters"]):
            mine.copy_(trained)
    expected = [model.test(batch) for batch in batches(shard(0))[:2]]  # rank 0's batches: 8 rows each
    assert ranks[0]["history"][0]["valid_loss"] == pytest.approx(sum(expected) / 2, rel=1e-5)


def test_one_process_is_not_distributed():
    assert not _distributed.resolve(None)
    assert _distributed.world_size() == 1 and _distributed.rank() == 0
    assert _distributed.gather("state") == ["state"]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_torchrun_launches_data_parallel_training(tmp_path):
    """The launch users run: torchrun starts two processes of this file (see the bottom), each initializes the
    process group from torchrun's environment, and Model picks it up by itself (distributed=None)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD),
               __file__, str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    single = train(build(seed=0), batches(), tmp_path / "single")
    for a, b, c in zip(ranks[0]["parameters"], ranks[1]["parameters"], single["parameters"]):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "checkpoints" / "epoch-0003.pt").is_file()


def torchrun_worker(folder):
    with process_group():  # rank, world size and address from torchrun's environment variables
        rank = dist.get_rank()
        result = train(build(seed=rank), batches(shard(rank)), f"{folder}/checkpoints")
        torch.save(result, f"{folder}/rank{rank}.pt")


if __name__ == "__main__":
    torchrun_worker(sys.argv[1])
