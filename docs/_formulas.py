"""Every formula pgm prints, made from the library at the time of the call: the docs' formula gallery shows them
(``docs/_gallery.py``) and ``tests/test_latex_render.py`` renders each with KaTeX.

Two sources:

* :func:`term_table`: one line of Python per kind of term (each estimator of ``E``, ``KL`` closed form and
  Monte Carlo, ``Sum`` sampled and marginalized, the adversarial divergences, the functions, ...), evaluated on
  the small distributions of :data:`SETUP`, beside the LaTeX it prints.
* :func:`example_objectives`: every example script run at tiny sizes (one epoch of a few small batches), with the
  LaTeX of each objective it prints or saves, beside the lines of the script that build it.
"""
from __future__ import annotations

import ast
import contextlib
import importlib
import io
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# Tiny networks on closures: the table needs the formulas, and pgm needs the networks only to evaluate them.
SETUP = '''\
import torch
from torch import nn
from pgm.distributions import (Bernoulli, Categorical, Deterministic, Density, Flow, Mixture, Normal,
                               ProductOfNormal, RelaxedCategorical)
from pgm.distributions.flows import Planar
from pgm.losses import (E, ELBO, IWAE, KL, AdversarialKL, CrossEntropy, Entropy, Input, JensenShannon, LogMeanExp,
                        LogProb, MovingAverageBaseline, Parameter, Sum, Term, Var, Wasserstein, detach, dot, exp,
                        log, logsumexp, maximum, minimum, norm, sqrt, squared_norm)

def gaussian(inputs, size):
    layer = nn.Linear(inputs, 2 * size)
    return lambda *values: dict(zip(("loc", "scale"), layer(torch.cat(values, -1)).chunk(2, -1)))

def logits(inputs, size):
    layer = nn.Linear(inputs, size)
    return lambda *values: {"logits": layer(torch.cat(values, -1))}

q = Normal("q(z|x)", net=gaussian(6, 2))
q_w = Normal("q(z|w)", net=gaussian(6, 2))
p = Bernoulli("p(x|z)", net=logits(2, 6))
prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
q_b = Bernoulli("q(b|x)", net=logits(6, 3))
p_b = Bernoulli("p(x|b)", net=logits(3, 6))
prior_b = Bernoulli("p(b)", probs=0.5, features_shape=[3])
q_y = Categorical("q(y|x)", net=logits(6, 4))
relaxed = RelaxedCategorical("q(y|x)", net=logits(6, 4), temperature=0.5)
q_step = Normal("q(z|x,z_prev)", net=gaussian(8, 2))
transition = Normal("p(z|z_prev)", net=gaussian(2, 2))
emission = Categorical("p(x|y)", net=logits(4, 6))
chain = Categorical("p(y|y_prev)", net=logits(4, 4))
D = nn.Linear(6, 1)
T = nn.Linear(8, 1)
generator = Deterministic("p(x|z)", net=lambda z: {"loc": z @ torch.ones(2, 6)})
p_x = (generator * prior).marginalize_var("z")
'''

