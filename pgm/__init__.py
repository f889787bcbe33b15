"""pgm: deep generative models written the way they are written on paper."""
from . import distributions, losses, models, visualize
from ._scope import Context

__version__ = "0.1.0"
__all__ = ["distributions", "losses", "models", "visualize", "Context", "__version__"]
