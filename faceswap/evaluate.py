"""`faceswap evaluate`: numbers for a model and a converted video, before and after a long render.

Reconstruction: SSIM and PSNR of A->A and B->B on the held-out faces, inside the face mask.
Video (SRC, OUT): frame/timestamp/audio parity; pose and expression kept (landmarks on OUT against SRC,
over the inter-ocular distance); temporal stability (landmark jitter, flicker inside the face mask,
relative to SRC); seam strength along the mask border (gradient there, OUT minus SRC).
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch

from faceswap import align, atomic, images, masks, metrics, outputs
from faceswap.errors import FaceswapError
from faceswap.faces import Face, make_finder
from faceswap.faces.hands import HandFinder
from faceswap.faces.identity import Embedder
from faceswap.faces.identity import distance as identity_distance

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


def seam_strength(frame: np.ndarray, mask: np.ndarray, width: int | None = None) -> float:
    """Mean gradient magnitude in a band along the mask's border (a visible seam raises it)."""
    binary = (mask > 0.5).astype(np.uint8)
    if not binary.any():
        return 0.0
    if width is None:
        ys, xs = np.nonzero(binary)
        width = max(2, int(0.03 * max(np.ptp(xs), np.ptp(ys))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1,) * 2)
    band = cv2.dilate(binary, kernel) - cv2.erode(binary, kernel)
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    return float(gradient[band > 0].mean())


