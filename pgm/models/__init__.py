"""Models: a loss and an optimizer turned into a training step."""
from ._checks import NonFiniteGradientError, NonFiniteLossError
from ._checkpoints import atomic_save, latest_checkpoint
from ._interrupt import TrainingInterrupted
from ._objective import Objective
from .model import Model
from .vae import VAE

__all__ = ["Model", "Objective", "VAE", "NonFiniteLossError", "NonFiniteGradientError", "TrainingInterrupted",
           "atomic_save", "latest_checkpoint"]
