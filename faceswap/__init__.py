"""faceswap: extract, train and convert face swaps in video, marking every output as synthetic."""
from faceswap.version import __version__

__all__ = ["__version__"]
