"""Pretraining's speed-up on an identity the base never saw: pretrain a base on sample A's faces only, then train
the pair A-B from it (--from) and from scratch, with the same seed and steps, and score B's held-out faces
(B->B SSIM inside the face) at each checkpoint. The held-out faces are the clip's last frames: near-twins of
training frames, so read the figures as "how fast the model fits B", not as generalisation.

Last line: `ratio: X.XX` = steps from scratch to reach the from-base run's B SSIM at its first checkpoint /
those steps (above 1: the base saves steps; a `>` means scratch never got there).
Usage: python bench/pretrain.py [--pretrain-steps N] [--steps 250,500,1000,1500] [--model lite]
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import sample

from faceswap import assets
from faceswap.evaluate import reconstruction
from faceswap.extract import ExtractSettings, extract
from faceswap.training.loop import TrainSettings, pretrain, train


def curve(set_a: Path, set_b: Path, model: Path, steps: list[int], arch: str, base: Path | None) -> list[dict]:
    rows = []
    for target in steps:  # resumed in chunks: resume is exact, so this is one run scored on the way
        started = time.perf_counter()
        options = {"model": None if base else arch, "pretrained": base}
        train(set_a, set_b, model, TrainSettings(iterations=target, preview_every=10 ** 6, **options), progress=False)
        scores = reconstruction(model)
        rows.append({"step": target, "a": scores["a"]["ssim"], "b": scores["b"]["ssim"],
                     "seconds": time.perf_counter() - started})
    return rows


def steps_to_reach(rows: list[dict], value: float) -> float | None:
    """Linear interpolation between checkpoints of the first step whose B SSIM reaches `value`."""
    previous = {"step": 0, "b": 0.0}
    for row in rows:
        if row["b"] >= value:
            share = (value - previous["b"]) / max(1e-9, row["b"] - previous["b"])
            return previous["step"] + share * (row["step"] - previous["step"])
        previous = row
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pretrain-steps", type=int, default=1500)
    parser.add_argument("--steps", default="250,500,1000,1500")
    parser.add_argument("--model", default="lite")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    assets.fetch_models()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        set_a, set_b = tmp / "a", tmp / "b"
        extract([sample("WolfgangLanger_Pexels.mp4")], set_a, ExtractSettings(every=2), progress=False)
        extract([sample("single_face.mp4")], set_b, progress=False)
        started = time.perf_counter()
        pretrain([set_a], tmp / "base", TrainSettings(model=args.model, iterations=args.pretrain_steps,
                                                      preview_every=10 ** 6), progress=False)
        print(f"base: {args.pretrain_steps} steps on A's faces only, {time.perf_counter() - started:.0f} s")
        results = {"scratch": curve(set_a, set_b, tmp / "scratch", steps, args.model, None),
                   "from base": curve(set_a, set_b, tmp / "from_base", steps, args.model, tmp / "base")}
    print(f"{'step':>6}  {'B SSIM scratch':>15}  {'B SSIM from base':>17}  {'A scratch':>10}  {'A from base':>12}")
    for plain, based in zip(results["scratch"], results["from base"]):
        print(f"{plain['step']:>6}  {plain['b']:>15.4f}  {based['b']:>17.4f}  {plain['a']:>10.4f}  {based['a']:>12.4f}")
    first = results["from base"][0]
    needed = steps_to_reach(results["scratch"], first["b"])
    speedup = (needed or steps[-1]) / first["step"]
    print(f"scratch reaches the from-base B SSIM of step {first['step']} ({first['b']:.4f}) "
          + (f"at step {needed:.0f}" if needed else "at no checkpoint"))
    print(f"mean B SSIM gain over the checkpoints: {np.mean([b['b'] - p['b'] for p, b in zip(*results.values())]):+.4f}")
    print(f"ratio: {'>' if needed is None else ''}{speedup:.2f}")


if __name__ == "__main__":
    main()