# (group, one line of Python): each line is an expression of SETUP's names whose value prints LaTeX.
TERMS = [
    ("Log-densities and expectations", 'LogProb(p)'),
    ("Log-densities and expectations", 'LogProb(p * prior)'),
    ("Log-densities and expectations", 'E(q, LogProb(p))'),
    ("Log-densities and expectations", 'E(q, LogProb(p), sample_shape=10)'),
    ("Log-densities and expectations", 'E(q_b, LogProb(p_b), estimator="score_function")'),
    ("Log-densities and expectations", 'E(q_b, LogProb(p_b), baseline="moving_average")'),
    ("Log-densities and expectations", 'E(q_b, LogProb(p_b), baseline=MovingAverageBaseline(0.9))'),
    ("Log-densities and expectations", 'E(q_b, LogProb(p_b), enumerate=True)'),
    ("Log-densities and expectations", 'E(Mixture([q, q_w]), LogProb(p), estimator="stratified")'),
    ("Log-densities and expectations", 'E(relaxed, LogProb(emission))'),
    ("Divergences and entropies", 'KL(q, prior)'),
    ("Divergences and entropies", 'KL(q, prior, analytic=False, sample_shape=5)'),
    ("Divergences and entropies", 'KL(q_b, prior_b)'),
    ("Divergences and entropies", 'Entropy(q)'),
    ("Divergences and entropies", 'Entropy(q, analytic=False)'),
    ("Divergences and entropies", 'CrossEntropy(q, prior)'),
    ("Divergences and entropies", 'CrossEntropy(q, q_w)'),
    ("Divergences and entropies", 'CrossEntropy(q_y, Categorical("p(y)", probs=0.25, features_shape=[4]))'),
    ("Divergences and entropies", 'CrossEntropy(q, p)'),
    ("Bounds", 'ELBO(p * prior, q)'),
    ("Bounds", 'ELBO(p_b * prior_b, q_b, enumerate=True)'),
    ("Bounds", 'IWAE(p * prior, q, sample_shape=16)'),
    ("Bounds", 'IWAE(p_b * prior_b, q_b, sample_shape=8)'),
    ("Bounds", 'LogMeanExp(q, LogProb(p * prior) - LogProb(q), 16)'),
    ("Bounds", '(KL(q, prior) - E(q, LogProb(p))).mean()'),
    ("Bounds", 'Parameter("beta") * KL(q, prior) - E(q, LogProb(p))'),
    ("Bounds", '-(E(q, LogProb(p)).mean("labelled") + E(q_w, LogProb(p)).mean("unlabelled"))'),
    ("Bounds", 'E(q, LogProb(p)).sum("unlabelled")'),
    ("Sequences", 'Sum(E(q_step, LogProb(p)) - KL(q_step, transition), series=["x"], carry={"z_prev": "z"}, '
                  'initial={"z_prev": torch.zeros(2)})'),
    ("Sequences", 'Sum(LogProb(emission * chain), series=["x"], carry={"y_prev": "y"}, '
                  'initial={"y_prev": torch.zeros(4)}, marginalize="y")'),
    ("Distributions", 'p * prior'),
    ("Distributions", '(p * prior).marginalize_var("z")'),
    ("Distributions", 'Mixture([q, q_w])'),
    ("Distributions", 'Mixture.at(q, x=torch.zeros(5, 6))'),
    ("Distributions", 'ProductOfNormal([q, q_w])'),
    ("Distributions", 'Flow(q, [Planar(2) for _ in range(3)])'),
    ("Distributions", 'Density("p(z)", lambda z: -(z.norm(dim=-1) - 2).pow(2))'),
    ("Adversarial divergences", 'JensenShannon(p_x, discriminator=D)'),
    ("Adversarial divergences", 'JensenShannon(p_x, discriminator=D).discriminator_loss'),
    ("Adversarial divergences", 'JensenShannon(p_x, discriminator=D, non_saturating=True)'),
    ("Adversarial divergences", 'Wasserstein(p_x, discriminator=D, gradient_penalty=10)'),
    ("Adversarial divergences", 'Wasserstein(p_x, discriminator=D, gradient_penalty=10).discriminator_loss'),
    ("Adversarial divergences", 'AdversarialKL(q, prior, discriminator=T)'),
    ("Adversarial divergences", 'AdversarialKL(q, prior, discriminator=T).discriminator_loss'),
    ("Terms and functions", 'Term(lambda z: z.pow(2).sum(-1), r"\\lVert z \\rVert^2", inputs={"z": q})'),
    ("Terms and functions", 'Input("w") * LogProb(p)'),
    ("Terms and functions", 'detach(KL(q, prior))'),
    ("Terms and functions", 'log(Entropy(q))'),
    ("Terms and functions", 'exp(-KL(q, prior))'),
    ("Terms and functions", 'sqrt(Entropy(q))'),
    ("Terms and functions", 'abs(KL(q, prior) - KL(q_w, prior))'),
    ("Terms and functions", 'KL(q, prior) / 2'),
    ("Terms and functions", 'logsumexp(LogProb(q), LogProb(q_w))'),
    ("Terms and functions", 'minimum(KL(q, prior), Parameter("C"))'),
    ("Terms and functions", 'maximum(KL(q, prior), Parameter("lambda"))'),
    ("Terms and functions", 'Parameter("alpha")'),
    ("Variables", 'squared_norm(detach(Var("z_e")) - Var("e"))'),
    ("Variables", 'Parameter("beta") * squared_norm(Var("z_e") - detach(Var("e")))'),
    ("Variables", 'norm(2 * Var("z") - Var("x") / 4)'),
    ("Variables", 'dot(Var("z"), -Var("mu"))'),
]


