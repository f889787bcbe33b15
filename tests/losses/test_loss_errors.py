"""Every misuse of a loss gets a message that names what was wrong and how to fix it."""
import pytest
import torch

from pgm.distributions import Bernoulli, Categorical, Deterministic, Dirichlet, Normal, RelaxedCategorical
from pgm.losses import E, IWAE, KL, Entropy, LogProb, Parameter

from loss_nets import Gaussian, Logits


@pytest.fixture
def vae():
    q = Normal("q(z|x,w)", net=Gaussian(7, 2))
    p = Bernoulli("p(x|z)", net=Logits(2, 4))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    return q, p, prior


def test_missing_input_names_it_and_its_user(vae):
    q, p, prior = vae
    loss = (KL(q, prior) - E(q, LogProb(p))).mean()
    with pytest.raises(KeyError, match=r"needs input `w` \(`w` is used by q\(z\|x,w\)\); got \['x'\]\. "
                                       r"Pass every input it needs: loss.eval\(\{'x': \.\.\., 'w': \.\.\.\}\)"):
        loss.eval({"x": torch.rand(3, 4)})


def test_missing_parameter_value(vae):
    q, p, prior = vae
    loss = (Parameter("beta") * KL(q, prior)).mean()
    with pytest.raises(KeyError, match=r"needs the value of Parameter 'beta'; pass it as a keyword: "
                                       r"loss.eval\(inputs, beta=\.\.\.\)"):
        loss.eval({"x": torch.rand(3, 4), "w": torch.rand(3, 3)})


def test_expectation_over_a_family_without_reparameterization():
    p = Bernoulli("p(b|x)", net=Logits(4, 2))
    assert E(p, LogProb(p)).estimator == "score_function"  # the default where no reparameterization exists
    with pytest.raises(ValueError, match=r"E over p\(b\|x\): Bernoulli has no reparameterized sampler.*"
                                         r"estimator='score_function'.*RelaxedBernoulli"):
        E(p, LogProb(p), estimator="reparameterized")


def test_a_mixture_refusing_the_reparameterized_estimator_names_its_own_default():
    from pgm.distributions import Mixture
    mixture = Mixture([Normal("q(z|x)", net=Gaussian(2, 2)), Normal("q(z|w)", net=Gaussian(2, 2))])
    with pytest.raises(ValueError, match=r"^E over q\(z\|x,w\): Mixture has no reparameterized sampler, so no "
                                         r"gradient would flow through the sample; use estimator='stratified' "
                                         r"\(the default for it\)"):
        E(mixture, LogProb(mixture), estimator="reparameterized")


def test_a_missing_data_set_lists_the_data_sets_given():
    p = Normal("p(x)", loc=0.0, scale=1.0, features_shape=[2])
    loss = LogProb(p).mean("labelled") + LogProb(p).mean("unlabelled")
    with pytest.raises(KeyError, match=r"needs input `unlabelled` .*; got \['labelled'\]\."):
        loss.eval({"labelled": {"x": torch.randn(3, 2)}})


def test_the_score_function_refuses_a_relaxed_family_scored_as_its_discrete_one():
    q = RelaxedCategorical("q(y|x)", net=Logits(4, 3), temperature=0.5)
    with pytest.raises(ValueError, match=r"^E over q\(y\|x\): RelaxedCategorical scores a draw with the "
                                         r"log-probability of the discrete family it stands for.*biased; use the "
                                         r"reparameterized estimator \(its default\), RelaxedCategorical\(\.\.\., "
                                         r"density='concrete'\)"):
        E(q, LogProb(q), estimator="score_function")
    concrete = RelaxedCategorical("q(y|x)", net=Logits(4, 3), temperature=0.5, density="concrete")
    assert E(concrete, LogProb(concrete), estimator="score_function").estimator == "score_function"


def test_enumeration_takes_no_sample_shape():
    q = Categorical("q(y|x)", net=Logits(4, 3))
    with pytest.raises(ValueError, match=r"^E over q\(y\|x\): enumerate=True sums over every value exactly, so it "
                                         r"draws no samples; leave sample_shape=5 out"):
        E(q, LogProb(q), enumerate=True, sample_shape=5)


def test_enumeration_needs_a_categorical(vae):
    q, p, _ = vae
    with pytest.raises(ValueError, match=r"E over q\(z\|x,w\): enumerate=True sums over every value of a discrete variable; Normal has "
                                         r"no finite support"):
        E(q, LogProb(p), enumerate=True)


def test_kl_without_closed_form_says_how_to_estimate_it():
    q = RelaxedCategorical("q(y|x)", net=Logits(4, 3))
    p = Dirichlet("p(y)", concentration=torch.ones(3))
    with pytest.raises(ValueError, match=r"KL\[q\(y\|x\)\|\|p\(y\)\]: no closed form for RelaxedCategorical \|\| "
                                         r"Dirichlet; pass analytic=False"):
        KL(q, p, analytic=True)
    d = Deterministic("q(z|x)", net=lambda x: {"loc": x})
    with pytest.raises(ValueError, match="no closed form for Deterministic"):
        KL(d, Normal("p(z)", loc=0.0, scale=1.0, features_shape=[4]))


