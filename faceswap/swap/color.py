"""Colour matching of the swapped face to the original face, measured inside a mask.

avg: shift each RGB channel's mean; rct: Reinhard transfer (mean and std in L*a*b*);
hist: per-channel histogram matching; none: leave as is. Images are float32 RGB in [0, 1].
"""
from __future__ import annotations

import cv2
import numpy as np


def _stats(image: np.ndarray, mask: np.ndarray):
    """Mean and standard deviation of each channel, weighted by `mask` (as products with the weights: BLAS)."""
    weights = np.ascontiguousarray(mask, np.float32).reshape(-1)
    total = max(weights.sum(), 1e-6)
    pixels = np.ascontiguousarray(image, np.float32).reshape(-1, image.shape[-1])
    mean = weights @ pixels / total
    std = np.sqrt(weights @ (pixels - mean) ** 2 / total)
    return mean.astype(np.float32), std.astype(np.float32)


def avg(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.clip(source + (_stats(target, mask)[0] - _stats(source, mask)[0]), 0, 1)


def rct(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    lab_s = cv2.cvtColor(source.astype(np.float32), cv2.COLOR_RGB2LAB)
    # the statistics from every other row and column: as good a measure, and the target's colour space for a quarter
    lab_t = cv2.cvtColor(np.ascontiguousarray(target[::2, ::2], np.float32), cv2.COLOR_RGB2LAB)
    mean_s, std_s = _stats(lab_s[::2, ::2], mask[::2, ::2])
    mean_t, std_t = _stats(lab_t, mask[::2, ::2])
    out = (lab_s - mean_s) * (std_t / np.maximum(std_s, 1e-3)) + mean_t
    out[..., 0] = np.clip(out[..., 0], 0, 100)
    return np.clip(cv2.cvtColor(out.astype(np.float32), cv2.COLOR_LAB2RGB), 0, 1)


def hist(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    inside = mask.reshape(-1) > 0.5
    if inside.sum() < 16:
        return source
    out = np.empty_like(source)
    for c in range(source.shape[-1]):
        src = source[..., c].reshape(-1)
        s_vals = np.sort(src[inside])
        t_vals = np.sort(target[..., c].reshape(-1)[inside])
        quantiles = np.searchsorted(s_vals, src, side="right") / len(s_vals)
        out[..., c] = np.interp(quantiles, np.linspace(0, 1, len(t_vals)), t_vals).reshape(source.shape[:2])
    return np.clip(out, 0, 1)


def match(method: str, source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`method` (ConvertSettings.color: avg, rct, hist or none) applied."""
    return source if method == "none" else {"avg": avg, "rct": rct, "hist": hist}[method](source, target, mask)
