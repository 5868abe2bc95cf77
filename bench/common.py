"""Helpers shared by the benchmarks: sample paths and a timer."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faceswap import assets  # noqa: E402


def sample(name: str) -> Path:
    """A sample clip, fetched (and checked) if need be."""
    assets.fetch_samples()
    return assets.samples_dir() / name


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def ffmpeg(*args) -> None:
    """The ffmpeg that imageio-ffmpeg ships, quiet, failing loudly: for the clips the benchmarks make."""
    import subprocess

    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *map(str, args)], check=True)


def looped(src: Path, out: Path, times: int = 4) -> Path:
    """`src` played `times` times over, without re-encoding."""
    ffmpeg("-stream_loop", times - 1, "-i", src, "-c", "copy", out)
    return out
