"""Masks drawn from 68 landmarks: the face hull (with a forehead margin), the eyes and the mouth."""
from __future__ import annotations

import cv2
import numpy as np

EYES = (list(range(36, 42)), list(range(42, 48)))
BROWS_EYES = (list(range(17, 22)) + list(range(36, 42)), list(range(22, 27)) + list(range(42, 48)))
MOUTH = list(range(48, 60))


def face_hull_points(landmarks: np.ndarray, forehead: float = 0.35) -> np.ndarray:
    """Jaw and brow points with the brows raised by `forehead` x the brow-to-chin height."""
    points = np.asarray(landmarks, dtype=np.float64)
    brows = points[17:27].copy()
    centre_brow = brows.mean(0)
    chin = points[8]
    lift = (centre_brow - chin) * forehead
    brows = brows + lift
    return np.concatenate([points[0:17], brows[::-1]])


def hull_mask(landmarks: np.ndarray, shape: tuple[int, int], forehead: float = 0.35) -> np.ndarray:
    """float32 mask (H x W) of the face: 1 inside the hull, 0 outside."""
    mask = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(face_hull_points(landmarks, forehead)).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255, lineType=cv2.LINE_AA)
    return mask.astype(np.float32) / 255


def region_weights(landmarks: np.ndarray, shape: tuple[int, int], eyes: float = 3.0, mouth: float = 2.0,
                   grow: float = 0.08) -> np.ndarray:
    """Per-pixel loss weights: 1 everywhere, `eyes` over eyes and brows, `mouth` over the mouth."""
    points = np.asarray(landmarks, dtype=np.float64)
    weights = np.ones(shape, np.float32)
    size = max(np.ptp(points[:, 0]), np.ptp(points[:, 1]), 1.0)
    kernel = max(1, int(size * grow)) | 1
    for indices, value in [(BROWS_EYES[0], eyes), (BROWS_EYES[1], eyes), (MOUTH, mouth)]:
        if value == 1:
            continue
        region = np.zeros(shape, np.uint8)
        cv2.fillConvexPoly(region, cv2.convexHull(np.round(points[indices]).astype(np.int32)), 1)
        region = cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel)))
        weights = np.maximum(weights, region.astype(np.float32) * value)
    return weights
