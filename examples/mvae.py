"""MVAE and its baselines: which representation of two modalities best predicts the labels?

Suzuki & Matsuo, multimodal VAE (2016), docs/papers.md section 2. Four settings, each scored by the label ranking
average precision (LRAP) of a logistic regression from latent codes z (a sample of q(z|.)) to the labels,
fitted on the labelled training pairs (--labels, default all) and scored on the test pairs:

    1. image x only:             AE and VAE on x
    2. x and w concatenated:     AE and VAE on xw = [x, w]
    3. both modalities:          multimodal AE (MAE, Ngiam et al. 2011) and MVAE on (x, w)
    4. multimodal training, x only at test: the setting-3 models with w set to 0 (for the fit and the score)

    AE:   L = E_q(z|x)[log p(x|z)]                   q(z|x) Deterministic (a point mass: a reconstruction loss)
    VAE:  L = -KL(q(z|x) || p(z)) + E_q(z|x)[log p(x|z)]
    MAE:  L = E_q(z|x,w)[log p(x|z)] + E_q(z|x,w)[log p(w|z)]                 q(z|x,w) Deterministic
    MVAE: L = -KL(q(z|x,w) || p(z)) + E_q(z|x,w)[log p(x|z)] + E_q(z|x,w)[log p(w|z)]

Networks (512-wide DkBR layers for MNIST-like data): encoders x-D512BR-D512BR (and for two inputs
(x-D512BR-D512BR, w-D512BR-D512BR)-D512BR), heads D64; decoders z-D512BR-D512BR, then Dx / Dw.

    python examples/mvae.py                              # scikit-learn digits, halves pairing
    python examples/mvae.py --dataset features --data-root mirflickr.npz --hidden 1024
"""
import argparse

import torch

from common import data, multimodal, results, training
from common.networks import Gaussian, Join
from pgm.distributions import Deterministic, Normal
from pgm.losses import E, KL, LogProb
from pgm.models import Model
from pgm.visualize import draw_graphical_model

TRAINED = {  # setting -> the models trained in it (setting 4 scores the setting-3 models; see arrange)
    "setting 1": ("AE", "VAE"),
    "setting 2": ("AE", "VAE"),
    "setting 3": ("MAE", "MVAE"),
}


def arrange(inputs, setting):
    """The model's inputs in ``setting`` from a dict with "x" and "w"."""
    x, w = inputs["x"], inputs["w"]
    if setting == "setting 1":
        return {"x": x}
    if setting == "setting 2":
        return {"xw": torch.cat([x, w], -1)}
    if setting == "setting 4":
        return {"x": x, "w": torch.zeros_like(w)}
    return {"x": x, "w": w}


def autoencoder(variational, training_inputs, hidden, latent):
    """(objective L (maximized), encoder, distributions) of an (M)AE or (M)VAE over the variables of
    ``training_inputs`` ({"x": (N, Dx)} or {"x": ..., "w": ...})."""
    names, sizes = list(training_inputs), [t.shape[1] for t in training_inputs.values()]
    body = Join(sizes, [[hidden, hidden]] * len(names), [hidden] if len(names) > 1 else [])
    signature = f"q(z|{','.join(names)})"
    q = Normal(signature, net=Gaussian(body, latent)) if variational else \
        Deterministic(signature, net=multimodal.Code(body, latent))
    decoders = [multimodal.decoder(v, latent, hidden, t.shape[1], t) for v, t in training_inputs.items()]
    objective = E(q, LogProb(decoders[0]))
    for p in decoders[1:]:
        objective = objective + E(q, LogProb(p))
    distributions = [q, *decoders]
    if variational:
        prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[latent])
        objective = -KL(q, prior) + objective
        distributions.append(prior)
    return objective, q, distributions


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__)
    data.add_arguments(parser)
    multimodal.add_arguments(parser)
    parser.set_defaults(labels="all")  # the paper fits the logistic regression on every labelled training pair
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    paired = multimodal.load_data(args, device)
    print(f"Data: {paired.description} (labels only for the logistic regression)")
    x_train, w_train = paired.unlabelled
    x_l, w_l, y_l = paired.labelled
    x_t, w_t, y_t = paired.test

    table, objectives, histories = {}, {}, {}
    for name in ("AE", "VAE", "MAE", "MVAE"):
        for setting, models in TRAINED.items():
            if name not in models:
                continue
            torch.manual_seed(args.seed)
            objective, q, distributions = autoencoder(name.endswith("VAE"), arrange({"x": x_train, "w": w_train},
                                                                                   setting), args.hidden, args.latent)
            print(f"\n{name}, {setting}: L = {objective.latex()}")
            objectives[f"{name} ({setting})"] = objective.latex()
            if name == "MVAE":
                draw_graphical_model(distributions, out / "graphical_model.png", title="MVAE")
            model = Model(-objective.mean(), [d.to(device) for d in distributions], **training.model_options(args))
            test_inputs = arrange({"x": x_t, "w": w_t}, setting)
            tag = f"{name}_{setting.replace(' ', '')}"
            history = training.train(model, paired, args, checkpoints=out / "checkpoints" / tag,
                                     prepare=lambda labelled, unlabelled, s=setting: arrange(unlabelled, s),
                                     monitor=lambda m=model, i=test_inputs: {"test L": -m.test(i)})
            training.plot_learning_curves(history, out / f"learning_curves_{tag}.png")
            histories[tag] = history
            scored = ("setting 3", "setting 4") if name.startswith("M") else (setting,)
            for s in scored:
                codes = [multimodal.encode(q, arrange({"x": x, "w": w}, s)) for x, w in ((x_l, w_l), (x_t, w_t))]
                table.setdefault(name, {})[s] = multimodal.lrap(codes[0], y_l, codes[1], y_t, seed=args.seed)
                print(f"{name}, {s}: LRAP {table[name][s]:.4f}")
    return results.write(out, "MVAE and baselines: LRAP of logistic regression on latent codes", table, args,
                         paired.description, objectives, histories, flat=False)


if __name__ == "__main__":
    training.run(main)
