"""Who a face is, offline: dlib's ResNet face descriptor (128 numbers), aligned by dlib's 5-point shape predictor
on our face box; nothing outside faces/ knows which embedding this is. A track is decided by the median distance of
several of its faces, so a few odd frames do not split a person; the default threshold, 0.6, lies between the
same-person and other-person distances (docs/MEASUREMENTS.md, "Identity distances").
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from faceswap import assets, images, media
from faceswap.errors import FaceswapError
from faceswap.faces import Face, make_finder

log = logging.getLogger(__name__)
DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE_FILE = "shape_predictor_5_face_landmarks.dat"
DEFAULT_THRESHOLD = 0.6
SAMPLES = 3          # faces of a track embedded to decide it (the median of three outvotes one odd face)
SAMPLE_GAP = 4       # frames between them
DECISION_FRAMES = SAMPLE_GAP * (SAMPLES - 1)  # how long the face stage holds frames back for a decision


class Embedder:
    def __init__(self):
        try:
            import dlib
        except ImportError:
            raise FaceswapError("identity needs dlib: pip install dlib-bin") from None
        self.dlib = dlib
        self.shape = dlib.shape_predictor(str(assets.model_file(SHAPE_FILE)))
        self.descriptor = dlib.face_recognition_model_v1(str(assets.model_file(DESCRIPTOR_FILE)))

    def __call__(self, image: np.ndarray, face: Face) -> np.ndarray:
        x1, y1, x2, y2 = (int(round(v)) for v in face.bbox)
        shape = self.shape(image, self.dlib.rectangle(x1, y1, x2, y2))
        return np.asarray(self.descriptor.compute_face_descriptor(np.ascontiguousarray(image), shape))


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def reference(path: Path, embedder: Embedder, finder) -> list[np.ndarray]:
    """Embeddings of the person in a photo, a folder of photos or a video (its first frame with a face):
    the largest face of each image (said so when there are several); an image with no face is an error."""
    path = Path(path)
    if not path.exists():
        raise FaceswapError(f"{path}: reference photo not found")
    if path.is_dir():
        pictures = [(p.name, images.read_image(p)) for p in media.image_files(path)]
    elif path.suffix.lower() in media.VIDEO_SUFFIXES:
        pictures = [(path.name, next(media.read_frames(path)).image)]
    else:
        pictures = [(path.name, images.read_image(path))]
    if not pictures:
        raise FaceswapError(f"{path}: holds no photos")
    found = []
    for name, image in pictures:
        faces = finder(image, video=False)
        if not faces:
            raise FaceswapError(f"{name}: no face found in the reference photo")
        if len(faces) > 1:
            log.warning("%s: %d faces in the reference photo; using the largest", name, len(faces))
        found.append(embedder(image, max(faces, key=lambda f: f.size)))
    return found


class TrackFilter:
    """Keeps the tracks whose person is (or, with `exclude`, is not) the reference: the median distance of up to
    SAMPLES of its faces, SAMPLE_GAP frames apart, each to the nearest reference."""

    def __init__(self, references: list[np.ndarray], threshold: float = DEFAULT_THRESHOLD, exclude: bool = False,
                 embedder: Embedder | None = None):
        self.references, self.threshold, self.exclude = references, threshold, exclude
        self.embedder = embedder or Embedder()
        self.samples: dict[int, list[float]] = {}
        self.last: dict[int, int] = {}
        self.decided: dict[int, bool] = {}

    def fresh(self) -> TrackFilter:
        """The same references for another clip (track ids start again)."""
        return TrackFilter(self.references, self.threshold, self.exclude, self.embedder)

    def observe(self, image: np.ndarray, index: int, faces: list[Face]) -> None:
        for face in faces:
            seen = self.samples.setdefault(face.track, [])
            if len(seen) < SAMPLES and (not seen or index - self.last[face.track] >= SAMPLE_GAP):
                embedding = self.embedder(image, face)
                seen.append(min(distance(embedding, r) for r in self.references))
                self.last[face.track] = index
                log.debug("track %d, frame %d: distance %.3f to the reference", face.track, index, seen[-1])

    def keeps(self, face: Face) -> bool:
        seen = self.samples.get(face.track)
        if not seen:
            return False
        found = float(np.median(seen))
        kept = (found > self.threshold) if self.exclude else (found <= self.threshold)
        if self.decided.get(face.track) != kept:
            self.decided[face.track] = kept
            log.info("track %d: distance %.3f to the %s reference: %s", face.track, found,
                     "excluded" if self.exclude else "wanted", "kept" if kept else "left out")
        return kept


def filters_for(settings) -> list[TrackFilter]:
    """The track filters a stage's settings ask for (`reference`, `exclude`), with one embedder between them."""
    if not (settings.reference or settings.exclude):
        return []
    embedder, finder = Embedder(), make_finder(settings.aligner, detector=settings.detector)
    return [TrackFilter(reference(path, embedder, finder), settings.reference_threshold, exclude, embedder)
            for path, exclude in ((settings.reference, False), (settings.exclude, True)) if path]
