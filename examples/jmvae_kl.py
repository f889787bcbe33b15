"""JMVAE-kl: JMVAE with unimodal encoders for a missing modality (Suzuki, Nakayama & Matsuo 2016, docs/papers.md section 3).

    L_JMVAE-kl = L_JMVAE - alpha * [ KL(q(z|x,w) || q(z|x)) + KL(q(z|x,w) || q(z|w)) ]             (maximized)
    L_JMVAE    = -KL(q(z|x,w) || p(z)) + E_q(z|x,w)[log p(x|z)] + E_q(z|x,w)[log p(w|z)]

The unimodal encoders q(z|x), q(z|w) are pulled to the joint one, so that one modality alone infers z and
generates the other: w ~ p(w|z), z ~ q(z|x), and x from w likewise (cross_modal_generation.png). Reports the
importance-sampled test log-likelihoods (K = --iw-samples): log p(x,w) with the proposal q(z|x,w), and
log p(x|w) = log p(x,w) - log p(w), log p(w|x) = log p(x,w) - log p(x), with the proposals q(z|w), q(z|x).
alpha defaults to 0.1 (the JMVAE paper compares several values and fixes none; docs/papers.md section 3).

    python examples/jmvae_kl.py                          # scikit-learn digits, x = left, w = right halves
    python examples/jmvae_kl.py --dataset mnist --data-root ~/data --alpha 1
"""
import argparse

from common import data, multimodal, results, training
from common.networks import Gaussian, mlp
from pgm.distributions import Normal
from pgm.losses import E, KL, LogProb, Parameter
from pgm.models import Model
from pgm.visualize import draw_graphical_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__)
    data.add_arguments(parser)
    multimodal.add_arguments(parser)
    parser.add_argument("--alpha", type=training.non_negative_float, default=0.1, help="weight of the KL terms (default: 0.1)")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    paired = multimodal.load_data(args, device)
    print(f"Data: {paired.description} (labels unused)")
    h, dz = args.hidden, args.latent

    p_x, p_w, prior, q = multimodal.joint_model(*paired.unlabelled, h, dz)
    q_x = Normal("q(z|x)", net=Gaussian(mlp(paired.x_dim, [h, h]), dz))
    q_w = Normal("q(z|w)", net=Gaussian(mlp(paired.w_dim, [h, h]), dz))
    alpha = Parameter("alpha")
    objective = (-KL(q, prior) + E(q, LogProb(p_x)) + E(q, LogProb(p_w))
                 - alpha * (KL(q, q_x) + KL(q, q_w)))
    print(f"Objective (maximized):\nL_JMVAE-kl = {objective.latex()}")
    draw_graphical_model([p_x * p_w * prior, q, q_x, q_w], out / "graphical_model.png", title="JMVAE-kl")

    model = Model(-objective.mean(), [d.to(device) for d in (p_x, p_w, prior, q, q_x, q_w)],
                  **training.model_options(args))
    history, test_objective = multimodal.train_joint(model, paired, args, out, params={"alpha": args.alpha})
    scores = {"L_JMVAE-kl": test_objective,
              **multimodal.evaluate_joint_model(out, paired, p_x, p_w, prior, q, q_x, q_w, samples=args.iw_samples,
                                                title=f"JMVAE-kl (alpha={args.alpha:g})")}
    return results.write(out, f"JMVAE-kl (alpha={args.alpha:g}): test log-likelihoods (K={args.iw_samples})",
                         {"JMVAE-kl": scores}, args, paired.description, objective.latex(), history)


if __name__ == "__main__":
    training.run(main)
