"""Masks drawn from landmarks: the face hull (with a forehead margin), eye and mouth loss weights (68
face points), and hands (21 points: the palm polygon plus each finger as a thick line)."""
from __future__ import annotations

import cv2
import numpy as np

BROWS_EYES = (list(range(17, 22)) + list(range(36, 42)), list(range(22, 27)) + list(range(42, 48)))
MOUTH = list(range(48, 60))
PALM = [0, 1, 2, 5, 9, 13, 17]
FINGERS = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20]]


def hand_mask(hands: list[np.ndarray], shape: tuple[int, int], margin: float = 0.0) -> np.ndarray:
    """float32 mask (H x W), 1 over each hand (21 points, mask px): palm polygon and finger lines, grown by
    `margin` px and eased to 0 over `margin` px more, so a blend keeps every hand pixel whole (no halo)."""
    mask = np.zeros(shape, np.uint8)
    for points in hands:
        points = np.asarray(points, np.float64)
        palm_width = np.linalg.norm(points[5] - points[17])
        thick = max(2, int(round(0.45 * palm_width)))  # a finger is about a quarter of the palm wide, plus slack
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points[PALM]).astype(np.int32)), 255)
        for finger in FINGERS:
            chain = np.round(points[finger]).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(mask, [chain], False, 255, thick, lineType=cv2.LINE_8)
            cv2.circle(mask, tuple(int(v) for v in chain[-1, 0]), thick // 2 + 1, 255, -1)
    if margin > 0 and mask.any():
        grow = int(round(margin))
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1,) * 2))
        mask = np.maximum(mask, cv2.GaussianBlur(mask, (0, 0), margin / 2))
    return mask.astype(np.float32) / 255


def face_hull_points(landmarks: np.ndarray, forehead: float = 0.35) -> np.ndarray:
    """Jaw and brow points with the brows raised by `forehead` x the brow-to-chin height."""
    points = np.asarray(landmarks, dtype=np.float64)
    brows = points[17:27] + (points[17:27].mean(0) - points[8]) * forehead
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


def border_taper(size: int, share: float = 0.18) -> np.ndarray:
    """1 inside, easing to 0 at the crop's edge: a face cut by the crop never shows a square seam. Wide,
    since a tight model window (coverage 0.625) cuts the cheeks: a narrow ramp there reads as an edge."""
    width = max(2.0, size * share)
    ramp = np.clip((np.arange(size, dtype=np.float32) + 0.5) / width, 0, 1)
    ramp = np.minimum(ramp, ramp[::-1])
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep: no kink where the ramp meets the flat
    return np.minimum(ramp[:, None], ramp[None, :])
