"""lowlight: low-light image enhancement with learned models and classical baselines.

From Python, ``import lowlight_cli as ll``: ``ll.load(model, ...)`` gives a reusable enhancer,
``ll.enhance(image, ...)`` enhances one image (see :mod:`lowlight_cli.api` and the README's "Python API").
Importing the package is cheap: torch and the image libraries load with the first model.
"""

from typing import TYPE_CHECKING

from .api import enhance, load
from .errors import ImageArrayError, InputImageError, LowlightError, ModelNotFoundError, UsageError, WeightsError

if TYPE_CHECKING:
    from .inference import Enhancer

__version__ = "0.1.0"
__all__ = [
    "Enhancer", "ImageArrayError", "InputImageError", "LowlightError", "ModelNotFoundError", "UsageError",
    "WeightsError", "__version__", "enhance", "load",
]


def __getattr__(name: str):
    if name == "Enhancer":  # imports torch: only when asked for
        from .inference import Enhancer

        return Enhancer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
