"""Every model family the example scripts train with ``Model(...)`` is capturable as one CUDA graph.

Each script runs end to end at its own test's tiny sizes with ``--compile inductor``, but every step the model
builds for that mode is a :class:`~pgm.models._cudagraph.CUDAGraphStep` whose graphs are ``capture_rules``'s CPU
stand-in (tests/models/capture_rules.py): a host read, a tensor on another device, a changed optimizer setting, ...
while capturing raises ``CaptureRuleError``, which the model turns into its fallback warning (an error under the
suite's ``-W error``). So a family that passes here would be captured on its first GPU run rather than falling back
to eager.
"""
import importlib
import sys
from pathlib import Path

import pytest

from pgm.models import _compile, _cudagraph

MODELS = Path(__file__).resolve().parents[1] / "models"
if str(MODELS) not in sys.path:
    sys.path.insert(0, str(MODELS))

from capture_rules import StandInGraphs, stand_in_runner  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

# The argv of each script's own test in tests/examples (its TINY), fewer epochs where a run would be long: a capture
# happens on a model's second step and every later one replays it, so one epoch of a few batches checks it all.
IMAGES = ["--hidden", "16", "--batch-size", "64", "--latent", "4", "--eval-every", "1", "--device", "cpu"]
MULTIMODAL = ["--epochs", "1", "--hidden", "32", "--lr", "0.01", "--batch-size", "64", "--latent", "4",
              "--iw-samples", "8", "--eval-every", "1", "--device", "cpu"]
SEMI_SUPERVISED = ["--epochs", "1", "--hidden", "16", "--batch-size", "64", "--labels", "20", "--eval-every", "1",
                   "--device", "cpu"]
SEQUENCES = ["--epochs", "1", "--hidden", "16", "--rnn", "8", "--latent", "3", "--batch-size", "16", "--sequences",
             "40", "--steps", "6", "--size", "6", "--eval-every", "1", "--device", "cpu"]
HMM = ["--states", "3", "--symbols", "6", "--steps", "8", "--sequences", "200", "--epochs", "1", "--batch-size", "20",
       "--hidden", "16", "--eval-every", "1", "--device", "cpu"]
GAN = ["--epochs", "1", "--hidden", "16", "--latent", "4", "--device", "cpu"]

