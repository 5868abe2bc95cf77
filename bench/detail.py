"""Convert's exemplar detail and grain, each on and off, on one trained model: convert both samples with each
setting, evaluate each output, and print the figures side by side with the ratio to the plain convert.

Also measures grain: the noise level (grain.noise_sigma) inside the face and in a ring around it, SRC and OUT.
Usage: python bench/detail.py MODEL_DIR [--out DIR] [--every 2] [--add-exemplars]
  --add-exemplars: give a model trained before models carried exemplars the ones training now saves
  (the same choice from its face sets), in a new checkpoint of the same step.
A model from bench/protocol.py: python bench/detail.py output/protocol/model_lite128_8min
"""
import argparse
import json
from pathlib import Path

from common import sample

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from faceswap import masks, media  # noqa: E402
from faceswap.evaluate import evaluate  # noqa: E402
from faceswap.faces import make_finder  # noqa: E402
from faceswap.models import store  # noqa: E402
from faceswap.settings import ConvertSettings, TrainSettings  # noqa: E402
from faceswap.swap.convert import convert  # noqa: E402
from faceswap.swap.grain import noise_sigma  # noqa: E402

KEYS = ("sharpness_ratio", "sharpness_ceiling", "identity_target_share", "landmark_error_iod", "seam_excess",
        "flicker_ratio")
VARIANTS = {"plain": ("off", "off"), "detail": ("auto", "off"), "grain": ("off", "auto"), "both": ("auto", "auto")}


def add_exemplars(model_dir: Path) -> None:
    """Save the model again with the exemplars training would have saved (same face sets, same choice)."""
    from faceswap.training.data import FaceData
    from faceswap.training.loop import EXEMPLARS_PER_SIDE

    config = store.read_config(model_dir)
    cfg = store.arch_from_config(config)
    sides = {}
    for side in ("a", "b"):
        data = FaceData(config["facesets"][side]["path"], cfg.out_size, cfg.coverage, TrainSettings().holdout,
                        side.upper(), input_size=cfg.size)
        sides[side] = data.exemplars(EXEMPLARS_PER_SIDE)
    tensors = {name: store.load_tensors(model_dir, name, config) for name in config["files"]
               if name.endswith(".safetensors") and name != store.EXEMPLARS}
    extra = {name: (model_dir / name).read_bytes() for name in config["files"] if not name.endswith(".safetensors")}
    tensors[store.EXEMPLARS] = store.exemplar_tensors(sides)
    keep = {k: v for k, v in config.items() if k not in ("schema", "version", "files")}
    store.save(model_dir, keep, tensors, extra)


def noise(src: Path, out: Path, every: int = 8) -> dict:
    """Mean noise level inside the face (its hull, shrunk) and in a ring around it, in SRC and OUT."""
    finder = make_finder("litert")
    values = {k: [] for k in ("src_face", "src_ring", "out_face", "out_ring")}
    for fa, fb in zip(media.read_frames(src), media.read_frames(out)):
        if fa.index % every:
            continue
        faces = finder(fa.image)
        if not faces:
            continue
        landmarks = max(faces, key=lambda f: np.ptp(f.landmarks, 0).max()).landmarks
        size = float(np.ptp(landmarks, 0).max())
        hull = (masks.hull_mask(landmarks, fa.image.shape[:2]) > 0.5).astype(np.uint8)
        face = cv2.erode(hull, np.ones((int(size * 0.1),) * 2, np.uint8)) > 0
        near = cv2.dilate(hull, np.ones((int(size * 0.1),) * 2, np.uint8)) > 0
        ring = (cv2.dilate(hull, np.ones((int(size * 0.4),) * 2, np.uint8)) > 0) & ~near
        for name, image in (("src", fa.image), ("out", fb.image)):
            values[f"{name}_face"].append(noise_sigma(image, face))
            values[f"{name}_ring"].append(noise_sigma(image, ring))
    means = {k: float(np.nanmean(v)) for k, v in values.items()}
    means["src_face_over_ring"] = means["src_face"] / means["src_ring"]
    means["out_face_over_ring"] = means["out_face"] / means["out_ring"]
    return {k: round(v, 3) for k, v in means.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, default=Path("output/detail"))
    parser.add_argument("--every", type=int, default=2, help="evaluate every Nth frame")
    parser.add_argument("--add-exemplars", action="store_true")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.add_exemplars:
        add_exemplars(args.model)
    clips = {"a2b": sample("WolfgangLanger_Pexels.mp4"), "b2a": sample("single_face.mp4")}
    config = store.read_config(args.model)
    figures = {"model": args.model.name, "steps": config.get("step"), "variants": {}}
    for variant in args.variants.split(","):
        detail, grain = VARIANTS[variant]
        figures["variants"][variant] = {}
        for direction, clip in clips.items():
            video = args.out / f"{variant}_{direction}.mp4"
            video.unlink(missing_ok=True)
            summary = convert(clip, args.model, video, ConvertSettings(direction=direction, detail=detail,
                                                                       grain=grain), progress=False)
            report_path = args.out / f"{variant}_{direction}.json"
            report_path.unlink(missing_ok=True)
            report_path.with_suffix(".png").unlink(missing_ok=True)
            report = evaluate(args.model, clip, video, report_path=report_path, every=args.every)
            row = {k: report["video"][k] for k in KEYS}
            row["fps"] = round(summary.fps, 1)
            row["noise"] = noise(clip, video)
            figures["variants"][variant][direction] = row
            print(variant, direction, json.dumps(row), flush=True)
    plain = figures["variants"].get("plain")
    print(f"\nmodel {figures['model']}, step {figures['steps']}")
    for direction in clips:
        print(f"\n{direction:5} " + "".join(f"{v:>22}" for v in figures["variants"]))
        for key in KEYS + ("fps",):
            cells = []
            for variant, rows in figures["variants"].items():
                value = rows[direction][key]
                base = plain[direction][key] if plain else None
                ratio = f" (x{value / base:.2f})" if base and value is not None and variant != "plain" else ""
                cells.append(f"{value}{ratio}")
            print(f"{key[:22]:22} " + "".join(f"{c:>22}" for c in cells))
        print(f"{'noise face/ring':22} " + "".join(
            f"{rows[direction]['noise']['out_face_over_ring']:>22}" for rows in figures["variants"].values())
            + f"   (SRC {next(iter(figures['variants'].values()))[direction]['noise']['src_face_over_ring']})")
    (args.out / "detail.json").write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
