"""The semi-supervised example scripts (M2, SS-MVAE, SS-HMVAE, SS-HMVAE-kl) run end to end with tiny sizes,
print the papers' objectives exactly, and write their results; the shared helpers they use behave."""
import argparse
import csv
import importlib
import json
from pathlib import Path

import pytest
import torch

from common import evaluation, networks, training

TINY = ["--epochs", "2", "--hidden", "16", "--batch-size", "64", "--labels", "20", "--eval-every", "1",
        "--device", "cpu"]

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

# (script, extra arguments, accuracy keys its results.json must hold)
RUNS = [
    ("m2", [], ("x", "w", "x+w")),
    ("m2", ["--enumerate"], ("x", "w", "x+w")),
    ("ss_mvae", [], ("x", "w", "x+w")),
    ("ss_hmvae", ["--iterations", "2"], ("x", "w", "x+w", "x_iterative", "w_iterative")),
    ("ss_hmvae_kl", ["--beta", "1"], ("x", "w", "x+w", "x_zeroed", "w_zeroed")),
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("script, extra, keys", RUNS, ids=[f"{s}{''.join(e[:1])}" for s, e, _ in RUNS])
def test_script_runs_end_to_end(script, extra, keys, tmp_path, capsys):
    module = importlib.import_module(script)
    record = module.main(TINY + extra + ["--out", str(tmp_path)])
    printed = capsys.readouterr().out

    assert printed.startswith("Data: scikit-learn digits (1,397 train / 400 test, 8x8), halves pairing, 20 labels")
    assert EXPECTED_LATEX[script] in printed.splitlines()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["objective"] == EXPECTED_LATEX[script]
    for key in keys:
        assert 0 <= saved[key] <= 100
    assert [k for k in evaluation.ACCURACY_KEYS if k in saved] == list(keys)
    assert (saved["epochs"], saved["labels"], saved["seed"]) == (2, 20, 0)
    assert saved["data"].startswith("scikit-learn digits")
    assert len(saved["history"]["loss"]) == 2 and saved["history"]["monitor_epoch"] == [1, 2]
    assert record["x+w"] == saved["x+w"]
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "model.pt").stat().st_size > 0
    assert (tmp_path / "graphical_model.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch-0002.pt"]
    with open(tmp_path / "results.csv") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["model", *keys] and float(rows[1][3]) == pytest.approx(saved["x+w"], abs=1e-3)
    assert f"| {saved['x+w']:.2f} |" in (tmp_path / "results.md").read_text()


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
    with pytest.raises(SystemExit, match=r"results_table: .*c/results.json does not exist"):
        results_table.main([str(tmp_path / "c")])
    (tmp_path / "c" / "results.json").write_text(json.dumps({"model": "VAE", "ELBO": -1.0}))
    with pytest.raises(SystemExit, match=r"holds no test accuracies"):
        results_table.main([str(tmp_path / "c")])


def test_compile_option_trains_the_compiled_step(tmp_path, monkeypatch, capsys):
    """--compile inductor goes through Model(compile='inductor'); the aot_eager backend stands in for inductor
    (no code generation, the same Dynamo and AOTAutograd path); a fallback would warn, which fails the test."""
    from torch._dynamo.backends.registry import lookup_backend

    from pgm.models import _compile
    graphs = []

    def backend(graph, example_inputs):
        graphs.append(graph)
        return lookup_backend("aot_eager")(graph, example_inputs)
    monkeypatch.setattr(_compile, "BACKEND", backend)
    module = importlib.import_module("ss_mvae")
    record = module.main(TINY + ["--compile", "inductor", "--out", str(tmp_path)])
    assert graphs and 0 <= record["x+w"] <= 100
    assert json.loads((tmp_path / "results.json").read_text())["settings"]["compile"] == "inductor"
    with pytest.raises(SystemExit):
        module.main(TINY + ["--compile", "fast", "--out", str(tmp_path)])
    assert "argument --compile: invalid choice: 'fast'" in capsys.readouterr().err
