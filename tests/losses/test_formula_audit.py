"""Every printed formula is the objective trained: each term's exact LaTeX (and text) beside its value, computed
again in plain torch from the formula as printed; the papers' objectives as the examples print them."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.distributions as td
from torch import nn
from torch.distributions.transforms import AffineTransform
from torch.nn import functional as F

from pgm.distributions import (Bernoulli, Categorical, Density, Deterministic, Flow, Mixture, Normal,
                               RelaxedCategorical)
from pgm.distributions.flows import TransformLayer
from pgm.losses import (E, ELBO, IWAE, KL, CrossEntropy, Entropy, Input, JensenShannon, LogMeanExp, LogProb,
                        Parameter, Term, Wasserstein, detach, exp, log, logsumexp, maximum, minimum, sqrt)

from loss_nets import Gaussian, Logits

B, X, Z, K = 5, 4, 2, 3
STANDARD = td.Independent(td.Normal(torch.zeros(Z), torch.ones(Z)), 1)


@pytest.fixture
def m():
    """A small VAE, a discrete latent b, a class y and a second modality w, with the networks kept for the
    references."""
    m = SimpleNamespace(enc=Gaussian(X, Z), enc_w=Gaussian(3, Z), dec=Logits(Z, X), enc_b=Logits(X, K),
                        dec_b=Logits(K, X), classifier=Logits(X, K))
    m.q, m.q_w = Normal("q(z|x)", net=m.enc), Normal("q(z|w)", net=m.enc_w)
    m.p = Bernoulli("p(x|z)", net=m.dec)
    m.prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[Z])
    m.q_b, m.p_b = Bernoulli("q(b|x)", net=m.enc_b), Bernoulli("p(x|b)", net=m.dec_b)
    m.q_y, m.p_y = Categorical("q(y|x)", net=m.classifier), Bernoulli("p(x|y)", net=m.dec_b)
    m.x, m.w = torch.rand(B, X).round(), torch.randn(B, 3)
    return m


def posterior(net, *inputs):
    params = net(*inputs)
    return td.Independent(td.Normal(params["loc"], params["scale"]), 1)


def bernoulli(net, *inputs):
    return td.Independent(td.Bernoulli(logits=net(*inputs)["logits"]), 1)


def check(loss, inputs, reference, latex, text=None, seed=7, **params):
    """The loss prints ``latex`` (and ``text``), and evaluates to ``reference()`` on the same random draws."""
    assert loss.latex() == latex
    if text is not None:
        assert str(loss) == text
    torch.manual_seed(seed)
    value = loss.eval(inputs, **params)
    torch.manual_seed(seed)
    torch.testing.assert_close(value, reference())


# ------------------------------------------------------------------------------------------------ the terms
def test_log_prob(m):
    z = torch.randn(B, Z)
    check(LogProb(m.p), {"x": m.x, "z": z}, lambda: bernoulli(m.dec, z).log_prob(m.x), r"\log p(x|z)",
          "log p(x|z)")


def test_every_estimator_of_e_prints_the_expectation(m):
    """Reparameterized (one draw, K draws), score function, enumeration, stratified: one formula, each value an
    estimate of it."""
    e = r"\mathbb{E}_{q(z|x)}\left[\log p(x|z)\right]"
    check(E(m.q, LogProb(m.p)), {"x": m.x}, lambda: bernoulli(m.dec, posterior(m.enc, m.x).rsample())
          .log_prob(m.x), e, "E_q(z|x)[log p(x|z)]")
    check(E(m.q, LogProb(m.p), sample_shape=4), {"x": m.x}, lambda: bernoulli(m.dec, posterior(m.enc, m.x)
          .rsample((4,))).log_prob(m.x).mean(0), e)
    check(E(m.q_b, LogProb(m.p_b), estimator="score_function"), {"x": m.x},
          lambda: bernoulli(m.dec_b, bernoulli(m.enc_b, m.x).sample()).log_prob(m.x),
          r"\mathbb{E}_{q(b|x)}\left[\log p(x|b)\right]")

    def enumerated():
        probs = torch.softmax(m.classifier(m.x)["logits"], -1)
        return sum(probs[:, y] * bernoulli(m.dec_b, torch.eye(K)[y].expand(B, K)).log_prob(m.x) for y in range(K))
    check(E(m.q_y, LogProb(m.p_y), enumerate=True), {"x": m.x}, enumerated,
          r"\mathbb{E}_{q(y|x)}\left[\log p(x|y)\right]")

    def stratified():  # one draw per component, in order
        z_x, z_w = posterior(m.enc, m.x).rsample(), posterior(m.enc_w, m.w).rsample()
        return 0.5 * STANDARD.log_prob(z_x) + 0.5 * STANDARD.log_prob(z_w)
    check(E(Mixture([m.q, m.q_w]), LogProb(m.prior)), {"x": m.x, "w": m.w}, stratified,
          r"\mathbb{E}_{q(z|x,w)}\left[\log p(z)\right]", "E_q(z|x,w)[log p(z)]")


def test_kl_prints_the_same_in_closed_form_and_by_monte_carlo(m):
    latex, text = r"D_{KL}\left[q(z|x)\|p(z)\right]", "KL[q(z|x)||p(z)]"
    check(KL(m.q, m.prior), {"x": m.x}, lambda: td.kl_divergence(posterior(m.enc, m.x), STANDARD), latex, text)

    def monte_carlo():
        q = posterior(m.enc, m.x)
        z = q.rsample()
        return q.log_prob(z) - STANDARD.log_prob(z)
    check(KL(m.q, m.prior, analytic=False), {"x": m.x}, monte_carlo, latex, text)


def test_entropy_prints_the_same_in_closed_form_and_by_monte_carlo(m):
    latex = r"\mathcal{H}\left[q(z|x)\right]"
    check(Entropy(m.q), {"x": m.x}, lambda: posterior(m.enc, m.x).entropy(), latex, "H[q(z|x)]")

    def monte_carlo():
        q = posterior(m.enc, m.x)
        return -q.log_prob(q.rsample())
    check(Entropy(m.q, analytic=False), {"x": m.x}, monte_carlo, latex, "H[q(z|x)]")


def test_cross_entropy_of_the_same_variables(m):
    def closed_form():  # -E_q[log N(z; 0, I)] = sum_d (log 2 pi + mu_d^2 + sigma_d^2) / 2
        params = m.enc(m.x)
        return (0.5 * math.log(2 * math.pi) + 0.5 * (params["loc"] ** 2 + params["scale"] ** 2)).sum(-1)
    check(CrossEntropy(m.q, m.prior), {"x": m.x}, closed_form, r"\mathcal{H}\left[q(z|x), p(z)\right]",
          "H[q(z|x), p(z)]")


def test_cross_entropy_of_other_variables_prints_the_expectation_it_computes(m):
    """No cross-entropy is taken between q(z|x) and p(x|z): it prints -E_q[log p], what it computes."""
    check(CrossEntropy(m.q, m.p), {"x": m.x}, lambda: -bernoulli(m.dec, posterior(m.enc, m.x).rsample())
          .log_prob(m.x), r"- \mathbb{E}_{q(z|x)}\left[\log p(x|z)\right]", "-E_q(z|x)[log p(x|z)]")
    loss = KL(m.q, m.prior) + CrossEntropy(m.q, m.p)
    assert loss.latex() == (KL(m.q, m.prior) - E(m.q, LogProb(m.p))).latex() == (
        r"D_{KL}\left[q(z|x)\|p(z)\right] - \mathbb{E}_{q(z|x)}\left[\log p(x|z)\right]")
    assert str(-CrossEntropy(m.q, m.p)) == "E_q(z|x)[log p(x|z)]"


def _log_weights(m, shape):
    q = posterior(m.enc, m.x)
    z = q.rsample(shape)
    log_w = bernoulli(m.dec, z).log_prob(m.x) + STANDARD.log_prob(z) - q.log_prob(z)
    return log_w.reshape(-1, B)


@pytest.mark.parametrize("shape, count", [(5, 5), ((2, 3), 6)])
def test_iwae_prints_the_bound_with_its_number_of_draws(m, shape, count):
    latex = (rf"\mathbb{{E}}_{{z_{{1:{count}}} \sim q(z|x)}}\left[\log \frac{{1}}{{{count}}}\sum_{{k=1}}^{{{count}}} "
             r"\frac{p(x,z_k)}{q(z_k|x)}\right]")
    text = f"E_{{z_{{1:{count}}} ~ q(z|x)}}[log 1/{count} sum_{{k=1}}^{{{count}}} p(x,z_k)/q(z_k|x)]"
    reference = lambda: torch.logsumexp(_log_weights(m, torch.Size(torch.tensor(shape).reshape(-1))), 0) \
        - math.log(count)  # noqa: E731
    check(IWAE(m.p * m.prior, m.q, sample_shape=shape), {"x": m.x}, reference, latex, text)


def test_iwae_of_one_draw_prints_the_elbo(m):
    check(IWAE(m.p * m.prior, m.q), {"x": m.x}, lambda: _log_weights(m, ())[0],
          r"\mathbb{E}_{q(z|x)}\left[\log \frac{p(x,z)}{q(z|x)}\right]", "E_q(z|x)[log p(x,z)/q(z|x)]")


def test_log_mean_exp_prints_its_draws_inside(m):
    f = LogProb(m.p * m.prior) - LogProb(m.q)
    check(LogMeanExp(m.q, f, sample_shape=5), {"x": m.x},
          lambda: torch.logsumexp(_log_weights(m, (5,)), 0) - math.log(5),
          r"\mathbb{E}_{z_{1:5} \sim q(z|x)}\left[\log \frac{1}{5}\sum_{k=1}^{5} e^{\log p(x,z_k) - \log q(z_k|x)}"
          r"\right]", "E_{z_{1:5} ~ q(z|x)}[log 1/5 sum_{k=1}^{5} exp(log p(x,z_k) - log q(z_k|x))]")
    check(LogMeanExp(m.q, f), {"x": m.x}, lambda: _log_weights(m, ())[0],
          r"\mathbb{E}_{q(z|x)}\left[\log p(x,z) - \log q(z|x)\right]")


def test_elbo_in_both_of_its_forms(m):
    def closed():
        q = posterior(m.enc, m.x)
        return bernoulli(m.dec, q.rsample()).log_prob(m.x) - td.kl_divergence(q, STANDARD)
    check(ELBO(m.p * m.prior, m.q), {"x": m.x}, closed,
          r"\mathbb{E}_{q(z|x)}\left[\log p(x|z)\right] - D_{KL}\left[q(z|x)\|p(z)\right]")
    density = Density("p(z)", lambda z: STANDARD.log_prob(z))  # no closed-form KL: the bound as one expectation
    check(ELBO(m.p * density, m.q), {"x": m.x}, lambda: _log_weights(m, ())[0],
          r"\mathbb{E}_{q(z|x)}\left[\log p(x,z) - \log q(z|x)\right]")


def test_functions_term_input_and_parameter(m):
    kl, inputs = KL(m.q, m.prior), {"x": m.x, "r": torch.rand(B)}
    reference = td.kl_divergence(posterior(m.enc, m.x), STANDARD).detach()
    cases = [
        (detach(kl), lambda v: v, r"\mathrm{sg}\left[D_{KL}\left[q(z|x)\|p(z)\right]\right]"),
        (log(kl), torch.log, r"\log\left(D_{KL}\left[q(z|x)\|p(z)\right]\right)"),
        (exp(-kl), lambda v: torch.exp(-v), r"\exp\left(- D_{KL}\left[q(z|x)\|p(z)\right]\right)"),
        (sqrt(kl), torch.sqrt, r"\sqrt{D_{KL}\left[q(z|x)\|p(z)\right]}"),
        (logsumexp(kl, Input("r")), lambda v: torch.logaddexp(v, inputs["r"]),
         r"\log\left(e^{D_{KL}\left[q(z|x)\|p(z)\right]} + e^{r}\right)"),
        (minimum(kl, 1.0), lambda v: v.clamp(max=1.0), r"\min\left(D_{KL}\left[q(z|x)\|p(z)\right], 1\right)"),
        (maximum(kl, Input("r")), lambda v: torch.maximum(v, inputs["r"]),
         r"\max\left(D_{KL}\left[q(z|x)\|p(z)\right], r\right)"),
        (Parameter("beta") * kl, lambda v: 0.25 * v, r"\beta D_{KL}\left[q(z|x)\|p(z)\right]"),
        (Term(lambda x: x.sum(-1), r"\sum_i x_i") - kl, lambda v: m.x.sum(-1) - v,
         r"\sum_i x_i - D_{KL}\left[q(z|x)\|p(z)\right]"),
    ]
    for loss, fn, latex in cases:
        check(loss, inputs, lambda: fn(reference), latex, beta=0.25)
    assert detach(kl).eval(inputs).grad_fn is None and kl.eval(inputs).grad_fn is not None


def test_named_data_sets_and_sums(m):
    labelled, unlabelled = {"x": m.x, "y": torch.eye(K)[torch.arange(B) % K]}, {"x": m.x[:2]}
    loss = LogProb(m.q_y).mean("labelled") - KL(m.q, m.prior).sum("unlabelled")

    def reference():
        log_q = td.OneHotCategorical(logits=m.classifier(m.x)["logits"]).log_prob(labelled["y"])
        return log_q.mean() - td.kl_divergence(posterior(m.enc, m.x[:2]), STANDARD).sum()
    check(loss, {"labelled": labelled, "unlabelled": unlabelled}, reference,
          r"\mathbb{E}_{p_{labelled}(x,y)}\left[\log q(y|x)\right] - "
          r"\sum_{x \in unlabelled}\left[D_{KL}\left[q(z|x)\|p(z)\right]\right]",
          "E_p_labelled(x,y)[log q(y|x)] - sum_x in unlabelled[KL[q(z|x)||p(z)]]")


# ------------------------------------------------------------------------------ the order of the variables
def test_every_reduction_of_a_formula_lists_its_variables_in_one_order(m):
    """In the order they first appear in the formula, each signature read from its conditions to its variables:
    x before y in q(y|x) and in q(z|x,y), so the M2 bound and its classifier term print p_data(x,y) in either
    order; and one formula never lists the same variables in two orders."""
    q_z = Normal("q(z|x,y)", net=Gaussian(X + K, Z))
    bound = E(q_z, LogProb(Bernoulli("p(x|y,z)", net=Logits(K + Z, X))) - LogProb(q_z))
    classifier = LogProb(m.q_y)
    for loss, means in (((classifier + bound).mean(), 1), ((bound + classifier).mean(), 1),
                        (classifier.mean() + bound.mean(), 2)):
        assert loss.latex().count(r"\mathbb{E}_{p_{data}(x,y)}") == means and "(y,x)" not in loss.latex()
        assert str(loss).count("E_p_data(x,y)[") == means
    r = Input("r")
    written = (r * classifier).mean("labelled") + (classifier * r).mean("other")  # alone: (r,x,y) and (x,y,r)
    assert written.latex() == (r"\mathbb{E}_{p_{labelled}(r,x,y)}\left[r \log q(y|x)\right] + "
                               r"\mathbb{E}_{p_{other}(r,x,y)}\left[\log q(y|x) r\right]")
    inputs = {"x": m.x, "y": torch.eye(K)[torch.arange(B) % K], "r": torch.rand(B)}
    check(written, {"labelled": inputs, "other": inputs}, lambda: 2 * (inputs["r"] * td.OneHotCategorical(
        logits=m.classifier(m.x)["logits"]).log_prob(inputs["y"])).mean(), written.latex())


def test_a_sum_over_the_data_inside_an_expectation_lists_the_data_only(m):
    """E_q(w)[sum_{x,y} log p(y|x,w)]: w is drawn by the expectation around the sum, not summed over."""
    q_w = Normal("q(w)", loc=torch.zeros(X), scale=torch.ones(X))
    p_y = Normal("p(y|x,w)", net=lambda x, w: {"loc": (x * w).sum(-1, keepdim=True), "scale": torch.ones(1)})
    x, y = torch.randn(1, X), torch.randn(1, 1)  # one data point: one draw of w, whether w is global or not

    def reference():
        w = td.Normal(torch.zeros(X), torch.ones(X)).rsample()
        return td.Normal((x * w).sum(-1, keepdim=True), 1.0).log_prob(y).sum()
    check(E(q_w, LogProb(p_y).sum()), {"x": x, "y": y}, reference,
          r"\mathbb{E}_{q(w)}\left[\sum_{x,y}\left[\log p(y|x,w)\right]\right]", "E_q(w)[sum_x,y[log p(y|x,w)]]")
    # over a data set of N = 100 examples (N times the batch's mean): its examples indexed by n
    check(E(q_w, LogProb(p_y).sum(size=100)), {"x": x, "y": y}, lambda: 100 * reference(),
          r"\mathbb{E}_{q(w)}\left[\sum_{n=1}^{N} \log p(y_n|x_n,w)\right]", "E_q(w)[sum_{n=1}^{N} log p(y_n|x_n,w)]")
    assert E(q_w, (LogProb(p_y) - Input("r")).sum("train", size=100)).latex() == (
        r"\mathbb{E}_{q(w)}\left[\sum_{n=1}^{N_{train}} \left[\log p(y_n|x_n,w) - r_n\right]\right]")


# --------------------------------------------------------------------------- names of several characters
def test_names_of_several_characters_are_braced_in_latex_only():
    q = Normal("q(z_top|x_obs)", net=Gaussian(X, Z))
    prior = Normal("p(z_top)", loc=0.0, scale=1.0, features_shape=[Z])
    p = Bernoulli("p(x_obs|z_top)", net=Logits(Z, X))
    x = torch.rand(B, X).round()
    check(KL(q, prior), {"x_obs": x}, lambda: td.kl_divergence(posterior(q.net, x), STANDARD),
          r"D_{KL}\left[q(z_{top}|x_{obs})\|p(z_{top})\right]", "KL[q(z_top|x_obs)||p(z_top)]")
    assert (E(q, LogProb(p)) * Input("w_ab")).mean().latex() == (
        r"\mathbb{E}_{p_{data}(x_{obs},w_{ab})}\left[\mathbb{E}_{q(z_{top}|x_{obs})}\left[\log p(x_{obs}|z_{top})"
        r"\right] w_{ab}\right]")
    assert IWAE(p * prior, q, 3).latex() == (
        r"\mathbb{E}_{z_{top,1:3} \sim q(z_{top}|x_{obs})}\left[\log \frac{1}{3}\sum_{k=1}^{3} "
        r"\frac{p(x_{obs},z_{top,k})}{q(z_{top,k}|x_{obs})}\right]")
    assert Entropy(q).latex() == r"\mathcal{H}\left[q(z_{top}|x_{obs})\right]"
    assert (p * prior).latex() == r"p(x_{obs},z_{top}) = p(x_{obs}|z_{top})p(z_{top})"
    assert (p * prior).marginalize_var("z_top").latex() == (
        r"p(x_{obs}) = \int p(x_{obs}|z_{top})p(z_{top}) \, dz_{top}")
    other = Normal("q(z_top|w_ab)", net=Gaussian(3, Z))
    assert Mixture([q, other]).latex() == (
        r"q(z_{top}|x_{obs},w_{ab}) = \frac{1}{2} q(z_{top}|x_{obs}) + \frac{1}{2} q(z_{top}|w_{ab})")
    flow = Flow(Normal("q_0(z_top|x_obs)", net=Gaussian(X, Z)), [TransformLayer(AffineTransform(0.0, 2.0))])
    assert flow.latex() == (r"\log q_K(z_{top}|x_{obs}) = \log q_0(z_{top,0}|x_{obs}) - \sum_{k=1}^{K} \log "
                            r"\left|\det \frac{\partial z_{top,k}}{\partial z_{top,k-1}}\right|")


def test_adversarial_divergences_print_their_terms_with_the_data_as_reductions_do():
    generator = Deterministic("p(x_obs|z)", net=lambda z: {"loc": 2 * z})
    p = (generator * Normal("p(z)", loc=0.0, scale=1.0, features_shape=[Z])).marginalize_var("z")
    critic, data = nn.Linear(Z, 1), torch.randn(B, Z)

    def minimax():  # E_data[log sigmoid(D(x))] + E_p[log(1 - sigmoid(D(x)))], x = 2 z
        fake = 2 * torch.randn(B, Z)
        return F.logsigmoid(critic(data)).mean() + F.logsigmoid(-critic(fake)).mean()
    check(JensenShannon(p, discriminator=critic), {"x_obs": data}, minimax,
          r"\max_{D} \mathbb{E}_{p_{data}(x_{obs})}\left[\log D(x_{obs})\right] + "
          r"\mathbb{E}_{p(x_{obs})}\left[\log\left(1 - D(x_{obs})\right)\right]",
          "max_D E_p_data(x_obs)[log D(x_obs)] + E_p(x_obs)[log(1 - D(x_obs))]")
    assert Wasserstein(p, discriminator=critic).discriminator_loss.latex().endswith(
        r"10 \mathbb{E}_{\hat{x_{obs}}}\left[\left(\left\lVert \nabla_{\hat{x_{obs}}} D(\hat{x_{obs}}) "
        r"\right\rVert_{2} - 1\right)^{2}\right]")


def test_a_flow_prints_its_signature_and_its_change_of_variables(m):
    flow = Flow(Normal("q_0(z|x)", net=m.enc), [TransformLayer(AffineTransform(0.0, 2.0))])

    def reference():  # log q_K(z_K) = log q_0(z_0) - log|det dz_1/dz_0|, z_1 = 2 z_0
        q = posterior(m.enc, m.x)
        return q.log_prob(q.rsample()) - Z * math.log(2.0)
    check(E(flow, LogProb(flow)), {"x": m.x}, reference, r"\mathbb{E}_{q_K(z|x)}\left[\log q_K(z|x)\right]",
          "E_q_K(z|x)[log q_K(z|x)]")
    assert KL(flow, m.prior).latex() == r"D_{KL}\left[q_K(z|x)\|p(z)\right]"


# -------------------------------------------------------------------- the papers' objectives, as printed
def _papers():
    def net(*values):
        return {}

    q, p = Normal("q(z|x)", net=net), Bernoulli("p(x|z)", net=net)
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[Z])
    q_xw, p_w = Normal("q(z|x,w)", net=net), Bernoulli("p(w|z)", net=net)
    q_xy, p_xyz = Normal("q(z|x,y)", net=net), Bernoulli("p(x|z,y)", net=net)
    q_y, p_zy = Categorical("q(y|x)", net=net), Normal("p(z|y)", net=net)
    p_y = Categorical("p(y)", probs=torch.full((2,), 0.5))
    alpha, lam = Parameter("alpha"), Parameter("lambda")
    mmd = Term(lambda z_q, z_p: z_q.sum(-1), r"\mathrm{MMD}\left[q(z)\|p(z)\right]", inputs={"z_q": q, "z_p": prior})
    # M2 (examples/m2.py): the bound L(x,y) on the labelled data, E_q(y|x)[L(x,y)] + H[q(y|x)] on the unlabelled
    p_m2, q_m2 = Bernoulli("p(x|y,z)", net=net), Normal("q(z|x,y)", net=net)
    q_y_m2 = RelaxedCategorical("q(y|x)", net=net, temperature=0.5)
    bound = E(q_m2, LogProb(p_m2) + LogProb(p_y) + LogProb(prior) - LogProb(q_m2))
    m2 = -((bound + alpha * LogProb(q_y_m2)).mean("labelled") + (E(q_y_m2, bound) + Entropy(q_y_m2)).mean("unlabelled"))
    m2_bound = r"\mathbb{E}_{q(z|x,y)}\left[\log p(x|y,z) + \log p(y) + \log p(z) - \log q(z|x,y)\right]"
    return [
        ("VAE", (KL(q, prior) - E(q, LogProb(p))).mean(),
         r"\mathbb{E}_{p_{data}(x)}\left[D_{KL}\left[q(z|x)\|p(z)\right] - \mathbb{E}_{q(z|x)}\left[\log p(x|z)\right]"
         r"\right]"),
        ("CVAE", -KL(q_xy, prior) + E(q_xy, LogProb(p_xyz)),
         r"- D_{KL}\left[q(z|x,y)\|p(z)\right] + \mathbb{E}_{q(z|x,y)}\left[\log p(x|z,y)\right]"),
        ("JMVAE-kl", -KL(q_xw, prior) + E(q_xw, LogProb(p)) + E(q_xw, LogProb(p_w))
         - alpha * (KL(q_xw, q) + KL(q_xw, Normal("q(z|w)", net=net))),
         r"- D_{KL}\left[q(z|x,w)\|p(z)\right] + \mathbb{E}_{q(z|x,w)}\left[\log p(x|z)\right] + "
         r"\mathbb{E}_{q(z|x,w)}\left[\log p(w|z)\right] - \alpha \left(D_{KL}\left[q(z|x,w)\|q(z|x)\right] + "
         r"D_{KL}\left[q(z|x,w)\|q(z|w)\right]\right)"),
        ("MMVAE", E(Mixture([q, Normal("q(z|w)", net=net)]),
                    LogProb(p) + LogProb(p_w) + LogProb(prior) - LogProb(Mixture([q, Normal("q(z|w)", net=net)]))),
         r"\mathbb{E}_{q(z|x,w)}\left[\log p(x|z) + \log p(w|z) + \log p(z) - \log q(z|x,w)\right]"),
        ("GMVAE", E(q_y, E(q_xy, LogProb(p)) - KL(q_xy, p_zy), enumerate=True) - KL(q_y, p_y),
         r"\mathbb{E}_{q(y|x)}\left[\mathbb{E}_{q(z|x,y)}\left[\log p(x|z)\right] - D_{KL}\left[q(z|x,y)\|p(z|y)\right]"
         r"\right] - D_{KL}\left[q(y|x)\|p(y)\right]"),
        ("MMD-VAE", E(q, LogProb(p)) - lam * mmd,
         r"\mathbb{E}_{q(z|x)}\left[\log p(x|z)\right] - \lambda \mathrm{MMD}\left[q(z)\|p(z)\right]"),
        ("M2", m2, r"- (\mathbb{E}_{p_{labelled}(x,y)}\left[" + m2_bound + r" + \alpha \log q(y|x)\right] + "
         r"\mathbb{E}_{p_{unlabelled}(x)}\left[\mathbb{E}_{q(y|x)}\left[" + m2_bound + r"\right] + "
         r"\mathcal{H}\left[q(y|x)\right]\right])"),
    ]


@pytest.mark.parametrize("name", ["VAE", "CVAE", "JMVAE-kl", "MMVAE", "GMVAE", "MMD-VAE", "M2"])
def test_the_papers_objectives_print_as_the_examples_print_them(name):
    loss, latex = {case[0]: case[1:] for case in _papers()}[name]
    assert loss.latex() == latex
