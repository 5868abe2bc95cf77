"""Default face finder, offline: MediaPipe BlazeFace (detector) + FaceMesh (468 points) on ai-edge-litert.

Video mode tracks like MediaPipe does: once a face is found, the next frame's region comes from the
previous landmarks and only the mesh runs; the detector runs again when a face is lost and every
`redetect_every` frames (to pick up faces that enter). The mesh's face-presence score rejects what
the detector alone mistakes for a face (cartoon text in no_face.mp4).
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from faceswap import align, assets
from faceswap.faces import REDETECT_FRAMES, Face, face_from_mesh, iou
from faceswap.faces.mediapipe import anchors, detections, model, roi_matrix, square_around

DETECTORS = {
    "full": ("face_detection_full_range.tflite", 192, [(4, 1)]),
    "short": ("face_detection_short_range.tflite", 128, [(8, 2), (16, 6)]),
}
MESH_FILE, MESH_SIZE = assets.MESH_FILE, 192
ROI_SCALE = 1.5


class LiteRTFaces:
    """Detect faces and their 68 landmarks (plus the 468-point mesh) in RGB frames."""

    name = "litert"

    def __init__(self, detector: str = "full", min_score: float = 0.5, threads: int | None = None,
                 redetect_every: int = REDETECT_FRAMES, min_presence: float = 0.9):
        self.det_file, self.det_size, layout = DETECTORS[detector]
        self.anchors = anchors(self.det_size, layout)
        # one thread on small machines: decoding and PNG writing fill the other core, and a second XNNPACK
        # thread costs more CPU than it saves wall time
        self.min_score = min_score
        self.threads = threads or (2 if (os.cpu_count() or 1) >= 4 else 1)
        self.redetect_every, self.min_presence = redetect_every, min_presence
        assets.model_file(self.det_file)  # fail early, with the fixing command, if missing or altered
        assets.model_file(MESH_FILE)
        self.reset()

    def detect_boxes(self, image: np.ndarray):
        """BlazeFace: [(box x1 y1 x2 y2, 6 keypoints, score)] in image pixels."""
        h, w = image.shape[:2]
        size = self.det_size
        scale = size / max(h, w)
        small_w, small_h = max(1, round(w * scale)), max(1, round(h * scale))
        pad_x, pad_y = (size - small_w) // 2, (size - small_h) // 2
        # shrink first, then letterbox: padding the full frame to a square first costs far more; halvings
        # before the area resize: cheaper than one large area resize
        halvings = int(np.floor(np.log2(max(min(w / small_w, h / small_h), 1))))
        small = cv2.resize(align.halve(image, halvings), (small_w, small_h), interpolation=cv2.INTER_AREA)
        square = cv2.copyMakeBorder(small, pad_y, size - small_h - pad_y, pad_x, size - small_w - pad_x,
                                    cv2.BORDER_CONSTANT)

        def fill(tensor):  # [-1, 1]
            np.multiply(square, np.float32(1 / 127.5), out=tensor, casting="unsafe")
            np.subtract(tensor, np.float32(1), out=tensor)

        outputs = model(self.det_file, self.threads).run(fill)
        count = len(self.anchors)
        raw, logits = outputs[count * 16].reshape(count, 16), outputs[count].reshape(count)
        return [((box * size - [pad_x, pad_y, pad_x, pad_y]) / scale, (kps * size - [pad_x, pad_y]) / scale, score)
                for box, kps, score in detections(raw, logits, self.anchors, size, self.min_score)]

    def mesh(self, image: np.ndarray, centre, side: float, angle: float):
        """Run FaceMesh on a rotated square region; (468x3 points in image pixels, presence)."""
        matrix = roi_matrix(centre, side, angle, MESH_SIZE)
        crop = align.warp(image, matrix, MESH_SIZE, cv2.BORDER_CONSTANT)  # area-averaged when shrinking
        outputs = model(MESH_FILE, self.threads).run(
            lambda tensor: np.multiply(crop, np.float32(1 / 255), out=tensor, casting="unsafe"))  # [0, 1]
        points = outputs[1404].reshape(468, 3).astype(np.float64)
        presence = 1 / (1 + np.exp(-min(max(float(outputs[1].flat[0]), -80.0), 80.0)))
        xy = align.transform_points(points[:, :2], align.invert(matrix))
        return np.concatenate([xy, points[:, 2:] / (MESH_SIZE / side)], 1), presence

    def _face_from_roi(self, image, centre, side, angle, detection: float) -> Face | None:
        points, presence = self.mesh(image, centre, side, angle)
        return None if presence < self.min_presence else face_from_mesh(points, detection, presence)

    @staticmethod
    def _roi_from_points(xy: np.ndarray):
        """Square region around landmarks, rotated so the eye corners (mesh 33, 263) are level."""
        left, right = xy[33], xy[263]
        angle = float(np.arctan2(right[1] - left[1], right[0] - left[0]))
        centre, side = square_around(xy, angle)
        return centre, side * ROI_SCALE, angle

    def _detect(self, image: np.ndarray, known: list[Face] = ()) -> list[Face]:
        """Run the detector; faces it finds that overlap a `known` (tracked) face are not meshed again."""
        faces = list(known)
        for box, kps, score in self.detect_boxes(image):
            if known and iou(box, np.array([k.bbox for k in known])).max() > 0.3:
                continue
            centre = (box[:2] + box[2:]) / 2
            side = float(max(box[2:] - box[:2])) * ROI_SCALE
            angle = float(np.arctan2(kps[1, 1] - kps[0, 1], kps[1, 0] - kps[0, 0]))
            if (face := self._face_from_roi(image, centre, side, angle, score)) is not None:
                # second pass on the landmark-derived region: tighter and rotation-exact; a real face
                # passes both, while a detector false alarm rarely survives the second look
                refined = self._face_from_roi(image, *self._roi_from_points(face.mesh[:, :2]), score)
                if refined is not None:
                    faces.append(refined)
        return _dedupe(faces)

    def __call__(self, image: np.ndarray, video: bool = True) -> list[Face]:
        """Faces in one RGB frame, tracked from the previous one in a video. `arrived` then lists the detector's
        faces that overlap none of the previous call's: in view a few frames already, perhaps."""
        previous, detected = self.previous, True
        if not video or not previous:
            faces = self._detect(image)
        else:
            faces = self.refine(image, previous)
            if len(faces) < len(previous):  # lost one: look again
                faces = self._detect(image)
            elif self.since_detect + 1 >= self.redetect_every:  # every Nth call: look for faces that came in
                faces = self._detect(image, faces)
            else:
                detected = False
        self.since_detect = 0 if detected else self.since_detect + 1
        self.arrived = []
        if video and detected:
            boxes = np.array([f.bbox for f in previous]).reshape(-1, 4)
            self.arrived = [f for f in faces if not len(boxes) or iou(f.bbox, boxes).max() < 0.3]
        self.previous = faces if video else []
        return faces

    def refine(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        """Mesh again, in this image, the region of each given face (no detection; tracking state kept)."""
        return [face for prev in faces if (face := self._follow_one(image, prev)) is not None]

    def _follow_one(self, image: np.ndarray, prev: Face, tries: int = 3) -> Face | None:
        """Mesh the region where `prev` was; a face found well off it (a fast move, a cut) was seen off-centre:
        look again where it points, and give up (the caller re-detects) when that does not settle."""
        centre, side, angle = self._roi_from_points(prev.mesh[:, :2])
        for _ in range(tries):
            face = self._face_from_roi(image, centre, side, angle, prev.detection or prev.score)
            if face is None:
                return None
            new_centre, new_side, new_angle = self._roi_from_points(face.mesh[:, :2])
            if np.linalg.norm(new_centre - centre) < 0.15 * side and 0.8 < new_side / side < 1.25:
                return face
            centre, side, angle = new_centre, new_side, new_angle
        return None

    def follow(self, faces: list[Face]) -> None:
        """Track on, in the next frame, from these faces."""
        self.previous = list(faces)

    def reset(self) -> None:
        self.previous: list[Face] = []
        self.arrived: list[Face] = []
        self.since_detect = 0


def _dedupe(faces: list[Face], max_iou: float = 0.5) -> list[Face]:
    kept = []
    for face in sorted(faces, key=lambda f: -f.score):
        if all(iou(face.bbox, k.bbox)[0] < max_iou for k in kept):
            kept.append(face)
    return kept
