"""Masks for the swapped face and compositing it back into the frame (alpha or Poisson)."""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import cv2
import numpy as np

from faceswap import align, masks
from faceswap.settings import extent_px


@dataclass(frozen=True)
class MaskRecipe:
    """The swapped face's mask, decided in one place: a face region (`kind`), grown or shrunk (`erode`) and
    feathered (`feather`) in frame px or a share of the face, eased out at the window's edge, hands cut out."""
    kind: str = "landmarks"       # landmarks | predicted | combined
    erode: str = "0"
    feather: str = "0"
    forehead: float = 0.15        # a low forehead margin: the model's output is weakest at the crop's top edge
    crop_fade: float = 0.18       # masks.border_taper's share: the face eased out before the crop's edge
    window_fade: float = 0.05     # and again after the grow and feather, which would carry it out to the edge
    hand_margin: float = 0.03     # hands are kept whole: grown and eased out by this share of the face

    def face(self, landmarks: np.ndarray | None, predicted: np.ndarray | None, size: int) -> np.ndarray:
        """float32 face-region mask (model space), eased out at the crop's edge: what colour and detail weigh by."""
        hull = masks.hull_mask(landmarks, (size, size), self.forehead) if landmarks is not None else None
        if predicted is not None:
            predicted = learned_visible(predicted)
        if self.kind == "landmarks" or predicted is None:
            mask = hull if hull is not None else np.ones((size, size), np.float32)
        elif self.kind == "predicted" or hull is None:
            mask = predicted
        else:
            mask = np.minimum(hull, predicted)
        return refine(mask * _taper(size, self.crop_fade))

    def alpha(self, face: np.ndarray, face_px: float) -> np.ndarray:
        """The face mask grown (or shrunk) and feathered for a face `face_px` frame px wide: what is pasted. Eased
        out again at the window's edge, where the grow would otherwise leave a hard line (across the chin)."""
        size = face.shape[0]
        scale = size / face_px  # frame px -> model px
        erode = int(round(extent_px(self.erode, face_px) * scale))
        return refine(face, erode, extent_px(self.feather, face_px) * scale) * _taper(size, self.window_fade)


@functools.cache
def _taper(size: int, share: float) -> np.ndarray:
    taper = masks.border_taper(size, share)
    taper.setflags(write=False)  # shared by every face of this size
    return taper


def learned_visible(predicted: np.ndarray, low: float = 0.3, high: float = 0.7) -> np.ndarray:
    """A learned mask made decisive: it reads short of 1 over a visible face and above 0 over what covers it; a
    smooth step from `low` to `high` keeps the face whole and the occluder out (MEASUREMENTS.md, "Occlusion")."""
    ramp = np.clip((predicted.astype(np.float32) - low) / (high - low), 0, 1)
    return ramp * ramp * (3 - 2 * ramp)


def refine(mask: np.ndarray, erode: int = 0, blur: int = 0) -> np.ndarray:
    """Erode (positive) or dilate (negative) by |erode| px, then feather with a Gaussian of `blur` px."""
    if erode:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(erode) + 1,) * 2)
        mask = cv2.erode(mask, kernel) if erode > 0 else cv2.dilate(mask, kernel)
    if blur:
        mask = cv2.GaussianBlur(mask, (0, 0), blur / 2)
    return np.clip(mask, 0, 1).astype(np.float32)


def sharpen(image: np.ndarray, amount: float) -> np.ndarray:
    if amount <= 0:
        return image
    blurred = cv2.GaussianBlur(image, (0, 0), 1.0)
    return np.clip(image + amount * (image - blurred), 0, 1)


def paste(frame: np.ndarray, face: np.ndarray, mask: np.ndarray, matrix: np.ndarray, blend: str = "alpha",
          hands: list[np.ndarray] = (), hand_margin: float = 0.0, enlarge: int = cv2.INTER_LINEAR,
          grain=None) -> np.ndarray:
    """Warp `face` (float RGB, model space) and `mask` back through `matrix` (image -> model) into `frame`, and
    return it; the frame keeps its own pixels under `hands`; `grain(face, region, alpha)` adds noise
    (grain.Grain). Only the box the mask covers is touched, in uint8 with one cv2.blendLinear."""
    x, y, w, h = cv2.boundingRect((mask > 1 / 255).view(np.uint8))
    if not w:
        return frame
    x0, y0, x1, y1 = align.source_box(matrix, (x, y, x + w, y + h), frame.shape, 2)
    if x1 <= x0 or y1 <= y0:
        return frame
    shifted = align.invert(matrix)
    shifted[:, 2] -= [x0, y0]
    roi = (x1 - x0, y1 - y0)
    face_u8 = np.clip(face * 255 + 0.5, 0, 255).astype(np.uint8)
    # `enlarge` (align.enlarge_flag) also serves a slight shrink: bilinear would soften it
    flags = enlarge if abs(np.linalg.det(matrix[:, :2])) < 1.5 ** 2 else cv2.INTER_LINEAR
    face_img = cv2.warpAffine(face_u8, shifted, roi, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(mask, shifted, roi, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if len(hands):
        alpha *= 1 - masks.hand_mask([np.asarray(h) - [x0, y0] for h in hands], alpha.shape, hand_margin)
    if grain is not None:
        face_img = grain(face_img, frame[y0:y1, x0:x1], alpha)
    if blend == "seamless":
        binary = (alpha > 0.5).astype(np.uint8) * 255
        if binary.any():
            ys, xs = np.nonzero(binary)
            centre = (int((xs.min() + xs.max()) / 2) + x0, int((ys.min() + ys.max()) / 2) + y0)
            full_face = np.zeros_like(frame)
            full_mask = np.zeros(frame.shape[:2], np.uint8)
            full_face[y0:y1, x0:x1] = face_img
            full_mask[y0:y1, x0:x1] = binary
            with contextlib.suppress(cv2.error):  # a mask touching the border: alpha below instead
                frame[:] = cv2.seamlessClone(full_face, frame, full_mask, centre, cv2.NORMAL_CLONE)
                return frame
    region = frame[y0:y1, x0:x1]
    frame[y0:y1, x0:x1] = cv2.blendLinear(face_img, np.ascontiguousarray(region), alpha, 1 - alpha)
    return frame


def watermark(frame: np.ndarray, text: str) -> np.ndarray:
    """A visible label in the lower-left corner, with a dark outline so it reads on any background."""
    out = frame.copy()
    scale = max(0.4, frame.shape[1] / 1280)
    thickness = max(1, int(round(scale * 2)))
    origin = (int(10 * scale) + 4, frame.shape[0] - int(12 * scale) - 4)
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out
