"""The posterior of a summed-out categorical variable as a distribution: Bayes' rule usable in formulas (EM)."""
import pytest
import torch
from torch import nn

from pgm.distributions import Bernoulli, Categorical, Normal
from pgm.losses import E, LogProb


class Components(nn.Module):
    def __init__(self):
        super().__init__()
        self.loc = nn.Parameter(torch.tensor([[-1.0, 0.0], [1.5, 0.5], [0.0, 2.0]]))
        self.log_scale = nn.Parameter(torch.tensor([[0.0, -0.2], [0.3, 0.1], [-0.1, 0.0]]))

    def forward(self, z):
        return {"loc": z @ self.loc, "scale": (z @ self.log_scale).exp()}


def mixture():
    p_x = Normal("p(x|z)", net=Components())
    p_z = Categorical("p(z)", logits=nn.Parameter(torch.tensor([0.2, -0.3, 0.1])))
    return p_x, p_z, (p_x * p_z).marginalize_var("z")


def test_the_posterior_is_bayes_rule_and_makes_the_bound_tight():
    p_x, p_z, p = mixture()
    post = p.posterior_distribution()
    x = torch.randn(6, 2)
    assert post.prob_text == "p(z|x)"
    # Bayes' rule by hand with torch.distributions
    comps = p_x.net
    log_joint = (torch.distributions.Normal(comps.loc, comps.log_scale.exp()).log_prob(x.unsqueeze(1)).sum(-1)
                 + torch.log_softmax(p_z.logits, -1))  # (6, 3)
    torch.testing.assert_close(post.get_params({"x": x})["probs"], torch.softmax(log_joint, -1))
    # at the exact posterior the ELBO is log p(x): E_{p(z|x)}[log p(x,z) - log p(z|x)] = log p(x)
    bound = E(post, LogProb(p_x * p_z) - LogProb(post), enumerate=True)
    torch.testing.assert_close(bound.eval({"x": x}), torch.logsumexp(log_joint, -1))


def test_em_s_objective_holds_the_responsibilities_fixed():
    p_x, p_z, p = mixture()
    post = p.posterior_distribution(detach=True)
    x = torch.randn(8, 2)
    q_function = E(post, LogProb(p_x * p_z), enumerate=True).mean()
    q_function.eval({"x": x}).backward()
    got = [t.grad.clone() for t in (p_x.net.loc, p_x.net.log_scale, p_z.logits)]
    # by hand: the responsibilities r computed once and detached, the M-step's Q = mean_n sum_k r_nk log p(x_n, k)
    loc, log_scale, logits = (t.detach().clone().requires_grad_() for t in (p_x.net.loc, p_x.net.log_scale,
                                                                                    p_z.logits))
    log_joint = (torch.distributions.Normal(loc, log_scale.exp()).log_prob(x.unsqueeze(1)).sum(-1)
                 + torch.log_softmax(logits, -1))
    responsibilities = torch.softmax(log_joint, -1).detach()
    (responsibilities * log_joint).sum(-1).mean().backward()
    for a, b in zip(got, (loc.grad, log_scale.grad, logits.grad)):
        torch.testing.assert_close(a, b)
    # without detach the gradient also flows through the responsibilities: another gradient
    p_z.zero_grad()
    E(p.posterior_distribution(), LogProb(p_x * p_z), enumerate=True).mean().eval({"x": x}).backward()
    assert not torch.allclose(p_z.logits.grad, got[2])


def test_only_one_categorical_variable_has_a_posterior_distribution():
    p_x = Normal("p(x|b)", net=lambda b: {"loc": b, "scale": torch.ones_like(b)})
    p_b = Bernoulli("p(b)", probs=torch.full((2,), 0.5))
    with pytest.raises(ValueError, match=r"p\(x\)\.posterior_distribution: the posterior of one summed-out "
                                         r"Categorical variable; this marginal sums out \['b'\] \(Bernoulli\)"):
        (p_x * p_b).marginalize_var("b").posterior_distribution()
