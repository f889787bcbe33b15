"""M2 (Kingma, Rezende, Mohamed & Welling, "Semi-supervised learning with deep generative models", 2014) on the
two modalities concatenated, x = (x, w): the single-modality baseline of Suzuki & Matsuo (IPSJ 2018).

docs/papers.md section 4. y ~ Cat(pi), z ~ N(0, I), x ~ p(x|y,z);

    L(x,y) = E_q(z|x,y)[log p(x|y,z) + log p(y) + log p(z) - log q(z|x,y)]        (labelled, plus alpha log q(y|x))
    U(x)   = E_q(y|x)[L(x,y)] + H(q(y|x))                                           (unlabelled)

The expectation over y is a Gumbel-softmax sample (the 2018 paper's choice), or with --enumerate the exact sum
over the K classes. The paper gives no networks for M2; these follow SS-MVAE's with its two input branches
merged into one. With one modality at test time the other half of x is zeroed.

    python examples/m2.py                                 # scikit-learn digits, halves, 100 labels
    python examples/m2.py --enumerate --dataset mnist --data-root ~/data --pairing noisy
"""
import argparse

import torch

from common import data, evaluation, training
from common.networks import Gaussian, Join, Logits, mlp
from pgm.distributions import Bernoulli, Categorical, Normal, RelaxedCategorical
from pgm.losses import E, Entropy, LogProb, Parameter
from pgm.models import Model
from pgm.visualize import draw_graphical_model

Z_FEATURES = 64


def concatenated(labelled, unlabelled):
    """The training inputs with the modalities joined into one variable x = (x, w)."""
    return {"labelled": {"x": torch.cat([labelled["x"], labelled["w"]], -1), "y": labelled["y"]},
            "unlabelled": {"x": torch.cat([unlabelled["x"], unlabelled["w"]], -1)}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__)
    data.add_arguments(parser)
    parser.add_argument("--alpha", type=training.non_negative_float, default=1.0, help="weight of the classification term (default: 1)")
    parser.add_argument("--temperature", type=training.positive_float, default=0.5, help="Gumbel-softmax temperature (default: 0.5)")
    parser.add_argument("--enumerate", action="store_true",
                        help="sum over the K labels exactly instead of a Gumbel-softmax sample")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    paired = training.load_data(args, device)
    print(f"Data: {paired.description}; x = (x, w) concatenated")
    dx, k, h, dz = paired.x_dim + paired.w_dim, paired.num_classes, args.hidden, Z_FEATURES

    p_x = Bernoulli("p(x|y,z)", net=Logits(Join([k, dz], [[], []], [h, h]), dx))
    p_y = Categorical("p(y)", probs=torch.full((k,), 1.0 / k))
    p_z = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[dz])
    q_z = Normal("q(z|x,y)", net=Gaussian(Join([dx, k], [[h, h], []], [h]), dz))
    q_y = (Categorical("q(y|x)", net=Logits(mlp(dx, [h, h, h]), k)) if args.enumerate else
           RelaxedCategorical("q(y|x)", net=Logits(mlp(dx, [h, h, h]), k), temperature=args.temperature))

    alpha = Parameter("alpha")
    bound = E(q_z, LogProb(p_x) + LogProb(p_y) + LogProb(p_z) - LogProb(q_z))   # L(x,y)
    labelled = bound + alpha * LogProb(q_y)
    unlabelled = E(q_y, bound, enumerate=args.enumerate) + Entropy(q_y)         # U(x)
    loss = -(labelled.mean("labelled") + unlabelled.mean("unlabelled"))
    print(f"Loss (minimized):\n{loss.latex()}")

    draw_graphical_model([p_x * p_y * p_z, q_z, q_y], out / "graphical_model.png", classifier=q_y, title="M2")

    distributions = torch.nn.ModuleList([p_x, p_y, p_z, q_z, q_y]).to(device)
    model = Model(loss, distributions=list(distributions), **training.model_options(args))

    settings = evaluation.with_zeros(lambda x, w: evaluation.probabilities(
        lambda inputs: q_y.get_params(inputs)["logits"], {"x": torch.cat([x, w], -1)}))
    history = training.train(model, paired, args, out, params={"alpha": args.alpha}, prepare=concatenated,
                             monitor=lambda: evaluation.accuracies(settings, paired.test, model, args.seed))
    results = evaluation.accuracies(settings, paired.test, model, args.seed)
    name = "M2 on (x, w)" + (", enumerated" if args.enumerate else "")
    return evaluation.write_results(out, name, results, args, paired.description, loss.latex(), history)


if __name__ == "__main__":
    training.run(main)
