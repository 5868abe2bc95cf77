"""faceswap: extract, train and convert face swaps in video, marking every output as synthetic."""
import os

from faceswap.version import __version__

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__all__ = ["__version__"]
