"""Face finding behind one small interface, plus tracking across frames and landmark smoothing.

A face finder is a callable `finder(rgb_image, video=True) -> list[Face]` with a `reset()` method.
`make_finder("litert" | "fan")` builds one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# While faces are tracked, the detector runs again every this many frames to find faces that came in;
# results are held back as many frames so those can be followed back to where they appeared (keyframes).
REDETECT_FRAMES = 12

# MediaPipe FaceMesh (468) -> iBUG 68; a pair means the mean of the two points.
MESH_TO_68 = [
    127, 234, 93, (132, 58), (58, 172), 136, 150, 176, 152, 400, 379, 365, (397, 288), 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    (168, 6), (197, 195), 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 321, 314, 17, 84, 91, 78, 82, 13, 312, 308, 317, 14, 87,
]
_FIRST = np.array([i[0] if isinstance(i, tuple) else i for i in MESH_TO_68])
_SECOND = np.array([i[1] if isinstance(i, tuple) else i for i in MESH_TO_68])


def mesh_to_68(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points)
    return (points[_FIRST, :2] + points[_SECOND, :2]) / 2


@dataclass
class Face:
    bbox: np.ndarray                 # x1, y1, x2, y2 in image pixels
    score: float
    landmarks: np.ndarray            # 68 x 2, iBUG order, image pixels
    mesh: np.ndarray | None = None   # 468 x 3 when the finder gives it
    track: int = -1
    matrix: np.ndarray | None = None  # 2x3 alignment matrix, filled by extract/convert
    detection: float | None = None   # the detector's score, carried along while the face is tracked
    bridged: bool = False            # interpolated over a frame where its track was lost

    def to_record(self, blur: float, file: str | None) -> dict:
        """The face as the alignments file holds it (faceset.FACE_KEYS), after alignment."""
        return {"bbox": [round(float(v), 2) for v in self.bbox], "score": round(float(self.score), 4),
                "landmarks": np.round(self.landmarks, 2).tolist(),
                "matrix": [[float(v) for v in row] for row in self.matrix],
                "track": int(self.track), "blur": round(blur, 2), "file": file}

    @classmethod
    def from_record(cls, record: dict) -> Face:
        return cls(bbox=np.asarray(record["bbox"], np.float64), score=float(record["score"]),
                   landmarks=np.asarray(record["landmarks"], np.float64), track=int(record["track"]),
                   matrix=np.asarray(record["matrix"], np.float64))

    @property
    def size(self) -> float:
        return float(max(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))

    @property
    def centre(self) -> np.ndarray:
        return (np.asarray(self.bbox[:2]) + np.asarray(self.bbox[2:])) / 2


def face_from_mesh(mesh: np.ndarray, detection: float, presence: float) -> Face:
    """A Face from a 468-point mesh: 68 landmarks, the box of its points, detection x presence as score."""
    xy = mesh[:, :2]
    return Face(bbox=np.concatenate([xy.min(0), xy.max(0)]), score=detection * presence,
                landmarks=mesh_to_68(xy), mesh=mesh, detection=detection)


@dataclass
class Timed:
    """A run's summary: how long it took, and how many of something it did per second."""
    seconds: float = 0.0

    def rate(self, count: float) -> float:
        return count / self.seconds if self.seconds else 0.0


@dataclass
class FaceCounts(Timed):
    """What a pass over frames found: frames, faces, frames without a face, and the time it took."""
    frames: int = 0
    faces: int = 0
    frames_without_face: int = 0

    def count(self, faces: int) -> None:
        self.frames += 1
        self.faces += faces
        self.frames_without_face += not faces

    @property
    def fps(self) -> float:
        return self.rate(self.frames)


