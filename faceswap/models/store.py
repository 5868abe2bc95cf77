"""A model on disk: `config.json` + safetensors files, saved atomically with a rolling backup.

    model_dir/config.json          architecture, sizes, face sets, "step", and the sha256 of every file
    model_dir/model.safetensors    weights (encoder.*, decoders.a.*, decoders.b.*)
    model_dir/<other>.safetensors  e.g. the optimizer state, written by training
    model_dir/exemplars.safetensors  faces of each side with landmarks, for convert's fine detail (optional)
    model_dir/backup/              the previous good checkpoint, same layout

A file whose sha256 differs from the one config.json records is damaged (or from a save cut short) and is refused
with a clear error. Loading never runs code from the files: JSON and safetensors only.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from safetensors import SafetensorError

from faceswap import atomic
from faceswap.atomic import sha256_of
from faceswap.errors import FaceswapError

if TYPE_CHECKING:  # torch is imported where tensors are made: the UI reads this folder's names without it
    import torch
    from faceswap.models.arch import ArchConfig, FaceSwapModel

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
EXEMPLARS = "exemplars.safetensors"  # "{side}.images" uint8 N x S x S x 3, "{side}.landmarks" float32 N x 68 x 2
OPTIMIZER, TRAINER_STATE = "optimizer.safetensors", "trainer.json"  # training's own, for an exact resume
BACKUP = "backup"
CHECKPOINT_LOCK = ".checkpoint.lock"  # readers hold it shared, a save exclusive: a reader sees one state whole
LOSS_LOG, LOSS_PLOT, PREVIEW, TENSORBOARD = "loss.csv", "loss.png", "preview.png", "tensorboard"
TIMELAPSE, TIMELAPSE_VIDEO = "timelapse", "timelapse.mp4"  # the previews kept, and their video
# what a training writes before its first checkpoint: a folder of only these is a model folder, to start again
TRAINING_FILES = {LOSS_LOG, LOSS_PLOT, PREVIEW, TIMELAPSE, TIMELAPSE_VIDEO, BACKUP}
SCHEMA = "faceswap.model"
VERSION = 1


def save(model_dir: Path, config: dict, tensor_files: dict[str, dict[str, torch.Tensor]],
         extra_files: dict[str, bytes] | None = None) -> None:
    """Write a checkpoint: safetensors files (name -> tensors), extra small files, then config.json."""
    from safetensors.torch import save_file

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    staged = {name: model_dir / f".{name}.partial" for name in [*tensor_files, *(extra_files or {})]}
    for name, tensors in tensor_files.items():
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(staged[name]),
                  metadata={"format": "pt", "schema": SCHEMA})
    for name, data in (extra_files or {}).items():
        staged[name].write_bytes(data)
    for tmp in staged.values():
        atomic.fsync_file(tmp)
    config = dict(config, schema=SCHEMA, version=VERSION, files={name: sha256_of(tmp) for name, tmp in staged.items()})
    config_tmp = model_dir / f".{CONFIG}.partial"
    config_tmp.write_text(json.dumps(config, indent=2) + "\n")
    atomic.fsync_file(config_tmp)
    with atomic.shared_or_exclusive(model_dir / CHECKPOINT_LOCK, shared=False):
        _rotate_and_commit(model_dir, staged, config_tmp)


def _rotate_and_commit(model_dir: Path, staged: dict[str, Path], config_tmp: Path) -> None:
    """The current (good) checkpoint becomes the backup, then the staged files take its place, config last."""
    if (model_dir / CONFIG).is_file() and _consistent(model_dir):
        backup = model_dir / BACKUP
        old = model_dir / f".{BACKUP}.old"
        shutil.rmtree(old, ignore_errors=True)
        if backup.exists():
            os.replace(backup, old)
        backup.mkdir()
        for name in list(json.loads((model_dir / CONFIG).read_text()).get("files", {})) + [CONFIG]:
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, backup / name)
        shutil.rmtree(old, ignore_errors=True)
    for name, tmp in staged.items():
        os.replace(tmp, model_dir / name)
    os.replace(config_tmp, model_dir / CONFIG)
    atomic.fsync_dir(model_dir)


def _consistent(model_dir: Path) -> bool:
    try:
        config = json.loads((model_dir / CONFIG).read_text())
        return all((model_dir / n).is_file() and sha256_of(model_dir / n) == h for n, h in config["files"].items())
    except (OSError, ValueError, KeyError):
        return False


def read_config(model_dir: Path) -> dict:
    model_dir = Path(model_dir)
    path = model_dir / CONFIG
    if not model_dir.is_dir():
        raise FaceswapError(f"{model_dir}: model folder not found")
    if not path.is_file():
        raise FaceswapError(f"{model_dir}: not a model folder (no {CONFIG}); train one with faceswap train")
    try:
        config = json.loads(path.read_text())
    except ValueError:
        raise FaceswapError(f"{path}: damaged (not valid JSON)") from None
    if config.get("schema") != SCHEMA or config.get("version") != VERSION:
        raise FaceswapError(f"{path}: not a faceswap model config of version {VERSION}")
    return config


def _backup_hint(model_dir: Path) -> str:
    return f"; the previous good state is in {model_dir / BACKUP}" if (model_dir / BACKUP / CONFIG).is_file() else ""


def _verified(model_dir: Path, name: str, config: dict | None) -> Path:
    """Path of one checkpoint file, after checking it against the sha256 that config.json records."""
    path = Path(model_dir) / name
    expected = (config or read_config(model_dir)).get("files", {}).get(name)
    if not path.is_file():
        raise FaceswapError(f"{path}: missing{_backup_hint(path.parent)}")
    if expected and sha256_of(path) != expected:
        raise FaceswapError(f"{path}: damaged or truncated (sha256 does not match config.json)"
                            f"{_backup_hint(path.parent)}")
    return path


def load_tensors(model_dir: Path, name: str, config: dict | None = None) -> dict[str, torch.Tensor]:
    """Tensors of one safetensors file of the checkpoint, hash-checked."""
    from safetensors.torch import load_file

    path = _verified(model_dir, name, config)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise FaceswapError(f"{path}: unreadable weights ({exc}){_backup_hint(path.parent)}") from None


def load_json(model_dir: Path, name: str, config: dict | None = None) -> dict:
    """A JSON file of the checkpoint, hash-checked."""
    path = _verified(model_dir, name, config)
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise FaceswapError(f"{path}: damaged (not valid JSON){_backup_hint(path.parent)}") from None


def load_weights(model: FaceSwapModel, model_dir: Path, config: dict, assign: bool = False) -> None:
    """Fill `model` from the checkpoint's weights (`assign`: take the loaded tensors themselves, for a model
    built on the meta device); a clear error when they do not fit its architecture."""
    state = load_tensors(model_dir, WEIGHTS, config)
    try:
        model.load_state_dict(state, assign=assign)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[1:2] or [str(exc)]
        raise FaceswapError(f"{model_dir}: weights do not fit the architecture in config.json "
                            f"({first[0].strip()})") from None


def arch_from_config(config: dict) -> ArchConfig:
    from faceswap.models.arch import ArchConfig

    try:
        return ArchConfig(**config["architecture"])
    except (KeyError, TypeError) as exc:
        raise FaceswapError(f"model config has no valid architecture ({exc})") from None


def load_model(model_dir: Path, device: str | torch.device = "cpu") -> tuple[FaceSwapModel, dict]:
    """The trained model (eval mode) and its config, for convert and evaluate; read under the checkpoint lock,
    so a training run saving into the folder meanwhile is seen before or after its save, never half-way."""
    import torch

    from faceswap.models.arch import FaceSwapModel

    model_dir = Path(model_dir)
    reading = atomic.shared_or_exclusive(model_dir / CHECKPOINT_LOCK, shared=True) \
        if model_dir.is_dir() and os.access(model_dir, os.W_OK) else contextlib.nullcontext()
    with reading:
        config = read_config(model_dir)
        try:
            with torch.device("meta"):  # no memory and no random start: the weights are loaded over it
                model = FaceSwapModel(arch_from_config(config))
        except ValueError as exc:
            raise FaceswapError(f"{model_dir}: {exc}") from None
        load_weights(model, model_dir, config, assign=True)
    return model.to(device).eval(), config


def exemplar_tensors(sides: dict[str, tuple]) -> dict[str, torch.Tensor]:
    """{side: (images uint8 N x S x S x 3, landmarks N x 68 x 2 in their pixels)} as EXEMPLARS' tensors."""
    import torch

    return {f"{side}.{name}": torch.from_numpy(np.ascontiguousarray(array, dtype))
            for side, (images, landmarks) in sides.items()
            for name, array, dtype in (("images", images, np.uint8), ("landmarks", landmarks, np.float32))}


def load_exemplars(model_dir: Path, config: dict, side: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The exemplar faces and landmarks of decoder `side`, hash-checked; None for a model saved without them."""
    if EXEMPLARS not in config.get("files", {}):
        return None
    tensors = load_tensors(model_dir, EXEMPLARS, config)
    if f"{side}.images" not in tensors or not len(tensors[f"{side}.images"]):
        return None
    return tensors[f"{side}.images"].numpy(), tensors[f"{side}.landmarks"].numpy()
