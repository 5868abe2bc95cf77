"""Still images: read any image file as RGB, encode and write PNGs. Kept apart from `media` so that
training and reporting need no video stack."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from faceswap import atomic, outputs
from faceswap.errors import FaceswapError

try:  # ISA-L deflates faster than zlib; zlib is the fallback where its wheel is missing
    from isal import isal_zlib as _deflate
except ImportError:  # pragma: no cover
    _deflate = zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_image(path: Path) -> np.ndarray:
    return decode_image(np.fromfile(str(path), dtype=np.uint8), path)  # np.fromfile + imdecode: unicode paths work


def decode_image(data, path: Path) -> np.ndarray:
    """RGB pixels of an image file's bytes (`path` names it in the error)."""
    data = np.frombuffer(data, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise FaceswapError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def png_bytes(rgb: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """PNG bytes of an 8-bit RGB (or grey) image, `text` as iTXt chunks after the header; encoded here, as the
    "up" filter in numpy and ISA-L's deflate beat OpenCV's fastest setting, and the file is smaller."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    channels = 1 if rgb.ndim == 2 else rgb.shape[2]
    if channels not in (1, 3):
        raise FaceswapError(f"cannot write a PNG of {channels} channels")
    rows = rgb.reshape(height, width * channels)
    filtered = np.empty((height, width * channels + 1), np.uint8)
    filtered[:, 0] = 2  # "up": each row minus the row above (uint8 wrap-around, as PNG defines it)
    filtered[0, 0] = 0
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 8, 2 if channels == 3 else 0, 0, 0, 0)
    chunks = [_chunk(b"IHDR", header)]
    for key, value in (text or {}).items():
        chunks.append(_chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")))
    chunks += [_chunk(b"IDAT", _deflate.compress(filtered.tobytes(), 1)), _chunk(b"IEND", b"")]
    return PNG_SIGNATURE + b"".join(chunks)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def grid(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    """Tiles in rows of `columns`, top-aligned and padded with black to the tallest tile and a full last row."""
    height = max(t.shape[0] for t in tiles)
    tiles = [cv2.copyMakeBorder(t, 0, height - t.shape[0], 0, 0, cv2.BORDER_CONSTANT) for t in tiles]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    return np.vstack([np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)])


def png_text(data: bytes) -> dict[str, str]:
    """The iTXt chunks of PNG bytes before the image data, as png_bytes writes them."""
    text, at = {}, len(PNG_SIGNATURE)
    if not data.startswith(PNG_SIGNATURE):
        return text
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"iTXt":
            key, _, rest = data[at + 8:at + 8 + length].partition(b"\0")
            text[key.decode("latin-1")] = rest[2:].split(b"\0", 2)[-1].decode("utf-8", "replace")
        at += 12 + length
    return text


def write_png(path: Path, rgb: np.ndarray) -> None:
    """An RGB image as a PNG marked as faceswap's own (so a later run may replace it), written atomically."""
    atomic.write_bytes(path, png_bytes(rgb, outputs.PNG_MARK))
