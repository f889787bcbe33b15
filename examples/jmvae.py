"""JMVAE: the joint multimodal VAE (Suzuki, Nakayama & Matsuo 2016, docs/papers.md section 2).

    z ~ p(z) = N(0, I);  x, w ~ p(x|z) p(w|z);  one joint encoder q(z|x,w)
    L_JMVAE(x,w) = -KL(q(z|x,w) || p(z)) + E_q(z|x,w)[log p(x|z)] + E_q(z|x,w)[log p(w|z)]     (maximized)

Reports importance-sampled test log-likelihoods (K = --iw-samples): the joint log p(x,w) with the proposal
q(z|x,w), and the conditionals log p(x|w) = log p(x,w) - log p(w), log p(w|x) = log p(x,w) - log p(x), where
p(w) and p(x) are estimated with the joint encoder given one modality and zeros for the other (JMVAE has no
unimodal encoder: compare examples/jmvae_kl.py). Also draws w from x and x from w (cross_modal_generation.png).

    python examples/jmvae.py                             # scikit-learn digits, x = left, w = right halves
    python examples/jmvae.py --dataset mnist --data-root ~/data
"""
import argparse

from common import data, multimodal, results, training
from pgm.losses import E, KL, LogProb
from pgm.models import Model
from pgm.visualize import draw_graphical_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__)
    data.add_arguments(parser)
    multimodal.add_arguments(parser)
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    paired = multimodal.load_data(args, device)
    print(f"Data: {paired.description} (labels unused)")

    p_x, p_w, prior, q = multimodal.joint_model(*paired.unlabelled, args.hidden, args.latent)
    objective = -KL(q, prior) + E(q, LogProb(p_x)) + E(q, LogProb(p_w))
    print(f"Objective (maximized):\nL_JMVAE = {objective.latex()}")
    draw_graphical_model([p_x * p_w * prior, q], out / "graphical_model.png", title="JMVAE")

    model = Model(-objective.mean(), [d.to(device) for d in (p_x, p_w, prior, q)], **training.model_options(args))
    history, test_objective = multimodal.train_joint(model, paired, args, out)
    scores = {"L_JMVAE": test_objective,
              **multimodal.evaluate_joint_model(out, paired, p_x, p_w, prior, q, samples=args.iw_samples,
                                                title="JMVAE")}
    return results.write(out, f"JMVAE: test log-likelihoods (K={args.iw_samples})", {"JMVAE": scores}, args,
                         paired.description, objective.latex(), history)


if __name__ == "__main__":
    training.run(main)
