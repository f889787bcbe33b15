"""examples/wgan_gp.py runs end to end with tiny sizes: it prints Gulrajani et al.'s objectives exactly, steps the
critic --critic-steps times per generator step, and writes its scores and pictures."""
import json

import pytest

import gan
import wgan_gp
from pgm.models import Model

TINY = ["--epochs", "2", "--hidden", "16", "--latent", "4", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
GENERATOR = (r"\max_{\lVert D \rVert_{L} \leq 1} \mathbb{E}_{p_{data}(x)}\left[D(x)\right] - "
             r"\mathbb{E}_{p(x)}\left[D(x)\right]")
CRITIC = (r"\mathbb{E}_{p(x)}\left[D(x)\right] - \mathbb{E}_{p_{data}(x)}\left[D(x)\right] + 10 \mathbb{E}_{\hat{x}}"
          r"\left[\left(\left\lVert \nabla_{\hat{x}} D(\hat{x}) \right\rVert_{2} - 1\right)^{2}\right]")

pytestmark = pytest.mark.usefixtures("one_thread")


def test_wgan_gp_script(tmp_path, capsys, monkeypatch):
    built, steps = [], []

    class Recorded(Model):  # counts which objectives step on each batch
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

        def train(self, inputs, *args, **kwargs):
            out = super().train(inputs, *args, **kwargs)
            steps.append(sorted(out))
            return out

    monkeypatch.setattr(gan, "Model", Recorded)
    record = wgan_gp.main(TINY + ["--data", "ring", "--critic-steps", "3", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert f"generator (minimized):\n{GENERATOR}\ndiscriminator (minimized):\n{CRITIC}\n" in printed
    assert saved["objective"] == {"generator (minimized)": GENERATOR, "discriminator (minimized)": CRITIC}
    # 2 epochs of 8 batches: the critic on every batch, the generator on every third
    assert len(built) == 1 and steps == [["discriminator", "generator"] if i % 3 == 0 else ["discriminator"]
                                         for i in range(16)]
    assert [o.optimizer.defaults["betas"] for o in built[0].objectives] == [(0.5, 0.9)] * 2
    assert record["ring of 8 (std 0.05)"] == saved["ring of 8 (std 0.05)"]
    assert 0 <= saved["ring of 8 (std 0.05)"]["modes covered (of 8)"] <= 8
    for picture in ("ring.png", "graphical_model.png"):
        assert (tmp_path / picture).read_bytes()[:8] == PNG


def test_a_negative_penalty_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        wgan_gp.main(["--penalty", "-1", "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "--penalty: must be >= 0; got -1" in capsys.readouterr().err
