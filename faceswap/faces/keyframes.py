"""Landmarks for every frame of a video with fewer mesh runs: measure key frames, interpolate between them.

The mesh is the costliest step of extraction. Where a face barely moves, the frames between two measured ones
get landmarks interpolated from them; where any landmark moved more than `tolerance` (a share of the eye
distance), or faces came, went or changed, the frames between are measured too, each from the one before.

A face that comes into view is found at the next detector run, up to `ARRIVAL_LOOKBACK` frames later, so results
are held back that many frames and a face the finder reports as `arrived` is followed back through them while
the mesh still finds it: its first frames are not lost (nor, in convert, left unswapped).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from faceswap import align
from faceswap.faces import REDETECT_FRAMES, Face, face_from_mesh, iou, mesh_to_68

DEFAULT_GAP = 2          # frames in a row that may be interpolated
DEFAULT_TOLERANCE = 0.08  # largest landmark move between key frames, as a share of the eye distance
ARRIVAL_LOOKBACK = REDETECT_FRAMES  # frames held back to follow an arriving face into


def redetect_calls(gap: int) -> int:
    """Finder calls between detector runs, so the detector still runs every REDETECT_FRAMES frames when only key
    frames (one in gap + 1) reach the finder."""
    return max(1, REDETECT_FRAMES // (max(0, gap) + 1))


def _pairs(before: list[Face], after: list[Face], tolerance: float) -> list[tuple[Face, Face]] | None:
    """The faces of two key frames paired one to one, or None when they cannot be interpolated."""
    if len(before) != len(after) or any(f.mesh is None for f in before + after):
        return None
    pairs, left = [], list(after)
    for face in before:
        overlaps = iou(face.bbox, [f.bbox for f in left]) if left else np.zeros(0)
        if not len(overlaps) or overlaps.max() < 0.5:
            return None
        match = left.pop(int(overlaps.argmax()))
        a, b = mesh_to_68(face.mesh), mesh_to_68(match.mesh)
        if np.abs(b - a).max() > tolerance * max(align.eye_distance(a), 1.0):
            return None
        pairs.append((face, match))
    return pairs


def lerp(a, b, share: float):
    """`share` of the way from a to b (numbers or arrays): key frames, bridged faces and hands alike."""
    return a + (b - a) * share


def _blend(a: Face, b: Face, share: float) -> Face:
    """The face `share` of the way from key-frame face a to b."""
    face = face_from_mesh(lerp(a.mesh, b.mesh, share), a.detection or a.score, 1.0)
    face.score = lerp(a.score, b.score, share)
    return face


def _share(first, between, last, by_count: float) -> float:
    """How far `between` lies from frame `first` to `last`: by their timestamps (frames of a variable
    frame rate video are unevenly spaced), by count where timestamps are missing or equal."""
    times = [getattr(f, "pts", None) for f in (first, between, last)]
    if None in times or not times[0] < times[1] < times[2]:
        return by_count
    return (times[1] - times[0]) / (times[2] - times[0])


class _HoldBack:
    """Results held back `depth` frames, so that faces found arriving can be followed back into them."""

    def __init__(self, finder, depth: int):
        self.finder, self.depth = finder, depth
        self.held: deque = deque()

    def push(self, frame, faces: list[Face], measured: bool, arrived: list[Face] = ()) -> Iterator:
        self.held.append((frame, list(faces), measured))
        for face in arrived:
            self._follow_back(face)
        while len(self.held) > self.depth:
            yield self.held.popleft()

    def flush(self) -> Iterator:
        while self.held:
            yield self.held.popleft()

    def _follow_back(self, face: Face) -> None:
        """Add `face` to the held frames before its own, newest first, while the mesh still finds it there
        and no face already listed there overlaps it."""
        for frame, faces, _ in list(self.held)[-2::-1]:
            found = self.finder.refine(frame.image, [face])
            if not found or any(iou(found[0].bbox, f.bbox)[0] > 0.3 for f in faces):
                return
            face = found[0]
            faces.append(face)


def find_faces(frames: Iterable, finder, gap: int = DEFAULT_GAP, tolerance: float = DEFAULT_TOLERANCE,
               video: bool = True) -> Iterator[tuple[object, list[Face], bool]]:
    """(frame, faces, measured) for every frame, in order; measured is False where faces were interpolated.
    `finder` tracks across calls; its `refine(image, faces)` measures near given faces without changing that,
    `follow(faces)` tracks on from those, `arrived` lists the faces its last call found coming in. gap 0: every
    frame measured; no video, or a finder without `refine`: every frame measured on its own."""
    if not video or not hasattr(finder, "refine"):
        for frame in frames:
            yield frame, finder(frame.image, video=video), True
        return
    out = _HoldBack(finder, ARRIVAL_LOOKBACK)

    def find(frame) -> tuple[list[Face], list[Face]]:
        return finder(frame.image), list(getattr(finder, "arrived", []))

    if gap <= 0:
        for frame in frames:
            faces, arrived = find(frame)
            yield from out.push(frame, faces, True, arrived)
        yield from out.flush()
        return
    key, key_frame, held = None, None, []  # the last key frame's faces, that frame, the frames since
    for frame in frames:
        if key is None:
            (key, arrived), key_frame = find(frame), frame
            yield from out.push(frame, key, True, arrived)
            continue
        if len(held) < gap:
            held.append(frame)
            continue
        found, arrived = find(frame)
        pairs = _pairs(key, found, tolerance)
        previous = key
        for step, between in enumerate(held, 1):
            if pairs is not None:
                faces = [_blend(a, b, _share(key_frame, between, frame, step / (len(held) + 1))) for a, b in pairs]
            else:
                faces = previous = finder.refine(between.image, previous)
            yield from out.push(between, faces, pairs is None)
        if pairs is None and len(previous) == len(found):
            # the key frame was measured in regions placed from the frames-old key: after a large move
            # those sit off-centre, so measure it again from the frame just before (as tracking would)
            again = finder.refine(frame.image, previous)
            if len(again) == len(found):
                found = again
                finder.follow(found)
        held = []
        key, key_frame = found, frame
        yield from out.push(frame, found, True, arrived)
    for frame in held:  # the last few frames: measured, tracking on from the last key frame
        faces, arrived = find(frame)
        yield from out.push(frame, faces, True, arrived)
    yield from out.flush()
