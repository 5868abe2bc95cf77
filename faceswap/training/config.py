"""A training run's values, decided once (`TrainConfig.resolve`): what the command or pipeline gave, else what the model
folder recorded, else the architecture's defaults. The Trainer reads only this, and config.json records it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from faceswap.errors import FaceswapError
from faceswap.models import arch as arch_mod
from faceswap.models import store
from faceswap.models.arch import ArchConfig
from faceswap.settings import Augment, LossWeights, TrainSettings


@dataclass(frozen=True)
class TrainConfig:
    arch: ArchConfig
    batch_size: int
    lr: float
    schedule: str
    augment: Augment
    loss: LossWeights

    @classmethod
    def resolve(cls, settings: TrainSettings, existing: dict | None, model_dir: Path,
                generic: bool = False) -> TrainConfig:
        """`existing`: the model folder's config.json, where it holds a model already; `generic`: a base pretrained."""
        arch = _arch(settings, existing, model_dir, generic)
        saved, defaults = existing or {}, arch.defaults
        return cls(arch, settings.batch_size or saved.get("batch_size") or defaults.get("batch_size", 16),
                   settings.lr or saved.get("lr") or defaults.get("lr", 5e-5),
                   settings.schedule or saved.get("schedule") or defaults.get("schedule", "constant"),
                   Augment(**{**defaults.get("augment", {}), **settings.augment}), settings.loss)


def _arch(s: TrainSettings, existing: dict | None, model_dir: Path, generic: bool) -> ArchConfig:
    """A new model's architecture from the settings (or the base's), or the existing one's, if they agree."""
    if existing and (existing.get("kind") == "base") != generic:
        raise FaceswapError(f"{model_dir}: holds a pair model; pretrain into another folder" if generic
                            else f"{model_dir}: holds a base (faceswap pretrain); train into another folder "
                                 f"with --from {model_dir}")
    if existing is None and s.pretrained is not None and not (s.model or s.size or s.latent or s.coverage):
        return store.arch_from_config(store.read_config(Path(s.pretrained)))  # the base's, as it is
    if existing is None:
        cfg = arch_mod.config_for(s.model or "lite", s.size, s.latent or "dense")
        if s.coverage:
            cfg.coverage = s.coverage
        return cfg
    old = store.arch_from_config(existing)
    wanted = (s.model or old.name, s.size or old.size, s.latent or old.latent_type)
    if wanted != (old.name, old.size, old.latent_type):
        raise FaceswapError(f"{model_dir}: holds a {old.name} model ({old.size} px, {old.latent_type} "
                            f"latent), not {wanted[0]} ({wanted[1]} px, {wanted[2]}); use another model folder")
    return old