def term_table():
    """(group, line of Python, its LaTeX) for each line of :data:`TERMS`, evaluated on :data:`SETUP`."""
    names = {}
    exec(compile(SETUP, "docs/_formulas.py (SETUP)", "exec"), names)
    return [(group, line, eval(compile(line, "docs/_formulas.py (TERMS)", "eval"), names).latex())
            for group, line in TERMS]


# The smallest runs of each script (its options mirror its test's tiny sizes); an id per variant the objective
# of which differs. A script missing here is a failure of tests/test_latex_render.py.
_IMAGES = ["--epochs", "1", "--hidden", "16", "--batch-size", "64", "--latent", "4", "--eval-every", "1"]
_IW = ["--iw-samples", "8"]
_SEMI_SUPERVISED = ["--epochs", "1", "--hidden", "16", "--batch-size", "64", "--labels", "20", "--eval-every", "1"]
_SEQUENCES = ["--epochs", "1", "--hidden", "16", "--rnn", "8", "--latent", "3", "--batch-size", "16", "--sequences",
              "40", "--steps", "6", "--size", "6", "--eval-every", "1"]
_HMM = ["--states", "3", "--symbols", "6", "--steps", "8", "--sequences", "200", "--epochs", "1", "--batch-size",
        "20", "--hidden", "16", "--eval-every", "1"]
_GAN = ["--epochs", "1", "--hidden", "16", "--latent", "4", "--data", "ring"]
EXAMPLE_RUNS = {
    "vae": ("vae", _IMAGES + _IW),
    "vae --prior vamp": ("vae", _IMAGES + _IW + ["--prior", "vamp", "--pseudo-inputs", "20"]),
    "mvae": ("mvae", _IMAGES + _IW),
    "jmvae": ("jmvae", _IMAGES + _IW),
    "jmvae_kl": ("jmvae_kl", _IMAGES + _IW),
    "mmvae": ("mmvae", _IMAGES + _IW),
    "cvae": ("cvae", _IMAGES + _IW),
    "m2": ("m2", _SEMI_SUPERVISED),
    "m2 --enumerate": ("m2", _SEMI_SUPERVISED + ["--enumerate"]),
    "ss_mvae": ("ss_mvae", _SEMI_SUPERVISED),
    "ss_hmvae": ("ss_hmvae", _SEMI_SUPERVISED + ["--iterations", "2"]),
    "ss_hmvae_kl": ("ss_hmvae_kl", _SEMI_SUPERVISED),
    "gmvae": ("gmvae", ["--epochs", "1", "--hidden", "32", "--latent", "4", "--batch-size", "128", "--eval-every",
                        "1"]),
    "discrete_vae": ("discrete_vae", _IMAGES + ["--repeats", "2"]),
    "flow_vae": ("flow_vae", _IMAGES + ["--iw-samples", "16", "--layers", "0,2"]),
    "real_nvp": ("real_nvp", ["--epochs", "1", "--hidden", "8", "--batch-size", "64", "--points", "600",
                              "--couplings", "2", "--eval-every", "1"]),
    "dmm": ("dmm", _SEQUENCES),
    "vrnn": ("vrnn", _SEQUENCES),
    "hmm": ("hmm", _HMM),
    "hmm --estimator exact": ("hmm", _HMM + ["--estimator", "exact"]),
    "mmd_vae": ("mmd_vae", _IMAGES),
    "vq_vae": ("vq_vae", ["--epochs", "1", "--hidden", "16", "--batch-size", "64", "--codes", "8", "--positions", "2",
                          "--code-dim", "3", "--eval-every", "1"]),
    "prodlda": ("prodlda", ["--epochs", "1", "--documents", "100", "--vocabulary", "20", "--topics", "2", "--hidden",
                            "8", "--batch-size", "50", "--eval-every", "1"]),
    "bayesian_regression": ("bayesian_regression", ["--epochs", "2", "--points", "100", "--hidden", "16",
                                                    "--batch-size", "50", "--eval-every", "1"]),
    "beta_tcvae": ("beta_tcvae", _IMAGES),
    "bayes_by_backprop": ("bayes_by_backprop", ["--points", "100", "--hidden", "8", "--batch-size", "50", "--epochs",
                                                "1", "--samples", "2", "--draws", "4", "--eval-every", "1"]),
    "glow": ("glow", ["--epochs", "1", "--levels", "1", "--steps", "1", "--hidden", "8", "--batch-size", "64",
                      "--eval-every", "1"]),
    "gmm": ("gmm", ["--epochs", "1", "--points", "600", "--batch-size", "128", "--eval-every", "1"]),
    "gan": ("gan", _GAN),
    "gan --minimax": ("gan", _GAN + ["--minimax"]),
    "wgan_gp": ("wgan_gp", _GAN + ["--critic-steps", "3"]),
}
NOT_MODELS = {"results_table"}  # scripts that build no objective


