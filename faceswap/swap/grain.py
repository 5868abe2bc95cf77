"""Grain: a swapped face smoother than its frame looks pasted on, so it gets noise matched to the frame's.

The frame's noise is measured on its own pixels under the face, the new face's on the same pixels, both
with one robust estimator; the difference is added inside the face as luminance noise, new every frame as
real grain is, at a strength smoothed along the track. Under the face, not around it: around a face lie hair
and background, whose texture reads as noise, and video codecs smooth skin more than texture (DESIGN.md).
"""
from __future__ import annotations

import cv2
import numpy as np

SMOOTH = 0.1    # share of a frame's measure in a track's running strength
MEASURE_EVERY = 4  # frames of a track between measures: the strength is smoothed over many anyway
FORGET = 200    # calls after which a track not seen is dropped
TILE = 512      # side of the noise tile each frame reads at a new offset
SOFTNESS = 0.7  # px: the Gaussian blur of the added noise (DESIGN.md: what survives x264)
MIN_PIXELS = 64
# a Gaussian's sigma over the mean of its absolute values below their 80th percentile (z = 1.2816)
TRIMMED = 0.8 / (np.sqrt(2 / np.pi) * (1 - np.exp(-1.2816 ** 2 / 2)))


def noise_sigma(image: np.ndarray, where: np.ndarray) -> float:
    """Noise level (grey levels) where `where` holds: the mean absolute 2x2 checkerboard detail of its quietest
    80 % (edges trimmed; a median would snap to quantisation) as a Gaussian's sigma, on every other row and
    column: a level needs no more samples, and convert pays for each."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    grey = grey.astype(np.float32) if grey.dtype == np.uint8 else np.asarray(grey, np.float32)
    diagonal = (grey[:-1:2, :-1:2] - grey[:-1:2, 1::2] - grey[1::2, :-1:2] + grey[1::2, 1::2]) / 2
    values = np.abs(diagonal[where[:-1:2, :-1:2] & where[1::2, 1::2]])
    if len(values) < MIN_PIXELS:
        return float("nan")
    quiet = np.partition(values, int(0.8 * (len(values) - 1)))[:int(0.8 * (len(values) - 1)) + 1]
    return float(quiet.mean() * TRIMMED)


class Grain:
    """Each track's grain strength, and the noise it adds."""

    def __init__(self):
        # soft luminance noise, scaled so noise_sigma reads 1: grain that survived a video codec is soft and has
        # little colour, and white noise of the same level would be quantised away by the next encode
        tile = cv2.GaussianBlur(np.random.default_rng(0).standard_normal((TILE, TILE)).astype(np.float32), (0, 0),
                                SOFTNESS)
        tile /= noise_sigma(tile, np.ones(tile.shape, bool))
        self.tile = np.repeat(tile[..., None], 3, 2)
        self.reset()

    def reset(self) -> None:
        self.tracks: dict[int, tuple[float, int, int]] = {}  # track -> (strength, last call, frames seen)
        self.calls = 0

    def strength(self, region: np.ndarray, face: np.ndarray, alpha: np.ndarray, track: int = -1) -> float:
        """Sigma of the noise to add: the frame's (`region`) less the new face's (`face`), both where `alpha` is
        over a half, smoothed along `track` (measured on every MEASURE_EVERY-th of its frames)."""
        self.calls += 1
        previous = self.tracks.get(track) if track >= 0 else None
        if previous is not None and previous[2] % MEASURE_EVERY:
            level = previous[0]
        else:
            inside = alpha > 0.5
            frame, own = noise_sigma(region, inside), noise_sigma(face, inside)
            level = float(np.sqrt(max(0.0, frame ** 2 - own ** 2))) if np.isfinite(frame) and np.isfinite(own) \
                else 0.0
            if previous is not None:
                level = (1 - SMOOTH) * previous[0] + SMOOTH * level
        if track >= 0:
            self.tracks[track] = (level, self.calls, 1 if previous is None else previous[2] + 1)
            self.tracks = {t: v for t, v in self.tracks.items() if self.calls - v[1] <= FORGET}
        return level

    def add(self, face: np.ndarray, sigma: float) -> np.ndarray:
        """uint8 `face` with luminance noise of `sigma` grey levels, read from the tile at this call's offset."""
        if sigma <= 0.05:
            return face
        h, w = face.shape[:2]
        y, x = np.random.default_rng(self.calls).integers(0, TILE, 2)
        tile = self.tile if h <= TILE and w <= TILE else np.tile(self.tile, (h // TILE + 1, w // TILE + 1, 1))
        y, x = y % (tile.shape[0] - h + 1), x % (tile.shape[1] - w + 1)
        return cv2.addWeighted(face, 1.0, tile[y:y + h, x:x + w], float(sigma), 0.0, dtype=cv2.CV_8U)

    def __call__(self, face: np.ndarray, region: np.ndarray, alpha: np.ndarray, track: int = -1) -> np.ndarray:
        return self.add(face, self.strength(region, face, alpha, track))
