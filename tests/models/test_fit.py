"""Model.fit: history, checkpoints, exact resumption (after a run ends or a Ctrl-C), logging, misuse."""
import os
import random
import signal
import sys

import numpy as np
import pytest
import torch
from torch import nn

from pgm.distributions import Bernoulli, Normal
from pgm.losses import E, KL, LogProb, Parameter
from pgm.models import Model

from model_nets import Decoder


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.1), nn.ReLU(), nn.Linear(8, 4))

    def forward(self, x):
        loc, scale = self.net(x).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale) + 1e-3}



def build(lr=0.05, **kwargs):
    torch.manual_seed(0)
    q, p = Normal("q(z|x)", net=Encoder()), Bernoulli("p(x|z)", net=Decoder())
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    loss = (Parameter("beta") * KL(q, prior) - E(q, LogProb(p))).mean()
    return Model(loss, [q, p], optimizer_params={"lr": lr}, **kwargs)


DATA = torch.rand(40, 6).round()


def batches():
    """One epoch of shuffled batches; draws from numpy, Python and torch's generators, as real code does."""
    order = np.random.permutation(len(DATA))
    random.shuffle(order)
    for i in range(0, len(DATA), 8):
        x = DATA[order[i:i + 8]]
        yield {"x": (x + 0.01 * torch.randn_like(x)).clamp(0, 1)}


class DictData(torch.utils.data.Dataset):
    def __len__(self):
        return len(DATA)

    def __getitem__(self, i):
        return {"x": DATA[i]}


def seed(n=0):
    torch.manual_seed(n)
    np.random.seed(n)
    random.seed(n)


def parameters(model):
    return [p.detach().clone() for p in model.distributions.parameters()]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


VALID = [{"x": DATA[:16]}, {"x": DATA[16:]}]
PARAMS = {"beta": 1.0}


def test_fit_returns_the_history_and_learns():
    seed()
    torch.manual_seed(0)
    q = Normal("q(z|x)", net=Encoder())
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    p = Bernoulli("p(x|z)", net=Decoder())
    model = Model((KL(q, prior) - E(q, LogProb(p))).mean(), [q, p], optimizer_params={"lr": 0.05},
                  test_loss=KL(q, prior).mean())  # a test loss without sampling: exact to check
    history = model.fit(batches, 6, valid_data=VALID, progress=False)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert set(history[0]) == {"epoch", "train_loss", "valid_loss"}
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # the validation loss is the test loss over the whole set, batches weighted by their size
    expected = (model.test(VALID[0]) * 16 + model.test(VALID[1]) * 24) / 40
    assert history[-1]["valid_loss"] == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(model.test({"x": DATA}), rel=1e-5)


def test_fit_iterates_the_data_once_per_epoch_only():
    """A DataLoader with workers starts them on each iter(): fit must not iterate it just to check its type."""
    class Counted:
        iterations = 0

        def __iter__(self):
            Counted.iterations += 1
            return iter([{"x": DATA[:8]}, {"x": DATA[8:16]}])

    build().fit(Counted(), 3, progress=False, params=PARAMS)
    assert Counted.iterations == 3


def test_params_function_sees_each_epoch_number():
    seen = []
    build().fit(batches, 3, progress=False, params=lambda epoch: seen.append(epoch) or {"beta": 0.5})
    assert seen == [1, 2, 3]


def test_resume_after_a_finished_run_continues_bit_for_bit(tmp_path):
    seed()
    straight = build()
    expected = straight.fit(batches, 4, valid_data=VALID, progress=False, params=PARAMS)
    seed()
    build().fit(batches, 2, valid_data=VALID, checkpoint_dir=tmp_path, progress=False, params=PARAMS)
    assert sorted(os.listdir(tmp_path)) == ["epoch-0001.pt", "epoch-0002.pt"]
    seed(123)  # the checkpoint's random states replace whatever the new process has
    resumed = build()
    history = resumed.fit(batches, 4, valid_data=VALID, checkpoint_dir=tmp_path, resume="latest", progress=False,
                          params=PARAMS)
    assert history == expected
    assert_same(parameters(resumed), parameters(straight))
    assert_same([s for v in resumed.optimizer.state.values() for s in v.values()],
                [s for v in straight.optimizer.state.values() for s in v.values()])


def test_resume_from_a_dataloader_with_its_own_generator(tmp_path):
    def loader():
        generator = torch.Generator().manual_seed(7)
        return torch.utils.data.DataLoader(DictData(), batch_size=8, shuffle=True, generator=generator)
    seed()
    straight = build()
    straight.fit(loader(), 3, progress=False, params=PARAMS)
    seed()
    build().fit(loader(), 1, checkpoint_dir=tmp_path, progress=False, params=PARAMS)
    resumed = build()
    resumed.fit(loader(), 3, checkpoint_dir=tmp_path, resume=tmp_path / "epoch-0001.pt", progress=False,
                params=PARAMS)
    assert_same(parameters(resumed), parameters(straight))


