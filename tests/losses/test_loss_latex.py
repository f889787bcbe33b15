"""The papers' objectives print as the papers write them (exact strings, terms in the order written)."""
import torch

from pgm.distributions import Bernoulli, Normal
from pgm.losses import E, KL, Entropy, LogProb, Parameter

from loss_nets import Gaussian, Logits


def vae():
    q = Normal("q(z|x)", net=Gaussian(4, 2))
    p = Bernoulli("p(x|z)", net=Logits(2, 4))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    return q, p, prior


def test_vae_loss_as_in_the_api():
    q, p, prior = vae()
    loss = (KL(q, prior) - E(q, LogProb(p))).mean()
    assert loss.latex() == (
        r"\mathbb{E}_{p_{data}(x)}\left[D_{KL}\left[q(z|x)\|p(z)\right] - "
        r"\mathbb{E}_{q(z|x)}\left[\log p(x|z)\right]\right]"
    )
    assert str(loss) == "E_p_data(x)[KL[q(z|x)||p(z)] - E_q(z|x)[log p(x|z)]]"


def test_vae_elbo_keeps_the_written_order():
    q, p, prior = vae()
    elbo = -KL(q, prior) + E(q, LogProb(p))
    assert elbo.latex() == r"- D_{KL}\left[q(z|x)\|p(z)\right] + \mathbb{E}_{q(z|x)}\left[\log p(x|z)\right]"
    loss = -elbo.mean()
    assert loss.latex() == (
        r"- \mathbb{E}_{p_{data}(x)}\left[- D_{KL}\left[q(z|x)\|p(z)\right] + "
        r"\mathbb{E}_{q(z|x)}\left[\log p(x|z)\right]\right]"
    )


def test_jmvae_kl_objective():
    q = Normal("q(z|x,w)", net=Gaussian(7, 2))
    q_x, q_w = Normal("q(z|x)", net=Gaussian(4, 2)), Normal("q(z|w)", net=Gaussian(3, 2))
    p_x, p_w = Bernoulli("p(x|z)", net=Logits(2, 4)), Bernoulli("p(w|z)", net=Logits(2, 3))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    alpha = Parameter("alpha")
    objective = (-KL(q, prior) + E(q, LogProb(p_x)) + E(q, LogProb(p_w))
                 - alpha * (KL(q, q_x) + KL(q, q_w)))
    assert objective.latex() == (
        r"- D_{KL}\left[q(z|x,w)\|p(z)\right] + \mathbb{E}_{q(z|x,w)}\left[\log p(x|z)\right] + "
        r"\mathbb{E}_{q(z|x,w)}\left[\log p(w|z)\right] - \alpha \left(D_{KL}\left[q(z|x,w)\|q(z|x)\right] + "
        r"D_{KL}\left[q(z|x,w)\|q(z|w)\right]\right)"
    )
    assert objective.input_var == ["x", "w"]
    assert objective.parameters == ["alpha"]


def ss_hmvae_kl_objectives(d):
    p = d["p_x"] * d["p_w"] * d["p_a"] * d["p_z"] * d["p_y"]
    beta, alpha = Parameter("beta"), Parameter("alpha")
    divergence = KL(d["q_a"], d["q_ax"]) + KL(d["q_a"], d["q_aw"])
    q_labelled = d["q_a"] * d["q_z"]
    q_unlabelled = d["q_a"] * d["q_z"] * d["q_y"]
    labelled = (E(q_labelled, LogProb(p) - LogProb(q_labelled))
                + alpha * E(d["q_a"], LogProb(d["q_y"])) - beta * divergence)
    unlabelled = E(q_unlabelled, LogProb(p) - LogProb(q_unlabelled)) - beta * divergence
    return labelled, unlabelled


def test_ss_hmvae_kl_labelled_objective(ss_hmvae):
    labelled, _ = ss_hmvae_kl_objectives(ss_hmvae)
    assert labelled.latex() == (
        r"\mathbb{E}_{q(a,z|x,w,y)}\left[\log p(x,w,a,z,y) - \log q(a,z|x,w,y)\right] + "
        r"\alpha \mathbb{E}_{q(a|x,w)}\left[\log q(y|a)\right] - "
        r"\beta \left(D_{KL}\left[q(a|x,w)\|q(a|x)\right] + D_{KL}\left[q(a|x,w)\|q(a|w)\right]\right)"
    )
    assert labelled.input_var == ["x", "w", "y"]


