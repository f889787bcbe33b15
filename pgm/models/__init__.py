"""Models: a loss and an optimizer turned into a training step."""
from ._checks import NonFiniteGradientError, NonFiniteLossError
from ._fit import TrainingInterrupted, latest_checkpoint
from ._step import Objective
from .model import Model, atomic_save
from .vae import VAE

__all__ = ["Model", "Objective", "VAE", "NonFiniteLossError", "NonFiniteGradientError", "TrainingInterrupted", "atomic_save",
           "latest_checkpoint"]
