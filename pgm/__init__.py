"""pgm: deep generative models written the way they are written on paper."""
from . import distributions, losses, models, visualize

__version__ = "0.1.0"
__all__ = ["distributions", "losses", "models", "visualize", "__version__"]
