"""Training throughput, same run: (a) the model step alone on ready tensors, (b) our end-to-end training
(augmentation in worker processes, or between steps on a 2-core CPU; AMP where it pays; channels-last),
(c) a naive loop (fp32, per-sample numpy/scipy augmentation in the main process). For `lite` and `original`.

Prints (b)/(c) per model; last line `ratio: X.XX` = (b)/(a) for lite (goals on CPU: >= 0.9, and (b)/(c) >= 2).
Usage: python bench/train.py [--precision auto|fp32|bf16|fp16] [--steps N] [--facesets A B] [--models NAME ...]
"""
import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from common import sample
from scipy import ndimage

from faceswap import align, assets
from faceswap.masks import hull_mask
from faceswap.training.data import PairStream, default_workers, loader, to_tensors
from faceswap.training.loop import TrainSettings, Trainer


def naive_example(image: np.ndarray, landmarks_mask: np.ndarray, size: int, rng) -> tuple:
    """What a first script does: scipy per-sample affine + numpy warp + numpy colour, float64."""
    img = image.astype(np.float64) / 255
    angle = np.deg2rad(rng.uniform(-10, 10))
    zoom = 1 + rng.uniform(-0.05, 0.05)
    work = img.shape[0]
    c, s = np.cos(angle) / zoom, np.sin(angle) / zoom
    matrix = np.array([[c, -s], [s, c]]) * (work * 0.75 / size)
    centre = np.array([work / 2, work / 2])
    offset = centre - matrix @ np.array([size / 2, size / 2]) + rng.uniform(-0.05, 0.05, 2) * work
    target = np.stack([ndimage.affine_transform(img[..., ch], matrix, offset, output_shape=(size, size), order=1,
                                                mode="nearest") for ch in range(3)], -1)
    if rng.random() < 0.5:
        target = target[:, ::-1]
    target = np.clip(target * (1 + rng.uniform(-0.15, 0.15)) + rng.uniform(-0.03, 0.03, 3), 0, 1)
    grid = np.linspace(0, size - 1, 5)
    dx = ndimage.zoom(rng.normal(0, size * 5 / 256, (5, 5)), size / 5, order=3)
    dy = ndimage.zoom(rng.normal(0, size * 5 / 256, (5, 5)), size / 5, order=3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    warped = np.stack([ndimage.map_coordinates(target[..., ch], [yy + dy, xx + dx], order=1, mode="nearest")
                       for ch in range(3)], -1)
    del grid
    return (warped * 255).astype(np.uint8), (target * 255).astype(np.uint8), landmarks_mask, np.ones_like(landmarks_mask)


def measure(trainer: Trainer, batches, steps: int) -> float:
    for _ in range(3):  # warm-up
        a, b = (trainer._move(x) for x in next(batches))
        trainer.train_step(a, b, 1e-5)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        a, b = (trainer._move(x) for x in next(batches))
        trainer.train_step(a, b, 1e-5)
    sync()
    return steps * 2 * trainer.train_config.batch_size / (time.perf_counter() - start)


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_model(name: str, facesets, steps: int, precision: str, tmp: Path) -> dict:
    trainer = Trainer(*facesets, tmp / name, TrainSettings(model=name, iterations=10 ** 6, precision=precision), progress=False)
    stream = PairStream(trainer.data_a, trainer.data_b, trainer.train_config.batch_size, trainer.train_config.augment)
    ready = next(iter(stream))
    model_only = measure(trainer, iter(lambda: ready, None), steps)
    end_to_end = measure(trainer, loader(stream, default_workers(trainer.device)), steps)

    naive = Trainer(*facesets, tmp / (name + "_naive"), TrainSettings(model=name, iterations=10 ** 6, precision="fp32"),
                    progress=False)
    naive.model = naive.model.to(memory_format=torch.contiguous_format)
    rng = np.random.default_rng(0)

    def naive_batches():
        while True:
            out = []
            for data in (naive.data_a, naive.data_b):
                points = align.transform_points(data.landmarks[0], data.centre_matrix())
                mask = hull_mask(points, (data.model_size,) * 2)
                picks = rng.integers(0, len(data), naive.train_config.batch_size)
                examples = [naive_example(data.images[i], mask, data.model_size, rng) for i in picks]
                # a model with a smaller input (lite128) is given its warped face at that size
                examples = [(cv2.resize(w, (data.input_size,) * 2, interpolation=cv2.INTER_AREA), *rest)
                            for w, *rest in examples]
                out.append(to_tensors(*zip(*examples)))
            yield out

    naive_rate = measure(naive, naive_batches(), steps)
    return {"a": model_only, "b": end_to_end, "c": naive_rate, "amp": str(trainer.amp_dtype or "fp32")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--steps", type=int, default=0, help="steps per measurement (default: 60 lite, 8 others)")
    parser.add_argument("--facesets", nargs=2, type=Path, help="use these face sets A B instead of extracting")
    parser.add_argument("--models", nargs="+", default=["original", "lite"], help="architectures (lite is the ratio's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        facesets = args.facesets or (tmp / "a", tmp / "b")
        if not args.facesets:
            from faceswap.extract import ExtractSettings, extract

            assets.fetch_models()
            extract([sample("WolfgangLanger_Pexels.mp4")], facesets[0], ExtractSettings(every=2), progress=False)
            extract([sample("single_face.mp4")], facesets[1], progress=False)
        results = {}
        for name in args.models:
            steps = args.steps or (60 if name == "lite" else 8)
            r = results[name] = run_model(name, facesets, steps, args.precision, tmp)
            print(f"{name:9s} (a) model step {r['a']:7.1f} EGs/s | (b) end-to-end {r['b']:7.1f} | "
                  f"(c) naive {r['c']:7.1f} | (b)/(a) {r['b'] / r['a']:.2f} | (b)/(c) {r['b'] / r['c']:.2f} | {r['amp']}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device}, precision {args.precision}, torch threads {torch.get_num_threads()}")
    if "lite" in results:
        lite = results["lite"]
        print(f"(b)/(c) lite: {lite['b'] / lite['c']:.2f}")
        print(f"ratio: {lite['b'] / lite['a']:.2f}")


if __name__ == "__main__":
    main()
