"""Shared fixtures: the real sample clips (fetched and checksummed) and an ffmpeg to make odd clips."""
from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest

from faceswap import assets


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    assets.fetch_samples()
    return assets.samples_dir()


@pytest.fixture(scope="session")
def sample_a(sample_dir) -> Path:
    return sample_dir / assets.SAMPLE_A


@pytest.fixture(scope="session")
def sample_b(sample_dir) -> Path:
    return sample_dir / assets.SAMPLE_B


@pytest.fixture(scope="session")
def sample_no_face(sample_dir) -> Path:
    return sample_dir / assets.SAMPLE_NO_FACE


@pytest.fixture(scope="session")
def face_models() -> Path:
    assets.fetch_models()
    return assets.models_dir()


def ffmpeg(*args: str) -> None:
    """Run the ffmpeg that imageio-ffmpeg ships (libx264, libx265, aac, mp3) to make test clips."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *map(str, args)]
    subprocess.run(cmd, check=True, timeout=300)


@pytest.fixture(scope="session")
def make_clip():
    return ffmpeg
