"""Convert's exemplar detail (swap/detail.py) and grain (swap/grain.py): real code on synthetic faces whose
texture and noise are known, and a real trained model folder moved away from its face sets."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from faceswap import align, masks, media
from faceswap.models import store
from faceswap.models.arch import build, config_for
from faceswap.settings import ConvertSettings
from faceswap.swap import blend
from faceswap.swap.convert import FaceJob, Swapper, convert
from faceswap.swap.detail import SMOOTH, Detail, band, luma
from faceswap.swap.grain import Grain, noise_sigma


def face_points(size: int = 128, open_eyes: float = 1.0) -> np.ndarray:
    """68 landmarks of a frontal face filling a size-px window: the mean face plus a jaw; `open_eyes` scales
    the eyes' height."""
    inner = 0.2 * size + align.MEAN_FACE * 0.6 * size
    angle = np.linspace(np.pi, 0, 17)  # from the image's left temple down round the chin to the right one
    jaw = np.stack([0.5 + 0.42 * np.cos(angle), 0.35 + 0.6 * np.sin(angle)], 1) * size
    points = np.concatenate([jaw, inner]).astype(np.float32)
    for eye in (range(36, 42), range(42, 48)):
        centre = points[list(eye)].mean(0)
        points[list(eye), 1] = centre[1] + (points[list(eye), 1] - centre[1]) * open_eyes
    return points


