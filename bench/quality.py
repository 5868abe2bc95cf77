"""Demo-model quality at a fixed step budget: train `lite` under several settings for the same number of
steps and print each one's held-out SSIM (A->A, B->B). Used to choose the demo defaults; run it where
steps are cheap (a GPU) with the step count that 2 CPU cores reach in the demo's 8 minutes.

Usage: python bench/quality.py FACESET_A FACESET_B [--steps 3365] [--jobs 4] [--only NAME ...] [--sheet PNG]
"""
import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from faceswap import images  # noqa: E402
from faceswap.evaluate import reconstruction  # noqa: E402
from faceswap.training.loop import TrainSettings, train  # noqa: E402
from faceswap.training.loss import LossWeights  # noqa: E402

VARIANTS = {  # name: (TrainSettings fields, Augment fields, LossWeights fields, step factor)
    "default": ({}, {}, {}, 1.0),
    "coverage_0.75": ({"coverage": 0.75}, {}, {}, 1.0),
    "lr_2e-4": ({"lr": 2e-4}, {}, {}, 1.0),
    "eyes5_mouth4": ({}, {"eyes": 5.0, "mouth": 4.0}, {}, 1.0),
    "l1_x3": ({}, {}, {"l1": 3.0}, 1.0),
    "edge_1": ({}, {}, {"edge": 1.0}, 1.0),
    "batch4": ({"batch_size": 4}, {}, {}, 1.6),
    "warp_share_1": ({}, {"warp_share": 1.0}, {}, 1.0),
    "warp_share_0": ({}, {"warp_share": 0.0}, {}, 1.0),
    "warp_3": ({}, {"warp": 3 / 256}, {}, 1.0),
}


def run_one(name: str, faceset_a: Path, faceset_b: Path, steps: int, model_dir: Path) -> dict:
    settings, augment, loss, factor = VARIANTS[name]
    train(faceset_a, faceset_b, model_dir, TrainSettings(
        model="lite", iterations=int(steps * factor), preview_every=10 ** 9, save_every=10 ** 9, data_workers=1,
        augment=augment, loss=replace(LossWeights(), **loss),
        **settings), progress=False)
    return reconstruction(model_dir)


def write_sheet(path: Path, previews: dict) -> None:
    rows = []
    for name, preview in previews.items():
        image = images.read_image(preview)
        label = np.zeros((24, image.shape[1], 3), np.uint8)
        cv2.putText(label, name, (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
        rows += [label, image]
    if rows:
        width = max(r.shape[1] for r in rows)
        images.write_png(path, np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("faceset_a", type=Path)
    parser.add_argument("faceset_b", type=Path)
    parser.add_argument("--steps", type=int, default=3365)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=list(VARIANTS))
    parser.add_argument("--sheet", type=Path, help="write every variant's final preview into this PNG")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.faceset_a, args.faceset_b, args.steps, args.model_dir)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        pending, results = list(args.only), {}
        running = []
        while pending or running:
            while pending and len(running) < args.jobs:
                name = pending.pop(0)
                cmd = [sys.executable, __file__, str(args.faceset_a), str(args.faceset_b), "--steps", str(args.steps),
                       "--one", name, "--model-dir", str(Path(tmp) / name)]
                running.append((name, subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)))
            name, proc = running.pop(0)
            out, _ = proc.communicate()
            try:
                r = json.loads(out.strip().splitlines()[-1])
                results[name] = r
                print(f"{name:16s} SSIM A {r['a']['ssim']:.4f}  B {r['b']['ssim']:.4f}  "
                      f"PSNR A {r['a']['psnr']:.2f}  B {r['b']['psnr']:.2f}", flush=True)
            except (IndexError, KeyError, ValueError):
                print(f"{name:16s} failed (exit {proc.returncode})", flush=True)
        if args.sheet:
            write_sheet(args.sheet, {n: Path(tmp) / n / "preview.png" for n in results})
    best = max(results, key=lambda n: results[n]["a"]["ssim"] + results[n]["b"]["ssim"], default=None)
    print(f"best: {best}")


if __name__ == "__main__":
    main()
