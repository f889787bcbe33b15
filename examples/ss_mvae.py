"""SS-MVAE: the semi-supervised M2 model made multimodal.

Suzuki & Matsuo, "Semi-supervised multimodal learning with deep generative models" (IPSJ 2018), docs/papers.md
section 5. Both modalities are generated from one latent z and the label y,

    p(x|z,y) p(w|z,y) p(z) p(y),   inference q(z|x,w,y), classifier q(y|x,w);

labelled pairs maximize L(x,w,y) + alpha log q(y|x,w), unlabelled pairs U(x,w), whose expectation over the
unknown label uses a Gumbel-softmax sample. With one modality at test time the other is zeroed.

    python examples/ss_mvae.py                            # scikit-learn digits, halves, 100 labels
    python examples/ss_mvae.py --dataset mnist --data-root ~/data --pairing noisy
"""
import argparse

import torch

from common import data, evaluation, training
from common.networks import Gaussian, Join, Logits
from pgm.distributions import Bernoulli, Categorical, Normal, RelaxedCategorical
from pgm.losses import E, LogProb, Parameter
from pgm.models import Model
from pgm.visualize import draw_graphical_model

Z_FEATURES = 64


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__)
    data.add_arguments(parser)
    parser.add_argument("--alpha", type=training.non_negative_float, default=1.0, help="weight of the classification term (default: 1)")
    parser.add_argument("--temperature", type=training.positive_float, default=0.5, help="Gumbel-softmax temperature (default: 0.5)")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    paired = training.load_data(args, device)
    print(f"Data: {paired.description}")
    dx, dw, k, h, dz = paired.x_dim, paired.w_dim, paired.num_classes, args.hidden, Z_FEATURES

    # generative model p(x|z,y) p(w|z,y) p(z) p(y)
    p_x = Bernoulli("p(x|z,y)", net=Logits(Join([dz, k], [[], []], [h, h]), dx))
    p_w = Bernoulli("p(w|z,y)", net=Logits(Join([dz, k], [[], []], [h, h]), dw))
    p_z = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[dz])
    p_y = Categorical("p(y)", probs=torch.full((k,), 1.0 / k))
    # inference q(z|x,w,y) and classifier q(y|x,w)
    q_z = Normal("q(z|x,w,y)", net=Gaussian(Join([dx, dw, k], [[h, h], [h, h], []], [h]), dz))
    q_y = RelaxedCategorical("q(y|x,w)", net=Logits(Join([dx, dw], [[h, h], [h, h]], [h]), k),
                             temperature=args.temperature)

    alpha = Parameter("alpha")
    labelled = E(q_z, LogProb(p_x * p_w * p_z) - LogProb(q_z)) + alpha * LogProb(q_y)
    unlabelled = E(q_z * q_y, LogProb(p_x * p_w * p_z * p_y) - LogProb(q_z * q_y))
    loss = -(labelled.mean("labelled") + unlabelled.mean("unlabelled"))
    print(f"Loss (minimized):\n{loss.latex()}")

    draw_graphical_model([p_x * p_w * p_z * p_y, q_z, q_y], out / "graphical_model.png", classifier=q_y,
                         title="SS-MVAE")

    distributions = torch.nn.ModuleList([p_x, p_w, p_z, p_y, q_z, q_y]).to(device)
    model = Model(loss, distributions=list(distributions), **training.model_options(args))

    settings = evaluation.with_zeros(lambda x, w: evaluation.probabilities(
        lambda inputs: q_y.get_params(inputs)["logits"], {"x": x, "w": w}))
    history = training.train(model, paired, args, out, params={"alpha": args.alpha},
                             monitor=lambda: evaluation.accuracies(settings, paired.test, model, args.seed))
    results = evaluation.accuracies(settings, paired.test, model, args.seed)
    return evaluation.write_results(out, "SS-MVAE", results, args, paired.description, loss.latex(), history)


if __name__ == "__main__":
    training.run(main)
