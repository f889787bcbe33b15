"""Mistakes a command-line user can make that once ended in a Python traceback: each is now one line
`error: ...` naming what was wrong and the fix (exit status 2; 1 for a run whose loss became NaN), and option
values are checked before any data is read."""
import gzip
import importlib
import json
import os
import shutil
import stat

import numpy as np
import pytest
import torch

from common import data, errors, results, training
from script_runs import error_line

pytestmark = pytest.mark.usefixtures("one_thread")

VAE = ["--epochs", "1", "--hidden", "8", "--latent", "2", "--batch-size", "64", "--eval-every", "1",
       "--device", "cpu", "--iw-samples", "2"]


# --- 1, 2, 5: option values --------------------------------------------------------------------------------

@pytest.mark.parametrize("script, argv, message", [
    ("vae", ["--seed", "-1"], "argument --seed: must be >= 0; got -1"),
    ("vae", ["--seed", "99999999999"], "argument --seed: must be <= 4294967295; got 99999999999"),
    ("vae", ["--lr", "nan"], "argument --lr: must be a finite number; got nan"),
    ("vae", ["--lr", "inf"], "argument --lr: must be a finite number; got inf"),
    ("vae", ["--noise", "nan"], "argument --noise: must be a finite number; got nan"),
    ("vae", ["--rotation", "-1"], "argument --rotation: must be >= 0; got -1"),
    ("vae", ["--threads", "100000000000"], "argument --threads: must be <= 1024; got 100000000000"),
    ("gan", ["--ring-std", "inf"], "argument --ring-std: must be a finite number; got inf"),
    ("gan", ["--betas", "1.5", "0.9"], "argument --betas: must be < 1; got 1.5"),
    ("gan", ["--betas", "0.5", "1"], "argument --betas: must be < 1; got 1"),
    ("wgan_gp", ["--betas", "-0.1", "0.9"], "argument --betas: must be >= 0; got -0.1"),
    ("vae", ["--prior", "vamp", "--pseudo-inputs", "1"], "argument --pseudo-inputs: must be >= 2; got 1"),
    ("discrete_vae", ["--latent", "0"], "argument --latent: must be >= 1; got 0"),
    ("discrete_vae", ["--latent", "-3"], "argument --latent: must be >= 1; got -3"),
    ("discrete_vae", ["--latent", "17"], "argument --latent: must be <= 16; got 17"),
    ("discrete_vae", ["--repeats", "0"], "argument --repeats: must be >= 2; got 0"),
    ("discrete_vae", ["--repeats", "1"], "argument --repeats: must be >= 2; got 1"),
    ("discrete_vae", ["--temperature", "0"], "argument --temperature: must be > 0; got 0"),
    ("ss_hmvae", ["--iterations", "0"], "argument --iterations: must be > 0; got 0"),
    ("ss_hmvae", ["--iterations", "-1"], "argument --iterations: must be > 0; got -1"),
    ("ss_hmvae", ["--noise", "nan"], "argument --noise: must be a finite number; got nan"),
    ("ss_hmvae_kl", ["--beta", "nan"], "argument --beta: must be a finite number; got nan"),
    ("ss_hmvae_kl", ["--beta", "-1"], "argument --beta: must be >= 0; got -1"),
    ("real_nvp", ["--points", "1"], "argument --points: must be >= 2; got 1"),
    ("gmm", ["--points", "3", "--components", "4"],
     "argument --points: 3 points leave 2 for training (a quarter is held out), and --components 4 needs at "
     "least 4; use --points 6 or more"),
])
def test_bad_option_values(script, argv, message, capsys, no_loading, tmp_path):
    line = error_line(script, [*argv, "--out", str(tmp_path / "run")], capsys)
    assert line.startswith("error: " + message) and line.endswith("--help)")
    assert not (tmp_path / "run").exists()


def test_more_pseudo_inputs_than_training_examples(capsys, tmp_path):
    line = error_line("vae", [*VAE, "--prior", "vamp", "--pseudo-inputs", "5000", "--out", str(tmp_path)], capsys)
    assert line == ("error: --pseudo-inputs 5000: the VampPrior starts its pseudo-inputs at training examples, and "
                    "there are 1397; give at most that many.")


