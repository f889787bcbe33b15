"""The semi-supervised example scripts (M2, SS-MVAE, SS-HMVAE, SS-HMVAE-kl) run end to end with small sizes,
print the papers' objectives exactly, write their results, classify well above chance, and minimize the papers'
objectives: the loss each trained model reports equals the objective written out in plain torch on the same
weights and draws. The shared helpers they use behave."""
import argparse
import csv
import importlib
import json
import math
from pathlib import Path

import pytest
import torch
import torch.distributions as td
import torch.nn.functional as F

from common import data, evaluation, networks, training

TINY = ["--epochs", "2", "--hidden", "16", "--batch-size", "64", "--labels", "20", "--eval-every", "1",
        "--device", "cpu"]
# The end-to-end runs: about a second each on one CPU thread, yet long enough for a correct model to classify the
# 400 test digits well above chance from 20 labels (alpha = 20 weighs the labelled term up, as the papers'
# alpha = 0.1 N does).
SMALL = ["--epochs", "3", "--hidden", "32", "--batch-size", "64", "--labels", "20", "--alpha", "20",
         "--eval-every", "1", "--device", "cpu"]
CHANCE, MARGIN = 10.0, 15.0  # percent: 10 balanced classes; 15 points is 10 standard deviations of chance at 400

SS_HMVAE_BOUNDS = (
    r"\mathbb{E}_{p_{labelled}(x,w,y)}\left[\mathbb{E}_{q(a,z|x,w,y)}\left[\log p(x,w,a,z,y) - \log q(a,z|x,w,y)"
    r"\right] + \alpha \mathbb{E}_{q(a|x,w)}\left[\log q(y|a)\right]{labelled_kl}\right] + "
    r"\mathbb{E}_{p_{unlabelled}(x,w)}\left[\mathbb{E}_{q(a,z,y|x,w)}\left[\log p(x,w,a,z,y) - "
    r"\log q(a,z,y|x,w)\right]{unlabelled_kl}\right]"
)
KL_TERMS = (r" - \beta \left(D_{KL}\left[q(a|x,w)\|q(a|x)\right] + "
            r"D_{KL}\left[q(a|x,w)\|q(a|w)\right]\right)")
M2_BOUND = (r"\mathbb{E}_{q(z|x,y)}\left[\log p(x|y,z) + \log p(y) + \log p(z) - \log q(z|x,y)\right]")

# The papers' objectives (docs/papers.md sections 4-7), as each script must print them: no term added or dropped.
EXPECTED_LATEX = {
    "m2": (r"- (\mathbb{E}_{p_{labelled}(x,y)}\left[" + M2_BOUND + r" + \alpha \log q(y|x)\right] + "
           r"\mathbb{E}_{p_{unlabelled}(x)}\left[\mathbb{E}_{q(y|x)}\left[" + M2_BOUND + r"\right] + "
           r"\mathcal{H}\left[q(y|x)\right]\right])"),
    "ss_mvae": (r"- (\mathbb{E}_{p_{labelled}(x,w,y)}\left[\mathbb{E}_{q(z|x,w,y)}\left[\log p(x,w,z|y) - "
                r"\log q(z|x,w,y)\right] + \alpha \log q(y|x,w)\right] + \mathbb{E}_{p_{unlabelled}(x,w)}\left["
                r"\mathbb{E}_{q(z,y|x,w)}\left[\log p(x,w,z,y) - \log q(z,y|x,w)\right]\right])"),
    "ss_hmvae": "- (" + SS_HMVAE_BOUNDS.replace("{labelled_kl}", "").replace("{unlabelled_kl}", "") + ")",
    "ss_hmvae_kl": "- (" + SS_HMVAE_BOUNDS.replace("{labelled_kl}", KL_TERMS).replace("{unlabelled_kl}", KL_TERMS)
                   + ")",
}

# --- the papers' objectives in plain torch (docs/papers.md sections 4-7), from the networks and the draws -----

def bernoulli(v, params):  # grey levels in [0, 1]: x log sigmoid + (1 - x) log(1 - sigmoid), as pgm's Bernoulli
    return -F.binary_cross_entropy_with_logits(params["logits"], v, reduction="none").sum(-1)


