"""`faceswap convert`: swap faces in a video or image folder, keeping every frame's timing and the audio.

Two passes over the input. The first finds faces (or reads them from an extract alignments file),
tracks and smooths them, and bridges short gaps inside a track. The second runs the faces through the
model in batches and composites them; the first runs ahead in a thread and a writer thread encodes
behind, so the three overlap. Frames up to 720p are decoded once and handed from the first pass to the
second (memory holds `HELD_FRAMES` of them); larger ones are decoded again by the second, so memory holds
a batch of frames plus a few hundred bytes of landmarks per face per frame.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from faceswap import __version__, align, atomic, credentials, faceset, media, outputs, threads
from faceswap.device import PRECISIONS, autocast_dtype, encoder_threads, use_tf32
from faceswap.credentials import manifest_path
from faceswap.errors import FaceswapError
from faceswap.faces import Face, FaceCounts, finder_for, keyframes
from faceswap.faces.hands import HandFinder, between, near
from faceswap.faces.identity import filters_for
from faceswap.faces.stage import FaceStage, FrameRef
from faceswap.models import store
from faceswap.settings import ConvertSettings
from faceswap.swap import blend, color, detail, grain

log = logging.getLogger(__name__)
SHRINK = 1.5  # paste's bicubic warp shrinks a face this much without sparkle; more is area-averaged first
# frames in flight when decoded once (the face pass's queue and look-back, the model's batch, the encoder's
# queue), and the memory they may take: 720p is decoded once, 1080p twice
HELD_FRAMES, HELD_BYTES = 150, 512 << 20
SYNTHETIC_NOTE = "Synthetic media: one or more faces in this video were replaced by faceswap {version} (AI face swap)."


@dataclass
class ConvertSummary(FaceCounts):
    output: str = ""

    def line(self) -> str:
        return (f"convert: {self.frames} frames, {self.faces} faces swapped, {self.frames_without_face} frames "
                f"without a face, {self.fps:.1f} fps -> {self.output}")


# -- pass 1: where the faces are -----------------------------------------------------------------------
IDENTITY = ("bytes", "sampled_sha256", "frames", "width", "height")


def faces_from_alignments(path: Path, info: media.MediaInfo, force: bool = False) -> dict[int, list[Face]]:
    """Each frame's faces from an extract face set, after checking that it was made from this input: the same
    file (by name and content) or a renamed copy of it. Anything else is refused unless `force`."""
    path = Path(path)
    _, records = faceset.read_alignments(path)
    sources = faceset.read_summary(path if path.is_dir() else path.parent).get("sources", {})
    names = sorted({r["source"] for r in records})
    mine = media.fingerprint(info)
    name, problem = mine["name"], None
    if name in sources:
        differ = [k for k in IDENTITY if sources[name].get(k) != mine[k]]
        if differ:
            problem = f"records another {name} (its {', '.join(differ)} differ)"
    else:
        same = [n for n, known in sources.items() if all(known.get(k) == mine[k] for k in IDENTITY)]
        if same:
            name = same[0]  # a renamed copy of the file extracted
        elif sources or name not in names:
            problem = f"was made from {', '.join(names) or 'no frames'}, not {name}"
    if problem:
        if not force:
            raise FaceswapError(f"{path}: {problem}; use the face set extracted from this input, or "
                                "--force-alignments")
        log.warning("%s: %s; used anyway (--force-alignments)", path, problem)
        if name not in names and len(names) == 1:
            name = names[0]
    return {r["frame"]: [Face.from_record(f) for f in r["faces"]] for r in records if r["source"] == name}


def faces_in_order(source: Path, settings: ConvertSettings, known: dict[int, list[Face]] | None = None,
                   frames: list | None = None, keep_frames: bool = False) -> Iterator:
    """(frame ref, faces to swap) for every frame, in order: found (key frames measured and the frames between
    interpolated where faces barely move, arrivals followed back) or read from an alignments file, with the
    hands over them, then made final by the face stage (bridged and chosen). `frames`: only these, each on
    its own (a preview). `keep_frames`: each ref carries its decoded frame, for the swap pass."""
    # photos (an image folder, unless settings.sequence) are each searched on their own: no tracking,
    # smoothing or bridging from one photo into an unrelated next one
    consecutive = frames is None and (settings.sequence or not media.is_image_folder(source))
    frames = media.read_frames(source) if frames is None else frames
    if known is None:
        finder = finder_for(settings, settings.interpolate)
        found = keyframes.find_faces(frames, finder, settings.interpolate, video=consecutive)
    else:
        found = ((frame, list(known.get(frame.index, [])), True) for frame in frames)
    hand_finder = HandFinder() if settings.occlusion in ("auto", "hands") else None
    identity = filters_for(settings)
    # the stage tells who a face is from the frame's image; the swap pass may take the frame itself
    keep = bool(identity) or keep_frames

    def refs():
        """Each frame with the hands over its faces. While hands are followed, every other frame gets them
        half-way between its neighbours' (the hand model is the costliest step of occlusion)."""
        held = None
        for frame, faces, measured in found:
            if hand_finder is None:
                yield FrameRef.of(frame, keep=keep), faces, measured
                continue
            if consecutive and held is None and faces and hand_finder.tracked and not hand_finder.search_due():
                held = (frame, faces, measured, list(hand_finder.tracked))
                continue
            hands = hand_finder(frame.image, faces, consecutive)
            if held is not None:
                yield FrameRef.of(held[0], between(held[3], hands), keep), *held[1:3]
                held = None
            yield FrameRef.of(frame, hands, keep), faces, measured
        if held is not None:
            yield FrameRef.of(held[0], held[3], keep), *held[1:3]

    stage = FaceStage.of(settings, consecutive, tracked=known is not None, identity=identity)
    for ref, faces, _ in stage.run(refs()):
        yield ref if keep_frames else dataclasses.replace(ref, frame=None), faces
    if stage.bridged:
        log.info("bridged %d lost faces inside tracks", stage.bridged)


