"""Extraction fps against decode-only fps on sample A, same run; then the same on a 1080p copy of it (made
here with ffmpeg), where decoding weighs more. Last line: `ratio: X.XX` for sample A (goal >= 0.5)."""
import subprocess
import tempfile
from pathlib import Path

import imageio_ffmpeg
from common import sample, timed

from faceswap import assets, media
from faceswap.extract import extract


def measure(src: Path, tmp: Path) -> tuple[float, float, int]:
    frames = media.probe(src).frames
    decode = max(frames / timed(lambda: sum(1 for _ in media.read_frames(src)))[1] for _ in range(2))
    best = 0.0
    for run in range(2):
        summary, seconds = timed(extract, [src], tmp / f"{src.stem}{run}", progress=False)
        best = max(best, summary.frames / seconds)
    return decode, best, summary.faces


def main():
    assets.fetch_models()
    src = sample("WolfgangLanger_Pexels.mp4")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        big = tmp / "sample_a_1080p.mp4"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src), "-vf",
                        "scale=1920:1080", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "copy", str(big)],
                       check=True)
        big_decode, big_extract, _ = measure(big, tmp)
        decode, best, faces = measure(src, tmp)
    print(f"1080p copy:  decode {big_decode:7.1f} fps, extract {big_extract:7.1f} fps, "
          f"ratio {big_extract / big_decode:.2f}")
    print(f"clip: {src.name}, {media.probe(src).frames} frames, {faces} faces")
    print(f"decode only: {decode:8.1f} fps")
    print(f"extract:     {best:8.1f} fps (detect/track, 468-point mesh on key frames + interpolation, align, "
          "256 px PNG crops, alignments)")
    print(f"ratio: {best / decode:.2f}")


if __name__ == "__main__":
    main()
