"""`faceswap evaluate`: numbers for a model and a converted video, before and after a long render.

Reconstruction: SSIM and PSNR of A->A and B->B on the held-out faces, inside the face mask. Video (SRC, OUT): frame,
timestamp and audio parity, and each metric below (pose, jitter, flicker, seams, sharpness, hands, identity).
"""
from __future__ import annotations

import logging
from collections import namedtuple
from pathlib import Path

import cv2
import numpy as np
import torch

from faceswap import align, atomic, faceset, images, masks, media, metrics, outputs
from faceswap.errors import FaceswapError
from faceswap.faces import Face, make_finder
from faceswap.faces.hands import HandFinder
from faceswap.faces.identity import Embedder
from faceswap.faces.identity import distance as identity_distance
from faceswap.models.store import arch_from_config, load_model, read_config

log = logging.getLogger(__name__)


# -- metric functions (pure, tested on synthetic cases) -------------------------------------------------
def landmark_error(src: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """Mean point distance between two 68-point sets: (pixels, over the inter-ocular distance)."""
    px = float(np.linalg.norm(np.asarray(src) - np.asarray(out), axis=1).mean())
    return px, px / max(align.eye_distance(src), 1e-6)


def jitter(track: np.ndarray) -> float:
    """Mean second difference of landmarks along frames, over the inter-ocular distance."""
    track = np.asarray(track, dtype=np.float64)
    if len(track) < 3:
        return 0.0
    second = track[2:] - 2 * track[1:-1] + track[:-2]
    iod = np.mean([align.eye_distance(t) for t in track])
    return float(np.linalg.norm(second, axis=2).mean() / max(iod, 1e-6))


def masked_change(previous: np.ndarray, current: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute change (0-255 scale) between two frames inside a mask."""
    weights = mask[..., None]
    total = weights.sum() * previous.shape[-1]
    return float((np.abs(current.astype(np.float32) - previous.astype(np.float32)) * weights).sum() / max(total, 1))


def seam_strength(frame: np.ndarray, mask: np.ndarray) -> float:
    """Mean gradient magnitude in a band along the mask's border, 3 % of its size wide (a visible seam raises it)."""
    binary = (mask > 0.5).astype(np.uint8)
    if not binary.any():
        return 0.0
    ys, xs = np.nonzero(binary)
    width = max(2, int(0.03 * max(np.ptp(xs), np.ptp(ys))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1,) * 2)
    band = cv2.dilate(binary, kernel) - cv2.erode(binary, kernel)
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    return float(gradient[band > 0].mean())


# -- model reconstruction --------------------------------------------------------------------------------
@torch.no_grad()
def _decode(model, x: torch.Tensor, side: str) -> torch.Tensor:
    return torch.cat([model(x[i:i + 32], side)[0] for i in range(0, len(x), 32)])


def swap_identity(model, x: torch.Tensor, side: str, people: dict, embedder) -> dict:
    """The held-out faces of `side` through the other decoder: the share nearer the other person than their
    own, and the mean distances (the model's output, enlarged to 256 px, its face box the window's middle)."""
    other = "b" if side == "a" else "a"
    crops = (_decode(model, x, other).clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    box = Face(bbox=np.array([0.12, 0.06, 0.88, 0.96]) * 256, score=1.0, landmarks=np.zeros((68, 2)))
    to_own, to_other = [], []
    for crop in crops:
        embedding = embedder(cv2.resize(crop, (256, 256), interpolation=cv2.INTER_CUBIC), box)
        to_own.append(_nearest(embedding, people[side]))
        to_other.append(_nearest(embedding, people[other]))
    return {"swap_nearer_target": round(float(np.mean(np.less(to_other, to_own))), 3),
            "swap_distance_to_target": round(float(np.mean(to_other)), 4),
            "swap_distance_to_source": round(float(np.mean(to_own)), 4)}


def reconstruction(model_dir: Path, people: dict | None = None) -> dict:
    """Held-out SSIM / PSNR of A->A and B->B inside the face mask; given the two `people`, their swapped identity."""
    from faceswap.training.data import FaceData

    model, config = load_model(model_dir)
    cfg, result, embedder = model.cfg, {}, None
    for side in ("a", "b"):
        info = config.get("facesets", {}).get(side, {})
        path, names = Path(info.get("path", "")), info.get("holdout", [])
        if not path.exists() or not names:
            result[side] = {"error": f"face set {path} not found" if not path.exists() else "no held-out faces"}
            continue
        # only the faces training kept out (config.json names them), scored at the model's output size
        data = FaceData(path, cfg.out_size, cfg.coverage, label=side.upper(), input_size=cfg.size, only=names)
        faces = data.plain(data.holdout_images)
        target = torch.from_numpy(faces).permute(0, 3, 1, 2).float().div(255)
        x = torch.from_numpy(data.inputs(faces)).permute(0, 3, 1, 2).float().div(255)
        rgb = _decode(model, x, side)
        mask = torch.from_numpy(np.stack([data.holdout_visible(i) for i in range(len(faces))]))[:, None]
        result[side] = {"faces": len(faces), "size": cfg.out_size, "ssim": round(metrics.ssim(rgb, target, mask), 4),
                        "psnr": round(metrics.psnr(rgb, target, mask), 2)}
        if people:
            embedder = embedder or Embedder()
            result[side].update(swap_identity(model, x, side, people, embedder))
    return result


# -- video ------------------------------------------------------------------------------------------------
def face_sharpness(image: np.ndarray, landmarks: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image inside the face hull, shrunk by a tenth of the face so the
    seam and the background are left out: fine detail (eyes, teeth, brows, skin) gives a high value."""
    hull = masks.hull_mask(landmarks, image.shape[:2], forehead=0.1)
    size = float(np.ptp(np.asarray(landmarks), axis=0).max())
    inner = cv2.erode((hull > 0.5).astype(np.uint8), np.ones((max(3, int(size * 0.1)),) * 2, np.uint8)) > 0
    if inner.sum() < 100:
        return float("nan")
    laplacian = cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_32F)
    return float(laplacian[inner].var())


def resolution_ceiling(image: np.ndarray, landmarks: np.ndarray, window: tuple) -> float:
    """face_sharpness of the frame with its face replaced by itself through the model's window (size, coverage,
    padding) and back, as convert pastes it: what a perfect model of that output size would reach."""
    size, coverage, padding = window
    matrix = align.model_matrix(align.alignment_matrix(landmarks), size, coverage, padding)
    inverse, shape = align.invert(matrix), image.shape[1::-1]
    face = cv2.warpAffine(align.warp(image, matrix, size), inverse, shape, flags=align.enlarge_flag(size),
                          borderMode=cv2.BORDER_REPLICATE)
    hull = masks.hull_mask(align.transform_points(landmarks, matrix), (size, size)) * masks.border_taper(size)
    inside = cv2.warpAffine(hull, inverse, shape)[..., None]
    return face_sharpness((image * (1 - inside) + face * inside + 0.5).astype(np.uint8), landmarks)


def occlusion_change(src: np.ndarray, out: np.ndarray, landmarks: np.ndarray, hands: list) -> tuple:
    """Mean absolute change (0-255) from SRC to OUT inside the part of the hands that lies over the face (their
    outline left out: codec and feather), and inside the uncovered face (the hull less the grown hands)."""
    shape = src.shape[:2]
    hull = masks.hull_mask(landmarks, shape) > 0.5
    size = float(np.ptp(np.asarray(landmarks), axis=0).max())
    inner = cv2.erode((masks.hand_mask(hands, shape) > 0.5).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    covered = masks.hand_mask(hands, shape, margin=0.06 * size) > 0.01
    diff = np.abs(src.astype(np.int16) - out.astype(np.int16)).mean(-1)
    on_hand, uncovered = inner & hull, hull & ~covered
    if on_hand.sum() < 50 or uncovered.sum() < 50:
        return None, None
    return float(diff[on_hand].mean()), float(diff[uncovered].mean())


IDENTITY_SAMPLES = 12  # crops of each training face set that stand for its person
IDENTITY_EVERY = 4     # frames between the faces of a video that are embedded


def identities(model_dir: Path) -> dict[str, list[np.ndarray]] | None:
    """Embeddings of a few crops of each face set the model was trained on: the two people of a swap."""
    embedder, finder, found = Embedder(), make_finder("litert"), {}
    for side, info in read_config(model_dir).get("facesets", {}).items():
        folder = Path(info.get("path", ""))
        crops = [path for path, _ in faceset.face_entries(folder)] if folder.exists() else []
        if not crops:
            return None
        embeddings = []
        for path in [crops[i] for i in np.linspace(0, len(crops) - 1, IDENTITY_SAMPLES).astype(int)]:
            crop = images.read_image(path)
            if faces := finder(crop, video=False):
                embeddings.append(embedder(crop, _largest(faces)))
        found[side] = embeddings
    return found if all(found.values()) else None


def _nearest(embedding, references: list) -> float:
    return min(identity_distance(embedding, r) for r in references)


def _largest(faces):
    return max(faces, key=lambda f: f.size) if faces else None


# one compared frame: its number among them, SRC's and OUT's images and largest faces (or None), the hands over
# SRC's face, and SRC's face mask (None without a face)
Pair = namedtuple("Pair", "number src out face_src face_out hands mask")


def _mean(values) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


# A metric is a generator function: it is sent each compared frame (a Pair), then None, which it answers with its
# keys of the report. A new metric is one more such function in `video`'s list.
def landmarks():
    """Pose and expression kept (OUT's landmarks against SRC's, also over the inter-ocular distance), and jitter."""
    px, iod, track_src, track_out = [], [], [], []
    while pair := (yield):
        if pair.face_src is not None and pair.face_out is not None:
            error = landmark_error(pair.face_src.landmarks, pair.face_out.landmarks)
            px.append(error[0])
            iod.append(error[1])
            track_src.append(pair.face_src.landmarks)
            track_out.append(pair.face_out.landmarks)
    yield {"frames_compared": len(px), "landmark_error_px": _mean(px), "landmark_error_iod": _mean(iod),
           "jitter_src": round(jitter(track_src), 5), "jitter_out": round(jitter(track_out), 5)}


def flicker():
    """Change inside SRC's face mask from one compared frame to the next, in SRC and in OUT, and their ratio."""
    src, out, previous = [], [], None
    while pair := (yield):
        if pair.mask is not None and previous is not None:
            src.append(masked_change(previous.src, pair.src, pair.mask))
            out.append(masked_change(previous.out, pair.out, pair.mask))
        previous = pair if pair.mask is not None else None
    yield {"flicker_src": _mean(src), "flicker_out": _mean(out),
           "flicker_ratio": round(np.mean(out) / max(np.mean(src), 1e-6), 3) if src else None}


def seam():
    """Gradient along SRC's face mask border in SRC and in OUT, and OUT's excess: a visible seam raises it."""
    src, out = [], []
    while pair := (yield):
        if pair.mask is not None:
            src.append(seam_strength(pair.src, pair.mask))
            out.append(seam_strength(pair.out, pair.mask))
    yield {"seam_src": _mean(src), "seam_out": _mean(out),
           "seam_excess": round(float(np.mean(out) - np.mean(src)), 3) if src else None}


def sharpness(window: tuple | None):
    """Detail inside the face where nothing covers it, OUT over SRC; and, given the model's `window` (output size,
    coverage, padding), the ratio a perfect face of that size would give: the resolution's limit, not training's."""
    src, out, ceiling = [], [], []
    while pair := (yield):
        if pair.face_src is not None and not pair.hands:
            src.append(face_sharpness(pair.src, pair.face_src.landmarks))
            out.append(face_sharpness(pair.out, pair.face_src.landmarks))
            if window is not None:
                ceiling.append(resolution_ceiling(pair.src, pair.face_src.landmarks, window))
    over_src = lambda values: round(float(np.nanmean(values) / np.nanmean(src)), 3) if values else None  # noqa: E731
    yield {"sharpness_ratio": over_src(out), "sharpness_ceiling": over_src(ceiling)}


def occlusion():
    """Frames with a hand over the face: how much OUT differs from SRC on the hand, and on the rest of the face."""
    on_hand, rest = [], []
    while pair := (yield):
        if pair.face_src is not None and pair.hands:
            change = occlusion_change(pair.src, pair.out, pair.face_src.landmarks, pair.hands)
            if change[0] is not None:
                on_hand.append(change[0])
                rest.append(change[1])
    yield {"hand_frames": len(on_hand), "hand_change": _mean(on_hand), "uncovered_face_change": _mean(rest)}


def identity(people: dict | None):
    """Who OUT's face looks like (dlib descriptor; the two `people`: the model's face sets), every IDENTITY_EVERY-th
    compared frame: the share nearer the target person than the source, and the mean distances to each."""
    embedder = Embedder() if people else None
    to_source, to_target, nearer = [], [], []
    while pair := (yield):
        if embedder is None or pair.face_src is None or pair.face_out is None or pair.number % IDENTITY_EVERY:
            continue
        # the source person is the one SRC's face is nearer; the swap should look like the other one
        original = embedder(pair.src, pair.face_src)
        source = min(people, key=lambda side: _nearest(original, people[side]))
        target = next(side for side in people if side != source)
        swapped = embedder(pair.out, pair.face_out)
        to_source.append(_nearest(swapped, people[source]))
        to_target.append(_nearest(swapped, people[target]))
        nearer.append(to_target[-1] < to_source[-1])
    yield {"identity_frames": len(nearer),
           "identity_target_share": round(float(np.mean(nearer)), 3) if nearer else None,
           "distance_to_target": _mean(to_target), "distance_to_source": _mean(to_source)}


def _column(images: list[np.ndarray], width: int) -> np.ndarray:
    """Images one above the other, each scaled to `width`."""
    return np.vstack([cv2.resize(s, (width, int(s.shape[0] * width / s.shape[1]))) for s in images])


def video(src: Path, out: Path, every: int = 1, strip_frames: int = 4, people: dict | None = None,
          window: tuple | None = None) -> tuple[dict, np.ndarray | None]:
    """OUT against SRC by every metric above (identity given the model's two `people`, the sharpness ceiling
    given its `window`: output size, coverage, padding), and a comparison strip."""
    a, b = media.probe(src), media.probe(out)
    if (a.width, a.height) != (b.width, b.height):
        raise FaceswapError(f"{out}: is {b.width}x{b.height} and {src} is {a.width}x{a.height}; give a clip and "
                            "its own converted output")
    finder_src, finder_out = make_finder("litert"), make_finder("litert")
    hand_finder = HandFinder()
    metrics = [landmarks(), flicker(), seam(), sharpness(window), occlusion(), identity(people)]
    for metric in metrics:
        next(metric)  # to where it takes the first frame
    wanted = set(np.linspace(0, max(0, min(a.frames, b.frames) - 1), strip_frames).astype(int).tolist())
    strip, pts_src, pts_out = [], [], []
    for fa, fb in zip(media.read_frames(src), media.read_frames(out)):  # one decode of each, for all metrics
        pts_src.append(fa.pts)
        pts_out.append(fb.pts)
        if fa.index % every:
            continue
        faces_src = finder_src(fa.image)
        face_a, face_b = _largest(faces_src), _largest(finder_out(fb.image))
        hands = hand_finder(fa.image, faces_src, video=every == 1)
        mask = masks.hull_mask(face_a.landmarks, fa.image.shape[:2]) if face_a is not None else None
        pair = Pair(fa.index // every, fa.image, fb.image, face_a, face_b, hands, mask)
        for metric in metrics:
            metric.send(pair)
        if fa.index in wanted:
            strip.append(np.hstack([fa.image, fb.image]))
    equal = a.frames == b.frames and bool(pts_src)
    timestamp_error = float(np.max(np.abs(np.subtract(pts_src, pts_out)))) if equal else None
    report = {
        "frames_src": a.frames, "frames_out": b.frames, "frames_equal": a.frames == b.frames,
        "max_timestamp_error_s": round(timestamp_error, 6) if equal else None,
        "timestamps_equal": equal and timestamp_error <= max(float(a.time_base), float(b.time_base)) + 1e-9,
        "audio_src": [x.codec for x in a.audio], "audio_out": [x.codec for x in b.audio],
        "audio_duration_diff_s": (round(abs((a.audio[0].duration or 0) - (b.audio[0].duration or 0)), 4)
                                  if a.audio and b.audio else None),
    }
    for metric in metrics:
        report.update(metric.send(None))
    image = _column(strip, max(s.shape[1] for s in strip)) if strip else None
    if image is not None and image.shape[1] > 1280:
        image = cv2.resize(image, (1280, int(image.shape[0] * 1280 / image.shape[1])), interpolation=cv2.INTER_AREA)
    return report, image


def _window(model_dir: Path) -> tuple:
    config = read_config(model_dir)
    cfg = arch_from_config(config)
    return cfg.out_size, cfg.coverage, float(config.get("padding", align.DEFAULT_PADDING))


def evaluate(model_dir: Path | None, src: Path | None = None, out: Path | None = None, compare: Path | None = None,
             report_path: Path | None = None, every: int = 1) -> dict:
    """Build the report; with `compare`, the same for a second model (or a second output of SRC)."""
    if model_dir is None and out is None:
        raise FaceswapError("give a model (-m) and/or a video pair (--video SRC OUT)")
    if every < 1:
        raise FaceswapError(f"--every must be 1 or more, not {every}")
    if report_path is not None:
        outputs.claim(report_path, "report", [model_dir, src, out, compare])
        outputs.claim(Path(report_path).with_suffix(".png"), "png", [model_dir, src, out, compare])
    report, strips, people, window = {}, [], None, None
    if model_dir is not None:
        people, window = identities(model_dir), _window(model_dir)
        report["model"] = {"path": str(model_dir), "reconstruction": reconstruction(model_dir, people)}
    if out is not None:
        report["video"], strip = video(src, out, every, people=people, window=window)
        strips.append(strip)
    if compare is not None:
        compare = Path(compare)
        if compare.is_dir():
            report["compare_model"] = {"path": str(compare),
                                       "reconstruction": reconstruction(compare, identities(compare))}
        else:
            if src is None:
                raise FaceswapError("--compare with a video needs --video SRC OUT")
            report["compare_video"], strip = video(src, compare, every, people=people, window=window)
            strips.append(strip)
    if report_path is not None:
        report_path = Path(report_path)
        atomic.write_json(report_path, {"schema": outputs.REPORT_SCHEMA, **report})
        if shown := [s for s in strips if s is not None]:
            images.write_png(report_path.with_suffix(".png"), _column(shown, min(s.shape[1] for s in shown)))
    return report


def format_report(report: dict) -> str:
    lines = []
    for key in ("model", "compare_model"):
        if key in report:
            lines.append(f"{key.replace('_', ' ')}: {report[key]['path']}")
            for side, values in report[key]["reconstruction"].items():
                if "error" in values:
                    lines.append(f"  {side.upper()}->{side.upper()}: {values['error']}")
                else:
                    lines.append(f"  {side.upper()}->{side.upper()} held-out: SSIM {values['ssim']:.4f}  "
                                 f"PSNR {values['psnr']:.2f} dB  ({values['faces']} faces)")
                    if "swap_nearer_target" in values:
                        other = "B" if side == "a" else "A"
                        lines.append(f"  {side.upper()}->{other} held-out: nearer {other} in "
                                     f"{100 * values['swap_nearer_target']:.0f} % (distance to {other} "
                                     f"{values['swap_distance_to_target']}, to {side.upper()} "
                                     f"{values['swap_distance_to_source']})")
    if videos := [k for k in ("video", "compare_video") if k in report]:
        rows = [("frames equal", "frames_equal"), ("timestamps equal", "timestamps_equal"),
                ("audio duration diff (s)", "audio_duration_diff_s"), ("landmark error (px)", "landmark_error_px"),
                ("landmark error (/IOD)", "landmark_error_iod"), ("jitter src", "jitter_src"),
                ("jitter out", "jitter_out"), ("flicker src", "flicker_src"), ("flicker out", "flicker_out"),
                ("flicker ratio", "flicker_ratio"), ("seam src", "seam_src"), ("seam out", "seam_out"),
                ("seam excess", "seam_excess"), ("sharpness OUT / SRC", "sharpness_ratio"),
                ("sharpness, perfect model", "sharpness_ceiling"),
                ("identity: share to target", "identity_target_share"),
                ("distance to target", "distance_to_target"), ("distance to source", "distance_to_source"),
                ("frames with a hand", "hand_frames"), ("change on the hand", "hand_change"),
                ("change on the rest", "uncovered_face_change")]
        lines.append(f"{'metric':<26}" + "".join(f"{v:>16}" for v in videos))
        lines += [f"{label:<26}" + "".join(f"{str(report[v].get(key)):>16}" for v in videos) for label, key in rows]
    return "\n".join(lines)
