"""pgm.visualize draws a model's graphical model from its distributions: the graph (nodes, arrows, shading,
layers) is checked without pixels, then the PNG and SVG files."""
import sys
import xml.etree.ElementTree as ElementTree

import pytest
import torch
from matplotlib.figure import Figure

from pgm.distributions import Bernoulli, Categorical, Normal, RelaxedCategorical
from pgm.visualize import draw_graphical_model, graphical_model


def net(*inputs):
    return {}


@pytest.fixture
def vae():
    return (Normal("q(z|x)", net=net), Bernoulli("p(x|z)", net=net),
            Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2]))


@pytest.fixture
def ss_hmvae():
    """SS-HMVAE (docs/papers.md section 6): the generative joint, the encoders and the classifier q(y|a)."""
    p = (Bernoulli("p(x|a)", net=net) * Bernoulli("p(w|a)", net=net) * Normal("p(a|z,y)", net=net)
         * Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2]) * Categorical("p(y)", probs=torch.ones(3) / 3))
    q_a, q_z = Normal("q(a|x,w)", net=net), Normal("q(z|a,y)", net=net)
    q_y = RelaxedCategorical("q(y|a)", net=net, temperature=0.5)
    return p, q_a, q_z, q_y


def test_vae_graph(vae):
    q, p, prior = vae
    graph = graphical_model([q, p, prior])
    assert graph.nodes == ["z", "x"]
    assert graph.edges == [("x", "z", "inference"), ("z", "x", "generative")]
    assert graph.observed == {"x"}
    assert graph.layers == {"z": 0, "x": 1}
    assert graph.factors == ["q(z|x)", "p(x|z)", "p(z)"]


def test_products_expand_to_their_factors_and_the_classifier_is_highlighted(ss_hmvae):
    p, q_a, q_z, q_y = ss_hmvae
    graph = graphical_model([p, q_a * q_z], classifier=q_y)
    assert set(graph.nodes) == {"x", "w", "a", "z", "y"}
    assert set(graph.edges) == {
        ("a", "x", "generative"), ("a", "w", "generative"), ("z", "a", "generative"), ("y", "a", "generative"),
        ("x", "a", "inference"), ("w", "a", "inference"), ("a", "z", "inference"), ("y", "z", "inference"),
        ("a", "y", "classifier")}
    assert graph.observed == {"x", "w"}
    # generative roots on top, the data at the bottom
    assert graph.layers == {"z": 0, "y": 0, "a": 1, "x": 2, "w": 2}
    assert graph.factors[-1] == "q(y|a)"


def test_a_listed_classifier_is_not_drawn_twice(ss_hmvae):
    p, q_a, q_z, q_y = ss_hmvae
    graph = graphical_model([p, q_a, q_z, q_y], classifier=q_y.replace_var(y="y"))
    assert graph.factors.count("q(y|a)") == 1
    assert ("a", "y", "classifier") in graph.edges and ("a", "y", "inference") not in graph.edges


def test_marginals_and_encoders_alone(vae):
    q, p, prior = vae
    graph = graphical_model([(p * prior).marginalize_var("z")])
    assert graph.edges == [("z", "x", "generative")] and graph.observed == {"x"}
    # only encoders: their arrows, reversed, still put the latent on top
    encoders = graphical_model([Normal("q(z|x,w)", net=net), Normal("q(z|x)", net=net)])
    assert encoders.edges == [("x", "z", "inference"), ("w", "z", "inference")]
    assert encoders.observed == {"x", "w"} and encoders.layers == {"z": 0, "x": 1, "w": 1}


def test_observed_can_be_given(vae):
    q, p, prior = vae
    assert graphical_model([q, p, prior], observed=["x", "z"]).observed == {"x", "z"}
    assert graphical_model([q, p, prior], observed="z").observed == {"z"}
    with pytest.raises(ValueError, match=r"observed=\['y'\] are not variables of the model; its variables are "
                                         r"\['z', 'x'\]"):
        graphical_model([q, p, prior], observed=["y"])


def test_positions_are_deterministic_and_centred(ss_hmvae):
    p, q_a, q_z, q_y = ss_hmvae
    positions = graphical_model([p, q_a, q_z], classifier=q_y).positions()
    assert positions == {"x": (-0.5, -2.0), "a": (0.0, -1.0), "w": (0.5, -2.0), "z": (-0.5, 0.0), "y": (0.5, 0.0)}


def test_cycles_do_not_break_the_layout():
    graph = graphical_model([Normal("p(a|b)", net=net), Normal("p(b|a)", net=net)])
    assert graph.layers == {"a": 1, "b": 0}


def test_png_and_svg_are_written(tmp_path, ss_hmvae):
    p, q_a, q_z, q_y = ss_hmvae
    figure = draw_graphical_model([p, q_a, q_z], tmp_path / "model.png", classifier=q_y, title="SS-HMVAE")
    assert isinstance(figure, Figure)
    assert (tmp_path / "model.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    draw_graphical_model([p, q_a, q_z], tmp_path / "nested" / "model.SVG", classifier=q_y)
    root = ElementTree.parse(tmp_path / "nested" / "model.SVG").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"


def test_without_a_path_nothing_is_written(tmp_path, monkeypatch, vae):
    monkeypatch.chdir(tmp_path)
    assert isinstance(draw_graphical_model(list(vae)), Figure)
    assert list(tmp_path.iterdir()) == []


def test_misuse_is_explained(tmp_path, vae):
    with pytest.raises(ValueError, match=r"needs at least one distribution, e.g. \[q, p_x, prior\]; got none"):
        draw_graphical_model([])
    with pytest.raises(ValueError, match=r"cannot save the graphical model as '.*model.jpg': give a path ending "
                                         r"in .png or .svg"):
        draw_graphical_model(list(vae), tmp_path / "model.jpg")
    with pytest.raises(TypeError, match="draw_graphical_model takes pgm distributions; got Linear"):
        draw_graphical_model([torch.nn.Linear(2, 2)])
    with pytest.raises(TypeError, match="draw_graphical_model takes pgm distributions; got str"):
        draw_graphical_model(list(vae), classifier="q(y|x)")
    assert not (tmp_path / "model.jpg").exists()


def test_drawing_without_matplotlib_is_explained(monkeypatch, vae):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if matplotlib were not installed
    with pytest.raises(ImportError, match=r"draw_graphical_model needs matplotlib: pip install matplotlib \(or "
                                          r"pgm\[examples\]\); graphical_model\(\.\.\.\) gives the nodes and edges"):
        draw_graphical_model(list(vae))
    assert graphical_model(list(vae)).nodes  # the drawing-free part still works