@contextlib.contextmanager
def _recording_latex(printed):
    """Append to ``printed`` every LaTeX string a pgm loss or distribution returns from ``latex()`` meanwhile."""
    import pgm.distributions
    import pgm.distributions.flows
    import pgm.losses

    classes = {base for module in (pgm.losses, pgm.distributions, pgm.distributions.flows)
               for value in vars(module).values() if isinstance(value, type) for base in value.__mro__
               if callable(base.__dict__.get("latex"))}
    originals = {cls: cls.__dict__["latex"] for cls in classes}

    def recorder(original):
        def latex(self, *args, **kwargs):
            text = original(self, *args, **kwargs)
            printed.append(text)
            return text
        return latex

    try:
        for cls, original in originals.items():
            cls.latex = recorder(original)
        yield printed
    finally:
        for cls, original in originals.items():
            cls.latex = original


def objective_lines(script):
    """The statements of ``examples/<script>.py`` that build its losses, as written, in the order they appear:
    those calling a name the script imports from pgm.losses, and the assignments to a name whose ``latex()`` it
    prints; evaluations (``.eval(``) left out."""
    source = (EXAMPLES / f"{script}.py").read_text()
    tree = ast.parse(source)
    makers = {alias.asname or alias.name for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module == "pgm.losses" for alias in node.names}
    printed = {node.func.value.id for node in ast.walk(tree) if isinstance(node, ast.Call)
               and isinstance(node.func, ast.Attribute) and node.func.attr == "latex"
               and isinstance(node.func.value, ast.Name)}
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Assign, ast.AugAssign, ast.Return)) or node.value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        builds = any(isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in makers
                     for call in ast.walk(node.value))
        named = any(isinstance(target, ast.Name) and target.id in printed for target in targets)
        # the statement as indented in the script, so that its continuation lines keep their place
        text = textwrap.dedent(" " * node.col_offset + ast.get_source_segment(source, node))
        if (builds or named) and ".eval(" not in text and ".test(" not in text:
            lines.append((node.lineno, text))
    if not lines:  # built by another script it imports from (glow.py trains with real_nvp.py's fit)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and (EXAMPLES / f"{node.module}.py").exists():
                found = objective_lines(node.module)
                if found:
                    return found
    return [text for _, text in sorted(lines)]


def example_objectives(run_ids=None):
    """{run id: (script, argv, lines that build the loss, [each distinct LaTeX printed, in order])} for the runs of
    :data:`EXAMPLE_RUNS` (all, or those named in ``run_ids``), each run on the CPU, one thread, into a temporary
    folder, its output swallowed."""
    import torch

    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    found = {}
    try:
        for run_id in run_ids or EXAMPLE_RUNS:
            script, argv = EXAMPLE_RUNS[run_id]
            printed = []
            with tempfile.TemporaryDirectory() as out, _recording_latex(printed), \
                    contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                importlib.import_module(script).main(argv + ["--device", "cpu", "--out", out])
            found[run_id] = (script, argv, objective_lines(script), list(dict.fromkeys(printed)))
    finally:
        torch.set_num_threads(threads)
    return found
