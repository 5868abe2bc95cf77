"""What training shows: the preview grid, the loss log (CSV, TensorBoard when installed), the loss plot, a timelapse."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np
import torch

from faceswap import atomic, images
from faceswap.models import store

log = logging.getLogger(__name__)
ROWS = ["A", "A->A", "A->B", "B", "B->B", "B->A"]


def _to_uint8(batch: torch.Tensor) -> np.ndarray:
    return (batch.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)


@torch.no_grad()
def preview_grid(model, faces_a: torch.Tensor, faces_b: torch.Tensor, covered_a=(), covered_b=(),
                 scale: int = 2) -> np.ndarray:
    """Rows A, A->A, A->B, B, B->B, B->A (one column per face), as an RGB image; what covers a face (`covered_*`:
    masks at the output size, or None) is tinted in rows A and B: training leaves it out of the loss."""
    was_training = model.training
    model.eval()
    rows = [faces_a, model(faces_a, "a")[0], model(faces_a, "b")[0],
            faces_b, model(faces_b, "b")[0], model(faces_b, "a")[0]]
    labels = list(ROWS)
    if model.cfg.latent_type == "vae":  # the code space: A's first face to B's first, through decoder A
        start, end = model.encoder.code(faces_a[:1])[0], model.encoder.code(faces_b[:1])[0]
        steps = torch.linspace(0, 1, len(faces_a), device=start.device)[:, None]
        rows.append(model.from_code(start + (end - start) * steps, "a")[0])
        labels.append("A..B")
    model.train(was_training)
    size = rows[1].shape[-1] * (scale if rows[1].shape[-1] <= 64 else 1)  # shown at the output's size
    label_w = 70
    cells = []  # a row per label: its tag, then a tile per face
    tints = {0: list(covered_a), 3: list(covered_b)}
    for number, (label, row) in enumerate(zip(labels, rows)):
        tiles = [cv2.resize(t, (size, size), interpolation=cv2.INTER_NEAREST if t.shape[0] <= size else cv2.INTER_AREA)
                 for t in _to_uint8(row)]
        for tile, covered in zip(tiles, tints.get(number, [])):
            if covered is not None:
                hit = cv2.resize(covered, (size, size)) > 0.5
                tile[hit] = (tile[hit] * 0.55 + np.array([0, 200, 255]) * 0.45).astype(np.uint8)
        tag = np.full((size, label_w, 3), 32, np.uint8)
        cv2.putText(tag, label, (6, size // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        cells += [tag, *tiles]
    return images.grid(cells, len(faces_a) + 1)


@torch.no_grad()
def sample_sheet(model, side: str, count: int = 16, seed: int = 0, columns: int = 4) -> np.ndarray:
    """New faces of a variational model: codes drawn from N(0, 1) through one decoder, as a grid image."""
    z = torch.randn(count, model.cfg.latent, generator=torch.Generator().manual_seed(seed))
    faces = _to_uint8(model.eval().from_code(z, side)[0])
    size = max(128, faces.shape[1])
    return images.grid([cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC) for f in faces], columns)


def loss_plot(steps, loss_a, loss_b, width: int = 640, height: int = 320) -> np.ndarray:
    """A small line plot of both losses (log scale) drawn with OpenCV."""
    image = np.full((height, width, 3), 255, np.uint8)
    if len(steps) < 2:
        return image
    margin = 40
    values = np.log10(np.clip(np.concatenate([loss_a, loss_b]), 1e-6, None))
    lo, hi = values.min(), values.max() + 1e-9
    x0, x1 = min(steps), max(steps)

    def points(series):
        xs = margin + (np.asarray(steps) - x0) / max(x1 - x0, 1) * (width - 2 * margin)
        ys = height - margin - (np.log10(np.clip(series, 1e-6, None)) - lo) / (hi - lo) * (height - 2 * margin)
        return np.stack([xs, ys], 1).astype(np.int32)

    cv2.rectangle(image, (margin, margin), (width - margin, height - margin), (200, 200, 200), 1)
    cv2.polylines(image, [points(loss_a)], False, (200, 60, 40), 1, cv2.LINE_AA)
    cv2.polylines(image, [points(loss_b)], False, (40, 90, 200), 1, cv2.LINE_AA)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, "loss A", (margin, 25), font, 0.5, (200, 60, 40), 1, cv2.LINE_AA)
    cv2.putText(image, "loss B", (margin + 80, 25), font, 0.5, (40, 90, 200), 1, cv2.LINE_AA)
    cv2.putText(image, f"{10 ** hi:.3g}", (2, margin + 4), font, 0.35, (0, 0, 0), 1)
    cv2.putText(image, f"{10 ** lo:.3g}", (2, height - margin), font, 0.35, (0, 0, 0), 1)
    cv2.putText(image, f"step {x0}..{x1}", (width // 2 - 50, height - 12), font, 0.45, (0, 0, 0), 1)
    return image


class LossLog:
    """Appends to the loss log (kept across resumes) and to TensorBoard when it is installed."""
    FIELDS = ["step", "loss_a", "loss_b", "code_l1", "lr", "examples_per_s", "elapsed_s"]

    def __init__(self, model_dir: Path, enabled: bool = True, upto: int | None = None):
        """`upto`: the checkpoint's step; rows logged after it (by a killed run) are dropped: those train again."""
        self.path = Path(model_dir) / store.LOSS_LOG
        self.enabled = enabled
        self.rows: list[dict] = []
        self.writer = None
        if not enabled:
            return
        if self.path.is_file():
            with open(self.path, newline="") as handle:
                self.rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(handle)]
            self.rows = [r for r in self.rows if upto is None or r["step"] <= upto]
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(Path(model_dir) / store.TENSORBOARD))
        except Exception:  # noqa: BLE001 - TensorBoard is optional
            self.writer = None

    def add(self, **row) -> None:
        if not self.enabled:
            return
        self.rows = [r for r in self.rows if r["step"] < row["step"]] + [row]
        if self.writer is not None:
            self.writer.add_scalars("loss", {"a": row["loss_a"], "b": row["loss_b"]}, int(row["step"]))

    def flush(self, model_dir: Path) -> None:
        if not self.enabled or not self.rows:
            return
        lines = [",".join(self.FIELDS)] + [",".join(f"{r.get(k, 0):.6g}" for k in self.FIELDS) for r in self.rows]
        atomic.write_bytes(self.path, ("\n".join(lines) + "\n").encode())
        steps = [int(r["step"]) for r in self.rows]
        images.write_png(Path(model_dir) / store.LOSS_PLOT,
                         loss_plot(steps, [r["loss_a"] for r in self.rows], [r["loss_b"] for r in self.rows]))
        if self.writer is not None:
            self.writer.flush()


def timelapse(frames_dir: Path, output: Path, fps: int = 8) -> Path | None:
    """Render the saved preview frames into a short video with moviepy."""
    frames = sorted(Path(frames_dir).glob("*.png"))
    if len(frames) < 2:
        return None
    from moviepy import ImageSequenceClip

    first = cv2.imread(str(frames[0]))
    size = (first.shape[1] // 2 * 2, first.shape[0] // 2 * 2)
    images = [cv2.cvtColor(cv2.resize(cv2.imread(str(f)), size), cv2.COLOR_BGR2RGB) for f in frames]
    with atomic.atomic_path(output) as tmp:
        ImageSequenceClip(images, fps=fps).write_videofile(str(tmp), codec="libx264", audio=False, logger=None)
    return output
