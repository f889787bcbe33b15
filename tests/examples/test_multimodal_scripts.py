"""The unsupervised multimodal scripts (VAE, MVAE and baselines, JMVAE, JMVAE-kl) run end to end with small sizes,
print the papers' objectives exactly and write their results. Each trained model's loss is its paper's objective
written out in plain torch on the same weights and draws; the scores the scripts report are those plain torch
computes from the trained networks, and the codes rank the labels well above chance. The helpers are checked
against hand-computed and closed-form values."""
import functools
import importlib
import json
import math

import pytest
import torch
import torch.distributions as td
import torch.nn.functional as F

from common import data, multimodal
from pgm.distributions import Deterministic, Normal

# About a second a model on one CPU thread, long enough for the variational models' codes to carry the labels.
TINY = ["--epochs", "3", "--hidden", "32", "--lr", "0.01", "--batch-size", "64", "--latent", "4", "--iw-samples", "8",
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


# What the TINY runs reach, deterministic on one CPU thread with seed 0 (log-likelihoods in nats per test pair,
# LRAP): another machine's float rounding moves them by far less than the tolerances, a wrong objective by more.
PINNED = {
    "vae": {"ELBO": -12.585, "log p(x)": -12.468},
    "mvae": {"AE": {"setting 1": 0.806, "setting 2": 0.916}, "VAE": {"setting 1": 0.467, "setting 2": 0.635},
             "MAE": {"setting 3": 0.890, "setting 4": 0.788}, "MVAE": {"setting 3": 0.665, "setting 4": 0.508}},
    "jmvae": {"L_JMVAE": -26.102, "log p(x,w)": -25.780, "log p(x|w)": -11.828, "log p(w|x)": -13.192},
    "jmvae_kl": {"L_JMVAE-kl": -26.990, "log p(x,w)": -26.495, "log p(x|w)": -12.449, "log p(w|x)": -13.762},
}
VAE_TRAINING_LOSS = [16.424, 12.949, 12.612]  # the mean loss of each epoch (the negative ELBO per image)


pytestmark = pytest.mark.usefixtures("one_thread")


def run(script, tmp_path, capsys, built_models, *extra):
    """Run ``script`` with TINY; returns what main returned, results.json and the Models it trained."""
    module = importlib.import_module(script)
    built = built_models(module)  # the Models it trains, for the checks below
    record = module.main(TINY + list(extra) + ["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert printed.startswith("Data: scikit-learn digits (1,397 train / 400 test, 8x8), halves pairing")
    for latex in EXPECTED_LATEX[script]:
        assert any(line.endswith(latex) for line in printed.splitlines()), latex
    assert saved["data"].startswith("scikit-learn digits") and (saved["epochs"], saved["seed"]) == (3, 0)
    assert (tmp_path / "graphical_model.png").read_bytes()[:8] == PNG
    assert (tmp_path / "results.md").exists() and (tmp_path / "results.csv").exists()
    for model in built:
        model.distributions.eval()
    return record, saved, built


# --- the objectives and scores in plain torch, from the trained networks ------------------------------------

def bernoulli(v, params):  # grey levels in [0, 1]: x log sigmoid + (1 - x) log(1 - sigmoid), as pgm's Bernoulli
    return -F.binary_cross_entropy_with_logits(params["logits"], v, reduction="none").sum(-1)


def kl_normal(q, p):
    return td.kl_divergence(td.Normal(q["loc"], q["scale"]), td.Normal(p["loc"], p["scale"])).sum(-1)


def standard(params):
    return {"loc": torch.zeros_like(params["loc"]), "scale": torch.ones_like(params["loc"])}


def networks(model):
    return {d.prob_text: d for d in model.distributions}


def objective_by_hand(model, inputs, z, alpha=None):
    """The (M)VAE / (M)AE / JMVAE(-kl) objective per example at the draw ``z`` of the encoder q(z|inputs):
    sum_v log p(v|z) [- KL(q(z|inputs) || N(0, I))] [- alpha (KL(q(z|x,w) || q(z|x)) + KL(q(z|x,w) || q(z|w)))]."""
    d = networks(model)
    q = d[f"q(z|{','.join(inputs)})"]
    params = q.net(*inputs.values())
    value = sum(bernoulli(v, d[f"p({name}|z)"].net(z)) for name, v in inputs.items())
    if isinstance(q, Deterministic):  # an autoencoder: the code itself, no divergence
        assert torch.equal(z, params["loc"])
        return value
    value = value - kl_normal(params, standard(params))
    if alpha is not None:
        value = value - alpha * (kl_normal(params, d["q(z|x)"].net(inputs["x"]))
                                 + kl_normal(params, d["q(z|w)"].net(inputs["w"])))
    return value


def assert_loss_is_the_objective(model, inputs, **params):
    """model.test on ``inputs`` is minus the objective written by hand at the draw of z its decoders received."""
    d = networks(model)
    seen = []
    handles = [d[f"p({name}|z)"].net.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
               for name in inputs]
    try:
        with torch.no_grad():
            reported = model.test(inputs, **params)
    finally:
        for handle in handles:
            handle.remove()
    assert len(seen) == len(inputs) and all(z is seen[0] for z in seen)  # one draw, shared by the decoders
    with torch.no_grad():
        expected = -objective_by_hand(model, inputs, seen[0], **params).mean().item()
    assert reported == pytest.approx(expected, rel=1e-5)


def scores_by_hand(model, inputs, alpha=None, draws=200, samples=8, repeats=25):
    """(the objective averaged over ``draws`` draws of z per example, the importance-weighted bound of
    log p(inputs) with ``samples`` draws from q(z|inputs) averaged over ``repeats`` repetitions), means over the
    examples: the expectations the scripts' one-draw scores estimate."""
    d = networks(model)
    torch.manual_seed(1)
    with torch.no_grad():
        params = d[f"q(z|{','.join(inputs)})"].net(*inputs.values())
        q = td.Normal(params["loc"], params["scale"])
        n = len(params["loc"])
        z = q.sample((draws,))  # (S, N, Dz)
        repeated = {k: v.repeat(draws, 1) for k, v in inputs.items()}
        objective = objective_by_hand(model, repeated, z.reshape(draws * n, -1), alpha).mean().item()
        z = q.sample((repeats, samples))  # (R, K, N, Dz)
        flat = z.reshape(-1, z.shape[-1])
        log_weight = sum(bernoulli(v.repeat(repeats * samples, 1), d[f"p({name}|z)"].net(flat))
                         for name, v in inputs.items()).view(repeats, samples, n)
        log_weight = log_weight + td.Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
        bound = (torch.logsumexp(log_weight, 1) - math.log(samples)).mean().item()
    return objective, bound


@functools.lru_cache(maxsize=None)
def held_out_pairs():
    """The 400 test pairs (x, w, y) the scripts score on."""
    return data.load("digits", labels="all").test


def test_vae(tmp_path, capsys, built_models):
    record, saved, (model,) = run("vae", tmp_path, capsys, built_models)
    assert saved["objective"] == EXPECTED_LATEX["vae"][0]
    assert record["ELBO"] == saved["ELBO"] and saved["history"]["monitor_epoch"] == [1, 2, 3]
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == PNG
    x = {"x": held_out_pairs()[0]}
    assert_loss_is_the_objective(model, x)
    elbo, log_p = scores_by_hand(model, x)
    assert saved["ELBO"] == pytest.approx(elbo, abs=0.3)  # one draw of z per test image against 200
    assert saved["log p(x)"] == pytest.approx(log_p, abs=0.3)
    assert log_p > elbo  # the importance-weighted bound is the tighter one
    assert {k: saved[k] for k in PINNED["vae"]} == pytest.approx(PINNED["vae"], abs=0.5)
    assert saved["history"]["loss"] == pytest.approx(VAE_TRAINING_LOSS, rel=1e-3)
    assert saved["history"]["test ELBO"][-1] > saved["history"]["test ELBO"][0] + 0.5  # it learned


def test_vae_with_a_vamp_prior(tmp_path, capsys, built_models):
    """--prior vamp: the prior is the encoder mixed over learned pseudo-inputs; the loss is -(log p(x|z) + log p(z) - log q(z|x)) at the one draw of z the decoder received, with
    log p(z) the mean of the encoder's K densities at the pseudo-inputs, in plain torch."""
    from pgm.distributions import InputMixture
    record, saved, (model,) = run("vae", tmp_path, capsys, built_models, "--prior", "vamp", "--pseudo-inputs", "20")
    assert saved["model"] == "VAE, VampPrior (K=20)" and saved["settings"]["prior"] == "vamp"
    assert record["ELBO"] == saved["ELBO"] and saved["objective"] == EXPECTED_LATEX["vae"][0]
    d = networks(model)
    prior = next(p for p in model.distributions if isinstance(p, InputMixture))
    q, p = d["q(z|x)"], d["p(x|z)"]
    pseudo = prior.inputs.x
    assert pseudo.shape == (20, 32) and prior.component is q
    assert any(w is pseudo for g in model.optimizer.param_groups for w in g["params"])  # learned:
    assert model.optimizer.state[pseudo]["exp_avg"].abs().sum() > 0  # Adam stepped it with its gradients
    x = held_out_pairs()[0][:50]
    seen = []
    handle = p.net.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            reported = model.test({"x": x})
    finally:
        handle.remove()
    (z,) = seen
    with torch.no_grad():
        mine = q.net(x)
        theirs = q.net(pseudo)
        log_q = td.Normal(mine["loc"], mine["scale"]).log_prob(z).sum(-1)
        log_prior = torch.logsumexp(td.Normal(theirs["loc"][:, None], theirs["scale"][:, None]).log_prob(z).sum(-1),
                                    0) - math.log(20)
        expected = -(bernoulli(x, p.net(z)) + log_prior - log_q).mean().item()
    assert reported == pytest.approx(expected, rel=1e-5)
    assert saved["log p(x)"] > saved["ELBO"] - 0.5


def test_compile_option_trains_the_compiled_step(tmp_path, monkeypatch, capsys, built_models):
    """--compile inductor goes through Model(compile='inductor'); the aot_eager backend stands in for inductor (no
    code generation, the same Dynamo and AOTAutograd path) and draws random numbers as eager code does, so the run
    trains as the eager one pinned above; a fallback to eager would warn, which fails the test."""
    from torch._dynamo.backends.registry import lookup_backend

    from pgm.models import _compile
    graphs = []

    def backend(graph, example_inputs):
        graphs.append(graph)
        return lookup_backend("aot_eager")(graph, example_inputs)
    monkeypatch.setattr(_compile, "BACKEND", backend)
    _, saved, (model,) = run("vae", tmp_path / "run", capsys, built_models, "--compile", "inductor")
    assert graphs and isinstance(model._steps[0], _compile.InductorStep) and not model._compile_failed_once
    assert saved["settings"]["compile"] == "inductor"
    assert saved["history"]["loss"] == pytest.approx(VAE_TRAINING_LOSS, rel=1e-3)
    assert saved["ELBO"] == pytest.approx(PINNED["vae"]["ELBO"], abs=0.1)
    with pytest.raises(SystemExit):
        importlib.import_module("vae").main(TINY + ["--compile", "fast", "--out", str(tmp_path / "other")])
    assert "argument --compile: invalid choice: 'fast'" in capsys.readouterr().err


# LRAP of 10 single labels: a random ranking scores the mean of 1/rank, H(10)/10 = 0.293; 0.1 above it is 7
# standard deviations of a random ranking's score on 400 test digits.
CHANCE_LRAP = sum(1 / k for k in range(1, 11)) / 10


def test_mvae_scores_every_model_in_its_settings(tmp_path, capsys, built_models):
    _, saved, built = run("mvae", tmp_path, capsys, built_models)
    expected = {"AE": ["setting 1", "setting 2"], "VAE": ["setting 1", "setting 2"],
                "MAE": ["setting 3", "setting 4"], "MVAE": ["setting 3", "setting 4"]}
    assert {model: sorted(saved[model]) for model in expected} == expected
    for model, settings in expected.items():
        for setting in settings:
            assert saved[model][setting] >= CHANCE_LRAP + 0.1, (model, setting)
            assert saved[model][setting] == pytest.approx(PINNED["mvae"][model][setting], abs=0.03), (model, setting)
    # each of the six models minimizes its objective: AE, VAE (settings 1, 2), MAE and MVAE (setting 3)
    from mvae import arrange
    x, w, _ = held_out_pairs()
    settings = {("x",): "setting 1", ("xw",): "setting 2", ("x", "w"): "setting 3"}
    assert [settings[tuple(m.distributions[0].cond_var)] for m in built] == [
        "setting 1", "setting 2", "setting 1", "setting 2", "setting 3", "setting 3"]
    for model in built:
        assert_loss_is_the_objective(model, arrange({"x": x, "w": w}, settings[tuple(model.distributions[0].cond_var)]))
    assert saved["labels"] == "all" and set(saved["objective"]) == {
        "AE (setting 1)", "AE (setting 2)", "VAE (setting 1)", "VAE (setting 2)", "MAE (setting 3)",
        "MVAE (setting 3)"}
    for tag in ("AE_setting1", "AE_setting2", "VAE_setting1", "VAE_setting2", "MAE_setting3", "MVAE_setting3"):
        assert (tmp_path / f"learning_curves_{tag}.png").read_bytes()[:8] == PNG
    assert "| MVAE |  |  | " in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize("script, extra, params", [("jmvae", [], {}), ("jmvae_kl", ["--alpha", "1"], {"alpha": 1.0})])
def test_jmvae_log_likelihoods_and_cross_modal_figure(script, extra, params, tmp_path, capsys, built_models):
    _, saved, (model,) = run(script, tmp_path, capsys, built_models, *extra)
    assert saved["objective"] == EXPECTED_LATEX[script][0]
    inputs = {"x": held_out_pairs()[0], "w": held_out_pairs()[1]}
    assert_loss_is_the_objective(model, inputs, **params)
    objective, log_p = scores_by_hand(model, inputs, **params)
    name = "L_JMVAE" + ("-kl" if params else "")
    assert saved[name] == pytest.approx(objective, abs=0.3)
    assert saved["log p(x,w)"] == pytest.approx(log_p, abs=0.3)
    assert {k: saved[k] for k in PINNED[script]} == pytest.approx(PINNED[script], abs=0.5)
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
