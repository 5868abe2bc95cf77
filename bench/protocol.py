"""The quality protocol at a fixed budget: extract both samples, train MODEL for MINUTES, convert A->B and
B->A, and evaluate each converted video (sharpness OUT/SRC and what a perfect model of the output size
would reach, identity, landmark error, seam, flicker) and the model (held-out SSIM at the output size).
Prints the figures with the steps reached and the machine; writes report JSON and frame strips to --out.

Usage: python bench/protocol.py [--model lite128] [--minutes 8 | --steps N] [--out DIR] [--name DIR] [--loss K=W]
Budgets the README quotes: the CPU demo (lite128, 8), CPU 30 minutes, a GPU's 10 minutes (hd, --size 128).
"""
import argparse
import json
import platform
from dataclasses import replace
from pathlib import Path

from common import sample

import torch  # noqa: E402

from faceswap.evaluate import evaluate  # noqa: E402
from faceswap.extract import extract  # noqa: E402
from faceswap.settings import ConvertSettings, ExtractSettings, LossWeights, TrainSettings  # noqa: E402
from faceswap.swap.convert import convert  # noqa: E402
from faceswap.training.loop import train  # noqa: E402

VIDEO_KEYS = ("sharpness_ratio", "sharpness_ceiling", "identity_target_share", "landmark_error_iod", "seam_excess",
              "flicker_ratio")


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    flags, name = set(), platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    extras = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return f"{name}, {torch.get_num_threads()} threads{', ' + ', '.join(extras) if extras else ''}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="lite128")
    parser.add_argument("--size", type=int)
    parser.add_argument("--minutes", type=float, default=8)
    parser.add_argument("--steps", type=int, help="train to this many steps instead: the same result on any machine")
    parser.add_argument("--loss", action="append", default=[], help="a loss weight, KEY=VALUE (edge=1, perceptual=0.2)")
    parser.add_argument("--crop", type=int, default=256, help="extract --size")
    parser.add_argument("--out", type=Path, default=Path("output/protocol"))
    parser.add_argument("--name", help="the model folder's name (default: model_MODEL_MINUTESmin)")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    clips = {"a": sample("WolfgangLanger_Pexels.mp4"), "b": sample("single_face.mp4")}
    facesets = {}
    for side, clip in clips.items():
        facesets[side] = out / f"faceset_{side}_{args.crop}"
        if not (facesets[side] / "faceset.json").is_file():
            extract([clip], facesets[side], ExtractSettings(track="largest", size=args.crop), progress=False)
    budget = f"{args.steps}steps" if args.steps else f"{args.minutes:g}min"
    model_dir = out / (args.name or f"model_{args.model}_{budget}")
    summary = train(facesets["a"], facesets["b"], model_dir, TrainSettings(
        model=args.model, size=args.size, minutes=None if args.steps else args.minutes, iterations=args.steps,
        preview_every=500, loss=replace(LossWeights(), **{k: float(v) for k, v in (p.split("=") for p in args.loss)})),
        progress=False)
    figures = {"machine": machine(), "model": args.model, "minutes": round(summary.seconds / 60, 1),
               "steps": summary.step,
               "examples_per_s": round(summary.examples / max(summary.seconds, 1e-9), 1)}
    for direction, side in (("a2b", "a"), ("b2a", "b")):
        video = out / f"{model_dir.name}_{direction}.mp4"
        convert(clips[side], model_dir, video, ConvertSettings(direction=direction), progress=False)
        report = evaluate(model_dir, clips[side], video, report_path=out / f"{model_dir.name}_{direction}.json")
        figures[direction] = {k: report["video"][k] for k in VIDEO_KEYS}
        figures.setdefault("held_out_ssim", {k: v.get("ssim") for k, v in report["model"]["reconstruction"].items()})
    print(json.dumps(figures, indent=1))
    (out / f"{model_dir.name}.json").write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
