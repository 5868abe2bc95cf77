"""What choosing a person by photo costs: extract and convert of a one-person clip (sample A played four times
over, 80 s) with `--reference` (a frame of hers) against without, same run. The embedding runs per track (three
faces), not per frame, so the cost is a fixed part of a second.
Last line: `ratio: X.XX` = the slower of extract and convert with --reference over without (goal >= 0.9).
Usage: python bench/reference.py
"""
import tempfile
from pathlib import Path

from common import looped, sample, timed

from faceswap import assets, images, media
from faceswap.extract import extract
from faceswap.settings import ConvertSettings, ExtractSettings, TrainSettings
from faceswap.swap.convert import convert
from faceswap.training.loop import train


def main():
    assets.fetch_models()
    src = sample("WolfgangLanger_Pexels.mp4")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        long = looped(src, tmp / "long.mp4")
        photo = tmp / "her.png"
        images.write_png(photo, next(media.read_frames(src)).image)
        extract([src], tmp / "a", progress=False)
        extract([sample("single_face.mp4")], tmp / "b", progress=False)
        train(tmp / "a", tmp / "b", tmp / "model", TrainSettings(iterations=10, data_workers=0), progress=False)
        fps = {}
        for name, reference in (("without", None), ("with", photo)):
            runs = [timed(extract, [long], tmp / f"set_{name}{i}", ExtractSettings(reference=reference),
                          progress=False) for i in range(2)]
            fps[("extract", name)] = max(summary.frames / seconds for summary, seconds in runs)
            runs = [timed(convert, long, tmp / "model", tmp / f"out_{name}{i}.mp4", ConvertSettings(reference=reference),
                          progress=False) for i in range(2)]
            fps[("convert", name)] = max(summary.frames / seconds for summary, seconds in runs)
    for stage in ("extract", "convert"):
        print(f"{stage}: {fps[(stage, 'without')]:7.1f} fps without --reference, {fps[(stage, 'with')]:7.1f} with "
              f"({fps[(stage, 'with')] / fps[(stage, 'without')]:.2f})")
    print(f"ratio: {min(fps[(s, 'with')] / fps[(s, 'without')] for s in ('extract', 'convert')):.2f}")


if __name__ == "__main__":
    main()