def test_the_bounds_themselves_are_accepted():
    assert training.seed_int("0") == 0 and training.seed_int(str(2 ** 32 - 1)) == 2 ** 32 - 1
    assert training.unit_interval("0") == 0.0 and training.unit_interval("0.999") == 0.999
    assert training.int_range(2)("2") == 2 and training.int_range(1, 16)("16") == 16
    assert training.positive_float("1e-30") == 1e-30


def test_a_loss_that_becomes_nan_is_one_error_line(capsys, tmp_path):
    line = error_line("vae", [*VAE, "--lr", "1e30", "--out", str(tmp_path)], capsys, status=1)
    assert line.startswith("error: training stopped: the loss is nan; non-finite terms: ")
    assert f"no checkpoint was written to {tmp_path / 'checkpoints'} yet." in line
    assert line.endswith("A smaller --lr may help.")


def test_a_batch_of_one_example_is_refused_before_training(capsys, tmp_path):
    line = error_line("vae", [*VAE, "--batch-size", "1396", "--out", str(tmp_path / "a")], capsys)
    assert line == ("error: --batch-size 1396: the last batch of each epoch would hold 1 of the 1,397 training "
                    "examples, and batch normalization cannot train on one; use another --batch-size (e.g. 1395 or "
                    "1397).")
    assert error_line("vae", [*VAE, "--batch-size", "1", "--out", str(tmp_path / "b")], capsys) == (
        "error: --batch-size 1: batch normalization cannot train on batches of one example; use --batch-size 2 "
        "or more.")


# --- 3: --out -----------------------------------------------------------------------------------------------

def test_out_that_is_a_file_or_under_a_file(capsys, no_loading, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    assert error_line("vae", ["--out", str(tmp_path / "file")], capsys) == (
        f"error: --out {tmp_path / 'file'}: that is a file, not a folder; pass a folder for the results (it is "
        f"created if missing).")
    assert error_line("vae", ["--out", str(tmp_path / "file" / "run")], capsys) == (
        f"error: --out {tmp_path / 'file' / 'run'}: cannot create the folder: Not a directory; pass a folder you "
        f"can write to.")


def test_out_that_cannot_be_written(capsys, no_loading, tmp_path, monkeypatch):
    def denied(dir):
        raise PermissionError(13, "Permission denied", os.path.join(dir, "tmpabc"))
    monkeypatch.setattr(training.tempfile, "TemporaryFile", denied)  # root may write anywhere: simulate it
    assert error_line("vae", ["--out", str(tmp_path)], capsys) == (
        f"error: --out {tmp_path}: cannot write in the folder: Permission denied ({tmp_path / 'tmpabc'}); pass a "
        f"folder you can write to.")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_out_in_a_read_only_folder(capsys, no_loading, tmp_path):
    tmp_path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        line = error_line("vae", ["--out", str(tmp_path / "run")], capsys)
    finally:
        tmp_path.chmod(stat.S_IRWXU)
    assert line.startswith(f"error: --out {tmp_path / 'run'}: cannot create the folder: Permission denied")


# --- 4: data files ------------------------------------------------------------------------------------------

def idx_folder(folder, content):
    folder.mkdir()
    for name in data.IDX_FILES:
        (folder / f"{name}.gz").write_bytes(content)
    return folder


def test_a_file_that_is_not_gzipped(capsys, tmp_path):
    root = idx_folder(tmp_path / "junk", b"hello, not gzip")
    assert error_line("vae", [*VAE, "--dataset", "mnist", "--data-root", str(root), "--out", str(tmp_path / "o")],
                      capsys) == (
        f"error: {root / 'train-images-idx3-ubyte.gz'} cannot be read as a gzipped IDX file (Not a gzipped file "
        f"(b'he')); replace it with a good copy (e.g. download it again).")


def test_a_truncated_gzipped_file(capsys, tmp_path):
    root = idx_folder(tmp_path / "cut", gzip.compress(bytes([0, 0, 8, 1]) + bytes(4000))[:30])
    line = error_line("vae", [*VAE, "--dataset", "mnist", "--data-root", str(root), "--out", str(tmp_path / "o")],
                      capsys)
    assert line.startswith(f"error: {root / 'train-images-idx3-ubyte.gz'} cannot be read as a gzipped IDX file (")


EXPECTED = "pass a .npz file holding x, w and y, or a folder holding x.npy, w.npy and y.npy."


def test_features_from_one_npy_array(capsys, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5, 2)))
    assert error_line("vae", [*VAE, "--dataset", "features", "--data-root", str(tmp_path / "x.npy"),
                              "--out", str(tmp_path / "o")], capsys) == (
        f"error: --data-root {tmp_path / 'x.npy'} holds a single array (a .npy file), not the arrays x, w and y; "
        f"{EXPECTED}")


