"""Models: a loss and an optimizer turned into a training step."""
from .model import Model, atomic_save
from .vae import VAE

__all__ = ["Model", "VAE", "atomic_save"]
