"""examples/beta_tcvae.py runs end to end with tiny sizes, prints the paper's objective exactly and writes its results
and latent traversal; its loss and gradients are those of a beta-TCVAE written in plain PyTorch (minibatch-weighted
sampling) on the same weights and draws, its encoder runs once per step, and its estimator of the aggregate
posterior is the mixture of the batch's posteriors."""
import copy
import json
import math

import pytest
import torch
from torch.nn import functional as F

import beta_tcvae
from common import data
from pgm.models import Model
from script_runs import error_line

TINY = ["--epochs", "3", "--hidden", "16", "--batch-size", "64", "--latent", "4", "--eval-every", "1",
        "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
OBJECTIVE = (r"\mathbb{E}_{q(z|x)}\left[\log p(x|z)\right] - \alpha \mathbb{E}_{q(z|x)}\left[\log q(z|x) - \log q(z)"
             r"\right] - \beta \mathbb{E}_{q(z|x)}\left[\log q(z) - \sum_{d} \log q(z_d)\right] - \gamma "
             r"\mathbb{E}_{q(z|x)}\left[\sum_{d} \log q(z_d) - \log p(z)\right]")
TRAIN_SIZE = 1397  # the digits' training split

pytestmark = pytest.mark.usefixtures("one_thread")


def digits_test_images():
    return data.labelled_images("digits", seed=0).test[0]


def normal_log_density(value, loc, scale):
    """log N(value; loc, scale^2), elementwise, written out."""
    return -0.5 * ((value - loc) / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)


def plain_negative_objective(encoder, decoder, x, dataset_size, alpha, beta, gamma):
    """beta-TCVAE's loss as the authors' code computes it (minibatch-weighted sampling), in plain PyTorch: the
    networks called directly, z drawn by torch.distributions."""
    params = encoder(x)
    loc, scale = params["loc"], params["scale"]
    z = torch.distributions.Normal(loc, scale).rsample()
    log_px = -F.binary_cross_entropy_with_logits(decoder(z)["logits"], x, reduction="none").sum(-1)
    log_qzx = normal_log_density(z, loc, scale).sum(-1)
    log_pz = normal_log_density(z, torch.zeros(()), torch.ones(())).sum(-1)
    pairs = normal_log_density(z[:, None, :], loc[None, :, :], scale[None, :, :])  # [i, j, d] = log q(z_id|x_j)
    log_nm = math.log(dataset_size * len(x))
    log_qz = torch.logsumexp(pairs.sum(2), dim=1) - log_nm
    log_qz_product = (torch.logsumexp(pairs, dim=1) - log_nm).sum(1)
    elbo = (log_px - alpha * (log_qzx - log_qz) - beta * (log_qz - log_qz_product)
            - gamma * (log_qz_product - log_pz))
    return -elbo.mean()


def test_beta_tcvae_script(tmp_path, capsys):
    record = beta_tcvae.main(TINY + ["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert printed.startswith("Data: scikit-learn digits (1,397 train / 400 test, 8x8), whole images")
    assert f"Objective (maximized):\n{OBJECTIVE}\n" in printed
    assert saved["objective"] == OBJECTIVE
    assert (saved["settings"]["beta"], saved["settings"]["alpha"], saved["settings"]["gamma"]) == (6.0, 1.0, 1.0)
    assert (saved["epochs"], saved["seed"]) == (3, 0) and record["TC"] == saved["TC"]
    assert saved["history"]["monitor_epoch"] == [1, 2, 3] and saved["history"]["ELBO"][-1] == saved["ELBO"]
    for picture in ("traversal.png", "graphical_model.png", "learning_curves.png"):
        assert (tmp_path / picture).read_bytes()[:8] == PNG
    assert -64 * math.log(2) < saved["ELBO"] < 0
    # with q(z) the test split's own aggregate posterior, I <= log N; every estimate is finite
    assert 0 <= saved["I"] <= math.log(400) and math.isfinite(saved["TC"])
    assert 1 <= saved["active dims"] <= 4

    # the same networks at initialisation (the script seeds with 0, then builds them), scored the same way
    torch.manual_seed(0)
    q, p, prior, _ = beta_tcvae.build(64, 16, 4, TRAIN_SIZE)
    assert saved["ELBO"] > beta_tcvae.evaluate(q, p, prior, digits_test_images())["ELBO"] + 3


@pytest.mark.parametrize("weights", [{"alpha": 1.0, "beta": 6.0, "gamma": 1.0}, {"alpha": 0.5, "beta": 3.0,
                                                                                "gamma": 2.0}])
def test_loss_and_gradients_are_plain_pytorchs_beta_tcvae(weights):
    torch.manual_seed(0)
    q, p, prior, objective = beta_tcvae.build(64, 16, 4, TRAIN_SIZE)
    x = digits_test_images()[:50]
    parameters = [*q.parameters(), *p.parameters()]
    torch.manual_seed(1)
    ours = -objective.eval({"x": x}, **weights).mean()
    torch.manual_seed(1)  # the same draw of z
    reference = plain_negative_objective(q.net, p.net, x, TRAIN_SIZE, **weights)
    torch.testing.assert_close(ours, reference)
    for a, b in zip(torch.autograd.grad(ours, parameters), torch.autograd.grad(reference, parameters)):
        torch.testing.assert_close(a, b)
    torch.manual_seed(2)  # another draw, another value: the loss depends on the draw it is compared on
    assert abs(-objective.eval({"x": x}, **weights).mean().item() - ours.item()) > 1e-3


def test_a_training_step_takes_the_plain_loss_and_runs_the_encoder_once():
    torch.manual_seed(0)
    q, p, prior, objective = beta_tcvae.build(64, 16, 4, TRAIN_SIZE)
    weights = {"alpha": 1.0, "beta": 6.0, "gamma": 1.0}
    x = digits_test_images()[:64]
    before = copy.deepcopy((q.net, p.net))
    runs = {"encoder": 0, "decoder": 0}
    q.net.register_forward_hook(lambda *args: runs.__setitem__("encoder", runs["encoder"] + 1))
    p.net.register_forward_hook(lambda *args: runs.__setitem__("decoder", runs["decoder"] + 1))
    model = Model(-objective.mean(), distributions=[q, p, prior], optimizer=torch.optim.Adam,
                  optimizer_params={"lr": 1e-3})
    torch.manual_seed(3)
    loss = model.train({"x": x}, **weights)
    torch.manual_seed(3)
    assert loss == pytest.approx(plain_negative_objective(*before, x, TRAIN_SIZE, **weights).item(), rel=1e-5)
    assert runs == {"encoder": 1, "decoder": 1}
    for _ in range(2):
        model.train({"x": x}, **weights)
    assert runs == {"encoder": 3, "decoder": 3}


def test_the_estimate_of_q_z_is_the_mixture_of_the_batchs_posteriors():
    torch.manual_seed(0)
    loc, scale = torch.randn(5, 3, dtype=torch.float64), torch.rand(5, 3, dtype=torch.float64) + 0.5
    z = torch.randn(2, 5, 3, dtype=torch.float64)  # a sample dim in front of the batch
    log_q_z, log_q_z_d = beta_tcvae.aggregate_log_densities(z, loc, scale, dataset_size=1)
    assert log_q_z.shape == (2, 5) and log_q_z_d.shape == (2, 5, 3)
    # q(z) = 1/M sum_j q(z|x_j), q(z_d) = 1/M sum_j q(z_d|x_j), in densities summed one pair at a time
    for s in range(2):
        for i in range(5):
            densities = [torch.distributions.Normal(loc[j], scale[j]).log_prob(z[s, i]).exp() for j in range(5)]
            torch.testing.assert_close(log_q_z[s, i], torch.log(sum(d.prod() for d in densities) / 5))
            torch.testing.assert_close(log_q_z_d[s, i], torch.log(sum(densities) / 5))
    # minibatch-weighted sampling from a data set of N: every estimate lower by log N
    log_q_z_n, log_q_z_d_n = beta_tcvae.aggregate_log_densities(z, loc, scale, dataset_size=1000)
    torch.testing.assert_close(log_q_z_n, log_q_z - math.log(1000))
    torch.testing.assert_close(log_q_z_d_n, log_q_z_d - math.log(1000))


def test_the_decomposition_sums_to_the_kl_on_the_same_draw():
    torch.manual_seed(0)
    q, p, prior, _ = beta_tcvae.build(64, 16, 4, TRAIN_SIZE)
    x = digits_test_images()
    scores = beta_tcvae.evaluate(q, p, prior, x, seed=5)
    # I + TC + dim-KL = E[log q(z|x) - log p(z)]: the Monte Carlo KL of the same draw, written here in torch
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(5)
        params = q.net(x)
        z = torch.distributions.Normal(params["loc"], params["scale"]).sample()
        per_example = (normal_log_density(z, params["loc"], params["scale"])
                       - normal_log_density(z, torch.zeros(()), torch.ones(()))).sum(-1)
        kl, standard_error = per_example.mean(), per_example.std() / math.sqrt(len(x))
        analytic = torch.distributions.kl_divergence(torch.distributions.Normal(params["loc"], params["scale"]),
                                                     torch.distributions.Normal(0.0, 1.0)).sum(-1).mean()
    assert scores["I"] + scores["TC"] + scores["dimension-wise KL"] == pytest.approx(kl.item(), rel=1e-4, abs=1e-4)
    assert abs(kl - analytic) < 4 * standard_error  # 400 draws of the KL around its closed form


def test_a_negative_beta_is_refused(capsys, no_loading, tmp_path):
    line = error_line("beta_tcvae", ["--beta", "-1", "--out", str(tmp_path)], capsys)
    assert line.startswith("error: argument --beta: must be >= 0; got -1") and line.endswith("--help)")
