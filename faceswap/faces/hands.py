"""Hands near faces, offline: MediaPipe's palm detector and 21-point hand landmark model on ai-edge-litert.

Palms are looked for only in a square region around each face (a hand in front of a face lies in it), every
`REDETECT_FRAMES` frames while hands are tracked and every `IDLE_REDETECT` frames while none is; in between, as
MediaPipe does, each hand is measured again in the region its last landmarks give. From MediaPipe's graphs: 18
regressors per palm anchor (box, then 7 keypoints: wrist first, the middle finger's base third).
"""
from __future__ import annotations

import numpy as np

from faceswap import align, assets
from faceswap.faces import REDETECT_FRAMES, Face, iou
from faceswap.faces.keyframes import lerp
from faceswap.faces.mediapipe import anchors, detections, model, roi_matrix, square_around

PALM_FILE, PALM_SIZE = "palm_detection_lite.tflite", 192
HAND_FILE, HAND_SIZE = "hand_landmark_lite.tflite", 224
PALM_ANCHORS = anchors(PALM_SIZE, [(8, 2), (16, 6)])  # 24 x 24 x 2 + 12 x 12 x 6 = 2016
IDLE_REDETECT = 8          # frames between palm searches while no hand is tracked
SEARCH_SCALE = 2.5         # the palm search region around a face, times the face's size
MIN_PRESENCE = 0.5
MIN_PALM = 0.5


def _direction(a, b) -> float:
    return float(np.arctan2(b[1] - a[1], b[0] - a[0]))


class HandFinder:
    """Hands (21 x 2 points in image pixels each) near the given faces, tracked across calls in a video."""
    VERSION = 1  # raised when what it finds changes (not the model files: `identity` names those)

    def __init__(self):
        assets.model_file(PALM_FILE)  # fail early, with the fixing command, if missing or altered
        assets.model_file(HAND_FILE)
        self.reset()

    @property
    def identity(self) -> str:
        """Which finder this is, for hands kept from an earlier run: its version and its models' sha256."""
        return f"{self.VERSION}:{assets.expected_sha256(PALM_FILE)[:12]}:{assets.expected_sha256(HAND_FILE)[:12]}"

    def reset(self) -> None:
        self.tracked, self.since_detect = [], 10 ** 6

    def search_due(self) -> bool:
        """Whether the next call looks for palms (else it only follows the tracked hands)."""
        return self.since_detect + 1 >= (REDETECT_FRAMES if self.tracked else IDLE_REDETECT)

    def __call__(self, image: np.ndarray, faces: list[Face], video: bool = True) -> list[np.ndarray]:
        """Hands near `faces`; in a video tracked hands are followed on even where the face they cover was lost."""
        if not video:
            self.reset()
        hands = [h for h in (self._landmarks(image, *self._roi_from_points(p)) for p in self.tracked) if h is not None]
        if not faces:
            self.tracked = hands
            return hands
        if not video or self.search_due():
            self.since_detect = 0
            for face in faces:
                for roi in self._palms(image, face):
                    hand = self._landmarks(image, *roi)
                    if hand is not None and not any(_overlap(hand, h) > 0.3 for h in hands):
                        hands.append(hand)
        else:
            self.since_detect += 1
        hands = [h for h in hands if any(near(h, f) for f in faces)]
        self.tracked = hands if video else []
        return hands

    def _palms(self, image: np.ndarray, face: Face) -> list[tuple]:
        """Hand regions (centre, side, up) from the palms found in the square around `face`."""
        side = face.size * SEARCH_SCALE
        matrix = roi_matrix(face.centre, side, 0.0, PALM_SIZE)
        crop = align.warp(image, matrix, PALM_SIZE, border=0)
        outputs = model(PALM_FILE, threads=1).run_list(
            lambda tensor: np.multiply(crop, np.float32(1 / 255), out=tensor, casting="unsafe"))
        raw, logits = outputs[0].reshape(-1, 18), outputs[1].reshape(-1)
        back = align.invert(matrix)
        regions = []
        for box, kps, _ in detections(raw, logits, PALM_ANCHORS, PALM_SIZE, MIN_PALM):
            kps = align.transform_points(kps * PALM_SIZE, back)
            corners = align.transform_points(box.reshape(2, 2) * PALM_SIZE, back)
            palm = float(np.abs(corners[1] - corners[0]).max())
            up = _direction(kps[0], kps[2])  # wrist -> base of the middle finger
            centre_px = align.transform_points(((box[:2] + box[2:]) / 2 * PALM_SIZE)[None], back)[0]
            centre_px = centre_px + 0.5 * palm * np.array([np.cos(up), np.sin(up)])
            regions.append((centre_px, 2.6 * palm, up))
        return regions

    def _landmarks(self, image: np.ndarray, centre, side: float, up: float) -> np.ndarray | None:
        matrix = roi_matrix(centre, side, up + np.pi / 2, HAND_SIZE)  # `up` points up in it
        crop = align.warp(image, matrix, HAND_SIZE, border=0)
        outputs = model(HAND_FILE, threads=1).run_list(
            lambda tensor: np.multiply(crop, np.float32(1 / 255), out=tensor, casting="unsafe"))
        if float(outputs[1].flat[0]) < MIN_PRESENCE:
            return None
        points = outputs[0].reshape(21, 3)[:, :2].astype(np.float64)
        return align.transform_points(points, align.invert(matrix))

    @staticmethod
    def _roi_from_points(points: np.ndarray) -> tuple:
        """The next frame's region from a hand's landmarks: turned wrist-to-middle-finger up, 2x the box of the
        palm and finger bases, moved a tenth of it towards the fingers (MediaPipe's landmarks-to-ROI)."""
        up = _direction(points[0], points[9])
        centre, side = square_around(points[[0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18]], up + np.pi / 2)
        side = side * 2.0
        centre = centre + 0.1 * side / 2.0 * np.array([np.cos(up), np.sin(up)])
        return centre, side, up


def between(before: list[np.ndarray], after: list[np.ndarray]) -> list[np.ndarray]:
    """The hands of a frame between two measured ones: each hand half-way to its match (by box overlap); a hand
    in only one of the two is kept as it is there (arriving or leaving: better kept whole than painted over)."""
    hands, left = [], list(after)
    for hand in before:
        overlaps = [_overlap(hand, other) for other in left]
        hands.append(lerp(hand, left.pop(int(np.argmax(overlaps))), 0.5) if overlaps and max(overlaps) > 0.3 else hand)
    return hands + left


def _box(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points.min(0), points.max(0)])


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(iou(_box(a), _box(b)[None])[0])


def near(hand: np.ndarray, face: Face) -> bool:
    """The hand's box reaches into the face's box grown by half its size."""
    grow = face.size / 2
    x1, y1, x2, y2 = face.bbox[0] - grow, face.bbox[1] - grow, face.bbox[2] + grow, face.bbox[3] + grow
    hx1, hy1, hx2, hy2 = _box(hand)
    return hx1 < x2 and hx2 > x1 and hy1 < y2 and hy2 > y1