def test_kl_of_different_variables(vae):
    q, p, _ = vae
    with pytest.raises(ValueError, match=r"compares distributions of different variables \(\['z'\] and \['x'\]\)"):
        KL(q, p)


def test_entropy_without_closed_form():
    d = Deterministic("q(z|x)", net=lambda x: {"loc": x})
    with pytest.raises(ValueError, match=r"H\[q\(z\|x\)\]: Deterministic has no closed-form entropy; pass analytic=False"):
        Entropy(d).eval({"x": torch.rand(2, 3)})


def test_combining_with_something_that_is_not_a_loss(vae):
    q, p, prior = vae
    with pytest.raises(TypeError, match="combined with numbers, Parameters and other losses; got str"):
        KL(q, prior) + "x"
    with pytest.raises(TypeError, match="LogProb takes pgm distributions; got Linear"):
        LogProb(torch.nn.Linear(2, 2))


def test_bad_inputs(vae):
    q, p, prior = vae
    loss = KL(q, prior).mean()
    with pytest.raises(TypeError, match=r"inputs must be a dict that maps variable names to tensors, e\.g\. \{'x': x\}; got Tensor"):
        loss.eval(torch.rand(2, 4))
    with pytest.raises(TypeError, match=r"input `x` must be a torch.Tensor; got list"):
        loss.eval({"x": [1.0], "w": torch.rand(1, 3)})


def test_bad_parameter_name_and_sample_shape(vae):
    q, p, _ = vae
    with pytest.raises(ValueError, match="a Parameter name must be an identifier"):
        Parameter("two words")
    with pytest.raises(ValueError, match="sample_shape must be at least 1; got 0"):
        E(q, LogProb(p), sample_shape=0)


def test_iwae_needs_a_joint_that_uses_the_latents(vae):
    q, p, prior = vae
    with pytest.raises(ValueError, match=r"IWAE: q\(z\|x,w\) generates \['z'\], which p\(x\|a\) does not use"):
        IWAE(p.replace_var(z="a"), q)
    with pytest.raises(ValueError, match=r"^IWAE: p must be the joint over the data and the latents q\(z\|x,w\) "
                                         r"generates; p\(x\|z\) only conditions on \['z'\], so the weights p/q would "
                                         r"miss their prior\. Multiply it in: IWAE\(p \* prior, q, K\)\.$"):
        IWAE(p, q)


def test_kl_analytic_takes_none_true_or_false(vae):
    q, _, prior = vae
    q = q.replace_var(z="z")
    with pytest.raises(ValueError, match=r"^KL\[q\(z\|x,w\)\|\|p\(z\)\]: analytic must be None \(closed form where "
                                         r"there is one, else Monte Carlo\), True or False; got 'yes'\.$"):
        KL(q, prior, analytic="yes")


def test_kl_between_event_shapes_that_differ_names_both_and_the_fix():
    q = Normal("q(z|x)", net=Gaussian(4, 6))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[8])
    x = {"x": torch.rand(3, 4)}
    with pytest.raises(ValueError, match=r"^KL\[q\(z\|x\)\|\|p\(z\)\]: q\(z\|x\) gives z of event shape \(6,\) but "
                                         r"p\(z\) has event shape \(8,\); give both the same event shape \(the size "
                                         r"of q\(z\|x\)'s network output, or p\(z\)'s features_shape=\[\.\.\.\]"):
        KL(q, prior).mean().eval(x)
    with pytest.raises(ValueError, match=r"^KL\[q\(z\|x\)\|\|p\(z\)\]: p\(z\) scores `z` with event shape \(8,\); "
                                         r"got a tensor of shape \(3, 6\)\. `z` was drawn by q\(z\|x\), of event "
                                         r"shape \(6,\): give both the same event shape"):
        KL(q, prior, analytic=False).mean().eval(x)
    with pytest.raises(ValueError, match=r"^p\(z\) scores `z` .*`z` was drawn by q\(z\|x\), of event shape \(6,\)"):
        E(q, LogProb(prior)).mean().eval(x)


def test_a_misspelled_conditioning_variable_suggests_the_drawn_one():
    q = Normal("q(z|x)", net=Gaussian(4, 2))
    p = Bernoulli("p(x|zz)", net=Logits(2, 4))
    with pytest.raises(KeyError, match=r"needs input `zz` \(`zz` is used by p\(x\|zz\)\); got \['x'\]\. Did you "
                                       r"mean `z` \(drawn by q\(z\|x\)\) for `zz`\? Pass every input it needs"):
        E(q, LogProb(p)).mean().eval({"x": torch.rand(3, 4)})


def test_an_input_with_an_event_names_the_term_and_the_fix():
    from pgm.losses import Input
    q = Normal("q(h|x)", net=lambda x: {"loc": torch.zeros(len(x), 4, 3), "scale": torch.ones(len(x), 4, 3)})
    with pytest.raises(ValueError, match=r"^Input\('h'\): `h` has event shape \(4, 3\) after its 1 leading dim\(s\) "
                                         r"\(shape \(5, 4, 3\)\); an Input is one number per example, shape "
                                         r"\(batch,\)\. Reduce its event in a term of your own: Term\(lambda h: "
                                         r"h\.sum\(\(-2, -1\)\), r'\\sum h'\)"):
        E(q, Input("h")).mean().eval({"x": torch.rand(5, 4)})