def test_ss_hmvae_kl_unlabelled_objective(ss_hmvae):
    _, unlabelled = ss_hmvae_kl_objectives(ss_hmvae)
    assert unlabelled.latex() == (
        r"\mathbb{E}_{q(a,z,y|x,w)}\left[\log p(x,w,a,z,y) - \log q(a,z,y|x,w)\right] - "
        r"\beta \left(D_{KL}\left[q(a|x,w)\|q(a|x)\right] + D_{KL}\left[q(a|x,w)\|q(a|w)\right]\right)"
    )
    assert unlabelled.input_var == ["x", "w"]


def test_numbers_division_abs_entropy_and_sum_print():
    q, p, prior = vae()
    loss = (abs(Entropy(q) - 0.5 * KL(q, prior)) / 2 + 3).sum()
    assert loss.latex() == (
        r"\sum_{x}\left[\frac{\left|{\mathcal{H}\left[q(z|x)\right] - 0.5 D_{KL}\left[q(z|x)\|p(z)\right]}\right|}{2}"
        r" + 3\right]"
    )


def test_signs_fold_into_numbers_and_coefficients():
    q, p, prior = vae()
    kl, e, tau = KL(q, prior), E(q, LogProb(p)), Parameter("tau")
    assert (kl - (-e)).latex() == r"D_{KL}\left[q(z|x)\|p(z)\right] + \mathbb{E}_{q(z|x)}\left[\log p(x|z)\right]"
    assert (kl - (-2 * e)).latex() == (r"D_{KL}\left[q(z|x)\|p(z)\right] + "
                                      r"2 \mathbb{E}_{q(z|x)}\left[\log p(x|z)\right]")
    assert str(kl - 1) == "KL[q(z|x)||p(z)] - 1"
    assert str(kl - 0.5) == "KL[q(z|x)||p(z)] - 0.5"
    assert (1 / tau * kl).latex() == r"\frac{D_{KL}\left[q(z|x)\|p(z)\right]}{\tau}"
    assert (kl - e).latex() == r"D_{KL}\left[q(z|x)\|p(z)\right] - \mathbb{E}_{q(z|x)}\left[\log p(x|z)\right]"
    assert sum([kl, e]).latex() == (kl + e).latex()  # no leading "0 +" from sum's start
    assert (-(kl - e)).latex() == (r"- (D_{KL}\left[q(z|x)\|p(z)\right] - "
                                   r"\mathbb{E}_{q(z|x)}\left[\log p(x|z)\right])")


def test_distribution_latex():
    q, p, prior = vae()
    assert q.latex() == "q(z|x)"
    assert (p * prior).latex() == "p(x,z) = p(x|z)p(z)"
    assert (p * prior).marginalize_var("z").latex() == r"p(x) = \int p(x|z)p(z) \, dz"


def test_latex_after_replace_var():
    q, p, prior = vae()
    q_a, prior_a = q.replace_var(z="a"), prior.replace_var(z="a")
    assert KL(q_a, prior_a).latex() == r"D_{KL}\left[q(a|x)\|p(a)\right]"
    x = torch.rand(3, 4)
    torch.testing.assert_close(KL(q_a, prior_a).eval({"x": x}), KL(q, prior).eval({"x": x}))  # the same networks


def test_means_over_named_data_sets(ss_hmvae):
    labelled, unlabelled = ss_hmvae_kl_objectives(ss_hmvae)
    loss = -(labelled.mean("labelled") + unlabelled.mean("unlabelled"))
    text = loss.latex()
    assert text.startswith(r"- (\mathbb{E}_{p_{labelled}(x,w,y)}\left[\mathbb{E}_{q(a,z|x,w,y)}")
    assert r"\right] + \mathbb{E}_{p_{unlabelled}(x,w)}\left[\mathbb{E}_{q(a,z,y|x,w)}" in text
    assert loss.input_var == ["labelled", "unlabelled"]
    assert KL(ss_hmvae["q_a"], ss_hmvae["q_ax"]).sum("unlabelled").latex() == (
        r"\sum_{x,w \in unlabelled}\left[D_{KL}\left[q(a|x,w)\|q(a|x)\right]\right]")