def texture(size: int, seed: int) -> np.ndarray:
    """A fine random texture (2 px grain) on mid grey, uint8 RGB."""
    rng = np.random.default_rng(seed)
    grey = 128 + 40 * rng.standard_normal((size // 2, size // 2))
    grey = cv2.resize(grey.astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST)
    return np.clip(np.repeat(grey[..., None], 3, 2), 0, 255).astype(np.uint8)


def moved(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return align.transform_points(points, matrix).astype(np.float32)


def test_the_detail_comes_from_the_exemplar_at_its_warped_place():
    size = 128
    source = face_points(size)
    exemplar = texture(size, 1)
    shift = cv2.getRotationMatrix2D((size / 2, size / 2), 4, 1.04)
    shift[:, 2] += [4, 3]
    target = moved(source, shift)
    detail = Detail(exemplar[None], source[None])
    flat = np.full((size, size, 3), 0.5, np.float32)
    mask = masks.hull_mask(target, (size, size))
    out = detail(flat, texture(size, 2), target, mask)  # the frame's face is detailed: detail is wanted
    added = luma(out - flat)
    expected = cv2.warpAffine(band(luma(exemplar) / 255, size), shift, (size, size))
    # inside the inner face (triangles between landmarks only) the warp is the same affine map
    inner = cv2.erode((masks.hull_mask(target[17:], (size, size), forehead=0) > 0.5).astype(np.uint8),
                      np.ones((5, 5), np.uint8)) > 0
    assert added[inner].std() > 0.02
    assert np.corrcoef(added[inner], expected[inner])[0, 1] > 0.9
    unmoved = cv2.warpAffine(band(luma(exemplar) / 255, size), np.float32([[1, 0, 0], [0, 1, 0]]), (size, size))
    assert abs(np.corrcoef(added[inner], unmoved[inner])[0, 1]) < 0.3  # not pasted where it was
    assert np.all(added[mask == 0] == 0)  # nothing outside the face mask


def test_the_optical_flow_puts_an_exemplars_iris_where_the_model_drew_it():
    """Landmarks place an iris only roughly: the model draws it 3 px right of where the exemplar's lies after the
    landmarks' warp, and the exemplar's detail (the iris's rim) follows the model's."""
    size = 128
    points = face_points(size)
    centre = points[36:42].mean(0)
    exemplar = np.full((size, size, 3), 150, np.uint8)
    cv2.circle(exemplar, tuple(np.round(centre).astype(int)), 5, (40, 40, 40), -1)
    model = np.full((size, size), 150, np.float32)
    cv2.circle(model, tuple(np.round(centre + [3, 0]).astype(int)), 5, 40, -1)
    model = np.repeat(cv2.GaussianBlur(model, (0, 0), 2)[..., None] / 255, 3, 2)  # drawn soft
    out = Detail(exemplar[None], points[None])(model, texture(size, 2), points, masks.hull_mask(points, (size,) * 2))
    x0, y0 = np.round(centre - 16).astype(int)
    added = np.abs(luma(out - model))[y0:y0 + 32, x0:x0 + 32]
    rim_x = x0 + (added.sum(0) * np.arange(32)).sum() / added.sum()
    assert abs(rim_x - (centre[0] + 3)) < 1.0, (rim_x, centre[0])


def test_a_soft_frame_gets_less_detail_and_a_detailed_model_face_none():
    size = 128
    points = face_points(size)
    detail = Detail(texture(size, 1)[None], points[None])
    flat = np.full((size, size, 3), 0.5, np.float32)
    mask = masks.hull_mask(points, (size, size))
    sharp = np.abs(detail(flat, texture(size, 2), points, mask) - flat).mean()
    soft = np.abs(detail(flat, cv2.GaussianBlur(texture(size, 2), (0, 0), 1.2), points, mask) - flat).mean()
    assert 0 < soft < 0.6 * sharp
    already = texture(size, 3).astype(np.float32) / 255  # the model's face has the frame's detail already
    assert np.abs(detail(already, texture(size, 2), points, mask) - already).mean() < 0.3 * sharp


def test_eyes_take_detail_only_from_an_exemplar_with_the_same_opening():
    size = 128
    open_points, closed_points = face_points(size, 1.0), face_points(size, 0.15)
    flat = np.full((size, size, 3), 0.5, np.float32)
    mask = masks.hull_mask(closed_points, (size, size))
    eye = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(eye, np.round(closed_points[36:42]).astype(np.int32), 1)
    cheek = np.zeros((size, size), np.uint8)
    cv2.circle(cheek, tuple(np.round((closed_points[3] + closed_points[31]) / 2).astype(int)), 6, 1, -1)
    added = {}
    for name, points in (("open", open_points), ("closed", closed_points)):
        added[name] = np.abs(Detail(texture(size, 1)[None], points[None])(flat, texture(size, 2), closed_points,
                                                                             mask) - flat).mean(2)
    assert added["closed"][eye > 0].mean() > 0.02
    assert added["open"][eye > 0].mean() < 0.2 * added["closed"][eye > 0].mean()  # left to the model
    assert added["open"][cheek > 0].mean() > 0.5 * added["closed"][cheek > 0].mean()  # the cheek still takes it


def test_the_choice_is_deterministic_and_changes_smoothly_along_a_track():
    size = 64
    rng = np.random.default_rng(0)
    points = np.stack([face_points(size) + rng.normal(0, 1.5, (68, 2)).astype(np.float32) for _ in range(12)])
    images = np.stack([texture(size, i) for i in range(12)])
    runs = []
    for _ in range(2):
        detail = Detail(images, points)
        chosen, outputs = [], []
        for frame in range(30):  # the face jumps between two poses every 5 frames
            face = points[0] if (frame // 5) % 2 else points[7]
            flat = np.full((size, size, 3), 0.5, np.float32)
            outputs.append(detail(flat, texture(size, 99), face, masks.hull_mask(face, (size, size)), track=3))
            chosen.append(detail.tracks[3]["weights"])
        runs.append((chosen, outputs))
    assert runs[0][0] == runs[1][0] and all(np.array_equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    chosen = runs[0][0]
    for before, after in zip(chosen, chosen[1:]):
        change = max(abs(after.get(i, 0) - before.get(i, 0)) for i in set(before) | set(after))
        assert change <= SMOOTH + 0.05  # no exemplar pops in or out


def _model_folder(path, exemplars: dict | None = None):
    """A real lite model folder (untrained weights), with or without exemplars."""
    cfg = config_for("lite")
    files = {store.WEIGHTS: build(cfg).state_dict()}
    if exemplars is not None:
        files[store.EXEMPLARS] = store.exemplar_tensors(exemplars)
    store.save(path, {"architecture": cfg.as_dict(), "padding": align.DEFAULT_PADDING, "step": 0}, files)
    return path


def _job(swapper: Swapper):
    size = swapper.size
    points = face_points(size)
    matrix = np.float32([[0.5, 0, -60], [0, 0.5, -20]])  # a 128 px face at (120, 40) in the frame
    swapped = cv2.GaussianBlur(texture(size, 5), (0, 0), 2).astype(np.float32) / 255
    return FaceJob(matrix, points, texture(size, 6), [], 1, None, swapped)


def test_without_exemplars_the_output_is_the_models_exactly(tmp_path):
    size = config_for("lite").out_size
    plain = _model_folder(tmp_path / "plain")
    rich = _model_folder(tmp_path / "rich", {side: (texture(size, 7)[None], face_points(size)[None]) for side in "ab"})
    frame = np.full((240, 360, 3), 90, np.uint8)
    outputs = {}
    for name, folder, detail in (("off", plain, "off"), ("auto", plain, "auto"), ("rich", rich, "auto")):
        swapper = Swapper(folder, ConvertSettings(detail=detail, grain="off", occlusion="off", color="none"))
        assert (swapper.detail is None) == (name != "rich")
        outputs[name] = swapper.composite(frame.copy(), [_job(swapper)])
    assert np.array_equal(outputs["off"], outputs["auto"])
    assert not np.array_equal(outputs["off"], outputs["rich"])  # with exemplars the detail is there


def test_exemplars_larger_than_the_output_add_detail_finer_than_the_model_draws(tmp_path):
    """A face twice the model's output size in the frame takes 128 px exemplars' detail at 128 px, where the same
    exemplars shrunk to the output's 64 px give only what 64 px hold."""
    size = config_for("lite").out_size
    fine = texture(2 * size, 7)  # 2 px grain at 128 px: finer than a 64 px face can hold
    settings = dict(grain="off", occlusion="off", color="none")
    frame = np.full((240, 360, 3), 90, np.uint8)
    added = {}
    for side in (size, 2 * size):
        exemplar = cv2.resize(fine, (side, side), interpolation=cv2.INTER_AREA)
        folder = _model_folder(tmp_path / str(side), {s: (exemplar[None].copy(), face_points(side)[None]) for s in "ab"})
        swapper = Swapper(folder, ConvertSettings(detail="auto", **settings))
        assert swapper.detail.size == side
        job = _job(swapper)
        half = np.float32([[0.5, 0, 0], [0, 0.5, 0]])  # the windows' plain scale (align.model_matrix)
        job.swapped = cv2.warpAffine(cv2.GaussianBlur(fine, (0, 0), 3), half, (size, size)).astype(np.float32) / 255
        # the model draws the same face, softer
        job.fine = texture(2 * size, 6) if side > size else None  # the frame's face at 128 px: detailed
        plain = Swapper(folder, ConvertSettings(detail="off", **settings)).composite(frame.copy(), [job])
        out = swapper.composite(frame.copy(), [job])
        added[side] = luma(out.astype(np.float32) - plain)[40:168, 120:248] / 255  # the face's 128 px window
    inner = cv2.erode((masks.hull_mask(face_points(2 * size)[17:], (2 * size,) * 2, forehead=0) > 0.5)
                      .astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    finest = {side: cv2.Laplacian(a, cv2.CV_32F)[inner].var() for side, a in added.items()}
    assert finest[2 * size] > 3 * finest[size]
    # at its place: the face's window lies on the frame 1:1, so the exemplar's band is where it was
    assert np.corrcoef(added[2 * size][inner], band(luma(fine) / 255, 2 * size)[inner])[0, 1] > 0.8


def test_grain_matches_the_frames_noise_inside_the_face_and_leaves_hands_alone():
    rng = np.random.default_rng(4)
    size = 128
    frame = np.clip(110 + 4 * rng.standard_normal((300, 400, 1)) + np.zeros((1, 1, 3)), 0, 255).astype(np.uint8)
    before = frame.copy()
    points = face_points(size)
    matrix = np.float32([[0.8, 0, -80], [0, 0.8, -40]])  # a 160 px face at (100, 50)
    face_mask = blend.refine(masks.hull_mask(points, (size, size)) * masks.border_taper(size), 0, 6)
    smooth = np.full((size, size, 3), 0.55, np.float32)
    hand = np.array([[180, 110]] + [[180 + 8 * (i % 4), 150 + 6 * (i // 4)] for i in range(20)], np.float32)
    grain = Grain()
    out = blend.paste(frame, smooth, face_mask, matrix, hands=[hand], hand_margin=4,
                      grain=lambda face, region, alpha: grain(face, region, alpha))
    inside = cv2.warpAffine(face_mask, align.invert(matrix), (400, 300)) > 0.99
    hand_area = masks.hand_mask([hand], (300, 400), 4) > 0.01
    inside &= ~cv2.dilate(hand_area.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert abs(noise_sigma(out, inside) - noise_sigma(before, inside)) < 0.2 * noise_sigma(before, inside)
    plain = blend.paste(before.copy(), smooth, face_mask, matrix, hands=[hand], hand_margin=4)
    assert noise_sigma(plain, inside) < 0.3 * noise_sigma(before, inside)  # without grain the face is smooth
    untouched = cv2.warpAffine(face_mask, align.invert(matrix), (400, 300)) == 0
    assert np.array_equal(out[untouched | hand_area & (masks.hand_mask([hand], (300, 400), 0) > 0.99)],
                          before[untouched | hand_area & (masks.hand_mask([hand], (300, 400), 0) > 0.99)])


def test_grain_strength_moves_smoothly_along_a_track():
    rng = np.random.default_rng(5)
    grain = Grain()
    alpha = np.ones((60, 60), np.float32)
    face = np.full((60, 60, 3), 120, np.uint8)
    strengths = []
    for frame in range(20):
        sigma = 2 if frame < 10 else 6
        region = np.clip(120 + sigma * rng.standard_normal((60, 60, 1)) + np.zeros(3), 0, 255).astype(np.uint8)
        strengths.append(grain.strength(region, face, alpha, track=0))
    steps = np.abs(np.diff(strengths))
    assert steps.max() < 0.6 and 2.5 < strengths[-1] < 6  # rising towards the new level, no jump


@pytest.mark.slow
def test_exemplars_travel_with_the_model_and_convert_the_same_elsewhere(facesets, sample_b, tmp_path):
    from faceswap.training.data import FaceData
    from faceswap.training.loop import EXEMPLARS_PER_SIDE, TrainSettings, train

    copies = tmp_path / "sets"
    for folder in facesets:
        shutil.copytree(folder, copies / folder.name)
    model = tmp_path / "model"
    train(copies / facesets[0].name, copies / facesets[1].name, model,
          TrainSettings(iterations=2, preview_every=10, save_every=10, data_workers=0), progress=False)
    config = store.read_config(model)
    assert store.EXEMPLARS in config["files"]
    images, landmarks = store.load_exemplars(model, config, "a")
    assert 0 < len(images) <= EXEMPLARS_PER_SIDE and images.shape[1:] == (128, 128, 3)  # the crops hold 160 px
    # the same choice again from the face set: the index is deterministic
    again = FaceData(copies / facesets[0].name, 64, config_for("lite").coverage, TrainSettings().holdout, "A",
                     input_size=64).exemplars(EXEMPLARS_PER_SIDE)
    assert np.array_equal(again[0], images) and np.array_equal(again[1], landmarks)
    shutil.rmtree(copies)  # the face sets are gone; the model folder moves elsewhere
    moved_model = tmp_path / "elsewhere" / "model"
    shutil.copytree(model, moved_model)
    outputs = []
    for folder in (model, moved_model):
        out = tmp_path / f"out_{folder.parent.name}"
        convert(sample_b, folder, out, ConvertSettings(direction="b2a"), progress=False)
        outputs.append([frame.image for frame in media.read_frames(out)])
    assert len(outputs[0]) == 72 and all(np.array_equal(a, b) for a, b in zip(*outputs))
    # the moved folder's own exemplars drive the detail (a model of a few steps gives a face too noisy to need it)
    assert Swapper(moved_model, ConvertSettings(direction="b2a")).detail is not None


def test_the_encoder_keeps_the_grain_convert_adds(sample_a, tmp_path):
    """x264's default tuning smooths new noise on a face in a real frame away (adaptive quantisation, dead
    zones); convert tunes it for grain when it adds grain. A blurred patch with grain stands in for the face."""
    grain = Grain()
    where = np.zeros((360, 640), bool)
    where[100:260, 240:400] = True
    made = []
    for frame in media.read_frames(sample_a, end=24):
        image = frame.image.copy()
        image[where] = cv2.GaussianBlur(image, (0, 0), 3)[where]
        image[100:260, 240:400] = grain.add(image[100:260, 240:400], 1.0)
        made.append(image)
    kept = {}
    for tune in (None, "grain"):
        path = tmp_path / f"{tune}.mp4"
        with media.VideoWriter(path, crf=18, tune=tune) as writer:
            for image in made:
                writer.write(image)
        decoded = [frame.image for frame in media.read_frames(path)]
        kept[tune] = np.mean([noise_sigma(out, where) / noise_sigma(image, where)
                              for out, image in zip(decoded[1:], made[1:])])  # P-frames, where most is lost
    assert kept["grain"] > kept[None] + 0.03, kept  # measured: 0.78 against 0.73