def iou(box, boxes) -> np.ndarray:
    """Intersection over union of one x1,y1,x2,y2 box with each of N boxes (N x 4)."""
    box, boxes = np.asarray(box, dtype=np.float64), np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    overlap = np.minimum(box[2:], boxes[:, 2:]) - np.maximum(box[:2], boxes[:, :2])
    inter = np.clip(overlap[:, 0], 0, None) * np.clip(overlap[:, 1], 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


@dataclass
class Tracker:
    """Gives faces stable track ids by box overlap with the faces of recent frames."""
    min_iou: float = 0.3
    max_gap: int = 15                      # frames a track may miss and still continue
    tracks: dict = field(default_factory=dict)  # id -> (bbox, last frame)
    next_id: int = 0

    def update(self, faces: list[Face], frame: int) -> list[Face]:
        live = {k: v for k, v in self.tracks.items() if frame - v[1] <= self.max_gap}
        ids = list(live)
        boxes = [live[tid][0] for tid in ids]
        pairs = sorted(((overlap, i, tid) for i, face in enumerate(faces) if ids
                        for tid, overlap in zip(ids, iou(face.bbox, boxes))), reverse=True)
        taken_faces, taken_tracks = set(), set()
        for overlap, i, tid in pairs:
            if overlap < self.min_iou or i in taken_faces or tid in taken_tracks:
                continue
            faces[i].track = tid
            taken_faces.add(i)
            taken_tracks.add(tid)
        for i, face in enumerate(faces):
            if i not in taken_faces:
                face.track = self.next_id
                self.next_id += 1
        for face in faces:
            live[face.track] = (np.asarray(face.bbox, dtype=float), frame)
        self.tracks = live
        return faces


class OneEuro:
    """One-Euro filter (Casiez et al. 2012): smooths jitter when still, follows quickly when moving."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.3, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x = self.dx = self.t = None

    @staticmethod
    def _alpha(cutoff, dt):
        return 1.0 / (1.0 + 1.0 / (2 * np.pi * cutoff) / dt)  # 1 / (1 + tau / dt)

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filter x at time t (seconds); `scale` (e.g. face size) makes the speed term size-independent."""
        x = np.asarray(x, dtype=np.float64)
        if self.x is None or t <= self.t:
            self.x, self.dx, self.t = x, np.zeros_like(x), t
            return x
        dt = t - self.t
        dx = (x - self.x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self.dx = a_d * dx + (1 - a_d) * self.dx
        speed = np.linalg.norm(self.dx.reshape(-1, 2), axis=1).mean() / max(scale, 1e-6)
        a = self._alpha(self.min_cutoff + self.beta * speed * 100, dt)
        self.x = a * x + (1 - a) * self.x
        self.t = t
        return self.x


class Smoother:
    """One-Euro smoothing of each track's landmarks."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.3, enabled: bool = True):
        self.params = (min_cutoff, beta)
        self.enabled = enabled
        self.filters: dict[int, OneEuro] = {}

    def __call__(self, faces: list[Face], t: float) -> list[Face]:
        if not self.enabled:
            return faces
        for face in faces:
            filt = self.filters.setdefault(face.track, OneEuro(*self.params))
            face.landmarks = filt(face.landmarks, t, scale=face.size)
        return faces


def make_finder(name: str = "litert", **options):
    """Build a face finder: "litert" (default, offline MediaPipe) or "fan" (face-alignment S3FD + 2DFAN4)."""
    if name == "litert":
        from faceswap.faces.litert import LiteRTFaces
        return LiteRTFaces(**options)
    if name == "fan":
        from faceswap.faces.fan import FANFaces
        return FANFaces(**{k: v for k, v in options.items() if k in ("min_score", "device")})
    raise ValueError(f"unknown aligner {name!r}: use litert or fan")


def finder_for(settings, gap: int = 0):
    """The finder face settings ask for; `gap` (the frames in a row it may interpolate) paces its re-detection."""
    from faceswap.faces import keyframes

    return make_finder(settings.aligner, detector=settings.detector, min_score=settings.min_score,
                       redetect_every=keyframes.redetect_calls(gap))