def test_features_from_files_numpy_cannot_read(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert error_line("vae", [*VAE, "--dataset", "features", "--data-root", str(tmp_path / "notes.txt"),
                              "--out", str(tmp_path / "o")], capsys) == (
        f"error: --data-root: {tmp_path / 'notes.txt'} is not a numpy file (.npz or .npy); {EXPECTED}")
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04broken")
    assert error_line("vae", [*VAE, "--dataset", "features", "--data-root", str(tmp_path / "cut.npz"),
                              "--out", str(tmp_path / "o")], capsys) == (
        f"error: --data-root: numpy cannot read {tmp_path / 'cut.npz'} (File is not a zip file); {EXPECTED}")
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    assert error_line("vae", [*VAE, "--dataset", "features", "--data-root", str(tmp_path / "objects.npz"),
                              "--out", str(tmp_path / "o")], capsys).startswith(
        f"error: --data-root: numpy cannot read array 'x' of {tmp_path / 'objects.npz'} (")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "x.npy").write_bytes(b"\x93NUMPY broken")
    assert error_line("vae", [*VAE, "--dataset", "features", "--data-root", str(folder),
                              "--out", str(tmp_path / "o")], capsys).startswith(
        f"error: --data-root: numpy cannot read {folder / 'x.npy'} (")


def test_a_download_that_fails(capsys, tmp_path, monkeypatch):
    import torchvision.datasets

    class Offline:
        def __init__(self, root, train, download):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://a.example/, got:\n"
                               "<urlopen error [Errno -2] Name or service not known>\n")
    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    root = tmp_path / "dl"
    assert error_line("vae", [*VAE, "--dataset", "mnist", "--data-root", str(root), "--download",
                              "--out", str(tmp_path / "o")], capsys) == (
        f"error: --download: could not download mnist into {root} (<urlopen error [Errno -2] Name or service not "
        f"known>); check the network connection and that {root} is writable, or download the four IDX files "
        f"(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, "
        f"gzipped or not) yourself and pass their folder as --data-root without --download.")


def test_user_errors_turns_file_errors_into_usage_errors():
    def unreadable():
        raise PermissionError(13, "Permission denied", "/data/train-images-idx3-ubyte")

    def truncated():
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    with pytest.raises(errors.UsageError, match=r"^cannot read /data/train-images-idx3-ubyte: Permission denied; "
                                                r"check the path given with --data-root\.$"):
        errors.user_errors(unreadable)()
    with pytest.raises(errors.UsageError, match=r"^Compressed file ended before the end-of-stream marker"):
        errors.user_errors(truncated)()


# --- 6: --resume --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A one-epoch VAE run with --hidden 8 (its checkpoint: checkpoints/epoch-0001.pt)."""
    out = tmp_path_factory.mktemp("vae") / "run"
    before = torch.get_num_threads()
    training.run(importlib.import_module("vae").main, [*VAE, "--out", str(out)])
    torch.set_num_threads(before)
    return out