def normal(v, params):
    return td.Normal(params["loc"], params["scale"]).log_prob(v).sum(-1)


def standard_normal(v):
    return td.Normal(0.0, 1.0).log_prob(v).sum(-1)


def categorical(y, params):  # sum_k y_k log pi_k: a one-hot label's log-probability, or a Gumbel-softmax draw's
    return (y * F.log_softmax(params["logits"], -1)).sum(-1)


def uniform(y):  # log p(y) for p(y) = Cat(1/K)
    return y.sum(-1) * math.log(1 / y.shape[-1])


def kl_normal(q, p):
    return td.kl_divergence(td.Normal(q["loc"], q["scale"]), td.Normal(p["loc"], p["scale"])).sum(-1)


class Draws:
    """The inputs each network received while the loss was evaluated: the draws of a, z and y it took."""

    def __init__(self, nets):
        self.calls = {name: [] for name in nets}
        self.handles = [net.register_forward_pre_hook(lambda module, args, name=name: self.calls[name].append(args))
                        for name, net in nets.items()]

    def __call__(self, name, rows):
        """The inputs of the one call of network ``name`` on ``rows`` examples."""
        found = [args for args in self.calls[name] if len(args[0]) == rows]
        assert len(found) == 1, (name, rows)
        return found[0]

    def remove(self):
        for handle in self.handles:
            handle.remove()


def m2_loss(n, draws, labelled, unlabelled, alpha, enumerate=False):
    """-(mean_l [L(x,y) + alpha log q(y|x)] + mean_u [E_q(y|x) L(x,y) + H(q(y|x))]),
    L(x,y) = log p(x|y,z) + log p(y) + log p(z) - log q(z|x,y) at z ~ q(z|x,y)."""
    def bound(x, y, z):
        return bernoulli(x, n["p(x|y,z)"](y, z)) + uniform(y) + standard_normal(z) - normal(z, n["q(z|x,y)"](x, y))

    x, y = labelled["x"], labelled["y"]
    drawn_y, z = draws("p(x|y,z)", len(x))
    assert torch.equal(drawn_y, y)
    labelled_term = bound(x, y, z) + alpha * categorical(y, n["q(y|x)"](x))
    x = unlabelled["x"]
    if enumerate:  # the exact sum over the K labels, each weighted by q(y|x)
        k = y.shape[-1]
        y, z = draws("p(x|y,z)", k * len(x))
        repeated, _ = draws("q(z|x,y)", k * len(x))
        assert torch.equal(repeated, x.repeat(k, 1))  # label-major: rows k * N + n
        weighted = (y * F.softmax(n["q(y|x)"](repeated)["logits"], -1)).sum(-1) * bound(repeated, y, z)
        expectation = weighted.view(k, len(x)).sum(0)
    else:  # one Gumbel-softmax draw of y
        y, z = draws("p(x|y,z)", len(x))
        expectation = bound(x, y, z)
    unlabelled_term = expectation + td.Categorical(logits=n["q(y|x)"](x)["logits"]).entropy()
    return -(labelled_term.mean() + unlabelled_term.mean())


def ss_mvae_loss(n, draws, labelled, unlabelled, alpha):
    """-(mean_l [E_q(z|x,w,y) log p(x,w,z|y)/q(z|x,w,y) + alpha log q(y|x,w)]
         + mean_u [E_q(z,y|x,w) log p(x,w,z,y)/q(z,y|x,w)])."""
    def bound(x, w, y, z):
        return (bernoulli(x, n["p(x|z,y)"](z, y)) + bernoulli(w, n["p(w|z,y)"](z, y)) + standard_normal(z)
                - normal(z, n["q(z|x,w,y)"](x, w, y)))

    x, w, y = labelled["x"], labelled["w"], labelled["y"]
    z, drawn_y = draws("p(x|z,y)", len(x))
    assert torch.equal(drawn_y, y)
    labelled_term = bound(x, w, y, z) + alpha * categorical(y, n["q(y|x,w)"](x, w))
    x, w = unlabelled["x"], unlabelled["w"]
    z, y = draws("p(x|z,y)", len(x))
    unlabelled_term = bound(x, w, y, z) + uniform(y) - categorical(y, n["q(y|x,w)"](x, w))
    return -(labelled_term.mean() + unlabelled_term.mean())


