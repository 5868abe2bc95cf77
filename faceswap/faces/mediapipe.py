"""What MediaPipe's models share, for the face finder (litert.py) and the hands (hands.py): a LiteRT interpreter
per thread, SSD anchors and the decoding of their regressors, and rotated square regions of an image."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading

import numpy as np

from faceswap import assets
from faceswap.faces import iou

_local = threading.local()
log = logging.getLogger(__name__)


@contextlib.contextmanager
def _native_stderr_hidden(hide: bool):
    """Silence what native code writes straight to file descriptor 2, inside the block."""
    if not hide:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _Model:
    """A LiteRT interpreter with its tensors looked up once (the lookups cost as much as a small model call);
    `run(fill)` has `fill` write the input in place (outside the GIL, no copy) and gives the outputs by size."""

    def __init__(self, name: str, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        path = str(assets.model_file(name))
        with _native_stderr_hidden(not log.isEnabledFor(logging.DEBUG)):  # TFLite's "Created ... delegate" line
            self.interpreter = Interpreter(model_path=path, num_threads=threads)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        details = self.interpreter.get_output_details()
        self.order = [d["index"] for d in details]  # the model's own output order
        self.outputs = {int(np.prod(d["shape"])): d["index"] for d in details}
        self.by_size = len(self.outputs) == len(details)  # unique sizes: outputs can be told apart by size

    def run(self, fill) -> dict[int, np.ndarray]:
        assert self.by_size, "two outputs of the same size: use run_list"
        self._invoke(fill)
        return {size: self.interpreter.get_tensor(index) for size, index in self.outputs.items()}

    def run_list(self, fill) -> list[np.ndarray]:
        """The outputs in the model's own order."""
        self._invoke(fill)
        return [self.interpreter.get_tensor(index) for index in self.order]

    def _invoke(self, fill) -> None:
        fill(self.interpreter.tensor(self.input)()[0])  # the view must be gone before invoke
        self.interpreter.invoke()


def model(name: str, threads: int) -> _Model:
    """One model per thread (an interpreter is not thread-safe)."""
    cache = _local.__dict__.setdefault("models", {})
    if (name, threads) not in cache:
        cache[(name, threads)] = _Model(name, threads)
    return cache[(name, threads)]


def anchors(size: int, layout: list[tuple[int, int]]) -> np.ndarray:
    """Anchor centres (normalised) in MediaPipe's order: per stride, row by row, anchors per cell."""
    centres = []
    for stride, per_cell in layout:
        cells = size // stride
        ys, xs = np.mgrid[0:cells, 0:cells]
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], -1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


def detections(raw: np.ndarray, logits: np.ndarray, centres: np.ndarray, size: int, min_score: float) -> list:
    """An SSD's output (per anchor: centre dx, dy, w, h, then keypoint x, y pairs, in input px; a score logit)
    decoded, weighted-NMS merged above `min_score`: [(box x1 y1 x2 y2, keypoints K x 2, score)], units 0 to 1."""
    scores = 1 / (1 + np.exp(-np.clip(logits, -80, 80)))
    keep = scores >= min_score
    if not keep.any():
        return []
    raw, centres = raw[keep], centres[keep]
    centre = centres + raw[:, :2] / size
    half = raw[:, 2:4] / size / 2
    boxes = np.concatenate([centre - half, centre + half], 1)
    keypoints = centres[:, None, :] + raw[:, 4:].reshape(len(raw), -1, 2) / size
    return weighted_nms(boxes, keypoints, scores[keep])


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, min_iou: float = 0.3):
    """Cluster overlapping detections and average each cluster weighted by score (MediaPipe's NMS)."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    kept = []
    alive = np.ones(len(scores), bool)
    for i in range(len(scores)):
        if not alive[i]:
            continue
        members = alive & (iou(boxes[i], boxes) > min_iou)
        members[i] = True
        alive &= ~members
        weight = scores[members][:, None]
        box = (boxes[members] * weight).sum(0) / weight.sum()
        kps = (keypoints[members] * weight[:, :, None]).sum(0) / weight.sum()
        kept.append((box, kps, float(scores[i])))
    return kept


def roi_matrix(centre, side: float, angle: float, size: int) -> np.ndarray:
    """2x3 matrix from the image to a `size` px square of `side` px around `centre`, turned so that the direction
    `angle` (radians, image axes) runs along its x axis."""
    scale = size / side
    cos, sin = np.cos(-angle) * scale, np.sin(-angle) * scale
    cx, cy = centre
    return np.array([[cos, -sin, size / 2 - (cos * cx - sin * cy)], [sin, cos, size / 2 - (sin * cx + cos * cy)]])


def square_around(points: np.ndarray, angle: float) -> tuple[np.ndarray, float]:
    """(centre, side) of the box of `points` in axes turned by `angle` (radians, image axes), as `roi_matrix`
    turns them: its centre in image axes and its longer side."""
    cos, sin = np.cos(-angle), np.sin(-angle)
    turned = points @ np.array([[cos, sin], [-sin, cos]])
    lo, hi = turned.min(0), turned.max(0)
    return ((lo + hi) / 2) @ np.array([[cos, -sin], [sin, cos]]), float(max(hi - lo))
