"""A command-line user's mistakes print one line `error: ...` naming the option and the fix, exit with status 2,
and come before any slow work; Ctrl-C prints the checkpoint and the command that resumes the run."""
import importlib
import json

import pytest
import torch

from common import training
from script_runs import error_line
from pgm.models import TrainingInterrupted

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("option, value, message", [
    ("--batch-size", "0", "argument --batch-size: must be > 0; got 0"),
    ("--epochs", "-1", "argument --epochs: must be > 0; got -1"),
    ("--lr", "abc", "argument --lr: must be a number; got 'abc'"),
    ("--eval-every", "-2", "argument --eval-every: must be >= 0; got -2"),
    ("--temperature", "0", "argument --temperature: must be > 0; got 0"),
    ("--labels", "seven", "argument --labels: invalid int_or_all value: 'seven'"),
    ("--dataset", "cifar", "argument --dataset: invalid choice: 'cifar'"),
])
def test_bad_option_values(option, value, message, capsys, no_loading, tmp_path):
    line = error_line("ss_hmvae_kl", [option, value, "--out", str(tmp_path)], capsys)
    assert line.startswith("error: " + message) and line.endswith("--help)")


def test_a_device_that_is_not_there(capsys, no_loading, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert error_line("vae", ["--device", "cuda", "--out", str(tmp_path)], capsys) == (
        "error: --device cuda: this machine has no CUDA device torch can use; use --device cpu.")
    assert error_line("vae", ["--device", "tpu9", "--out", str(tmp_path)], capsys) == (
        "error: --device tpu9: not a torch device; use cpu, cuda or cuda:N.")


def test_missing_data_and_bad_labels(capsys, tmp_path):
    line = error_line("ss_hmvae_kl", ["--dataset", "fashion", "--out", str(tmp_path)], capsys)
    assert "--data-root" in line
    line = error_line("ss_hmvae_kl", ["--dataset", "fashion", "--data-root", str(tmp_path / "none"),
                                 "--out", str(tmp_path)], capsys)
    assert str(tmp_path / "none") in line
    assert error_line("ss_hmvae_kl", ["--labels", "7", "--out", str(tmp_path)], capsys).startswith(
        "error: labels=7 is fewer than the 10 classes")


def test_an_existing_results_folder_and_resume_without_a_checkpoint(capsys, no_loading, tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({}))
    assert error_line("vae", ["--out", str(tmp_path)], capsys) == (
        f"error: --out {tmp_path} already holds a run (results.json); pass --resume to continue it, --overwrite "
        f"to start afresh there, or another --out.")
    assert error_line("vae", ["--out", str(tmp_path / "new"), "--resume"], capsys) == (
        f"error: --resume: there is no checkpoint in {tmp_path / 'new' / 'checkpoints'} to resume from; run "
        f"without --resume to start, or point --out at the folder of the run to continue.")


def test_overwrite_starts_afresh(tmp_path, monkeypatch):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch-0001.pt").write_bytes(b"old")
    module = importlib.import_module("vae")
    monkeypatch.setattr(training, "train", _stop)
    with pytest.raises(_Stop):
        module.main(["--out", str(tmp_path), "--overwrite", "--epochs", "1", "--hidden", "8", "--latent", "2"])
    assert not (tmp_path / "checkpoints").exists()


class _Stop(Exception):
    pass


def _stop(*args, **kwargs):
    raise _Stop


def test_ctrl_c_prints_the_checkpoint_and_the_resume_command(capsys, monkeypatch, tmp_path):
    saved = tmp_path / "checkpoints" / "epoch-0001-batch-000002.pt"

    def interrupted(*args, **kwargs):
        raise TrainingInterrupted(str(saved))

    monkeypatch.setattr(training, "train", interrupted)
    monkeypatch.setattr("sys.argv", ["examples/vae.py"])
    argv = ["--epochs", "3", "--hidden", "8", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_:
        training.run(importlib.import_module("vae").main, argv)
    assert exit_.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"interrupted: the run is saved in {saved}",
                   f"resume it with: python examples/vae.py --epochs 3 --hidden 8 --out {tmp_path} --resume"]


def test_threads_follow_the_size_of_the_networks():
    small = type("Args", (), {"batch_size": 512, "hidden": 512})
    large = type("Args", (), {"batch_size": 1024, "hidden": 2048})
    assert training.auto_threads(small) == 1 and training.auto_threads(large) >= 1


def test_an_mps_device_that_is_not_there(capsys, no_loading, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert error_line("vae", ["--device", "mps", "--out", str(tmp_path)], capsys) == (
        "error: --device mps: MPS is not available here; use --device cpu.")