def ss_hmvae_loss(n, draws, labelled, unlabelled, alpha, beta=None):
    """-(mean_l [E_q(a,z|x,w,y) log p(x,w,a,z,y)/q(a,z|x,w,y) + alpha E_q(a|x,w) log q(y|a)]
         + mean_u [E_q(a,z,y|x,w) log p(x,w,a,z,y)/q(a,z,y|x,w)]), each bound less, for SS-HMVAE-kl,
    beta (KL(q(a|x,w) || q(a|x)) + KL(q(a|x,w) || q(a|w)))."""
    def bound(x, w):
        a, y = draws("q(z|a,y)", len(x))
        z, drawn_y = draws("p(a|z,y)", len(x))
        assert torch.equal(drawn_y, y)
        q_a = n["q(a|x,w)"](x, w)
        value = (bernoulli(x, n["p(x|a)"](a)) + bernoulli(w, n["p(w|a)"](a)) + normal(a, n["p(a|z,y)"](z, y))
                 + standard_normal(z) + uniform(y) - normal(a, q_a) - normal(z, n["q(z|a,y)"](a, y)))
        if beta is not None:
            value = value - beta * (kl_normal(q_a, n["q(a|x)"](x)) + kl_normal(q_a, n["q(a|w)"](w)))
        return value, a, y

    labelled_term, a, y = bound(labelled["x"], labelled["w"])
    assert torch.equal(y, labelled["y"])
    labelled_term = labelled_term + alpha * categorical(y, n["q(y|a)"](a))
    unlabelled_term, a, y = bound(unlabelled["x"], unlabelled["w"])
    unlabelled_term = unlabelled_term - categorical(y, n["q(y|a)"](a))  # the drawn label's log q(y|a)
    return -(labelled_term.mean() + unlabelled_term.mean())


# (script, extra arguments, accuracy keys its results.json must hold, its loss in plain torch, Parameter values)
RUNS = [
    ("m2", [], ("x", "w", "x+w"), m2_loss, {"alpha": 20.0}),
    ("m2", ["--enumerate"], ("x", "w", "x+w"), lambda *args, **params: m2_loss(*args, **params, enumerate=True),
     {"alpha": 20.0}),
    ("ss_mvae", [], ("x", "w", "x+w"), ss_mvae_loss, {"alpha": 20.0}),
    ("ss_hmvae", ["--iterations", "2"], ("x", "w", "x+w", "x_iterative", "w_iterative"), ss_hmvae_loss,
     {"alpha": 20.0}),
    ("ss_hmvae_kl", ["--beta", "1"], ("x", "w", "x+w", "x_zeroed", "w_zeroed"), ss_hmvae_loss,
     {"alpha": 20.0, "beta": 1.0}),
]
IDS = [f"{s}{''.join(e[:1])}" for s, e, *_ in RUNS]

