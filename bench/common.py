"""Helpers shared by the benchmarks: sample paths and a timer."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faceswap import assets  # noqa: E402


def sample(name: str) -> Path:
    assets.fetch_samples()
    return assets.sample(name)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
