"""Extraction fps against decode-only fps on sample A, same run. Last line: `ratio: X.XX` (goal >= 0.5)."""
import tempfile
from pathlib import Path

from common import sample, timed

from faceswap import assets, media
from faceswap.extract import extract


def main():
    assets.fetch_models()
    src = sample("WolfgangLanger_Pexels.mp4")
    frames = media.probe(src).frames
    decode = max(frames / timed(lambda: sum(1 for _ in media.read_frames(src)))[1] for _ in range(2))
    best = 0.0
    for run in range(2):
        with tempfile.TemporaryDirectory() as tmp:
            summary, seconds = timed(extract, [src], Path(tmp) / f"set{run}", progress=False)
            best = max(best, summary.frames / seconds)
    print(f"clip: {src.name}, {frames} frames, {summary.faces} faces")
    print(f"decode only: {decode:8.1f} fps")
    print(f"extract:     {best:8.1f} fps (detect/track + 468-point mesh + align + 256 px PNG crops + alignments)")
    print(f"ratio: {best / decode:.2f}")


if __name__ == "__main__":
    main()
