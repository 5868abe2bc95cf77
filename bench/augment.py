"""Training augmentation, ours against an albumentations pipeline of the same operations, at 64 and 128 px.

Ours (training/data.py): one cv2.warpAffine for rotation, zoom, shift and flip together, an L*a*b* lookup
table for lightness and colour, albumentations' CLAHE. The albumentations pipeline: Affine + HorizontalFlip
(two warps), RandomBrightnessContrast + HueSaturationValue, CLAHE. Both on the work-size crops of a real face
set, without the random warp and masks (the same in both).
Last line: `ratio: X.XX` = albumentations time / ours at 64 px (use albumentations where it is within 1.1).
Usage: python bench/augment.py
"""
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import sample

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402

from faceswap.extract import extract  # noqa: E402
from faceswap.settings import Augment, ExtractSettings  # noqa: E402
from faceswap.training.data import Augmenter, FaceData  # noqa: E402


def ours(augmenter: Augmenter, data: FaceData, rng) -> None:
    size = data.model_size
    import cv2
    for index in range(len(data)):
        matrix, _ = augmenter.affine(rng)
        target = cv2.warpAffine(data.images[index], matrix, (size, size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        target = augmenter.lab_shift(target, rng)
        augmenter.colour(image=target)


def theirs(data: FaceData) -> None:
    size, s = data.model_size, Augment()
    pipeline = A.Compose([
        A.Affine(rotate=(-s.rotation, s.rotation), scale=(1 - s.zoom, 1 + s.zoom),
                 translate_percent=(-s.shift, s.shift), p=1.0),
        A.HorizontalFlip(p=s.flip),
        A.CenterCrop(int(data.work * data.coverage), int(data.work * data.coverage)),
        A.Resize(size, size),
        A.RandomBrightnessContrast(brightness_limit=s.brightness, contrast_limit=0.0, p=1.0),
        A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=8, val_shift_limit=0, p=1.0),
        A.CLAHE(clip_limit=2.0, tile_grid_size=(4, 4), p=s.clahe),
    ])
    for index in range(len(data)):
        pipeline(image=data.images[index])


def timed(fn, *args) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - started)
    return best


def main():
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "a"
        extract([sample("WolfgangLanger_Pexels.mp4")], folder, ExtractSettings(every=4), progress=False)
        ratios = {}
        for size in (64, 128):
            data = FaceData(folder, size, 0.625, occlusion=False)
            augmenter = Augmenter(data, Augment())
            mine = timed(ours, augmenter, data, np.random.default_rng(0)) / len(data)
            other = timed(theirs, data) / len(data)
            ratios[size] = other / mine
            print(f"{size:4d} px: ours {1e6 * mine:6.0f} us, albumentations {1e6 * other:6.0f} us a face "
                  f"({ratios[size]:.2f}x)")
    print(f"ratio: {ratios[64]:.2f}")


if __name__ == "__main__":
    main()
