"""Extraction fps against decode-only fps on sample A, same run; then the same on a 1080p copy of it (made
here with ffmpeg), where decoding weighs more. Last line: `ratio: X.XX` for sample A (goal >= 0.5)."""
import tempfile
import time
from pathlib import Path

from common import ffmpeg, sample, timed

from faceswap import assets, media
from faceswap.extract import extract


def measure(src: Path, tmp: Path) -> tuple[float, float, int, float]:
    """Decode-only fps, extract fps (best of two runs each), faces, and extract's CPU ms per frame."""
    frames = media.probe(src).frames
    decode = max(frames / timed(lambda: sum(1 for _ in media.read_frames(src)))[1] for _ in range(2))
    best, cpu = 0.0, float("inf")
    for run in range(2):
        started = time.process_time()
        summary, seconds = timed(extract, [src], tmp / f"{src.stem}{run}", progress=False)
        best, cpu = max(best, summary.frames / seconds), min(cpu, (time.process_time() - started) / frames)
    return decode, best, summary.faces, cpu * 1000


def main():
    assets.fetch_models()
    src = sample("WolfgangLanger_Pexels.mp4")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        big = tmp / "sample_a_1080p.mp4"
        ffmpeg("-i", src, "-vf", "scale=1920:1080", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "copy", big)
        big_decode, big_extract, _, _ = measure(big, tmp)
        decode, best, faces, cpu = measure(src, tmp)
    print(f"1080p copy:  decode {big_decode:7.1f} fps, extract {big_extract:7.1f} fps, "
          f"ratio {big_extract / big_decode:.2f}")
    print(f"clip: {src.name}, {media.probe(src).frames} frames, {faces} faces")
    print(f"decode only: {decode:8.1f} fps")
    print(f"extract:     {best:8.1f} fps (detect/track, 468-point mesh on key frames + interpolation, align, "
          "256 px PNG crops, alignments)")
    # all threads' CPU: a ratio of 0.5 on C cores needs at most C x 2 / decode-fps seconds of it per frame
    print(f"extract CPU: {cpu:8.2f} ms a frame, all threads (ratio 0.5 on 2 cores needs <= {4000 / decode:.2f})")
    print(f"ratio: {best / decode:.2f}")


if __name__ == "__main__":
    main()
