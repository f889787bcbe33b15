"""The unsupervised multimodal scripts (VAE, MVAE and baselines, JMVAE, JMVAE-kl) run end to end with tiny sizes,
print the papers' objectives exactly and write their results; the scores they report are checked against
hand-computed and closed-form values."""
import importlib
import json
import math

import pytest
import torch
import torch.distributions as td

from common import multimodal
from pgm.distributions import Normal

TINY = ["--epochs", "2", "--hidden", "16", "--batch-size", "64", "--latent", "4", "--iw-samples", "8",
        "--eval-every", "1", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"

KL_Q = r"D_{KL}\left[q(z|{x})\|p(z)\right]"
RECONSTRUCTION = r"\mathbb{E}_{q(z|{x})}\left[\log p({v}|z)\right]"
JMVAE = (r"- D_{KL}\left[q(z|x,w)\|p(z)\right] + \mathbb{E}_{q(z|x,w)}\left[\log p(x|z)\right] + "
         r"\mathbb{E}_{q(z|x,w)}\left[\log p(w|z)\right]")
# The papers' objectives (docs/papers.md sections 1-3), maximized, as each script must print them.
EXPECTED_LATEX = {
    "vae": ["- " + KL_Q.replace("{x}", "x") + " + " + RECONSTRUCTION.replace("{x}", "x").replace("{v}", "x")],
    "mvae": [
        RECONSTRUCTION.replace("{x}", "x").replace("{v}", "x"),
        RECONSTRUCTION.replace("{x}", "xw").replace("{v}", "xw"),
        "- " + KL_Q.replace("{x}", "x") + " + " + RECONSTRUCTION.replace("{x}", "x").replace("{v}", "x"),
        "- " + KL_Q.replace("{x}", "xw") + " + " + RECONSTRUCTION.replace("{x}", "xw").replace("{v}", "xw"),
        RECONSTRUCTION.replace("{x}", "x,w").replace("{v}", "x") + " + "
        + RECONSTRUCTION.replace("{x}", "x,w").replace("{v}", "w"),
        JMVAE],
    "jmvae": [JMVAE],
    "jmvae_kl": [JMVAE + r" - \alpha \left(D_{KL}\left[q(z|x,w)\|q(z|x)\right] + "
                         r"D_{KL}\left[q(z|x,w)\|q(z|w)\right]\right)"],
}


pytestmark = pytest.mark.usefixtures("one_thread")


def run(script, tmp_path, capsys, *extra):
    record = importlib.import_module(script).main(TINY + list(extra) + ["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert printed.startswith("Data: scikit-learn digits (1,397 train / 400 test, 8x8), halves pairing")
    for latex in EXPECTED_LATEX[script]:
        assert any(line.endswith(latex) for line in printed.splitlines()), latex
    assert saved["data"].startswith("scikit-learn digits") and (saved["epochs"], saved["seed"]) == (2, 0)
    assert (tmp_path / "graphical_model.png").read_bytes()[:8] == PNG
    assert (tmp_path / "results.md").exists() and (tmp_path / "results.csv").exists()
    return record, saved


def test_vae(tmp_path, capsys):
    record, saved = run("vae", tmp_path, capsys)
    assert saved["objective"] == EXPECTED_LATEX["vae"][0]
    assert -100 < saved["ELBO"] < 0 and -100 < saved["log p(x)"] < 0
    assert saved["log p(x)"] > saved["ELBO"] - 0.5  # the importance-weighted bound is the tighter one
    assert record["ELBO"] == saved["ELBO"] and saved["history"]["monitor_epoch"] == [1, 2]
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == PNG


def test_mvae_scores_every_model_in_its_settings(tmp_path, capsys):
    _, saved = run("mvae", tmp_path, capsys)
    expected = {"AE": ["setting 1", "setting 2"], "VAE": ["setting 1", "setting 2"],
                "MAE": ["setting 3", "setting 4"], "MVAE": ["setting 3", "setting 4"]}
    assert {model: sorted(saved[model]) for model in expected} == expected
    for model, settings in expected.items():
        for setting in settings:
            assert 0.29 / 2 < saved[model][setting] <= 1  # LRAP; a random ranking of 10 classes scores 0.29
    assert saved["labels"] == "all" and set(saved["objective"]) == {
        "AE (setting 1)", "AE (setting 2)", "VAE (setting 1)", "VAE (setting 2)", "MAE (setting 3)",
        "MVAE (setting 3)"}
    for tag in ("AE_setting1", "AE_setting2", "VAE_setting1", "VAE_setting2", "MAE_setting3", "MVAE_setting3"):
        assert (tmp_path / f"learning_curves_{tag}.png").read_bytes()[:8] == PNG
    assert "| MVAE |  |  | " in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize("script, extra", [("jmvae", []), ("jmvae_kl", ["--alpha", "1"])])
def test_jmvae_log_likelihoods_and_cross_modal_figure(script, extra, tmp_path, capsys):
    _, saved = run(script, tmp_path, capsys, *extra)
    assert saved["objective"] == EXPECTED_LATEX[script][0]
    for key in ("log p(x,w)", "log p(x|w)", "log p(w|x)"):
        assert -100 < saved[key] < 0
    # log p(w) < 0 for Bernoulli likelihoods of data in [0, 1], so conditioning raises the log-likelihood
    assert saved["log p(x|w)"] > saved["log p(x,w)"] and saved["log p(w|x)"] > saved["log p(x,w)"]
    assert (tmp_path / "cross_modal_generation.png").read_bytes()[:8] == PNG
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == PNG


# --- helpers ------------------------------------------------------------------------------------------------

def test_lrap_single_label_is_the_mean_reciprocal_rank():
    # 1-d codes, classes 0, 1, 2 around -10, 0, 10: a test code ranks the classes by distance
    centres = torch.tensor([-10.0, 0.0, 10.0])
    train_codes = (centres.repeat_interleave(20) + torch.linspace(-1, 1, 20).repeat(3))[:, None]
    train_labels = torch.eye(3).repeat_interleave(20, 0)
    test_codes = torch.tensor([[-10.0], [-10.0], [10.0], [0.0]])
    test_labels = torch.eye(3)[[0, 1, 0, 1]]
    # true class ranked 1st, 2nd, 3rd and 1st: (1 + 1/2 + 1/3 + 1) / 4
    assert multimodal.lrap(train_codes, train_labels, test_codes, test_labels) == pytest.approx((1 + 1/2 + 1/3 + 1) / 4)


def test_lrap_multi_label():
    # two tags, each present exactly when its coordinate is positive; a third never seen in training
    torch.manual_seed(0)
    train_codes = torch.randn(200, 2)
    train_labels = torch.cat([(train_codes > 0).float(), torch.zeros(200, 1)], 1)
    test_codes = torch.tensor([[3.0, 3.0], [3.0, -3.0], [-3.0, 3.0]])
    perfect = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert multimodal.lrap(train_codes, train_labels, test_codes, perfect) == pytest.approx(1.0)
    # row 1's true tags {0, 2}: tag 0 ranked 1st (precision 1), tag 2 ranked 3rd (2 of 3 true): (1 + 2/3) / 2
    swapped = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    expected = (1 + (1 + 2 / 3) / 2 + 1) / 3
    assert multimodal.lrap(train_codes, train_labels, test_codes, swapped) == pytest.approx(expected)


def linear_gaussian():
    """z ~ N(0, 1), x|z ~ N(z, 1), w|z ~ N(z, 1), with the exact posteriors q(z|x,w) = N((x+w)/3, 1/3),
    q(z|x) = N(x/2, 1/2), q(z|w) = N(w/2, 1/2)."""
    unit = lambda z: {"loc": z, "scale": torch.ones_like(z)}  # noqa: E731
    posterior = lambda loc, variance: {"loc": loc, "scale": torch.full_like(loc, math.sqrt(variance))}  # noqa: E731
    return dict(
        prior=Normal("p(z)", loc=0.0, scale=1.0, features_shape=[1]),
        p_x=Normal("p(x|z)", net=unit), p_w=Normal("p(w|z)", net=unit),
        q=Normal("q(z|x,w)", net=lambda x, w: posterior((x + w) / 3, 1 / 3)),
        q_x=Normal("q(z|x)", net=lambda x: posterior(x / 2, 1 / 2)),
        q_w=Normal("q(z|w)", net=lambda w: posterior(w / 2, 1 / 2)))


def test_conditional_log_likelihood_is_exact_with_exact_posteriors():
    d = linear_gaussian()
    d["p_x"].eval()
    torch.manual_seed(0)
    x, w = torch.randn(7, 1), torch.randn(7, 1)
    exact = td.Normal(w / 2, math.sqrt(1.5)).log_prob(x).sum(-1)  # x|w ~ N(w/2, 1 + 1/2)
    estimate = multimodal.conditional_log_likelihood(
        d["p_x"] * d["p_w"] * d["prior"], d["q"], d["p_w"] * d["prior"], d["q_w"], {"x": x, "w": w},
        marginal_inputs={"w": w}, samples=5, batch_size=3)
    torch.testing.assert_close(estimate, exact)
    scores = multimodal.multimodal_log_likelihoods(d["p_x"], d["p_w"], d["prior"], d["q"], x, w, q_x=d["q_x"],
                                                   q_w=d["q_w"], samples=5)
    joint = td.MultivariateNormal(torch.zeros(2), torch.tensor([[2.0, 1.0], [1.0, 2.0]])).log_prob(torch.cat([x, w], 1))
    assert scores["log p(x,w)"] == pytest.approx(joint.mean().item(), abs=1e-5)
    assert scores["log p(x|w)"] == pytest.approx(exact.mean().item(), abs=1e-5)
    # evaluation ran in eval mode and left each distribution in the mode it was in
    assert not d["p_x"].training and d["p_w"].training and d["q"].training
    assert scores["log p(w|x)"] == pytest.approx(td.Normal(x / 2, math.sqrt(1.5)).log_prob(w).mean().item(), abs=1e-5)


def test_conditional_log_likelihood_converges_with_a_poor_proposal():
    d = linear_gaussian()
    torch.manual_seed(0)
    x, w = torch.full((400, 1), 0.5), torch.full((400, 1), -1.0)
    wide = Normal("q(z|w)", net=lambda w: {"loc": torch.zeros_like(w), "scale": torch.full_like(w, 1.5)})
    exact = td.Normal(-0.5, math.sqrt(1.5)).log_prob(torch.tensor(0.5)).item()
    estimate = multimodal.conditional_log_likelihood(
        d["p_x"] * d["p_w"] * d["prior"], d["q"], d["p_w"] * d["prior"], wide, {"x": x, "w": w},
        marginal_inputs={"w": w}, samples=200)
    assert estimate.mean().item() == pytest.approx(exact, abs=0.02)


def test_training_pairs_are_every_pair_once():
    from common import data

    some = data.load("digits", labels=20)
    everything = data.load("digits", labels="all")
    assert len(multimodal.training_pairs(some)[0]) == len(multimodal.training_pairs(everything)[0]) == 1397