# -- model reconstruction --------------------------------------------------------------------------------
def swap_identity(model, x: torch.Tensor, side: str, people: dict, embedder) -> dict:
    """The held-out faces of `side` through the other decoder: the share nearer the other person than their
    own, and the mean distances (the model's output, enlarged to 256 px, its face box the window's middle)."""
    other = "b" if side == "a" else "a"
    with torch.no_grad():
        swapped = torch.cat([model(x[i:i + 32], other)[0] for i in range(0, len(x), 32)])
    crops = (swapped.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
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
    """SSIM / PSNR of A->A and B->B on the faces held out at training time, inside the face mask; given the two
    `people`, the identity of those faces swapped."""
    from faceswap.models import load_model
    from faceswap.training.data import FaceData

    model, config = load_model(model_dir)
    cfg = model.cfg
    result, embedder = {}, None
    for side in ("a", "b"):
        info = config.get("facesets", {}).get(side, {})
        path = Path(info.get("path", ""))
        if not path.exists():
            result[side] = {"error": f"face set {path} not found"}
            continue
        names = info.get("holdout", [])
        if not names:
            result[side] = {"error": "no held-out faces"}
            continue
        # only the faces training kept out (config.json names them), scored at the model's output size
        data = FaceData(path, cfg.out_size, cfg.coverage, label=side.upper(), input_size=cfg.size, only=names)
        faces, _ = data.plain(data.holdout_images, data.holdout_landmarks)
        target = torch.from_numpy(faces).permute(0, 3, 1, 2).float().div(255)
        x = torch.from_numpy(data.inputs(faces)).permute(0, 3, 1, 2).float().div(255)
        with torch.no_grad():
            rgb = torch.cat([model(x[i:i + 32], side)[0] for i in range(0, len(x), 32)])
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
    from faceswap import faceset
    from faceswap.models import read_config

    embedder, finder = Embedder(), make_finder("litert")
    found = {}
    for side, info in read_config(model_dir).get("facesets", {}).items():
        crops = [path for path, _ in faceset.face_entries(Path(info.get("path", "")))] \
            if Path(info.get("path", "")).exists() else []
        if not crops:
            return None
        embeddings = []
        for path in [crops[i] for i in np.linspace(0, len(crops) - 1, IDENTITY_SAMPLES).astype(int)]:
            crop = images.read_image(path)
            faces = finder(crop, video=False)
            if faces:
                embeddings.append(embedder(crop, _largest(faces)))
        found[side] = embeddings
    return found if all(found.values()) else None


def _nearest(embedding, references: list) -> float:
    return min(identity_distance(embedding, r) for r in references)


def _largest(faces):
    return max(faces, key=lambda f: f.size) if faces else None


def video(src: Path, out: Path, every: int = 1, strip_frames: int = 4, people: dict | None = None,
          window: tuple | None = None) -> tuple[dict, np.ndarray | None]:
    """Parity, pose/expression error, jitter, flicker, seam, sharpness, occlusion and (given the two `people`
    of the model) identity of OUT against SRC; and a comparison strip. `window`: the model's (output size,
    coverage, padding), for the sharpness a perfect model of that size would reach."""
    from faceswap import media  # only here: model evaluation needs no video stack

    a, b = media.probe(src), media.probe(out)
    if (a.width, a.height) != (b.width, b.height):
        raise FaceswapError(f"{out}: is {b.width}x{b.height} and {src} is {a.width}x{a.height}; give a clip and "
                            "its own converted output")
    finder_src, finder_out = make_finder("litert"), make_finder("litert")
    hand_finder = HandFinder()
    hand_change, uncovered_change, sharp_src, sharp_out, sharp_ceiling = [], [], [], [], []
    embedder = Embedder() if people else None
    to_source, to_target, swapped_to_target = [], [], []
    errors_px, errors_iod, track_src, track_out = [], [], [], []
    flicker_src, flicker_out, seam_src, seam_out = [], [], [], []
    previous = None
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
        if embedder is not None and face_a is not None and face_b is not None and \
                (fa.index // every) % IDENTITY_EVERY == 0:
            # the source person is the one SRC's face is nearer; the swap should look like the other one
            original = embedder(fa.image, face_a)
            source = min(people, key=lambda side: _nearest(original, people[side]))
            target = next(side for side in people if side != source)
            swapped = embedder(fb.image, face_b)
            to_source.append(_nearest(swapped, people[source]))
            to_target.append(_nearest(swapped, people[target]))
            swapped_to_target.append(to_target[-1] < to_source[-1])
        if face_a is not None and not hands:  # sharpness where nothing covers the face
            sharp_src.append(face_sharpness(fa.image, face_a.landmarks))
            sharp_out.append(face_sharpness(fb.image, face_a.landmarks))
            if window is not None:
                sharp_ceiling.append(resolution_ceiling(fa.image, face_a.landmarks, window))
        if face_a is not None and hands:
            on_hand, uncovered = occlusion_change(fa.image, fb.image, face_a.landmarks, hands)
            if on_hand is not None:
                hand_change.append(on_hand)
                uncovered_change.append(uncovered)
        if face_a is not None and face_b is not None:
            px, iod = landmark_error(face_a.landmarks, face_b.landmarks)
            errors_px.append(px)
            errors_iod.append(iod)
            track_src.append(face_a.landmarks)
            track_out.append(face_b.landmarks)
        mask = masks.hull_mask(face_a.landmarks, fa.image.shape[:2]) if face_a is not None else None
        if mask is not None:
            seam_src.append(seam_strength(fa.image, mask))
            seam_out.append(seam_strength(fb.image, mask))
            if previous is not None:
                flicker_src.append(masked_change(previous[0], fa.image, mask))
                flicker_out.append(masked_change(previous[1], fb.image, mask))
        previous = (fa.image, fb.image) if mask is not None else None
        if fa.index in wanted:
            strip.append(np.hstack([fa.image, fb.image]))
    equal = a.frames == b.frames and bool(pts_src)
    timestamp_error = float(np.max(np.abs(np.subtract(pts_src, pts_out)))) if equal else None
    parity = {
        "frames_src": a.frames, "frames_out": b.frames, "frames_equal": a.frames == b.frames,
        "max_timestamp_error_s": round(timestamp_error, 6) if equal else None,
        "timestamps_equal": equal and timestamp_error <= max(float(a.time_base), float(b.time_base)) + 1e-9,
        "audio_src": [x.codec for x in a.audio], "audio_out": [x.codec for x in b.audio],
        "audio_duration_diff_s": (round(abs((a.audio[0].duration or 0) - (b.audio[0].duration or 0)), 4)
                                  if a.audio and b.audio else None),
    }
    mean = (lambda v: round(float(np.mean(v)), 4) if v else None)
    report = dict(parity, **{
        "frames_compared": len(errors_px),
        "landmark_error_px": mean(errors_px), "landmark_error_iod": mean(errors_iod),
        "jitter_src": round(jitter(track_src), 5), "jitter_out": round(jitter(track_out), 5),
        "flicker_src": mean(flicker_src), "flicker_out": mean(flicker_out),
        "flicker_ratio": round(np.mean(flicker_out) / max(np.mean(flicker_src), 1e-6), 3) if flicker_src else None,
        "seam_src": mean(seam_src), "seam_out": mean(seam_out),
        "seam_excess": round(float(np.mean(seam_out) - np.mean(seam_src)), 3) if seam_src else None,
        # detail inside the face, OUT over SRC (a perfect 64 px face on sample A's 220 px one keeps 0.18 of it)
        "sharpness_ratio": round(float(np.nanmean(sharp_out) / np.nanmean(sharp_src)), 3) if sharp_src else None,
        # the ratio a perfect face at the model's output size would give: the resolution's limit, not training's
        "sharpness_ceiling": round(float(np.nanmean(sharp_ceiling) / np.nanmean(sharp_src)), 3) if sharp_ceiling
        else None,
        # frames with a hand over the face: how much OUT differs from SRC on the hand, and on the rest of the face
        "hand_frames": len(hand_change), "hand_change": mean(hand_change),
        "uncovered_face_change": mean(uncovered_change),
        # identity (dlib descriptor; the two people: the model's face sets): the share of swapped faces nearer
        # the target person than the source, and the mean distances to each
        "identity_frames": len(swapped_to_target),
        "identity_target_share": round(float(np.mean(swapped_to_target)), 3) if swapped_to_target else None,
        "distance_to_target": mean(to_target), "distance_to_source": mean(to_source),
    })
    image = None
    if strip:
        width = max(s.shape[1] for s in strip)
        image = np.vstack([cv2.resize(s, (width, int(s.shape[0] * width / s.shape[1]))) for s in strip])
        if image.shape[1] > 1280:
            image = cv2.resize(image, (1280, int(image.shape[0] * 1280 / image.shape[1])), interpolation=cv2.INTER_AREA)
    return report, image


def _window(model_dir: Path) -> tuple:
    from faceswap.models import read_config
    from faceswap.models.store import arch_from_config

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
    report: dict = {}
    strips = []
    people = identities(model_dir) if model_dir is not None else None
    window = _window(model_dir) if model_dir is not None else None
    if model_dir is not None:
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
        shown = [s for s in strips if s is not None]
        if shown:
            width = min(s.shape[1] for s in shown)
            stacked = np.vstack([cv2.resize(s, (width, int(s.shape[0] * width / s.shape[1]))) for s in shown])
            images.write_png(report_path.with_suffix(".png"), stacked)
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
    videos = [k for k in ("video", "compare_video") if k in report]
    if videos:
        rows = [("frames equal", "frames_equal"), ("timestamps equal", "timestamps_equal"),
                ("audio duration diff (s)", "audio_duration_diff_s"), ("landmark error (px)", "landmark_error_px"),
                ("landmark error (/IOD)", "landmark_error_iod"), ("jitter src", "jitter_src"),
                ("jitter out", "jitter_out"), ("flicker src", "flicker_src"), ("flicker out", "flicker_out"),
                ("flicker ratio", "flicker_ratio"), ("seam src", "seam_src"), ("seam out", "seam_out"),
                ("seam excess", "seam_excess"), ("sharpness OUT / SRC", "sharpness_ratio"),
                ("sharpness, perfect model", "sharpness_ceiling"),
                ("identity: share to target", "identity_target_share"),
                ("distance to target", "distance_to_target"), ("distance to source", "distance_to_source"),
                ("frames with a hand", "hand_frames"),
                ("change on the hand", "hand_change"), ("change on the rest", "uncovered_face_change")]
        lines.append(f"{'metric':<26}" + "".join(f"{v:>16}" for v in videos))
        for label, key in rows:
            lines.append(f"{label:<26}" + "".join(f"{str(report[v].get(key)):>16}" for v in videos))
    return "\n".join(lines)
