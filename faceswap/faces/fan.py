"""High-accuracy face finder: face-alignment's S3FD detector + 2DFAN4 landmarks (68 points), GPU when present.

face-alignment downloads its weights on first use into torch's hub cache with no hash check; offline without them it
fails deep inside with a URLError. We look for the files first and stop with one clear line saying how to get them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from faceswap.errors import FaceswapError
from faceswap.faces import Face

WEIGHT_PREFIXES = ("s3fd", "2DFAN4")


def weights_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def missing_weights() -> list[str]:
    folder = weights_dir()
    have = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    return [prefix for prefix in WEIGHT_PREFIXES if not any(name.startswith(prefix) for name in have)]


class FANFaces:
    name = "fan"

    def __init__(self, min_score: float = 0.5, device: str | None = None):
        if missing := missing_weights():
            raise FaceswapError(
                f"face-alignment weights ({', '.join(missing)}) are not in {weights_dir()}; on a machine with "
                "network run once: python -c \"import face_alignment as f; "
                "f.FaceAlignment(f.LandmarksType.TWO_D, device='cpu')\" (or copy the files there)")
        import face_alignment
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=self.device,
                                                  face_detector="sfd", flip_input=False)
        self.min_score = min_score

    def __call__(self, image: np.ndarray, video: bool = True) -> list[Face]:
        landmarks, scores, boxes = self.model.get_landmarks_from_image(image, return_bboxes=True,
                                                                      return_landmark_score=True)
        return [Face(bbox=np.asarray(box[:4], dtype=float), score=float(box[4]),
                     landmarks=np.asarray(points, dtype=float)[:, :2])
                for points, box in zip(landmarks or [], boxes or []) if not box[4] < self.min_score]

    def reset(self) -> None:
        pass