# The test accuracies (percent of 400) of the SMALL runs: deterministic on one CPU thread with seed 0. Another
# machine's float rounding may move a few test images; a wrong objective moves them by far more than TOLERANCE.
PINNED = {
    "m2": {"x": 14.0, "w": 20.0, "x+w": 53.5},
    "m2--enumerate": {"x": 14.0, "w": 21.0, "x+w": 53.5},
    "ss_mvae": {"x": 21.75, "w": 28.0, "x+w": 57.25},
    "ss_hmvae--iterations": {"x": 16.5, "w": 16.0, "x+w": 40.0, "x_iterative": 21.5, "w_iterative": 27.25},
    "ss_hmvae_kl--beta": {"x": 16.75, "w": 13.75, "x+w": 32.5, "x_zeroed": 15.75, "w_zeroed": 12.5},
}
TOLERANCE = 3.0  # percent: 12 of the 400 test images


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("script, extra, keys, plain_loss, params", RUNS, ids=IDS)
def test_script_runs_end_to_end(script, extra, keys, plain_loss, params, tmp_path, capsys, request, built_models):
    module = importlib.import_module(script)
    built = built_models(module)  # the Models it trains, for the checks below
    record = module.main(SMALL + extra + ["--out", str(tmp_path)])
    printed = capsys.readouterr().out

    assert printed.startswith("Data: scikit-learn digits (1,397 train / 400 test, 8x8), halves pairing, 20 labels")
    assert EXPECTED_LATEX[script] in printed.splitlines()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["objective"] == EXPECTED_LATEX[script]
    assert [k for k in evaluation.ACCURACY_KEYS if k in saved] == list(keys)
    # a correct model classifies well above chance with both modalities, and reaches what it reached when pinned
    assert saved["x+w"] >= CHANCE + MARGIN
    pinned = PINNED[request.node.callspec.id]
    assert {k: saved[k] for k in keys} == pytest.approx(pinned, abs=TOLERANCE)
    assert (saved["epochs"], saved["labels"], saved["seed"]) == (3, 20, 0)
    assert saved["data"].startswith("scikit-learn digits")
    assert len(saved["history"]["loss"]) == 3 and saved["history"]["monitor_epoch"] == [1, 2, 3]
    assert record["x+w"] == saved["x+w"]
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "model.pt").stat().st_size > 0
    assert (tmp_path / "graphical_model.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch-0003.pt"]
    with open(tmp_path / "results.csv") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["model", *keys] and float(rows[1][3]) == pytest.approx(saved["x+w"], abs=1e-3)
    assert f"| {saved['x+w']:.2f} |" in (tmp_path / "results.md").read_text()

    # The loss the trained model reports, on the 20 labelled pairs and 48 unlabelled ones, is the paper's objective
    # written out in plain torch on the same weights and the same draws (taken from the networks' inputs); a term
    # dropped, added or of the wrong sign would show.
    (model,) = built
    paired = data.load("digits", labels=20)
    (x, w, y), (xu, wu) = paired.labelled, paired.unlabelled
    labelled, unlabelled = {"x": x, "w": w, "y": y}, {"x": xu[:48], "w": wu[:48]}
    if script == "m2":  # M2 models the two halves concatenated
        labelled, unlabelled = {"x": torch.cat([x, w], -1), "y": y}, {"x": torch.cat([xu[:48], wu[:48]], -1)}
    nets = {d.prob_text: d.net for d in model.distributions if getattr(d, "net", None) is not None}
    model.distributions.eval()
    draws = Draws(nets)
    try:
        with torch.no_grad():
            reported = model.test({"labelled": labelled, "unlabelled": unlabelled}, **params)
    finally:
        draws.remove()
    with torch.no_grad():
        expected = plain_loss(nets, draws, labelled, unlabelled, **params).item()
    assert reported == pytest.approx(expected, rel=1e-5)


def test_training_defaults_are_the_papers():
    parser = argparse.ArgumentParser()
    training.add_arguments(parser, "ss_hmvae_kl.py")
    args = parser.parse_args([])
    assert (args.epochs, args.batch_size, args.lr, args.hidden, args.seed) == (500, 512, 1e-3, 512, 0)
    assert args.out == Path("results") / "ss_hmvae_kl"


def test_join_and_heads_follow_the_papers_blocks():
    torch.manual_seed(0)
    body = networks.Join([5, 3, 2], branches=[[8, 8], [8, 8], []], joint=[6])
    assert body.out_features == 6
    # (x-D8BR-D8BR, w-D8BR-D8BR, y)-D6BR: Linear, BatchNorm1d, ReLU per block
    assert [type(m).__name__ for m in body.branches[0]] == ["Linear", "BatchNorm1d", "ReLU"] * 2
    assert len(body.branches[2]) == 0 and body.joint[0].in_features == 8 + 8 + 2
    gaussian = networks.Gaussian(body, 4)(torch.randn(7, 5), torch.randn(7, 3), torch.randn(7, 2))
    assert gaussian["loc"].shape == gaussian["scale"].shape == (7, 4) and bool((gaussian["scale"] > 0).all())
    logits = networks.Logits(networks.mlp(5, [8]), 10)(torch.randn(7, 5))["logits"]
    assert logits.shape == (7, 10)


def test_join_misuse_is_explained():
    with pytest.raises(ValueError, match=r"Join: 2 inputs but 3 branches\."):
        networks.Join([5, 3], branches=[[8], [8], []])
    with pytest.raises(ValueError, match=r"Join: expected 2 inputs; got 1\."):
        networks.Join([5, 3], branches=[[8], [8]])(torch.randn(4, 5))


