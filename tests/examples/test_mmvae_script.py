"""examples/mmvae.py runs end to end with tiny sizes, prints the MMVAE posterior and objective exactly and writes its
results; the trained mixture's density and the stratified objective are checked against plain torch."""
import contextlib
import importlib
import io
import json

import pytest
import torch
import torch.distributions as td
import torch.nn.functional as F

from common import data, multimodal

TINY = ["--epochs", "2", "--hidden", "16", "--batch-size", "64", "--latent", "4", "--iw-samples", "8",
        "--eval-every", "1", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
POSTERIOR = r"q(z|x,w) = \frac{1}{2} q(z|x) + \frac{1}{2} q(z|w)"
OBJECTIVE = r"\mathbb{E}_{q(z|x,w)}\left[\log p(x|z) + \log p(w|z) + \log p(z) - \log q(z|x,w)\right]"
SCORES = ["L_MMVAE", "log p(x,w)", "log p(x|w)", "log p(w|x)"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run for every test (on one thread, as the one_thread fixture): its printed text, the record it
    returns, results.json and its output folder."""
    out, printed, before = tmp_path_factory.mktemp("mmvae"), io.StringIO(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(printed):
            record = importlib.import_module("mmvae").main(TINY + ["--out", str(out)])
    finally:
        torch.set_num_threads(before)
    return printed.getvalue(), record, json.loads((out / "results.json").read_text()), out


def test_prints_the_mixture_posterior_and_the_objective(trained):
    printed, _, saved, _ = trained
    lines = printed.splitlines()
    assert lines[0].startswith("Data: scikit-learn digits (1,397 train / 400 test, 8x8), halves pairing")
    assert lines[1:4] == [f"Posterior: {POSTERIOR}", "Objective (maximized):", f"L_MMVAE = {OBJECTIVE}"]
    assert saved["objective"] == {"L_MMVAE": OBJECTIVE, "posterior": POSTERIOR}


def test_writes_the_scores_and_pictures(trained):
    _, record, saved, out = trained
    assert sorted(saved) == sorted(SCORES + ["model", "data", "labels", "epochs", "seed", "objective", "settings",
                                             "history"])
    assert saved["model"] == "MMVAE" and (saved["epochs"], saved["seed"]) == (2, 0)
    assert {k: record[k] for k in SCORES} == {k: saved[k] for k in SCORES}
    for key in SCORES:
        assert -100 < saved[key] < 0
    # the importance-weighted bound (the mixture as proposal) is the tighter one; conditioning raises it
    assert saved["log p(x,w)"] > saved["L_MMVAE"] - 0.5
    assert saved["log p(x|w)"] > saved["log p(x,w)"] and saved["log p(w|x)"] > saved["log p(x,w)"]
    # two epochs already improve the test bound
    assert saved["history"]["monitor_epoch"] == [1, 2]
    assert saved["history"]["test L"][1] > saved["history"]["test L"][0] + 0.5
    for name in ("cross_modal_generation.png", "graphical_model.png", "learning_curves.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert "| MMVAE | " in (out / "results.md").read_text() and (out / "results.csv").exists()


@pytest.fixture
def trained_model(trained):
    """The tiny run's distributions, loaded from its model.pt, in evaluation mode, and the test pairs."""
    from mmvae import build

    paired = data.load("digits", labels="all")
    p_x, p_w, prior, q_x, q_w, q, objective = build(*multimodal.training_pairs(paired), 16, 4)
    modules = torch.nn.ModuleList([p_x, p_w, prior, q])
    modules.load_state_dict(torch.load(trained[3] / "model.pt", weights_only=True)["distributions"])
    modules.eval()
    x, w, _ = paired.test
    return (p_x, p_w, prior, q_x, q_w, q, objective), x, w


def test_mixture_density_is_torch_mixture_same_family(trained_model):
    (_, _, _, q_x, q_w, q, _), x, w = trained_model
    with torch.no_grad():
        experts = [q_x.net(x), q_w.net(w)]
        loc = torch.stack([e["loc"] for e in experts], 1)      # (N, 2, Dz)
        scale = torch.stack([e["scale"] for e in experts], 1)
        reference = td.MixtureSameFamily(td.Categorical(probs=torch.full((len(x), 2), 0.5)),
                                         td.Independent(td.Normal(loc, scale), 1))
        torch.manual_seed(1)
        z = reference.sample()
        torch.testing.assert_close(q.log_prob({"x": x, "w": w, "z": z}), reference.log_prob(z))


def test_stratified_objective_is_half_the_sum_of_the_experts_one_sample_elbos(trained_model):
    (p_x, p_w, prior, q_x, q_w, q, objective), x, w = trained_model
    with torch.no_grad():
        torch.manual_seed(2)
        value = objective.eval({"x": x, "w": w})
        torch.manual_seed(2)  # the same draws: one per expert, q(z|x) first
        experts = [q_x.net(x), q_w.net(w)]
        draws = [td.Normal(e["loc"], e["scale"]).rsample() for e in experts]

        def log_q(z):  # log(1/2 q(z|x) + 1/2 q(z|w))
            return torch.logsumexp(torch.stack([td.Normal(e["loc"], e["scale"]).log_prob(z).sum(-1)
                                                for e in experts]), 0) - torch.log(torch.tensor(2.0))

        def elbo(z):
            log_px = -F.binary_cross_entropy_with_logits(p_x.net(z)["logits"], x, reduction="none").sum(-1)
            log_pw = -F.binary_cross_entropy_with_logits(p_w.net(z)["logits"], w, reduction="none").sum(-1)
            return log_px + log_pw + td.Normal(0.0, 1.0).log_prob(z).sum(-1) - log_q(z)

        expected = 0.5 * (elbo(draws[0]) + elbo(draws[1]))
    assert value.shape == (len(x),)
    torch.testing.assert_close(value, expected)
