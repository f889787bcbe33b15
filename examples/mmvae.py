"""MMVAE: the mixture-of-experts multimodal VAE (Shi, Siddharth, Paige & Torr 2019).

    q(z|x,w) = 1/2 q(z|x) + 1/2 q(z|w)
    L_MMVAE  = E_q(z|x,w)[log p(x|z) + log p(w|z) + log p(z) - log q(z|x,w)]                       (maximized)

The joint posterior is the mixture of the unimodal experts (pgm.distributions.Mixture), and the expectation is
the paper's stratified estimator: one reparameterized draw from each expert, weighted 1/2, so each expert's
z must explain both modalities and one modality alone infers z and generates the other (w ~ p(w|z),
z ~ q(z|x): cross_modal_generation.png). Reports the importance-sampled test log-likelihoods of JMVAE-kl
(K = --iw-samples): log p(x,w) with the mixture as proposal, log p(x|w) = log p(x,w) - log p(w) and
log p(w|x) = log p(x,w) - log p(x) with the proposals q(z|w), q(z|x).

    python examples/mmvae.py                             # scikit-learn digits, x = left, w = right halves
    python examples/mmvae.py --dataset mnist --data-root ~/data
"""
import argparse

from common import data, multimodal, results, training
from common.networks import Gaussian, mlp
from pgm.distributions import Mixture, Normal
from pgm.losses import E, LogProb
from pgm.models import Model
from pgm.visualize import draw_graphical_model


def build(x, w, hidden, latent):
    """p(x|z), p(w|z), p(z), q(z|x), q(z|w), the mixture q(z|x,w) and L_MMVAE (per example); x (N, Dx), w (N, Dw)
    training data, for the sizes and the likelihoods."""
    p_x, p_w, prior, _ = multimodal.joint_model(x, w, hidden, latent)
    q_x = Normal("q(z|x)", net=Gaussian(mlp(x.shape[1], [hidden, hidden]), latent))
    q_w = Normal("q(z|w)", net=Gaussian(mlp(w.shape[1], [hidden, hidden]), latent))
    q = Mixture([q_x, q_w])
    objective = E(q, LogProb(p_x) + LogProb(p_w) + LogProb(prior) - LogProb(q))
    return p_x, p_w, prior, q_x, q_w, q, objective


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__, epochs=100)
    data.add_arguments(parser)
    multimodal.add_arguments(parser)
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    paired = multimodal.load_data(args, device)
    print(f"Data: {paired.description} (labels unused)")

    p_x, p_w, prior, q_x, q_w, q, objective = build(*paired.unlabelled, args.hidden, args.latent)
    print(f"Posterior: {q.latex()}\nObjective (maximized):\nL_MMVAE = {objective.latex()}")
    draw_graphical_model([p_x * p_w * prior, q], out / "graphical_model.png", title="MMVAE")

    model = Model(-objective.mean(), [d.to(device) for d in (p_x, p_w, prior, q)], **training.model_options(args))
    history, test_objective = multimodal.train_joint(model, paired, args, out)
    scores = {"L_MMVAE": test_objective,
              **multimodal.evaluate_joint_model(out, paired, p_x, p_w, prior, q, q_x, q_w, samples=args.iw_samples,
                                                title="MMVAE")}
    return results.write(out, f"MMVAE: test log-likelihoods (K={args.iw_samples})", {"MMVAE": scores}, args,
                         paired.description, {"L_MMVAE": objective.latex(), "posterior": q.latex()}, history)


if __name__ == "__main__":
    training.run(main)
