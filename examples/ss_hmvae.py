"""SS-HMVAE: semi-supervised hierarchical multimodal VAE, with iterative-sampling imputation of a missing modality.

Suzuki & Matsuo, "Semi-supervised multimodal learning with deep generative models" (IPSJ 2018), docs/papers.md
section 6. A shared multimodal latent a sits between the modalities and an M2 model over (z, y):

    p(x|a) p(w|a) p(a|z,y) p(z) p(y),   inference q(a|x,w) q(z|a,y), classifier q(y|x,w) = E_q(a|x,w)[q(y|a)].

The expectation over the unknown label uses a Gumbel-softmax sample. With one modality at test time the other
is zeroed ("x", "w") or imputed by iterative sampling ("x_iterative", "w_iterative", section 7b): start it from
uniform noise, repeat --iterations times a ~ q(a|x,w), missing <- mean of p(missing|a), then classify.

    python examples/ss_hmvae.py                           # scikit-learn digits, halves, 100 labels
    python examples/ss_hmvae.py --dataset mnist --data-root ~/data --pairing noisy
"""
import argparse

import torch

from common import data, evaluation, training
from common.networks import Gaussian, Join, Logits, mlp
from pgm.distributions import Bernoulli, Categorical, Normal, RelaxedCategorical
from pgm.losses import E, LogProb, Parameter
from pgm.models import Model
from pgm.visualize import draw_graphical_model

A_FEATURES, Z_FEATURES = 128, 64


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__)
    data.add_arguments(parser)
    parser.add_argument("--alpha", type=training.non_negative_float, default=1.0, help="weight of the classification term (default: 1)")
    parser.add_argument("--temperature", type=training.positive_float, default=0.5, help="Gumbel-softmax temperature (default: 0.5)")
    parser.add_argument("--iterations", type=training.positive_int, default=100,
                        help="iterative-sampling steps to impute a missing modality (default: 100, the paper's)")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    paired = training.load_data(args, device)
    print(f"Data: {paired.description}")
    dx, dw, k, h, da, dz = paired.x_dim, paired.w_dim, paired.num_classes, args.hidden, A_FEATURES, Z_FEATURES

    # generative model p(x|a) p(w|a) p(a|z,y) p(z) p(y)
    p_x = Bernoulli("p(x|a)", net=Logits(mlp(da, [h, h]), dx))
    p_w = Bernoulli("p(w|a)", net=Logits(mlp(da, [h, h]), dw))
    p_a = Normal("p(a|z,y)", net=Gaussian(Join([dz, k], [[], []], [h, h]), da))
    p_z = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[dz])
    p_y = Categorical("p(y)", probs=torch.full((k,), 1.0 / k))
    # inference q(a|x,w) q(z|a,y) q(y|a)
    q_a = Normal("q(a|x,w)", net=Gaussian(Join([dx, dw], [[h, h], [h, h]], [h]), da))
    q_z = Normal("q(z|a,y)", net=Gaussian(Join([da, k], [[], []], [h, h]), dz))
    q_y = RelaxedCategorical("q(y|a)", net=Logits(mlp(da, [h]), k), temperature=args.temperature)

    p = p_x * p_w * p_a * p_z * p_y
    alpha = Parameter("alpha")
    labelled = E(q_a * q_z, LogProb(p) - LogProb(q_a * q_z)) + alpha * E(q_a, LogProb(q_y))
    unlabelled = E(q_a * q_z * q_y, LogProb(p) - LogProb(q_a * q_z * q_y))
    loss = -(labelled.mean("labelled") + unlabelled.mean("unlabelled"))
    print(f"Loss (minimized):\n{loss.latex()}")

    draw_graphical_model([p, q_a, q_z, q_y], out / "graphical_model.png", classifier=q_y, title="SS-HMVAE")

    distributions = torch.nn.ModuleList([p_x, p_w, p_a, p_z, p_y, q_a, q_z, q_y]).to(device)
    model = Model(loss, distributions=list(distributions), **training.model_options(args))

    classify = evaluation.marginal_classifier(q_a, q_y)  # q(y|x,w) = E_q(a|x,w)[q(y|a)]
    joint = lambda x, w: classify({"x": x, "w": w})  # noqa: E731
    settings = evaluation.with_zeros(joint)
    settings["x_iterative"] = lambda x, w: classify(evaluation.impute(q_a, p_w, {"x": x, "w": w}, args.iterations))
    settings["w_iterative"] = lambda x, w: classify(evaluation.impute(q_a, p_x, {"x": x, "w": w}, args.iterations))

    history = training.train(
        model, paired, args, out, params={"alpha": args.alpha},
        monitor=lambda: evaluation.accuracies({k: settings[k] for k in ("x", "w", "x+w")}, paired.test, model, args.seed))
    results = evaluation.accuracies(settings, paired.test, model, args.seed)
    return evaluation.write_results(out, "SS-HMVAE", results, args, paired.description, loss.latex(), history)


if __name__ == "__main__":
    training.run(main)
