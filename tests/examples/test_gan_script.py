"""examples/gan.py runs end to end with tiny sizes: it prints the GAN's objectives exactly, trains the discriminator
and the generator in turn (two objectives of one Model, each history recorded), reports scores that a plain
recomputation on the same samples agrees with, writes its pictures, and --resume continues a run exactly."""
import json
import math

import numpy as np
import pytest
import torch

import gan

TINY = ["--epochs", "3", "--hidden", "16", "--latent", "4", "--device", "cpu", "--checkpoint-every", "1"]
PNG = b"\x89PNG\r\n\x1a\n"
GENERATOR = r"- \mathbb{E}_{p(x)}\left[\log D(x)\right]"
MINIMAX = (r"\max_{D} \mathbb{E}_{p_{data}(x)}\left[\log D(x)\right] + "
           r"\mathbb{E}_{p(x)}\left[\log\left(1 - D(x)\right)\right]")
DISCRIMINATOR = (r"- (\mathbb{E}_{p_{data}(x)}\left[\log D(x)\right] + "
                 r"\mathbb{E}_{p(x)}\left[\log\left(1 - D(x)\right)\right])")

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ring_centres_and_points():
    centres, x = gan.ring(4000, 0.05, seed=0)
    angles = np.arange(8) * 2 * np.pi / 8
    np.testing.assert_allclose(centres.numpy(), 2 * np.stack([np.cos(angles), np.sin(angles)], 1), atol=1e-6)
    nearest = ((x[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    offsets = x - centres[nearest]
    assert offsets.std().item() == pytest.approx(0.05, rel=0.05)
    assert np.bincount(nearest.numpy(), minlength=8).min() > 4000 / 8 * 0.8  # every mode drawn about as often


def test_gan_script(tmp_path, capsys, monkeypatch):
    drawn = []
    real_draw = gan.draw
    monkeypatch.setattr(gan, "draw", lambda p, n, device: drawn.append(real_draw(p, n, device)) or drawn[-1])
    record = gan.main(TINY + ["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert f"generator (minimized):\n{GENERATOR}\ndiscriminator (minimized):\n{DISCRIMINATOR}\n" in printed
    assert saved["objective"] == {"generator (minimized)": GENERATOR, "discriminator (minimized)": DISCRIMINATOR}
    for name, steps in (("ring", 2000), ("digits", 1797)):  # both objectives stepped on every batch of each epoch
        history = saved["history"][name]
        assert history["epoch"] == [1, 2, 3]
        assert all(math.isfinite(v) for k in ("train_loss:discriminator", "train_loss:generator") for v in history[k])
    for picture in ("ring.png", "samples.png", "graphical_model.png"):
        assert (tmp_path / picture).read_bytes()[:8] == PNG

    # the scores, recomputed from the same samples in plain numpy
    ring_samples, digit_samples = (d.numpy() for d in drawn)
    assert ring_samples.shape == (2500, 2) and digit_samples.shape == (1000, 64)
    assert ((digit_samples >= 0) & (digit_samples <= 1)).all()  # the digits' generator ends with a sigmoid
    centres, _ = gan.ring(10, 0.05, 0)
    distance = np.sqrt(((ring_samples[:, None, :] - centres.numpy()[None]) ** 2).sum(-1))
    good = distance.min(1) < 0.15
    counts = np.bincount(distance.argmin(1)[good], minlength=8)
    ring_row = saved["ring of 8 (std 0.05)"]
    assert ring_row["modes covered (of 8)"] == int((counts >= 25).sum())
    assert ring_row["high-quality samples (%)"] == pytest.approx(100 * good.mean())
    _, classifier = gan.digits(0)
    probs = classifier.predict_proba(digit_samples)
    digit_row = saved["digits 8x8"]
    assert digit_row["classes generated (of 10)"] == int((np.bincount(probs.argmax(1), minlength=10) >= 20).sum())
    assert digit_row["classifier confidence"] == pytest.approx(probs.max(1).mean())
    assert 0.9 < digit_row["confidence on real digits"] <= 1 and record["digits 8x8"] == digit_row


def test_scores_of_known_samples():
    centres, _ = gan.ring(10, 0.05, 0)
    # 40 points on each of modes 0-4, 30 on mode 5, 30 far from every mode: 5 modes covered (at least 1% of
    # 260 = 2.6 samples each is met by mode 5 too, so 6), 230 of 260 of high quality
    samples = torch.cat([centres[:5].repeat_interleave(40, 0), centres[5:6].repeat(30, 1) + 0.1,
                         torch.zeros(30, 2)])
    scores = gan.ring_scores(samples, centres, std=0.05)
    assert scores == {"modes covered (of 8)": 6, "high-quality samples (%)": pytest.approx(100 * 230 / 260)}
    x, classifier = gan.digits(0)
    real = gan.digit_scores(x[:500], classifier, x)
    assert real["classes generated (of 10)"] == 10 and real["classifier confidence"] > 0.85


def test_minimax_and_resume(tmp_path, capsys):
    options = TINY + ["--data", "ring", "--minimax"]
    whole = gan.main(options + ["--out", str(tmp_path / "whole")])
    assert f"generator (minimized):\n{MINIMAX}\n" in capsys.readouterr().out
    gan.main(["--epochs", "2"] + options[2:] + ["--out", str(tmp_path / "resumed")])
    resumed = gan.main(options + ["--out", str(tmp_path / "resumed"), "--resume"])
    assert resumed["ring of 8 (std 0.05)"] == whole["ring of 8 (std 0.05)"]
    history = [json.loads((tmp_path / run / "results.json").read_text())["history"]["ring"]
               for run in ("whole", "resumed")]
    assert history[0] == history[1]


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        gan.main(["--data", "mnist", "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "--data: invalid choice: 'mnist'" in capsys.readouterr().err
