"""SS-HMVAE-kl: semi-supervised hierarchical multimodal VAE with unimodal encoders for missing modalities.

Suzuki & Matsuo, "Semi-supervised multimodal learning with deep generative models" (IPSJ 2018), the "KL
method" of JMVAE-kl applied to SS-HMVAE (docs/papers.md sections 6 and 7c). Unimodal encoders q(a|x), q(a|w) are
pulled to the multimodal encoder q(a|x,w),

    J_kl = J_HMVAE - beta * E_data[ KL(q(a|x,w) || q(a|x)) + KL(q(a|x,w) || q(a|w)) ],

on labelled and unlabelled pairs, so that one modality alone classifies through q(y|x) = E_q(a|x)[q(y|a)].
The expectation over the unknown label uses a Gumbel-softmax sample. beta defaults to 0.1, the value of the
paper's {0.1, 1, 10} with the best single-modality accuracy on hmMNIST.

    python examples/ss_hmvae_kl.py                        # scikit-learn digits, halves, 100 labels
    python examples/ss_hmvae_kl.py --dataset mnist --data-root ~/data --beta 1
"""
import argparse

import torch

from common import data, evaluation, training
from common.networks import Gaussian, Join, Logits, mlp
from pgm.distributions import Bernoulli, Categorical, Normal, RelaxedCategorical
from pgm.losses import E, KL, LogProb, Parameter
from pgm.models import Model
from pgm.visualize import draw_graphical_model

A_FEATURES, Z_FEATURES = 128, 64


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__)
    data.add_arguments(parser)
    parser.add_argument("--alpha", type=training.non_negative_float, default=1.0, help="weight of the classification term (default: 1)")
    parser.add_argument("--beta", type=training.non_negative_float, default=0.1, help="weight of the KL terms; the paper tries 0.1, 1 "
                                                                 "and 10 (default: 0.1)")
    parser.add_argument("--temperature", type=training.positive_float, default=0.5, help="Gumbel-softmax temperature (default: 0.5)")
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
    # inference q(a|x,w) q(z|a,y) q(y|a), and the unimodal encoders q(a|x), q(a|w)
    q_a = Normal("q(a|x,w)", net=Gaussian(Join([dx, dw], [[h, h], [h, h]], [h]), da))
    q_z = Normal("q(z|a,y)", net=Gaussian(Join([da, k], [[], []], [h, h]), dz))
    q_y = RelaxedCategorical("q(y|a)", net=Logits(mlp(da, [h]), k), temperature=args.temperature)
    q_ax = Normal("q(a|x)", net=Gaussian(mlp(dx, [h, h]), da))
    q_aw = Normal("q(a|w)", net=Gaussian(mlp(dw, [h, h]), da))

    p = p_x * p_w * p_a * p_z * p_y
    alpha, beta = Parameter("alpha"), Parameter("beta")
    divergence = KL(q_a, q_ax) + KL(q_a, q_aw)
    labelled = (E(q_a * q_z, LogProb(p) - LogProb(q_a * q_z))
                + alpha * E(q_a, LogProb(q_y)) - beta * divergence)
    unlabelled = E(q_a * q_z * q_y, LogProb(p) - LogProb(q_a * q_z * q_y)) - beta * divergence
    loss = -(labelled.mean("labelled") + unlabelled.mean("unlabelled"))
    print(f"Loss (minimized):\n{loss.latex()}")

    draw_graphical_model([p, q_a, q_z, q_y, q_ax, q_aw], out / "graphical_model.png", classifier=q_y,
                         title="SS-HMVAE-kl")

    distributions = torch.nn.ModuleList([p_x, p_w, p_a, p_z, p_y, q_a, q_z, q_y, q_ax, q_aw]).to(device)
    model = Model(loss, distributions=list(distributions), **training.model_options(args))

    classify = evaluation.marginal_classifier(q_a, q_y)             # q(y|x,w) = E_q(a|x,w)[q(y|a)]
    classify_x = evaluation.marginal_classifier(q_ax, q_y)          # q(y|x)   = E_q(a|x)[q(y|a)]
    classify_w = evaluation.marginal_classifier(q_aw, q_y)          # q(y|w)   = E_q(a|w)[q(y|a)]
    joint = lambda x, w: classify({"x": x, "w": w})  # noqa: E731
    zeroed = evaluation.with_zeros(joint)
    settings = {"x": lambda x, w: classify_x({"x": x}), "w": lambda x, w: classify_w({"w": w}), "x+w": joint,
                "x_zeroed": zeroed["x"], "w_zeroed": zeroed["w"]}

    history = training.train(
        model, paired, args, out, params={"alpha": args.alpha, "beta": args.beta},
        monitor=lambda: evaluation.accuracies({k: settings[k] for k in ("x", "w", "x+w")}, paired.test, model, args.seed))
    results = evaluation.accuracies(settings, paired.test, model, args.seed)
    return evaluation.write_results(out, f"SS-HMVAE-kl (beta={args.beta:g})", results, args, paired.description,
                                    loss.latex(), history)


if __name__ == "__main__":
    training.run(main)