# -- pass 2: swap ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvertConfig:
    """Every convert setting as it is in effect for one model, decided once (`resolve`): the settings with the
    mask, device and precision filled in (what the manifest records), the side swapped in, the mask recipe."""
    settings: ConvertSettings
    side: str
    mask: blend.MaskRecipe
    amp: torch.dtype | None

    @classmethod
    def resolve(cls, settings: ConvertSettings, arch) -> ConvertConfig:
        learned = settings.occlusion in ("learned", "auto") and arch.mask
        if settings.occlusion == "learned" and not arch.mask:
            raise FaceswapError(f"this {arch.name} model has no learned mask; use --occlusion hands or off")
        kind = settings.mask or ("combined" if learned else "landmarks")
        if kind != "landmarks" and not arch.mask:
            raise FaceswapError(f"this {arch.name} model has no learned mask; use --mask landmarks")
        device = torch.device(settings.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        amp = autocast_dtype(settings.precision, device, arch.size)
        resolved = settings.model_copy(update={"mask": kind, "device": str(device), "precision": PRECISIONS[amp]})
        return cls(resolved, "b" if settings.direction == "a2b" else "a",
                   blend.MaskRecipe(kind, settings.erode, settings.feather), amp)


@dataclass
class FaceJob:
    """One face on its way through convert: where it is (`matrix`: frame -> output window), its landmarks in the
    window, the frame's face there, the hands over it, its track, what the model is given, and what it gave."""
    matrix: np.ndarray
    landmarks: np.ndarray
    original: np.ndarray
    hands: list
    track: int
    model_input: np.ndarray
    swapped: np.ndarray | None = None
    predicted: np.ndarray | None = None
    fine: np.ndarray | None = None  # the frame's face at the detail's size, where that is larger than the output


class Swapper:
    """Runs aligned faces through the encoder and one decoder, in batches, and composites them. One Swapper
    converts clip after clip (`reset` between them): the model is loaded once."""

    def __init__(self, model_dir: Path, settings: ConvertSettings):
        model, self.model_config = store.load_model(model_dir, torch.device("cpu"))
        self.cfg = model.cfg
        self.convert_config = ConvertConfig.resolve(settings, self.cfg)
        self.settings, self.side = self.convert_config.settings, self.convert_config.side
        self.device = torch.device(self.settings.device)
        del model.decoders["a" if self.side == "b" else "b"]  # not run: not converted below
        # bf16 weights once, not autocast's casts of them every batch (a quarter faster on a CPU; the same output)
        weights = torch.bfloat16 if self.convert_config.amp == torch.bfloat16 else torch.float32
        self.model = model.to(self.device, weights, memory_format=torch.channels_last)
        self.size = self.cfg.out_size   # what it gives: the swapped face is composited at this size
        self.padding = float(self.model_config.get("padding", align.DEFAULT_PADDING))
        if self.device.type == "cuda":
            use_tf32()
        self.detail = None  # a model saved without exemplars converts as it always did
        exemplars = store.load_exemplars(model_dir, self.model_config, self.side) \
            if settings.detail == "auto" else None
        if exemplars is not None and exemplars[0].shape[1] >= self.size:
            source = store.load_exemplars(model_dir, self.model_config, "a" if self.side == "b" else "b")
            self.detail = detail.Detail(*exemplars, None if source is None else source[1])
        self.grain = grain.Grain() if settings.grain == "auto" else None

    def reset(self) -> None:
        """Forget the last clip's tracks: a new clip's texture and grain start afresh."""
        for follower in (self.detail, self.grain):
            if follower is not None:
                follower.reset()

    def model_matrix(self, landmarks: np.ndarray, size: int | None = None, alignment=None) -> np.ndarray:
        """The window the model was trained on (align.model_matrix, as training uses it), at `size` px (default:
        the output's); `alignment`: the face's alignment matrix, where the face stage made it already."""
        alignment = align.alignment_matrix(landmarks) if alignment is None else alignment
        return align.model_matrix(alignment, size or self.size, self.cfg.coverage, self.padding)

    def prepare(self, image: np.ndarray, face, hands: list) -> FaceJob:
        matrix = self.model_matrix(face.landmarks, alignment=face.matrix)
        aligned = align.warp(image, matrix, self.size)
        model_input = aligned if self.cfg.size == self.size else \
            align.warp(image, self.model_matrix(face.landmarks, self.cfg.size, face.matrix), self.cfg.size)
        fine = None if self.detail is None or self.detail.size == self.size else \
            align.warp(image, resized(matrix, self.detail.size / self.size), self.detail.size)
        return FaceJob(matrix, align.transform_points(face.landmarks, matrix), aligned, hands, face.track,
                       model_input, fine=fine)

    @torch.inference_mode()
    def infer(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 N x S x S x 3 aligned faces -> float32 swapped faces and predicted masks (or None)."""
        x = torch.from_numpy(faces).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        x = x.contiguous(memory_format=torch.channels_last).to(next(self.model.parameters()).dtype)
        amp = self.convert_config.amp
        with torch.autocast(self.device.type, dtype=amp or torch.float32, enabled=amp == torch.float16):
            out = self.model(x, self.side)
        rgb = out.rgb.float().permute(0, 2, 3, 1).cpu().numpy()
        mask = out.mask.float()[:, 0].cpu().numpy() if out.mask is not None else None
        return rgb, mask

    def composite(self, frame: np.ndarray, jobs: list[FaceJob]) -> np.ndarray:
        """The swapped faces of `jobs` pasted into `frame`. Called in frame order: detail and grain follow tracks."""
        s, recipe = self.settings, self.convert_config.mask
        for job in jobs:
            face_mask = recipe.face(job.landmarks, job.predicted, self.size)
            swapped = color.match(s.color, job.swapped, job.original.astype(np.float32) / 255, face_mask)
            face_px = self.size / np.sqrt(abs(np.linalg.det(job.matrix[:, :2])))
            matrix = job.matrix
            if self.detail is not None:
                swapped, face_mask, matrix = self.detailed(job, swapped, face_mask, face_px)
            swapped = blend.sharpen(swapped, s.sharpen)
            noise = None if self.grain is None else functools.partial(self.grain, track=job.track)
            frame = blend.paste(frame, swapped, recipe.alpha(face_mask, face_px), matrix, s.blend, job.hands,
                                recipe.hand_margin * face_px, align.enlarge_flag(self.size), noise)
        return frame

    def detailed(self, job: FaceJob, swapped: np.ndarray, face_mask: np.ndarray, face_px: float):
        """The exemplars' detail added at their own size, finer than the model's output where the face is larger
        in the frame; a face much smaller there is then brought down to its own size (area-averaged: no sparkle).
        Returns the face, its mask and its window matrix at that size."""
        size = self.detail.size
        if size == self.size:
            return self.detail(swapped, job.original, job.landmarks, face_mask, job.track), face_mask, job.matrix
        scale = size / self.size
        swapped = cv2.resize(swapped, (size, size), interpolation=cv2.INTER_CUBIC)
        face_mask = cv2.resize(face_mask, (size, size), interpolation=cv2.INTER_LINEAR)
        fine = job.fine if job.fine is not None else \
            cv2.resize(job.original, (size, size), interpolation=cv2.INTER_CUBIC)
        landmarks = align.transform_points(job.landmarks, resized(np.eye(2, 3), scale))  # where resize puts them
        swapped = self.detail(swapped, fine, landmarks, face_mask, job.track)
        matrix = resized(job.matrix, scale)
        if face_px * SHRINK < size:
            shown = int(np.ceil(face_px))
            swapped = cv2.resize(swapped, (shown, shown), interpolation=cv2.INTER_AREA)
            face_mask = cv2.resize(face_mask, (shown, shown), interpolation=cv2.INTER_AREA)
            matrix = resized(matrix, shown / size)
        return swapped, face_mask, matrix


def resized(matrix: np.ndarray, scale: float) -> np.ndarray:
    """The window matrix of a face image resized by `scale`: cv2.resize keeps pixel centres, so the window is
    scaled and shifted by half the change of a pixel."""
    shift = (scale - 1) / 2
    return matrix * scale + [[0, 0, shift], [0, 0, shift]]


def convert(source: Path, model_dir: Path, output: Path, settings: ConvertSettings | None = None,
            alignments: Path | None = None, progress: bool = True, swapper: Swapper | None = None) -> ConvertSummary:
    """`swapper`: one made for this model and settings, kept over clips (a batch's worker)."""
    settings = settings or ConvertSettings()
    source, output, model_dir = Path(source), Path(output), Path(model_dir)
    outputs.claim(output, "converted", [source, model_dir, alignments], also=("preview",))
    info = media.probe(source)
    with atomic.exclusive(output, "output"):
        return _convert(source, info, model_dir, output, settings, alignments, progress, swapper)


def _convert(source, info, model_dir, output, settings, alignments, progress, swapper) -> ConvertSummary:
    known = faces_from_alignments(Path(alignments), info, settings.force_alignments) if alignments else None
    if swapper is None:
        swapper = Swapper(model_dir, settings)
    swapper.reset()
    settings = swapper.settings  # as in effect: what the manifest records
    facts = provenance(source, model_dir, swapper.model_config, alignments)
    seal = sealer(source, facts, settings)
    started = time.perf_counter()
    metadata = {"comment": SYNTHETIC_NOTE.format(version=__version__),
                "description": SYNTHETIC_NOTE.format(version=__version__)}
    writer = media.open_writer(output, like=info, audio_from=source, codec=settings.codec, crf=settings.crf,
                               preset=settings.preset, tune="grain" if settings.grain == "auto" else None,
                               metadata=metadata, seal=seal, threads=encoder_threads()) \
        if output.suffix else media.open_writer(output, like=info, seal=seal)
    summary = ConvertSummary(output=str(output))
    bar = tqdm(total=info.frames, desc=f"convert {source.name}", unit="frame", disable=not progress, leave=False)
    frames = frames_with_faces(source, info, settings, known)
    try:
        with threads.Behind(lambda item: writer.write_frame(*item), 32) as writing:
            pending: list = []  # (frame, [FaceJob]) awaiting the model
            queued_faces = 0
            for frame, ref, found in frames:
                jobs = [swapper.prepare(frame.image, face, [h for h in ref.hands if near(h, face)]) for face in found]
                pending.append((frame, jobs))
                queued_faces += len(jobs)
                if queued_faces >= settings.batch_size or len(pending) >= 2 * settings.batch_size:
                    _flush(pending, swapper, settings, writing.put, summary, bar)
                    pending, queued_faces = [], 0
            _flush(pending, swapper, settings, writing.put, summary, bar)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        frames.close()
        bar.close()
    summary.seconds = time.perf_counter() - started
    write_manifest(source, model_dir, output, settings, swapper.model_config, summary, alignments, facts)
    return summary


def frames_with_faces(source: Path, info: media.MediaInfo, settings: ConvertSettings,
                      known: dict[int, list[Face]] | None) -> Iterator[tuple]:
    """(frame, its ref, its faces to swap) in order, the face pass running ahead in a thread. A video's frames are
    decoded once and handed on where they are small enough to hold `HELD_FRAMES` of; larger ones, and photos,
    are decoded again for the swap, so only their faces wait between the passes."""
    once = not media.is_image_folder(source) and info.width * info.height * 3 * HELD_FRAMES <= HELD_BYTES
    faces = threads.run_ahead(faces_in_order(source, settings, known, keep_frames=once), 64)
    decoded = None if once else threads.run_ahead(media.read_frames(source))
    try:
        for ref, found in faces:
            frame = ref.frame if once else next(decoded, None)
            if frame is None or frame.index != ref.index:
                raise FaceswapError(f"{source}: the face pass and the swap pass decoded different frames")
            yield frame, ref, found
        if decoded is not None and next(decoded, None) is not None:
            raise FaceswapError(f"{source}: the swap pass decoded more frames than the face pass")
    finally:
        faces.close()
        if decoded is not None:
            decoded.close()


def preview_frame(source: Path, index: int, swapper: Swapper) -> tuple[np.ndarray, np.ndarray, int]:
    """One frame of `source` as it is and as convert would write it with the swapper's settings (the face found
    on that frame alone), and how many faces were swapped: what `faceswap ui` shows while settings are tuned."""
    frame = next(media.read_frames(source, start=index, end=index + 1), None)
    if frame is None:
        raise FaceswapError(f"{source}: has no frame {index}")
    original = frame.image.copy()  # compositing draws into the frame
    ref, found = next(faces_in_order(source, swapper.settings, frames=[frame]))
    jobs = [swapper.prepare(frame.image, face, [h for h in ref.hands if near(h, face)]) for face in found]
    out = []
    _flush([(frame, jobs)], swapper, swapper.settings, lambda item: out.append(item[1]), ConvertSummary(),
           tqdm(disable=True))
    return original, out[0], len(jobs)


def _flush(pending: list[tuple], swapper: Swapper, settings: ConvertSettings, put, summary, bar) -> None:
    jobs = [job for _, frame_jobs in pending for job in frame_jobs]
    if jobs:
        swapped, predicted = swapper.infer(np.stack([job.model_input for job in jobs]))
        for i, job in enumerate(jobs):
            job.swapped, job.predicted = swapped[i], None if predicted is None else predicted[i]
    for frame, frame_jobs in pending:
        image = swapper.composite(frame.image, frame_jobs) if frame_jobs else frame.image
        if settings.watermark:
            image = blend.watermark(image, settings.watermark)
        put((frame, image))
        summary.count(len(frame_jobs))
        bar.update(1)


def _described(path: Path | None) -> dict | None:
    """Name, size and sha256 of a file (each file's, for a folder): no path, since a path names the user's folders
    and manifests are shared."""
    if path is None:
        return None
    path = Path(path)
    if path.is_file():
        return {"name": path.name, "bytes": path.stat().st_size, "sha256": atomic.sha256_of(path)}
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) if path.is_dir() else []
    return {"name": path.name, "files": {p.name: atomic.sha256_of(p) for p in files}}


def provenance(source: Path, model_dir: Path, model_config: dict, alignments: Path | None) -> dict:
    """What an output was made from, by name and hash: the content credentials and the JSON manifest share it."""
    facesets = {}
    for side, v in model_config.get("facesets", {}).items():
        record = Path(v.get("path", "")) / faceset.ALIGNMENTS
        facesets[side] = dict(_described(record) if record.is_file() else {}, name=Path(v.get("path", "")).name,
                              faces=v.get("train", 0) + len(v.get("holdout", [])))
    return {"input": _described(source),
            "model": {"name": Path(model_dir).name, "architecture": model_config.get("architecture", {}).get("name"),
                      "step": model_config.get("step"), "files_sha256": model_config.get("files", {}),
                      "facesets": facesets},
            "alignments": _described(alignments)}


def sealer(source: Path, facts: dict, settings: ConvertSettings) -> credentials.Sealer:
    signing = credentials.load_signing(settings.sign_cert, settings.sign_key)
    sha256 = (facts["input"] or {}).get("sha256")
    return credentials.Sealer(credentials.definition("", Path(source).name, sha256, facts), signing)


def write_manifest(source: Path, model_dir: Path, output: Path, settings: ConvertSettings, model_config: dict,
                   summary: ConvertSummary, alignments: Path | None, facts: dict) -> Path:
    """The JSON record beside every output: what made it, from what, and that it is synthetic."""
    manifest = {
        "schema": "faceswap.manifest", "version": 2, "synthetic": True,
        "statement": SYNTHETIC_NOTE.format(version=__version__),
        "tool": {"name": "faceswap", "version": __version__},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **facts, "output": _described(output),
        "credentials": "sidecar" if credentials.sidecar_path(output).is_file() and output.suffix.lower()
                       in credentials.SIDECAR_ONLY else ("embedded, per image" if output.is_dir() else "embedded"),
        "settings": {k: (Path(v).name if k in ("reference", "exclude") and v and not settings.manifest_paths else v)
                     for k, v in settings.as_json().items() if k not in ("sign_cert", "sign_key")},
        "result": {"frames": summary.frames, "faces_swapped": summary.faces,
                   "frames_without_face": summary.frames_without_face},
    }
    if settings.manifest_paths:
        for key, path in (("input", source), ("output", output), ("model", model_dir), ("alignments", alignments)):
            if manifest[key] is not None:
                manifest[key]["path"] = str(Path(path).resolve())
        for side, v in model_config.get("facesets", {}).items():
            manifest["model"]["facesets"][side]["path"] = v.get("path")
    path = manifest_path(output)
    atomic.write_json(path, manifest)
    return path
