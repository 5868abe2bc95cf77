"""Shared fixtures: the real sample clips (fetched and checksummed) and an ffmpeg to make odd clips."""
from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest

from faceswap import assets


@pytest.fixture(scope="session", autouse=True)
def config_home(tmp_path_factory) -> Path:
    """The tests' own config folder (the local signing key lands there), inherited by the CLI they start."""
    import os

    folder = tmp_path_factory.mktemp("config")
    os.environ["XDG_CONFIG_HOME"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    assets.fetch_samples()
    return assets.samples_dir()


@pytest.fixture(scope="session")
def sample_a(sample_dir) -> Path:
    return sample_dir / "WolfgangLanger_Pexels.mp4"


@pytest.fixture(scope="session")
def sample_b(sample_dir) -> Path:
    return sample_dir / "single_face.mp4"


@pytest.fixture(scope="session")
def sample_no_face(sample_dir) -> Path:
    return sample_dir / "no_face.mp4"


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


@pytest.fixture(scope="session")
def photos_abba(sample_a, sample_b, tmp_path_factory):
    """A folder of four photos: sample A's first frame, sample B's twice, A's again; and the A and B images."""
    from faceswap import media

    a, b = next(media.read_frames(sample_a)).image, next(media.read_frames(sample_b)).image
    folder = tmp_path_factory.mktemp("photos") / "abba"
    with media.ImageFolderWriter(folder) as writer:
        for image in (a, b, b, a):
            writer.write(image)
    return folder, a, b


@pytest.fixture(scope="session")
def facesets(sample_a, sample_b, face_models, tmp_path_factory):
    """(A, B) face set folders from the real samples: A every 2nd frame (236 faces), B every frame (72)."""
    from faceswap.extract import ExtractSettings, extract

    root = tmp_path_factory.mktemp("facesets")
    extract([sample_a], root / "a", ExtractSettings(every=2), progress=False)
    extract([sample_b], root / "b", progress=False)
    return root / "a", root / "b"


@pytest.fixture(scope="session")
def small_model(facesets, tmp_path_factory):
    """A lite model trained for a few steps: enough for timing, masks and plumbing tests."""
    from faceswap.training.loop import TrainSettings, train

    model_dir = tmp_path_factory.mktemp("models") / "lite"
    train(*facesets, model_dir, TrainSettings(iterations=20, preview_every=10, save_every=10, data_workers=0),
          progress=False)
    return model_dir


SLOW_FIXTURES = {"facesets", "small_model", "converted_a", "tiny"}  # each trains or converts for real


def pytest_collection_modifyitems(items):
    """`pytest -m "not slow"` is the quick check (under a minute): tests that train a model, convert a clip,
    or run the CLI as a subprocess are marked slow; `make test` runs them all."""
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if uses & SLOW_FIXTURES or "run_cli" in getattr(item.module, "__dict__", {}) and "tmp_path" in uses:
            item.add_marker(pytest.mark.slow)
