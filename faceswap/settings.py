"""One typed settings model per stage (extract, train, convert): the click options and the pipeline's YAML
keys are both built from these, so every option exists in both, with the same checks, and a wrong value
is reported with the name of its option or key before any work starts.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin

import click
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from faceswap.align import DEFAULT_PADDING
from faceswap.errors import FaceswapError
from faceswap.faces.keyframes import DEFAULT_GAP

PAIRS = {"cli": "pairs"}  # a mapping: on the command line a repeatable KEY=VALUE option


@dataclass
class LossWeights:
    dssim: float = 1.0
    l1: float = 1.0
    mask: float = 0.5
    kl: float = 1e-3
    background: float = 0.1    # weight of pixels outside the face hull
    edge: float = 0.0          # L1 on image gradients (bench/quality.py: no better than 0 at the demo's budget)
    sparse: float = 0.0        # L1 on the encoder's code
    mse: float = 0.0           # squared error (what PCA minimises; the linear baseline's test uses it alone)
    perceptual: float = 0.0    # FaceMesh's feature maps (models/facemesh.py; at the demo's budget no better)


@dataclass
class Augment:
    rotation: float = 10.0      # degrees
    zoom: float = 0.05
    shift: float = 0.05
    flip: float = 0.5
    brightness: float = 0.3     # L*a*b* lightness, fraction
    colour: float = 0.08        # a*, b* shift, fraction
    clahe: float = 0.5          # probability
    warp: float = 5 / 256       # random-warp sigma, fraction of the size
    warp_share: float = 1.0     # share of inputs that are warped (the rest teach exact detail)
    eyes: float = 3.0
    mouth: float = 2.0
    occluders: float = 0.25     # share of examples given a synthetic occluder (a hand or a blob of surroundings)


def _check_track(value: str | int | None) -> str | None:
    if value is None:
        return None
    value = str(value)
    if value not in ("largest", "center") and not value.isdigit():
        raise ValueError("use largest, center or a track id")
    return value


def _extent(value, negative: bool) -> str:
    """A length in frame pixels ('4') or a share of the face ('2.5%'), written one way."""
    text = str(value).strip()
    try:
        amount = float(text.removesuffix("%"))
    except ValueError:
        raise ValueError("use pixels (4) or a share of the face (2.5%)") from None
    if not math.isfinite(amount) or abs(amount) > 100 or (amount < 0 and not negative):
        raise ValueError(f"use {'-100' if negative else '0'} to 100 pixels, or a share of the face in %")
    return f"{amount:g}%" if text.endswith("%") else f"{amount:g}"


def extent_px(extent: str, face_px: float) -> float:
    """An _extent in pixels for a face `face_px` wide."""
    return float(extent[:-1]) / 100 * face_px if extent.endswith("%") else float(extent)


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    def as_json(self) -> dict:
        return self.model_dump(mode="json")


class FaceSettings(_Settings):
    """How faces are found and made final (the face stage): shared by extract and convert."""
    aligner: Literal["litert", "fan"] = Field("litert", description="litert: offline MediaPipe models; fan: "
                                                                    "face-alignment S3FD + 2DFAN4.")
    detector: Literal["full", "short"] = Field("full", description="BlazeFace model for litert: full range, or "
                                                                   "short range (faces near the camera).")
    min_score: float = Field(0.5, gt=0, lt=1, description="Detector score threshold.")
    min_size: int = Field(32, ge=1, description="Ignore faces smaller than this (px).")
    max_faces: int = Field(0, ge=0, description="Keep at most N faces per frame, the largest (0: all).")
    track: Optional[str] = Field(None, description="Keep one person only: largest, center, or a track id.")
    smooth: bool = Field(True, description="One-Euro smoothing of landmarks.")
    smooth_cutoff: float = Field(1.0, gt=0, description="One-Euro minimum cut-off (Hz).")
    smooth_beta: float = Field(0.3, ge=0, description="One-Euro speed coefficient.")
    bridge: int = Field(5, ge=0, le=100, description="Bridge a face lost inside its track for up to N frames.")
    sequence: bool = Field(False, description=(
        "Image folders hold consecutive video frames: track and smooth across them (by default each image is "
        "searched on its own)."))
    interpolate: int = Field(DEFAULT_GAP, ge=0, le=10, description=(
        "Video frames in a row whose landmarks may be interpolated where the face barely moves (0: measure "
        "every frame)."))
    reference: Optional[Path] = Field(None, description=(
        "Keep only the person in this photo (or folder of photos), decided per track by face embedding."))
    exclude: Optional[Path] = Field(None, description="Leave out the person in this photo (or folder of photos).")
    reference_threshold: float = Field(0.6, gt=0, lt=2, description=(
        "Largest embedding distance to the reference that is the same person (-v prints each track's)."))

    _track = field_validator("track", mode="before")(_check_track)


class ExtractSettings(FaceSettings):
    bridge: int = Field(0, ge=0, le=100, description=(
        "Bridge a face lost inside its track for up to N frames (a bridged face is a guess: none by default)."))
    size: int = Field(256, ge=32, le=2048, description="Side of the aligned crops in pixels.")
    padding: float = Field(DEFAULT_PADDING, ge=0, le=1, description="Margin around the mean face in the crops.")
    every: int = Field(1, ge=1, description="Use every Nth frame.")
    start: int = Field(0, ge=0, description="First frame index.")
    end: Optional[int] = Field(None, ge=1, description="Stop before this frame index.")
    min_blur: float = Field(0.0, ge=0, description="Drop crops whose sharpness is below this.")
    preview: Optional[Path] = Field(None, description="Write a contact sheet (.png) or video (.mp4) with boxes "
                                                      "and landmarks drawn.")

    @model_validator(mode="after")
    def _range(self):
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be greater than start ({self.start})")
        return self


class TrainSettings(_Settings):
    model: Optional[Literal["lite", "lite128", "original", "hd", "linear"]] = Field(
        None, description="Architecture for a new model (default lite); must match an existing one.")
    size: Optional[int] = Field(None, description="Model size in px (hd: 128 or 256).")
    latent: Optional[Literal["dense", "vae"]] = Field(None, description="Bottleneck type.")
    iterations: Optional[int] = Field(None, gt=0, description="Total steps to reach (a resumed model counts its "
                                                              "steps).")
    minutes: Optional[float] = Field(None, gt=0, description="Train for this many minutes.")
    batch_size: Optional[int] = Field(None, ge=1, le=4096, description="Faces per identity per step.")
    lr: Optional[float] = Field(None, gt=0, description="Adam learning rate (architecture default if unset).")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1.")
    schedule: Optional[Literal["constant", "cosine"]] = Field(None, description="Learning-rate schedule.")
    warmup: int = Field(100, ge=0, description="Learning-rate warm-up steps.")
    coverage: Optional[float] = Field(None, gt=0.3, le=1, description="Share of the aligned crop the model sees "
                                                                      "(new model).")
    holdout: float = Field(0.1, ge=0, le=0.5, description="Share of each face set kept out for evaluation.")
    seed: int = Field(0, ge=0, description="Random seed.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description=(
        "Training precision (auto: on GPUs bf16/fp16 from 128 px models up, fp32+TF32 below; bf16 on CPUs with "
        "AMX/AVX512-BF16)."))
    compile: bool = Field(False, description="Use torch.compile (slow start, faster steps).")
    save_every: int = Field(500, ge=1, description="Checkpoint every N steps.")
    save_minutes: float = Field(5.0, gt=0, description="Checkpoint at least every this many minutes.")
    preview_every: int = Field(250, ge=1, description="Write preview.png every N steps.")
    timelapse: bool = Field(False, description="Keep every preview and render timelapse.mp4 at the end.")
    workers: int = Field(1, ge=1, le=1024, description=(
        "Training processes (DDP ranks); more than 1 needs run --ray (Ray Train) or torchrun."))
    data_workers: Optional[int] = Field(None, ge=0, le=64, description=(
        "Data worker processes per training process (default: half the cores, at most 4; none on a 2-core CPU)."))
    pretrained: Optional[Path] = Field(None, description=(
        "Start a new model's encoder and decoders from this base (made by faceswap pretrain); CLI: --from."))
    loss: LossWeights = Field(default_factory=LossWeights, json_schema_extra=PAIRS, description=(
        "A loss weight to change, KEY=VALUE (dssim, l1, mask, kl: for --latent vae, background, edge, sparse: an "
        "L1 penalty on the code, mse, perceptual: on FaceMesh's features); repeatable."))
    augment: dict[str, float] = Field(default_factory=dict, json_schema_extra=PAIRS, description=(
        "An augmentation to change from the architecture's defaults, KEY=VALUE (e.g. warp_share: the share of "
        "inputs given the random warp, lite: 0.5, others: 1); repeatable."))

    @field_validator("loss", "augment", mode="before")
    @classmethod
    def _known_keys(cls, value, info):
        known = {f.name for f in dataclasses.fields(LossWeights if info.field_name == "loss" else Augment)}
        unknown = set(value) - known if isinstance(value, dict) else set()
        if unknown:
            raise ValueError(f"unknown {info.field_name} setting(s): {', '.join(sorted(unknown))} (known: "
                             f"{', '.join(sorted(known))})")
        return value

    def require_budget(self) -> None:
        if self.iterations is None and self.minutes is None:
            raise FaceswapError("give --iterations (total steps to reach) or --minutes")


class ConvertSettings(FaceSettings):
    direction: Literal["a2b", "b2a"] = Field("a2b", description="a2b: A's faces become B's; b2a the reverse.")
    color: Literal["rct", "avg", "hist", "none"] = Field("rct", description="Colour matching of the new face.")
    mask: Optional[Literal["landmarks", "predicted", "combined"]] = Field(
        None, description="Default: combined when the model learned a mask (and --occlusion is not hands or "
                          "off), else landmarks.")
    occlusion: Literal["auto", "hands", "learned", "off"] = Field("auto", description=(
        "What stays in front of the face: hands (found near faces, their pixels kept from the source), learned "
        "(the model's learned mask of the visible face), auto (both, where the model has a learned mask), off."))
    erode: str = Field("-2.5%", description=(
        "Shrink the mask by PX, or by a share of the face (N%); negative grows it: more of the new face shows."))
    feather: str = Field("8%", description="Feather the mask edge by PX, or by a share of the face (N%).")
    blend: Literal["alpha", "seamless"] = Field("alpha", description="How the face is blended in.")
    sharpen: float = Field(0.0, ge=0, le=5, description="Unsharp-mask amount for the new face.")
    detail: Literal["auto", "off"] = Field("auto", description=(
        "auto: add the target's own fine detail (pores, lashes, stubble) from the exemplar faces the model "
        "folder carries, where it has them; off: the model's face as it is."))
    grain: Literal["auto", "off"] = Field("auto", description=(
        "auto: add noise to the new face where it is smoother than the frame's own face, and tune x264 or "
        "x265 to keep it; off: none."))
    batch_size: int = Field(16, ge=1, le=1024, description="Faces per model call.")
    watermark: Optional[str] = Field(None, description="Draw this visible label on every frame.")
    codec: str = Field("libx264", description="Video encoder (an FFmpeg encoder name).")
    crf: int = Field(18, ge=0, le=63, description="Encoder quality: lower is better (x264: 0-51).")
    preset: str = Field("fast", description="Encoder speed preset.")
    device: Optional[str] = Field(None, description="torch device (default: cuda when there is one, else cpu).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="Inference precision.")
    force_alignments: bool = Field(False, description="Use --alignments even when they record another input.")
    manifest_paths: bool = Field(False, description="Write full paths into the manifest (by default only names, "
                                                    "sizes and hashes: a path names the user's folders).")
    sign_cert: Optional[Path] = Field(None, description="Sign the content credentials with this PEM certificate "
                                                        "chain (default: a local signer faceswap makes once).")
    sign_key: Optional[Path] = Field(None, description="The PEM private key of --sign-cert.")

    _erode = field_validator("erode", mode="before")(lambda value: _extent(value, negative=True))
    _feather = field_validator("feather", mode="before")(lambda value: _extent(value, negative=False))


def _message(error: dict) -> str:
    message = error["msg"].removeprefix("Value error, ")
    return f"{message} (got {error['input']!r})" if "input" in error and not isinstance(error["input"], dict) \
        else message


def parse(cls: type[_Settings], values: dict, where: str = "", cli: bool = False) -> _Settings:
    """Settings from a mapping; a bad value is one FaceswapError naming its option (cli) or key (where)."""
    if not isinstance(values, dict):
        raise FaceswapError(f"pipeline: {where} must be a mapping, not {type(values).__name__}")
    try:
        return cls(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(part) for part in error["loc"]]
        if cli:
            name = f"--{loc[0].replace('_', '-')}" if loc else "options"
            raise FaceswapError(f"{name}: {_message(error)}") from None
        key = ".".join([where] + loc) if loc else where
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(cls.model_fields))
            raise FaceswapError(f"pipeline: {key}: unknown key (allowed: {allowed})") from None
        raise FaceswapError(f"pipeline: {key}: {_message(error)}") from None


def _plain_type(annotation) -> Any:
    """The type inside Optional[...]."""
    if get_origin(annotation) is Union:
        return next(a for a in get_args(annotation) if a is not type(None))
    return annotation


def _names_a_path(annotation) -> bool:
    return annotation is Path or any(_names_a_path(arg) for arg in get_args(annotation))


def path_fields(cls: type[_Settings]) -> list[str]:
    """The settings typed Path (Optional, list...): a pipeline resolves them, the web page confines them, unasked."""
    return [name for name, field in cls.model_fields.items() if _names_a_path(field.annotation)]


def click_options(cls: type[_Settings], skip: frozenset = frozenset()):
    """A decorator adding one click option per settings field (names, choices, defaults and help from the model)."""
    decorators = []
    for name, field in cls.model_fields.items():
        if name in skip:
            continue
        kind = _plain_type(field.annotation)
        flag = "--" + name.replace("_", "-")
        if field.json_schema_extra == PAIRS:
            decorators.append(click.option(flag, name, multiple=True, metavar="KEY=VALUE", callback=_pairs,
                                           help=field.description))
            continue
        default = None if field.default_factory else field.default
        extra: dict = {"help": field.description, "show_default": default is not None and default is not False}
        if kind is bool:
            decorators.append(click.option(f"{flag}/--no-{flag[2:]}", name, default=default, **extra))
            continue
        if get_origin(kind) is Literal:
            extra["type"] = click.Choice([str(v) for v in get_args(kind)])
        elif kind is Path:
            extra["type"] = click.Path(path_type=Path)
        elif kind in (int, float):
            extra["type"] = kind
        decorators.append(click.option(flag, name, default=default, **extra))

    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def _pairs(ctx, param, values: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for item in values:
        key, equals, value = item.partition("=")
        if not equals:
            raise click.BadParameter(f"{item!r}: use KEY=VALUE")
        pairs[key.strip()] = value.strip()
    return pairs


def cli_args(values: _Settings) -> list[str]:
    """The command-line options that give `values` (those not at their defaults), as a job queued by the UI runs."""
    args = []
    defaults = type(values)()
    for name, field in type(values).model_fields.items():
        value = getattr(values, name)
        if value == getattr(defaults, name) or value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if field.json_schema_extra == PAIRS:
            given, default = (value, {}) if isinstance(value, dict) else \
                (dataclasses.asdict(value), dataclasses.asdict(getattr(defaults, name)))
            args += [part for k, v in given.items() if default.get(k) != v for part in (flag, f"{k}={v}")]
            continue
        args += [flag if value else f"--no-{flag[2:]}"] if isinstance(value, bool) else [flag, str(value)]
    return args