# id: (script, argv, the number of Models the run trains)
CASES = {
    "vae": ("vae", MULTIMODAL, 1),
    "vae-vamp": ("vae", MULTIMODAL + ["--prior", "vamp", "--pseudo-inputs", "20"], 1),
    "mvae": ("mvae", MULTIMODAL, 6),  # AE and VAE in settings 1 and 2, MAE and MVAE in setting 3
    "jmvae": ("jmvae", MULTIMODAL, 1),
    "jmvae_kl": ("jmvae_kl", MULTIMODAL + ["--alpha", "1"], 1),
    "mmvae": ("mmvae", ["--epochs", "1", "--iw-samples", "8"] + IMAGES, 1),
    "cvae": ("cvae", ["--epochs", "1", "--iw-samples", "8"] + IMAGES, 1),
    "m2": ("m2", SEMI_SUPERVISED, 1),
    "m2-enumerate": ("m2", SEMI_SUPERVISED + ["--enumerate"], 1),
    "ss_mvae": ("ss_mvae", SEMI_SUPERVISED, 1),
    "ss_hmvae": ("ss_hmvae", SEMI_SUPERVISED + ["--iterations", "2"], 1),
    "ss_hmvae_kl": ("ss_hmvae_kl", SEMI_SUPERVISED + ["--beta", "1"], 1),
    "gmvae": ("gmvae", ["--epochs", "1", "--hidden", "32", "--latent", "4", "--batch-size", "128", "--eval-every", "1",
                        "--device", "cpu"], 1),
    # score function, moving average, learned baseline, Gumbel-softmax and enumeration: one model each
    "discrete_vae": ("discrete_vae", ["--epochs", "1", "--repeats", "2"] + IMAGES, 5),
    "flow_vae": ("flow_vae", ["--epochs", "1", "--hidden", "16", "--batch-size", "64", "--latent", "2", "--iw-samples",
                              "16", "--eval-every", "1", "--layers", "0,2", "--device", "cpu"], 2),
    "real_nvp": ("real_nvp", ["--epochs", "1", "--hidden", "8", "--batch-size", "64", "--lr", "0.01", "--points", "600",
                              "--couplings", "2", "--eval-every", "1", "--device", "cpu"], 2),
    "glow": ("glow", ["--epochs", "1", "--levels", "2", "--steps", "1", "--hidden", "8", "--batch-size", "64",
                      "--eval-every", "1", "--device", "cpu"], 1),
    "dmm": ("dmm", SEQUENCES, 1),
    "vrnn": ("vrnn", SEQUENCES, 1),
    "hmm-score_function": ("hmm", HMM + ["--estimator", "score_function"], 1),
    "hmm-enumerate": ("hmm", HMM + ["--estimator", "enumerate"], 1),
    "hmm-exact": ("hmm", HMM + ["--estimator", "exact"], 1),
    "mmd_vae": ("mmd_vae", ["--epochs", "1"] + IMAGES, 1),
    "beta_tcvae": ("beta_tcvae", ["--epochs", "1"] + IMAGES, 1),
    "vq_vae": ("vq_vae", ["--epochs", "1", "--hidden", "16", "--batch-size", "64", "--codes", "8", "--positions", "2",
                          "--code-dim", "3", "--eval-every", "1", "--device", "cpu"], 1),
    "bayesian_regression": ("bayesian_regression", ["--epochs", "2", "--points", "100", "--features", "3",
                                                    "--batch-size", "50", "--samples", "4", "--eval-every", "1",
                                                    "--device", "cpu"], 1),
    "bayes_by_backprop": ("bayes_by_backprop", ["--epochs", "2", "--points", "100", "--hidden", "8", "--batch-size",
                                                "50", "--samples", "2", "--draws", "10", "--eval-every", "1",
                                                "--device", "cpu"], 1),
    "gmm": ("gmm", ["--epochs", "2", "--points", "600", "--batch-size", "128", "--eval-every", "1", "--device", "cpu"],
            1),
    "prodlda": ("prodlda", ["--epochs", "1", "--documents", "300", "--vocabulary", "30", "--topics", "3", "--hidden",
                            "16", "--batch-size", "64", "--eval-every", "1", "--device", "cpu"], 1),
    "gan": ("gan", GAN + ["--data", "ring"], 1),
    "gan-minimax": ("gan", GAN + ["--data", "ring", "--minimax"], 1),
    "wgan_gp": ("wgan_gp", GAN + ["--data", "ring", "--critic-steps", "3"], 1),
}


@pytest.fixture
def stand_in_captures(monkeypatch):
    """Every step built for compile='inductor' is a CUDAGraphStep captured by ``capture_rules.StandInGraphs``;
    returns {id(environment): (model, graphs, steps)}, the steps of each build of a model's steps. The compiled
    test loss is left out (it is no graph): Model.test runs eagerly."""
    made = {}
    build = _compile.build

    def stand_in(mode, pieces, graphs=None):
        if mode != "inductor":
            return build(mode, pieces, graphs)
        environment = pieces.environment  # one per (re)built model
        model = environment.compile_failed.__self__
        if id(environment) not in made:
            model._tester = None
            made[id(environment)] = (model, StandInGraphs(optimizers=model.optimizers, modules=model.distributions),
                                     [])
        _, graphs, runners = made[id(environment)]
        runners.append(stand_in_runner(pieces, graphs))
        return runners[-1]
    monkeypatch.setattr(_compile, "build", stand_in)
    return made


@pytest.mark.parametrize("case", list(CASES))
def test_the_script_trains_captured(case, tmp_path, stand_in_captures):
    script, argv, count = CASES[case]
    main = importlib.import_module(script).main
    argv = argv + ["--compile", "inductor", "--out", str(tmp_path)]
    assert main(argv) is not None
    assert len(stand_in_captures) == count
    for model, graphs, steps in stand_in_captures.values():
        assert not model._compile_failed_once  # (its warning would have failed the run already)
        assert model._steps == steps and all(isinstance(s, _cudagraph.CUDAGraphStep) for s in steps)
        assert all(step.captured for step in steps), "an objective's step was never captured"
        assert graphs.captures >= len(steps) and graphs.replays >= 1, (graphs.captures, graphs.replays)
