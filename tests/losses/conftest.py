import pytest
import torch

from pgm.distributions import Categorical, Normal, RelaxedCategorical

from loss_nets import Gaussian, Logits


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _tiny_networks(one_thread):
    """Every network here is tiny: run it on one thread (see tests/conftest.py)."""


@pytest.fixture
def compiled_graphs(monkeypatch):
    """The graphs Model(compile=...) compiles from then on, with the aot_eager backend (Dynamo and AOTAutograd, no
    slow code generation): a list, empty if the step fell back to eager."""
    from torch._dynamo.backends.registry import lookup_backend

    from pgm.models import _compile

    graphs = []

    def backend(graph, example_inputs):
        graphs.append(graph)
        return lookup_backend("aot_eager")(graph, example_inputs)

    monkeypatch.setattr(_compile, "BACKEND", backend)
    return graphs


@pytest.fixture
def ss_hmvae():
    """The SS-HMVAE-kl distributions (docs/papers.md sections 6-7) with tiny linear networks."""
    from pgm.distributions import Bernoulli
    dx, dw, da, dz, k = 6, 5, 4, 3, 3
    d = dict(
        p_x=Bernoulli("p(x|a)", net=Logits(da, dx)),
        p_w=Bernoulli("p(w|a)", net=Logits(da, dw)),
        p_a=Normal("p(a|z,y)", net=Gaussian(dz + k, da)),
        p_z=Normal("p(z)", loc=0.0, scale=1.0, features_shape=[dz]),
        p_y=Categorical("p(y)", probs=torch.full((k,), 1.0 / k)),
        q_a=Normal("q(a|x,w)", net=Gaussian(dx + dw, da)),
        q_z=Normal("q(z|a,y)", net=Gaussian(da + k, dz)),
        q_y=RelaxedCategorical("q(y|a)", net=Logits(da, k), temperature=0.5),
        q_ax=Normal("q(a|x)", net=Gaussian(dx, da)),
        q_aw=Normal("q(a|w)", net=Gaussian(dw, da)),
    )
    d["sizes"] = dict(x=dx, w=dw, a=da, z=dz, y=k)
    return d
