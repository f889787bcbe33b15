"""Checkpoints survive a crash in the middle of writing one: the previous checkpoint stays as it was and the file
being written never exists half-written (a temporary file is written, flushed, then renamed over the target).

Two crashes: ``torch.save`` failing half-way (a full disk) in this process, and a process killed with SIGKILL
half-way through writing a large checkpoint in ``fit``. Either test fails if ``atomic_save`` writes straight to
the target path.
"""
import io
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from pgm.distributions import Bernoulli, Normal
from pgm.losses import E, KL, LogProb
from pgm.models import Model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # model_nets, also when run as a script
from model_nets import Decoder, Encoder  # noqa: E402

HALF_WAY = 4 << 20  # bytes written before the crash: well inside a checkpoint of BIG * 4 bytes
BIG = 4_000_000     # floats in a buffer that makes the checkpoint large (16 MB)


class BigEncoder(Encoder):
    def __init__(self, big=False):
        super().__init__()
        if big:  # a large state: a checkpoint takes many writes
            self.register_buffer("table", torch.arange(BIG, dtype=torch.float32))


def build(big=False):
    torch.manual_seed(0)
    q, p = Normal("q(z|x)", net=BigEncoder(big)), Bernoulli("p(x|z)", net=Decoder())
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    return Model((KL(q, prior) - E(q, LogProb(p))).mean(), [q, p], optimizer_params={"lr": 0.05})


BATCHES = [{"x": torch.rand(8, 6, generator=torch.Generator().manual_seed(i)).round()} for i in range(2)]


def _open(target):
    """``torch.save``'s target as a binary file: a file object as it is, a path opened for writing."""
    if isinstance(target, (str, os.PathLike)):
        return open(target, "wb"), True
    return target, False


class FullDisk:
    """``torch.save`` that writes the first half of the real bytes and then fails, as on a full disk."""

    def __init__(self, real):
        self.real, self.calls = real, 0

    def __call__(self, obj, target, *args, **kwargs):
        self.calls += 1
        buffer = io.BytesIO()
        self.real(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f, opened = _open(target)
        try:
            f.write(data[:len(data) // 2])
            f.flush()
        finally:
            if opened:
                f.close()
        raise OSError(28, "No space left on device")


def test_a_save_failing_half_way_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    model = build()
    model.train(BATCHES[0])
    path = tmp_path / "model.pt"
    model.save(path)
    before, first = path.read_bytes(), [t.detach().clone() for t in model.distributions.parameters()]
    model.train(BATCHES[1])  # new parameters, a new state to write over the old one

    monkeypatch.setattr(torch, "save", FullDisk(torch.save))
    with pytest.raises(OSError, match="No space left on device"):
        model.save(path)
    assert torch.save.calls == 1
    assert path.read_bytes() == before          # the old file, byte for byte
    assert os.listdir(tmp_path) == ["model.pt"]  # and no half-written temporary file left behind
    monkeypatch.undo()
    restored = build()
    restored.load(path)  # loadable, and it is the state of the first save
    for a, b in zip(restored.distributions.parameters(), first):
        assert torch.equal(a, b)


def test_fit_failing_to_write_a_checkpoint_keeps_the_last_one(tmp_path, monkeypatch):
    model = build()
    model.fit(BATCHES, 1, checkpoint_dir=tmp_path, progress=False)
    before = (tmp_path / "epoch-0001.pt").read_bytes()
    monkeypatch.setattr(torch, "save", FullDisk(torch.save))
    with pytest.raises(OSError, match="No space left on device"):
        model.fit(BATCHES, 2, checkpoint_dir=tmp_path, resume="latest", progress=False)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["epoch-0001.pt"]  # no epoch-0002.pt, whole or not
    assert (tmp_path / "epoch-0001.pt").read_bytes() == before


# --- a process killed while it writes ----------------------------------------------------------------------

class _Hanging:
    """A file that passes the first HALF_WAY bytes through, makes them reach the disk, tells the test (creating
    ``ready``) and waits to be killed."""

    def __init__(self, f, ready):
        self.f, self.ready, self.written = f, ready, 0

    def write(self, data):
        data = memoryview(data).cast("B")
        room = HALF_WAY - self.written
        if len(data) < room:
            self.written += len(data)
            return self.f.write(data)
        self.f.write(data[:room])
        self.f.flush()
        os.fsync(self.f.fileno())
        open(self.ready, "w").close()
        time.sleep(300)

    def flush(self):
        self.f.flush()


def _child(folder, ready):
    """Run in a subprocess: fit for two epochs; the first checkpoint is written whole, the second hangs half-way."""
    real, calls = torch.save, []

    def save(obj, target, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            return real(obj, target, *args, **kwargs)
        f, _ = _open(target)
        return real(obj, _Hanging(f, ready), *args, **kwargs)

    torch.save = save
    build(big=True).fit(BATCHES, 2, checkpoint_dir=folder, progress=False)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_process_killed_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path):
    folder, ready = tmp_path / "checkpoints", tmp_path / "ready"
    child = subprocess.Popen([sys.executable, __file__, str(folder), str(ready)], stderr=subprocess.PIPE,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, f"the writer ended before the crash: {child.stderr.read().decode()[-3000:]}"
            assert time.monotonic() < deadline, "the writer never got half-way through the second checkpoint"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)  # the crash: no Python cleanup, no except block runs
    finally:
        child.kill()
        child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL

    files = sorted(os.listdir(folder))
    assert "epoch-0002.pt" not in files  # the target of the interrupted write was never created, even in part
    assert "epoch-0001.pt" in files
    partial = [f for f in files if f != "epoch-0001.pt"]  # the kill did strike half-way: the partial write is there
    assert len(partial) == 1 and os.path.getsize(folder / partial[0]) == HALF_WAY
    state = torch.load(folder / "epoch-0001.pt", weights_only=True)  # the previous checkpoint is whole
    assert state["fit"]["epoch"] == 1
    assert torch.equal(state["distributions"]["0.net.table"], torch.arange(BIG, dtype=torch.float32))

    # and the run resumes from it (the leftover partial file is no checkpoint)
    model = build(big=True)
    history = model.fit(BATCHES, 2, checkpoint_dir=folder, resume="latest", progress=False)
    assert [record["epoch"] for record in history] == [1, 2]
    assert torch.load(folder / "epoch-0002.pt", weights_only=True)["fit"]["epoch"] == 2


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