class _Fixed:
    """Stands for a Model in evaluation.accuracies: distributions with eval()."""
    distributions = torch.nn.ModuleList()


def test_accuracies_count_correct_argmax_in_percent():  # class 1 (two of four rows) mistaken by `half`
    y = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 1]), 3).float()
    x, w = y.clone(), torch.zeros(4, 2)
    right = lambda x, w: x  # noqa: E731
    wrong = lambda x, w: x.roll(1, -1)  # noqa: E731
    half = lambda x, w: x * torch.tensor([1.0, 0.0, 1.0]) + x[:, 1:2] * torch.tensor([1.0, 0.0, 0.0])  # noqa: E731
    scores = evaluation.accuracies({"right": right, "wrong": wrong, "half": half}, (x, w, y), _Fixed(), batch_size=3)
    assert scores == {"right": 100.0, "wrong": 0.0, "half": 50.0}


def test_impute_replaces_only_the_missing_modality_with_decoder_means():
    from pgm.distributions import Bernoulli, Normal

    torch.manual_seed(0)
    q_a = Normal("q(a|x,w)", net=networks.Gaussian(networks.Join([3, 2], [[4], [4]]), 2))
    p_w = Bernoulli("p(w|a)", net=networks.Logits(networks.mlp(2, [4]), 2))
    q_a.eval(), p_w.eval()
    x, w = torch.rand(5, 3), torch.rand(5, 2)
    with torch.no_grad():
        imputed = evaluation.impute(q_a, p_w, {"x": x, "w": w}, steps=3)
    assert torch.equal(imputed["x"], x) and imputed["w"].shape == w.shape and not torch.equal(imputed["w"], w)
    assert bool(((imputed["w"] > 0) & (imputed["w"] < 1)).all())


def test_resume_continues_a_script_exactly_from_its_latest_checkpoint(tmp_path):
    module = importlib.import_module("ss_hmvae_kl")
    small = TINY[2:]  # TINY without its --epochs
    straight = module.main(["--epochs", "3", *small, "--out", str(tmp_path / "straight")])
    module.main(["--epochs", "2", "--checkpoint-every", "1", *small, "--out", str(tmp_path / "resumed")])
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == [
        "epoch-0001.pt", "epoch-0002.pt"]
    resumed = module.main(["--epochs", "3", "--resume", *small, "--out", str(tmp_path / "resumed")])
    assert {k: resumed[k] for k in ("x", "w", "x+w")} == {k: straight[k] for k in ("x", "w", "x+w")}
    saved = [json.loads((tmp_path / run / "results.json").read_text())["history"] for run in ("straight", "resumed")]
    assert saved[0]["loss"] == saved[1]["loss"] and len(saved[0]["loss"]) == 3


def test_results_table_collects_runs_in_the_order_given(tmp_path, capsys):
    import results_table
    runs = {"a": {"model": "SS-MVAE", "data": "digits", "epochs": 5, "x": 10.0, "w": 20.5, "x+w": 30.25},
            "b": {"model": "SS-HMVAE", "data": "digits", "epochs": 5, "x": 1.0, "w": 2.0, "x+w": 3.0,
                  "x_iterative": 4.125, "w_iterative": 5.0}}
    for name, record in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(record))
    text = results_table.main([str(tmp_path / "b"), str(tmp_path / "a")])
    assert text.splitlines() == [
        "| model | data | epochs | x | w | x+w | x (iterative) | w (iterative) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        "| SS-HMVAE | digits | 5 | 1.00 | 2.00 | 3.00 | 4.12 | 5.00 |",
        "| SS-MVAE | digits | 5 | 10.00 | 20.50 | 30.25 |  |  |",
    ]
    assert capsys.readouterr().out.strip() == text
    (tmp_path / "c").mkdir()
    with pytest.raises(training.UsageError, match=r"^.*c/results.json does not exist; pass folders written by"):
        results_table.main([str(tmp_path / "c")])
    (tmp_path / "c" / "results.json").write_text(json.dumps({"model": "VAE", "ELBO": -1.0}))
    with pytest.raises(training.UsageError, match=r"holds no test accuracies"):
        results_table.main([str(tmp_path / "c")])