def copy_of(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run", tmp_path / "run" / "checkpoints" / "epoch-0001.pt"


FIX = "pass --overwrite to start afresh in that --out, or another --out."


def test_resume_with_other_model_options(vae_run, capsys, tmp_path):
    out, checkpoint = copy_of(vae_run, tmp_path)
    argv = [*VAE, "--epochs", "2", "--hidden", "16", "--out", str(out), "--resume"]
    assert error_line("vae", argv, capsys) == (
        f"error: --resume: the checkpoint {checkpoint} does not match this model (0.net.body.branches.0.0.weight "
        f"has shape [8, 32] there and [16, 32] here); resume with the same model options (e.g. --hidden, --latent) "
        f"as the run that wrote it, or {FIX}")


def test_resume_from_a_damaged_checkpoint(vae_run, capsys, tmp_path):
    out, checkpoint = copy_of(vae_run, tmp_path)
    argv = [*VAE, "--epochs", "2", "--out", str(out), "--resume"]
    checkpoint.write_bytes(checkpoint.read_bytes()[:500])
    assert error_line("vae", argv, capsys) == (
        f"error: --resume: {checkpoint} cannot be read as a checkpoint (it is damaged, or not one torch wrote); "
        f"delete it to resume from an earlier one, or {FIX}")
    checkpoint.write_bytes(b"garbage")
    assert error_line("vae", argv, capsys).startswith(f"error: --resume: {checkpoint} cannot be read as a checkpoint")
    torch.save({"weights": torch.zeros(2)}, checkpoint)
    assert error_line("vae", argv, capsys) == (
        f"error: --resume: {checkpoint} is not a checkpoint written by an example script's training; delete it to "
        f"resume from an earlier one, or {FIX}")


def test_resume_with_the_same_options_still_continues(vae_run, tmp_path):
    out, _ = copy_of(vae_run, tmp_path)
    history = importlib.import_module("vae").main([*VAE, "--epochs", "2", "--out", str(out), "--resume"])
    assert json.loads((out / "results.json").read_text())["epochs"] == 2 and history is not None


def test_gan_resume_with_other_model_options(capsys, tmp_path):
    small = ["--epochs", "1", "--latent", "2", "--data", "ring", "--batch-size", "1000", "--device", "cpu"]
    importlib.import_module("gan").main([*small, "--hidden", "8", "--out", str(tmp_path)])
    line = error_line("gan", [*small, "--epochs", "2", "--hidden", "16", "--out", str(tmp_path), "--resume"], capsys)
    assert line.startswith(f"error: --resume: the checkpoint {tmp_path / 'checkpoints' / 'ring' / 'epoch-0001.pt'} "
                           f"does not match this model (")


# --- 7: results.json ----------------------------------------------------------------------------------------

def test_results_table_on_a_malformed_results_file(capsys, tmp_path):
    (tmp_path / "results.json").write_text('{"model": "SS-MVAE", "x": 1')
    assert error_line("results_table", [str(tmp_path)], capsys) == (
        f"error: {tmp_path / 'results.json'} is not valid JSON (Expecting ',' delimiter at line 1, column 28); run "
        f"the script again to rewrite it, or leave that folder out.")
    (tmp_path / "results.json").write_text(json.dumps({"x": "high"}))
    assert error_line("results_table", [str(tmp_path)], capsys) == (
        f"error: {tmp_path / 'results.json'} is not a results file of the example scripts (it lacks model, data, "
        f"epochs; x not numbers); run the script again to rewrite it, or leave that folder out.")
    (tmp_path / "results.json").write_text("[1, 2]")
    assert error_line("results_table", [str(tmp_path)], capsys).startswith(
        f"error: {tmp_path / 'results.json'} holds no test accuracies")


def test_results_json_is_replaced_whole(tmp_path, monkeypatch):
    (tmp_path / "results.json").write_text("the earlier run's\n")
    monkeypatch.setattr(results.os, "replace", lambda *args: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(OSError):
        results.write_atomically(tmp_path / "results.json", "{}\n")
    assert (tmp_path / "results.json").read_text() == "the earlier run's\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temporary file left behind
    monkeypatch.undo()
    results.write_atomically(tmp_path / "results.json", '{"x": 1}\n')
    assert json.loads((tmp_path / "results.json").read_text()) == {"x": 1}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "results.json").stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
