"""The one face stage: the faces found in each frame, in order, made final. Each face is kept by size,
tracked, smoothed, bridged over a short loss inside its track, chosen (one person or all) and aligned.
Extract writes what it yields; convert swaps it.

It is fed `(frame, found faces, measured)` in frame order (from `keyframes.find_faces`, or faces read back
from an alignments file with `tracked=True`) and gives back the same triples, `bridge` frames later.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from faceswap import align
from faceswap.faces import Face, Smoother, Tracker
from faceswap.faces.identity import DECISION_FRAMES
from faceswap.faces.keyframes import lerp


@dataclass(frozen=True)
class FrameRef:
    """A frame's place (index, time, shape) and the hands found in it (21 x 2 points); the decoded frame itself
    only where it is kept (`of(..., keep=True)`)."""
    index: int
    pts: float
    shape: tuple
    hands: tuple = ()
    frame: object = None  # the decoded frame, kept only where needed: to tell who a face is, or to swap it

    @classmethod
    def of(cls, frame, hands=(), keep: bool = False) -> FrameRef:
        return cls(frame.index, frame.pts, frame.image.shape, tuple(hands), frame if keep else None)

    @property
    def image(self):
        return None if self.frame is None else self.frame.image


class TrackChooser:
    """Keeps one person: 'largest', 'center' (nearest the frame centre) or a numeric track id."""

    def __init__(self, rule: str | None):
        self.rule = rule
        self.current: int | None = None

    def __call__(self, faces: list[Face], shape) -> list[Face]:
        if not self.rule or not faces:
            return faces
        if self.rule not in ("largest", "center"):
            return [f for f in faces if f.track == int(self.rule)]
        by_id = {f.track: f for f in faces}
        if self.current in by_id:
            return [by_id[self.current]]
        if self.rule == "largest":
            best = max(faces, key=lambda f: f.size)
        else:
            centre = np.array([shape[1] / 2, shape[0] / 2])
            best = min(faces, key=lambda f: np.linalg.norm(f.centre - centre))
        self.current = best.track
        return [best]


def _between(before: Face, after: Face, share: float, track: int) -> Face:
    return Face(bbox=lerp(before.bbox, after.bbox, share), score=min(before.score, after.score),
                landmarks=lerp(before.landmarks, after.landmarks, share), track=track, bridged=True)


class FaceStage:
    def __init__(self, min_size: float = 32, track: str | None = None, max_faces: int = 0, smooth: bool = True,
                 smooth_cutoff: float = 1.0, smooth_beta: float = 0.3, bridge: int = 0, consecutive: bool = True,
                 tracked: bool = False, identity: list | None = None):
        """`consecutive`: frames of one video (else no tracking, smoothing or bridging); `tracked`: faces come
        tracked and smoothed (an alignments file); `identity`: track filters (faces/identity.py), for which
        frames are held back until each new track is decided."""
        self.min_size, self.max_faces = min_size, max_faces
        self.tracked = tracked
        self.tracker = Tracker()
        self.smoother = Smoother(smooth_cutoff, smooth_beta, smooth and consecutive and not tracked)
        self.chooser = TrackChooser(track)
        self.bridge = bridge if consecutive else 0
        self.identity = identity or []
        self.hold = max(self.bridge, DECISION_FRAMES if self.identity and consecutive else 0)
        self.pending: deque = deque()                       # kept, tracked faces not yet final
        self.history: deque = deque(maxlen=self.bridge + 1)  # the frames just made final, to bridge from
        self.bridged = 0

    @classmethod
    def of(cls, settings, consecutive: bool, tracked: bool = False, identity: list | None = None) -> FaceStage:
        """The stage that face settings (settings.FaceSettings: extract's or convert's) ask for."""
        return cls(settings.min_size, settings.track, settings.max_faces, settings.smooth, settings.smooth_cutoff,
                   settings.smooth_beta, settings.bridge, consecutive, tracked, identity)

    def push(self, frame, found: list[Face], measured: bool = True) -> list[tuple]:
        """Take one frame's faces; returns the frames whose faces became final (none, one, or at the end more)."""
        faces = [f for f in found if f.size >= self.min_size]
        if not self.tracked:
            faces = self.smoother(self.tracker.update(faces, frame.index), frame.pts)
        for track_filter in self.identity:
            track_filter.observe(frame.image, frame.index, faces)
        self.pending.append((frame, faces, measured))
        return [self._final()] if len(self.pending) > self.hold else []

    def flush(self) -> list[tuple]:
        return [self._final() for _ in range(len(self.pending))]

    def run(self, items: Iterable[tuple]) -> Iterator[tuple]:
        for frame, found, measured in items:
            yield from self.push(frame, found, measured)
        yield from self.flush()

    def _final(self) -> tuple:
        frame, faces, measured = self.pending.popleft()
        self.history.append((frame, faces))
        faces = faces + self._bridged(frame, {f.track for f in faces})
        faces = [f for f in faces if all(track_filter.keeps(f) for track_filter in self.identity)]
        faces = self.chooser(faces, frame.shape)
        if self.max_faces:
            faces = sorted(faces, key=lambda f: -f.size)[:self.max_faces]
        for face in faces:
            face.matrix = align.alignment_matrix(face.landmarks)
        return frame, faces, measured

    def _bridged(self, frame, present: set[int]) -> list[Face]:
        """Faces of tracks seen up to `bridge` frames before and after this frame but lost in it."""
        if not self.bridge:
            return []
        before = {f.track: (f, i) for i, (_, faces) in enumerate(list(self.history)[:-1]) for f in faces}
        after: dict[int, tuple[Face, int]] = {}
        for i, (_, faces, _) in enumerate(self.pending):
            for f in faces:
                after.setdefault(f.track, (f, i))
        added = []
        last = len(self.history) - 1
        for track in (before.keys() & after.keys()) - present:
            (face_before, i), (face_after, j) = before[track], after[track]
            back, ahead = last - i, j + 1  # frames from the face before, and to the face after
            if back + ahead - 1 <= self.bridge:
                added.append(_between(face_before, face_after, back / (back + ahead), track))
        self.bridged += len(added)
        return added
