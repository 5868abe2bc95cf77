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


def png_bytes(rgb: np.ndarray, compression: int = 3) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise FaceswapError("could not encode an image as PNG")
    return data.tobytes()


def write_png(path: Path, rgb: np.ndarray) -> None:
    """An RGB image as a PNG, written atomically."""
    atomic.write_bytes(path, png_bytes(rgb))
