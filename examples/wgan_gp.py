"""WGAN-GP (Gulrajani et al. 2017): the generator of examples/gan.py trained against a critic D(x) with the
Wasserstein distance, the critic kept near 1-Lipschitz by a gradient penalty; the same data, scores and pictures.

    generator:  min  max_{||D||_L <= 1} E_p_data(x)[D(x)] - E_p(x)[D(x)]
    critic:     min  E_p(x)[D(x)] - E_p_data(x)[D(x)] + lambda E_x^[(||grad D(x^)||_2 - 1)^2],
                x^ = eps x + (1 - eps) x~ between a data point and a sample, eps ~ U[0, 1]

The critic takes --critic-steps steps per generator step (the paper's 5), Adam with betas (0.5, 0.9).

    python examples/wgan_gp.py                    # both data sets, about 3 minutes on one CPU thread
    python examples/wgan_gp.py --data ring --penalty 1
"""
import argparse

from common import training
from gan import add_arguments, run
from pgm.losses import Wasserstein


def main(argv=None):
    parser = add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), __file__, 2000)
    parser.add_argument("--penalty", type=training.non_negative_float, default=10.0,
                        help="lambda, the gradient penalty's weight (default: 10, the paper's)")
    parser.add_argument("--critic-steps", type=training.positive_int, default=5,
                        help="critic steps per generator step (default: 5, the paper's)")
    parser.set_defaults(betas=(0.5, 0.9))
    args = parser.parse_args(argv)
    return run(args, lambda p, d: Wasserstein(p, discriminator=d, gradient_penalty=args.penalty), "WGAN-GP",
               critic_every=args.critic_steps)


if __name__ == "__main__":
    training.run(main)