@pytest.fixture
def ctrl_c_interrupts():
    """Ctrl-C as in an interactive session, whatever this process inherited: a shell starts a background job with
    SIGINT ignored, and fit then leaves it alone (as it must), so the tests that send one set the default first."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def interrupting(at_batch, epoch=2):
    """``batches`` that sends this process a SIGINT (Ctrl-C) while producing batch ``at_batch`` of ``epoch``."""
    calls = {"epoch": 0}

    def data():
        calls["epoch"] += 1
        for i, batch in enumerate(batches()):
            if calls["epoch"] == epoch and i == at_batch:
                os.kill(os.getpid(), signal.SIGINT)
            yield batch
    return data


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to oneself")
def test_ctrl_c_saves_between_steps_and_resume_is_exact(tmp_path, capsys, ctrl_c_interrupts):
    seed()
    straight = build()
    expected = straight.fit(batches, 3, progress=False, params=PARAMS)
    seed()
    model = build()
    with pytest.raises(KeyboardInterrupt):
        model.fit(interrupting(at_batch=2), 3, checkpoint_dir=tmp_path, progress=False, params=PARAMS)
    assert "stopping after this step" in capsys.readouterr().err
    # the step under way finished: 3 batches of epoch 2 done
    assert sorted(os.listdir(tmp_path)) == ["epoch-0001-batch-000003.pt", "epoch-0001.pt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    seed(99)
    resumed = build()
    history = resumed.fit(batches, 3, checkpoint_dir=tmp_path, resume="latest", progress=False, params=PARAMS)
    assert history == expected
    assert_same(parameters(resumed), parameters(straight))


def test_a_compiled_model_resumes_bit_for_bit(tmp_path, monkeypatch):
    from pgm.models import _compile
    monkeypatch.setattr(_compile, "BACKEND", "aot_eager")  # Dynamo and AOTAutograd, without slow code generation
    seed()
    straight = build(compile="inductor")
    straight.fit(batches, 3, progress=False, params=PARAMS)
    seed()
    build(compile="inductor").fit(batches, 2, checkpoint_dir=tmp_path, progress=False, params=PARAMS)
    resumed = build(compile="inductor")
    resumed.fit(batches, 3, checkpoint_dir=tmp_path, resume="latest", progress=False, params=PARAMS)
    assert resumed._steps[0].kind != "eager"  # still compiled after loading the checkpoint
    assert_same(parameters(resumed), parameters(straight))


def test_checkpoints_every_n_epochs_and_at_the_end(tmp_path):
    model = build()
    model.fit(batches, 5, checkpoint_dir=tmp_path, checkpoint_every=2, progress=False, params=PARAMS)
    assert sorted(os.listdir(tmp_path)) == ["epoch-0002.pt", "epoch-0004.pt", "epoch-0005.pt"]  # no temporary files
    other = build()
    other.load(tmp_path / "epoch-0005.pt")  # a fit checkpoint is also a plain model checkpoint
    assert_same(parameters(other), parameters(model))


class Writer:
    """Stands for a TensorBoard SummaryWriter: remembers (tag, step) of each scalar."""

    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, step))


def test_progress_in_a_log_file_is_a_line_per_epoch_and_tensorboard_writer(capsys):
    writer = Writer()
    build().fit(DictData_batches(), 2, valid_data=VALID, progress=True, tensorboard=writer, params=PARAMS)
    assert writer.scalars == [("loss/train", 1), ("loss/valid", 1), ("loss/train", 2), ("loss/valid", 2)]
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split(",")[0] for line in lines] == ["epoch 1", "epoch 2"] and "valid loss" in lines[1]
    assert "\r" not in captured.out + captured.err  # nothing redrawn where there is no terminal


def test_progress_in_a_terminal_is_one_bar_for_the_run(capsys, monkeypatch):
    pytest.importorskip("tqdm")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setenv("TERM", "xterm")
    build().fit(DictData_batches(), 2, valid_data=VALID, progress=True, params=PARAMS,
                callback=lambda record: {"accuracy": 0.5} if record["epoch"] == 1 else None)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "2/2 [" in err  # the run's bar counts epochs
    final = err.split("\r")[-1]
    assert "accuracy 0.5" in final and "valid" in final  # the latest numbers stay on the bar
    assert "batch" not in err  # epochs this short get no inner bar
    from pgm.models import _progress
    monkeypatch.setattr(_progress._Progress, "inner_after", -1.0)
    build().fit(DictData_batches(), 1, progress=True, params=PARAMS)
    assert "  epoch 1" in capsys.readouterr().err  # a long epoch gets a bar over its batches


def DictData_batches():
    return torch.utils.data.DataLoader(DictData(), batch_size=8)


def test_tensorboard_without_the_package_is_explained(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(ImportError, match=r"fit\(tensorboard=\.\.\.\) logs through torch.utils.tensorboard, which "
                                          r"needs the tensorboard package: pip install tensorboard"):
        build().fit(batches, 1, tensorboard=tmp_path / "runs", progress=False, params=PARAMS)


def test_fit_misuse_is_explained(tmp_path):
    model = build()
    with pytest.raises(TypeError, match=r"fit: train_data is an iterator \(e.g. a generator\), which is used up "
                                        r"after one epoch; .* fit\(lambda: batches\(\.\.\.\), \.\.\.\)"):
        model.fit(batches(), 2, progress=False)
    with pytest.raises(TypeError, match=r"fit: each batch of train_data must be a dict of inputs such as "
                                        r"\{'x': x\}; got list. .*fit\(lambda: \(\{'x': x\} for \(x,\) in loader\)"):
        model.fit(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(DATA), batch_size=8), 1, progress=False)
    with pytest.raises(TypeError, match=r"fit: train_data must be an iterable of input dicts"):
        model.fit(3, 1, progress=False)
    with pytest.raises(TypeError, match=r"fit: params must be a dict of Parameter values, or a function"):
        model.fit(batches, 1, progress=False, params=lambda epoch: 0.5)
    with pytest.raises(ValueError, match=r"fit: epochs must be a whole number >= 0; got 1.5"):
        model.fit(batches, 1.5)
    with pytest.raises(ValueError, match=r"fit: checkpoint_every must be a whole number >= 1; got 0"):
        model.fit(batches, 1, checkpoint_every=0)
    with pytest.raises(ValueError, match=r"fit: resume='latest' looks in checkpoint_dir; pass checkpoint_dir"):
        model.fit(batches, 1, resume="latest")
    with pytest.raises(FileNotFoundError, match=r"fit: resume='.*nothing.pt': no such checkpoint file"):
        model.fit(batches, 1, resume=str(tmp_path / "nothing.pt"))
    model.save(tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"is not a checkpoint written by fit .*load its parameters with "
                                         r"model.load\(path\)"):
        model.fit(batches, 1, resume=tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"fit: train_data gave no batches in epoch 1"):
        model.fit(lambda: [], 1, progress=False)
    with pytest.raises(ValueError, match=r"fit: valid_data gave no batches in epoch 1"):
        model.fit(batches, 1, valid_data=[], progress=False, params=PARAMS)
    # 'latest' with nothing saved yet starts afresh
    assert len(model.fit(batches, 1, checkpoint_dir=tmp_path / "new", resume="latest", progress=False,
                         params=PARAMS)) == 1


def test_a_callback_adds_its_numbers_to_the_history_and_to_tensorboard():
    model, writer, seen, returned = build(), Writer(), [], []

    def callback(record):
        seen.append(dict(record))
        if record["epoch"] % 2:
            return None
        returned.append({"whole_data": model.test({"x": DATA}, **PARAMS)})  # the test loss after that epoch
        return returned[-1]

    history = model.fit(batches, 4, progress=False, params=PARAMS, callback=callback, tensorboard=writer)
    assert [r["epoch"] for r in seen] == [1, 2, 3, 4]
    assert seen[0] == history[0] and "whole_data" not in history[0]
    assert [history[1]["whole_data"], history[3]["whole_data"]] == [r["whole_data"] for r in returned]
    assert returned[0]["whole_data"] != returned[1]["whole_data"]  # two epochs of training apart
    assert ("whole_data", 2) in writer.scalars and ("whole_data", 1) not in writer.scalars


def test_a_callback_is_checkpointed_and_resumed_with_the_run(tmp_path):
    def callback(record):
        return {"draw": torch.rand(()).item()}  # uses the random state: resuming must give the same numbers
    seed()
    expected = build().fit(batches, 3, progress=False, params=PARAMS, callback=callback)
    seed()
    build().fit(batches, 1, checkpoint_dir=tmp_path, progress=False, params=PARAMS, callback=callback)
    seed(5)
    history = build().fit(batches, 3, checkpoint_dir=tmp_path, resume="latest", progress=False, params=PARAMS,
                          callback=callback)
    assert history == expected


def test_a_batches_function_carrying_its_generator_resumes_exactly(tmp_path):
    def make():
        generator = torch.Generator().manual_seed(3)

        def epoch():
            order = torch.randperm(len(DATA), generator=generator)
            return [{"x": DATA[order[i:i + 8]]} for i in range(0, len(DATA), 8)]
        epoch.generator = generator  # fit saves and restores it with the checkpoints
        return epoch
    seed()
    straight = build()
    expected = straight.fit(make(), 4, progress=False, params=PARAMS)
    seed()
    build().fit(make(), 2, checkpoint_dir=tmp_path, progress=False, params=PARAMS)
    seed()
    resumed = build()
    assert resumed.fit(make(), 4, checkpoint_dir=tmp_path, resume="latest", progress=False, params=PARAMS) == expected
    assert_same(parameters(resumed), parameters(straight))


def test_callback_misuse_is_explained():
    model = build()
    with pytest.raises(TypeError, match=r"fit: callback must be a function of the epoch's record; got int"):
        model.fit(batches, 1, progress=False, params=PARAMS, callback=3)
    with pytest.raises(TypeError, match=r"fit: callback must return a dict of numbers or None; got float"):
        model.fit(batches, 1, progress=False, params=PARAMS, callback=lambda record: 0.5)
    with pytest.raises(ValueError, match=r"fit: callback returned \['train_loss'\], which fit records itself"):
        model.fit(batches, 1, progress=False, params=PARAMS, callback=lambda record: {"train_loss": 1.0})


def test_keep_deletes_older_checkpoints_once_a_new_one_is_written(tmp_path):
    build().fit(batches, 5, checkpoint_dir=tmp_path, keep=2, progress=False, params=PARAMS)
    assert sorted(os.listdir(tmp_path)) == ["epoch-0004.pt", "epoch-0005.pt"]
    with pytest.raises(ValueError, match=r"fit: keep must be a whole number >= 1 \(or None to keep every "
                                         r"checkpoint\); got 0"):
        build().fit(batches, 1, checkpoint_dir=tmp_path, keep=0)


def test_keep_never_deletes_the_checkpoint_it_just_wrote(tmp_path):
    """Back to epoch 2 of a 5-epoch run in the same folder, 1 more epoch with keep=1: the new epoch-0003.pt stays
    (the old run's later checkpoints sorted after it), and the later ones are named in a warning."""
    build().fit(batches, 5, checkpoint_dir=tmp_path, progress=False, params=PARAMS)
    with pytest.warns(UserWarning, match=r"holds checkpoints further than where this run starts \(epoch-0003\.pt, "
                                         r"epoch-0004\.pt, epoch-0005\.pt\), from another run"):
        build().fit(batches, 3, checkpoint_dir=tmp_path, resume=tmp_path / "epoch-0002.pt", keep=1, progress=False,
                    params=PARAMS)
    assert sorted(os.listdir(tmp_path)) == ["epoch-0003.pt", "epoch-0004.pt", "epoch-0005.pt"]


def test_a_model_built_with_another_learning_rate_resumes_with_it(tmp_path):
    """torch's load_state_dict restores the checkpoint's lr; a model built with another lr keeps its own (the
    docs' "resume with a lower learning rate"), and one built with the same keeps the checkpoint's, which may
    have been changed while training (a schedule)."""
    model = build()
    model.fit(batches, 1, checkpoint_dir=tmp_path, progress=False, params=PARAMS,
              callback=lambda record: model.optimizer.param_groups[0].update(lr=0.01) or {})
    lower = build(lr=1e-4)
    lower.load(tmp_path / "epoch-0001.pt")
    assert lower.optimizer.param_groups[0]["lr"] == 1e-4
    same = build()
    same.load(tmp_path / "epoch-0001.pt")
    assert same.optimizer.param_groups[0]["lr"] == 0.01


def test_checkpoints_get_the_mode_of_any_new_file(tmp_path):
    old = os.umask(0o022)
    try:
        build().save(tmp_path / "model.pt")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "model.pt").st_mode & 0o777 == 0o644


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to oneself")
def test_resuming_mid_epoch_with_fewer_batches_is_explained(tmp_path, ctrl_c_interrupts):
    with pytest.raises(KeyboardInterrupt):
        build().fit(interrupting(at_batch=2), 3, checkpoint_dir=tmp_path, progress=False, params=PARAMS)
    with pytest.raises(ValueError, match=r"fit: resuming needs the same train_data; it now has fewer than 3 "
                                         r"batches in epoch 2\."):
        build().fit(lambda: list(batches())[:2], 3, checkpoint_dir=tmp_path, resume="latest", progress=False,
                    params=PARAMS)
