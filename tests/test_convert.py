"""Convert: timing and audio kept, faceless frames untouched, marking, masks and colour, batching, bad input."""
from __future__ import annotations

import json
import os
import shutil
import signal
import time

import av
import cv2
import numpy as np
import pytest

from faceswap import align, masks, media
from faceswap.errors import FaceswapError
from faceswap.settings import ExtractSettings, parse
from faceswap.swap import blend, color
from faceswap.swap.convert import ConvertSettings, FaceJob, Swapper, convert, faces_in_order, manifest_path
from helpers import run_cli, start_cli
from test_media import assert_same_timing


@pytest.fixture(scope="module")
def converted_a(sample_a, small_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("convert") / "a_as_b.mp4"
    summary = convert(sample_a, small_model, out, ConvertSettings(watermark="SYNTHETIC"), progress=False)
    return out, summary


def test_sample_a_keeps_frames_timestamps_and_audio(converted_a, sample_a):
    out, summary = converted_a
    assert summary.frames == 472 and summary.faces >= 463
    assert_same_timing(sample_a, out)
    src, dst = media.probe(sample_a), media.probe(out)
    assert (dst.width, dst.height) == (src.width, src.height) and dst.audio[0].codec == src.audio[0].codec
    assert b"deadzone=6,6" in out.read_bytes()  # x264 tuned to keep the grain convert adds (its settings' SEI)


def test_output_is_marked_synthetic(converted_a, sample_a, small_model):
    out, _ = converted_a
    with av.open(str(out)) as container:
        tags = " ".join(container.metadata.values()).lower()
    assert "synthetic" in tags and "faceswap" in tags
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["synthetic"] is True and manifest["tool"]["name"] == "faceswap"
    from faceswap.atomic import sha256_of

    assert manifest["output"]["sha256"] == sha256_of(out)
    assert manifest["input"]["sha256"] == sha256_of(sample_a)
    assert manifest["model"]["files_sha256"]["model.safetensors"] == sha256_of(small_model / "model.safetensors")
    assert manifest["result"]["frames"] == 472
    # every setting as it was in effect, decided from the model and machine: no null standing for "a default"
    assert manifest["settings"]["mask"] in ("combined", "landmarks") and manifest["settings"]["device"] == "cpu"
    assert (manifest["settings"]["erode"], manifest["settings"]["feather"]) == ("-2.5%", "8%")
    assert manifest["settings"]["precision"] in ("fp32", "bf16")
    assert [k for k, v in manifest["settings"].items() if v is None] == ["track", "reference", "exclude"]
    text = manifest_path(out).read_text()
    for private in (str(sample_a.parent), str(small_model.parent), str(out.parent), os.path.expanduser("~")):
        assert private not in text  # names, sizes and hashes only
    assert manifest["input"]["name"] == sample_a.name and manifest["model"]["facesets"]["b"]["name"] == "b"


def test_face_region_changes_and_watermark_is_visible(converted_a, sample_a):
    out, _ = converted_a
    source = next(media.read_frames(sample_a, start=100, end=101)).image.astype(float)
    swapped = next(media.read_frames(out, start=100, end=101)).image.astype(float)
    face = (slice(120, 300), slice(360, 520))
    corner = (slice(0, 80), slice(0, 200))
    assert np.abs(source[face] - swapped[face]).mean() > 3  # a new face
    assert np.abs(source[corner] - swapped[corner]).mean() < 3  # the background is kept
    label = (slice(320, 360), slice(0, 150))
    assert np.abs(source[label] - swapped[label]).mean() > 3  # the visible watermark


def test_a_128_px_model_swaps_at_its_output_size(facesets, sample_b, tmp_path):
    """lite128: 64 px in, 128 px out (the decoder's face enlarged plus its detail head), through train and convert."""
    from faceswap.training.loop import TrainSettings, train

    model_dir = tmp_path / "lite128"
    train(*facesets, model_dir, TrainSettings(model="lite128", iterations=10, preview_every=10, data_workers=0),
          progress=False)
    swapper = Swapper(model_dir, ConvertSettings())
    assert (swapper.cfg.size, swapper.cfg.out_size) == (64, 128)
    out = tmp_path / "b_as_a.mp4"
    summary = convert(sample_b, model_dir, out, ConvertSettings(direction="b2a"), progress=False)
    assert summary.faces == summary.frames > 0
    assert_same_timing(sample_b, out)
    source, swapped = (next(media.read_frames(path, start=30, end=31)).image.astype(float) for path in (sample_b, out))
    assert np.abs(source - swapped).mean() > 0.5 and np.abs(source[:60, :120] - swapped[:60, :120]).mean() < 3


def test_no_face_clip_is_passed_through(sample_no_face, small_model, tmp_path):
    out = tmp_path / "no_face_out.mp4"
    result = run_cli("-q", "convert", sample_no_face, "-m", small_model, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "0 faces swapped" in result.stdout
    assert_same_timing(sample_no_face, out)
    for a, b in zip(media.read_frames(sample_no_face, step=20), media.read_frames(out, step=20)):
        assert np.abs(a.image.astype(float) - b.image).mean() < 2.5  # codec tolerance only


def test_hevc_mov_variable_frame_rate_input(sample_b, small_model, tmp_path, make_clip):
    mov = tmp_path / "input clip.mov"
    make_clip("-i", sample_b, "-vf", r"select='lt(n\,20)+not(mod(n\,2))'", "-fps_mode", "vfr", "-c:v", "libx265",
              "-x265-params", "log-level=error", "-preset", "ultrafast", "-c:a", "aac", mov)
    assert media.probe(mov).variable_fps
    out = tmp_path / "out.mov"
    summary = convert(mov, small_model, out, progress=False)
    assert summary.faces == summary.frames == media.probe(mov).frames
    assert_same_timing(mov, out)


def test_decoding_once_writes_what_decoding_twice_writes(sample_b, small_model, tmp_path, monkeypatch):
    """Small frames travel from the face pass to the swap pass; large ones are decoded again: the same output."""
    from faceswap.swap import convert as convert_module

    once = convert(sample_b, small_model, tmp_path / "once", progress=False)
    monkeypatch.setattr(convert_module, "HELD_BYTES", 0)  # as for a clip too large to hold
    twice = convert(sample_b, small_model, tmp_path / "twice", progress=False)
    assert once.frames == twice.frames == 72 and once.faces == twice.faces
    for a, b in zip(media.read_frames(tmp_path / "once"), media.read_frames(tmp_path / "twice"), strict=True):
        assert np.array_equal(a.image, b.image)


def test_alignments_from_extract_are_used(sample_b, small_model, tmp_path):
    from faceswap.extract import extract

    extract([sample_b], tmp_path / "fs", ExtractSettings(end=40), progress=False)
    out = tmp_path / "aligned.mp4"
    summary = convert(sample_b, small_model, out, alignments=tmp_path / "fs", progress=False)
    assert summary.faces == 40  # the faces the records hold, not the 72 convert would find by itself
    assert json.loads(manifest_path(out).read_text())["alignments"]["name"] == "fs"


def test_image_folder_in_and_out(sample_b, small_model, tmp_path):
    frames = tmp_path / "frames"
    with media.ImageFolderWriter(frames) as writer:
        for frame in media.read_frames(sample_b, end=8):
            writer.write_frame(frame)
    summary = convert(frames, small_model, tmp_path / "out_frames", progress=False)
    assert summary.frames == 8 and len(media.image_files(tmp_path / "out_frames")) == 8
    assert (tmp_path / "out_frames" / "faceswap-manifest.json").is_file()


def test_photos_in_a_folder_are_searched_one_by_one(photos_abba, face_models, tmp_path):
    """Photos A, B, B, A: each B gets B's own face, not one tracked or smoothed over from A."""
    folder, a, b = photos_abba
    alone = {}
    for name, image in (("a", a), ("b", b)):
        with media.ImageFolderWriter(tmp_path / name) as writer:
            writer.write(image)
        alone[name] = next(faces_in_order(tmp_path / name, ConvertSettings()))[1][0].landmarks
    found = [faces[0].landmarks for _, faces in faces_in_order(folder, ConvertSettings())]
    assert len(found) == 4
    for landmarks, name in zip(found, "abba"):
        assert np.abs(landmarks - alone[name]).max() < 0.5


def test_batched_inference_equals_one_by_one(small_model, facesets):
    from faceswap.training.data import FaceData

    data = FaceData(facesets[0], 64, 0.75)
    faces = data.plain(data.images[:8])
    for precision, tolerance in (("fp32", 1e-4), ("auto", 2 / 255)):
        swapper = Swapper(small_model, ConvertSettings(precision=precision))
        batched, batched_masks = swapper.infer(faces)
        single = np.concatenate([swapper.infer(faces[i:i + 1])[0] for i in range(8)])
        assert np.abs(batched - single).max() < tolerance, precision
        assert batched_masks.shape == (8, 64, 64)


def test_interrupted_convert_leaves_no_output(sample_a, small_model, tmp_path):
    out = tmp_path / "interrupted.mp4"

    def started_writing(process):
        deadline = time.time() + 120  # each run its own
        while time.time() < deadline and not list(tmp_path.glob(".interrupted.partial*")):
            assert process.poll() is None, "convert ended before it wrote a frame"
            time.sleep(0.05)
        return process

    # started as a shell's background job is: SIGINT ignored, which the command must undo
    process = started_writing(start_cli("-q", "convert", sample_a, "-m", small_model, "-o", out,
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)))
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    assert process.returncode != 0
    assert not out.exists() and not manifest_path(out).exists()
    assert not list(tmp_path.glob(".interrupted.partial*"))
    process = started_writing(start_cli("-q", "convert", sample_a, "-m", small_model, "-o", out))
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not out.exists()


# -- masks, colour and compositing on synthetic images with known answers -------------------------------
def test_colour_avg_and_rct_match_statistics():
    rng = np.random.default_rng(0)
    source = rng.uniform(0.2, 0.5, (32, 32, 3)).astype(np.float32)
    target = rng.uniform(0.4, 0.9, (32, 32, 3)).astype(np.float32)
    mask = np.ones((32, 32), np.float32)
    shifted = color.avg(source, target, mask)
    assert np.allclose(shifted.reshape(-1, 3).mean(0), target.reshape(-1, 3).mean(0), atol=1e-4)
    transferred = color.rct(source, target, mask)
    lab_out = cv2.cvtColor(transferred, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    lab_t = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    assert np.allclose(lab_out.mean(0), lab_t.mean(0), atol=1.0)
    assert np.allclose(lab_out.std(0), lab_t.std(0), rtol=0.1, atol=0.5)
    assert color.match("none", source, target, mask) is source


def test_colour_hist_matches_distribution_inside_mask_only():
    rng = np.random.default_rng(1)
    source = rng.uniform(0, 0.5, (40, 40, 3)).astype(np.float32)
    target = (rng.uniform(0, 1, (40, 40, 3)) ** 2).astype(np.float32)
    mask = np.zeros((40, 40), np.float32)
    mask[10:30, 10:30] = 1
    out = color.hist(source, target, mask)
    inside_out, inside_t = out[10:30, 10:30].reshape(-1, 3), target[10:30, 10:30].reshape(-1, 3)
    for c in range(3):
        assert np.allclose(np.percentile(inside_out[:, c], [10, 50, 90]), np.percentile(inside_t[:, c], [10, 50, 90]),
                           atol=0.02)


def test_mask_recipe_kinds_erode_and_feather():
    size = 64
    landmarks = np.zeros((68, 2))
    landmarks[17:] = align.MEAN_FACE * 40 + 12
    landmarks[:17] = np.stack([np.linspace(10, 54, 17), 30 + 20 * np.sin(np.linspace(0, np.pi, 17))], 1)
    predicted = np.zeros((size, size), np.float32)
    predicted[:, :32] = 1
    taper = masks.border_taper(size)
    hull = blend.MaskRecipe("landmarks").face(landmarks, None, size)
    combined = blend.MaskRecipe("combined").face(landmarks, predicted, size)
    assert np.allclose(combined, np.minimum(hull, predicted * taper))
    assert np.allclose(blend.MaskRecipe("predicted").face(landmarks, predicted, size), predicted * taper)
    assert taper[0].max() < 0.2 and taper[size // 2, size // 2] == 1  # no hard edge where the crop ends
    window = masks.border_taper(size, 0.05)
    assert np.allclose(blend.MaskRecipe().alpha(hull, size), hull * window)  # nothing asked: only the window fade
    # a face 128 frame px wide in this 64 px window: px settings are halved, shares of the face are not
    eroded = blend.MaskRecipe(erode="6").alpha(hull, 128)
    assert np.allclose(eroded, blend.refine(hull, erode=3) * window)
    assert 0 < eroded.sum() < hull.sum()
    assert np.allclose(blend.MaskRecipe(erode="-2.5%").alpha(hull, 128), blend.refine(hull, erode=-2) * window)
    feathered = blend.MaskRecipe(feather="8%").alpha(hull, 128)
    assert np.allclose(feathered, blend.refine(hull, blur=0.08 * 64) * window)
    assert ((feathered > 0.05) & (feathered < 0.95)).sum() > ((hull > 0.05) & (hull < 0.95)).sum()


def test_mask_extents_are_written_one_way_and_refused_in_one_line():
    assert ConvertSettings(erode=5, feather="8.0%").as_json()["erode"] == "5"
    assert ConvertSettings(erode=" -2.50% ").erode == "-2.5%"
    for key, value in (("erode", "a lot"), ("feather", "-3"), ("erode", "200"), ("feather", "nan%")):
        with pytest.raises(FaceswapError, match=f"--{key}"):
            parse(ConvertSettings, {key: value}, cli=True)


def test_paste_puts_the_face_where_the_matrix_says():
    frame = np.zeros((100, 120, 3), np.uint8)
    face = np.ones((20, 20, 3), np.float32)
    mask = np.ones((20, 20), np.float32)
    matrix = np.array([[0.5, 0, -10], [0, 0.5, -20]])  # image (20..60, 40..80) -> model 0..20
    out = blend.paste(frame, face, mask, matrix)
    assert out[45:75, 25:55].min() == 255 and out[:35].max() == 0 and out[:, :15].max() == 0
    background = np.full((100, 120, 3), 80, np.uint8)
    yy, xx = np.mgrid[0:20, 0:20]
    bump = np.dstack([0.3 + 0.5 * np.exp(-((xx - 9.5) ** 2 + (yy - 9.5) ** 2) / 32).astype(np.float32)] * 3)
    seamless = blend.paste(background.copy(), bump, blend.refine(mask, erode=2), matrix, "seamless")
    assert seamless.shape == frame.shape
    outside = cv2.warpAffine(mask, cv2.invertAffineTransform(matrix), (120, 100)) == 0
    assert np.array_equal(seamless[outside], background[outside])  # Poisson leaves the rest alone
    # Poisson keeps the face's detail (a bright bump, 100 levels high in the face) and meets the frame at the edge
    assert int(seamless[59, 39, 0]) - 80 > 40 and abs(int(seamless[41, 21, 0]) - 80) < 15  # centre, corner


def test_paste_matches_a_float_composite_and_leaves_the_rest_alone():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (240, 320, 3), np.uint8)
    # smooth, like a face: OpenCV 4 samples on a 1/32 px grid, which shifts pixel-sized noise by a few levels
    # between a warp of the whole frame and of a box of it
    face = cv2.GaussianBlur(rng.random((64, 64, 3), np.float32), (0, 0), 1.5)
    mask = blend.refine(np.pad(np.ones((40, 40), np.float32), 12), blur=6)
    matrix = cv2.getRotationMatrix2D((160, 120), 25, 0.4)
    matrix[:, 2] += 32 - np.array([160, 120])  # centre of the frame -> centre of the model square
    inverse = cv2.invertAffineTransform(matrix)
    alpha = cv2.warpAffine(mask, inverse, (320, 240))[..., None]
    for flag in (cv2.INTER_LINEAR, cv2.INTER_CUBIC):
        face_img = cv2.warpAffine(face, inverse, (320, 240), flags=flag, borderMode=cv2.BORDER_REPLICATE)
        expected = frame * (1 - alpha) + face_img * 255 * alpha
        out = blend.paste(frame.copy(), face, mask, matrix, enlarge=flag)
        assert np.abs(out.astype(float) - expected).max() <= 3
    untouched = alpha[..., 0] == 0
    assert np.array_equal(out[untouched], frame[untouched])


@pytest.mark.parametrize("case", ["missing_model", "other_size", "corrupt_input", "same_path", "no_face_ok"])
def test_bad_input(case, sample_b, sample_no_face, small_model, tmp_path):
    source, model_dir, out = sample_b, small_model, tmp_path / "out.mp4"
    if case == "missing_model":
        model_dir = tmp_path / "no_model"
    elif case == "other_size":
        model_dir = tmp_path / "resized"
        shutil.copytree(small_model, model_dir)
        config = json.loads((model_dir / "config.json").read_text())
        config["architecture"]["decoder"] = [64, 32, 16]
        (model_dir / "config.json").write_text(json.dumps(config))
    elif case == "corrupt_input":
        source = tmp_path / "corrupt.mp4"
        source.write_bytes(os.urandom(50000))
    elif case == "same_path":
        source = tmp_path / "same.mp4"
        shutil.copy(sample_b, source)
        out = source
    elif case == "no_face_ok":
        source = sample_no_face
    result = run_cli("convert", source, "-m", model_dir, "-o", out)
    if case == "no_face_ok":
        assert result.returncode == 0
        return
    assert result.returncode != 0
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("faceswap: error:") and "Traceback" not in result.stderr
    if case != "same_path":
        assert not out.exists()
    else:
        assert "is an input" in line


def test_training_crop_equals_converts_crop(facesets, small_model, sample_b):
    """One model geometry: the un-augmented training input of a face set crop is convert's model input of the
    same frame (the matrices compose to the same map; the pixels differ only by resampling)."""
    from faceswap import faceset
    from faceswap.training.data import FaceData

    swapper = Swapper(small_model, ConvertSettings())
    data = FaceData(facesets[1], swapper.size, swapper.cfg.coverage, holdout=0)
    _, records = faceset.read_alignments(facesets[1])
    face = records[0]["faces"][0]
    assert data.files[0] == face["file"] and records[0]["frame"] == 0
    to_work = np.diag([data.work / 256, data.work / 256, 1])
    training = (np.vstack([data.centre_matrix(), [0, 0, 1]]) @ to_work
                @ np.vstack([align.crop_matrix(face["matrix"], 256), [0, 0, 1]]))[:2]
    # (the record keeps landmarks to 0.01 px, its matrix from the unrounded ones)
    assert np.allclose(training, swapper.model_matrix(np.asarray(face["landmarks"])), atol=2e-3)
    plain = data.plain(data.images[:1])
    frame = next(media.read_frames(sample_b)).image
    converted = align.warp(frame, swapper.model_matrix(np.asarray(face["landmarks"])), swapper.size)
    diff = np.abs(plain[0].astype(int) - converted.astype(int))
    assert diff.mean() < 3 and np.percentile(diff, 99) < 25, (diff.mean(), np.percentile(diff, 99))


def test_a_hand_in_front_of_the_face_stays_in_front(converted_a, sample_a, small_model, tmp_path):
    """Sample A's hand over her mouth, nose and eyes (about frames 64-230): OUT keeps SRC's pixels on the hand
    (within codec noise) while the rest of the face is swapped; with --occlusion off the hand is painted over."""
    from faceswap.evaluate import occlusion_change
    from faceswap.faces import make_finder
    from faceswap.faces.hands import HandFinder

    out, _ = converted_a
    off = tmp_path / "off.mp4"
    convert(sample_a, small_model, off, ConvertSettings(occlusion="off"), progress=False)
    wanted = {84, 110, 170, 200}
    finder, hands_of = make_finder("litert"), HandFinder()
    changes = {"on": [], "off": []}
    for src, on_frame, off_frame in zip(media.read_frames(sample_a), media.read_frames(out), media.read_frames(off)):
        if src.index not in wanted:
            continue
        faces = finder(src.image, video=False)
        hands = hands_of(src.image, faces, video=False)
        assert faces and hands, f"frame {src.index}: her face and hand"
        for name, frame in (("on", on_frame), ("off", off_frame)):
            changes[name].append(occlusion_change(src.image, frame.image, faces[0].landmarks, hands))
    on_hand, on_rest = np.mean(changes["on"], axis=0)
    off_hand, off_rest = np.mean(changes["off"], axis=0)
    assert on_hand < 4 and on_rest > 3 * on_hand, changes  # the hand kept, the face still swapped
    assert off_hand > 10, changes                           # without occlusion the hand is painted over


def test_missing_hand_model_is_one_line_and_occlusion_off_needs_none(sample_b, small_model, face_models, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("face_detection_full_range.tflite", "face_detection_short_range.tflite", "face_landmark.tflite"):
        shutil.copy(face_models / name, models / name)
    env = dict(os.environ, FACESWAP_MODELS=str(models))
    result = run_cli("convert", sample_b, "-m", small_model, "-o", tmp_path / "o.mp4", env=env)
    line = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and "palm_detection_lite.tflite" in line and "faceswap models fetch" in line
    assert not (tmp_path / "o.mp4").exists()
    (models / "palm_detection_lite.tflite").write_bytes(b"tampered")
    result = run_cli("convert", sample_b, "-m", small_model, "-o", tmp_path / "o.mp4", env=env)
    assert "fails its sha256 check" in result.stderr.strip().splitlines()[-1]
    result = run_cli("convert", sample_b, "-m", small_model, "-o", tmp_path / "o.mp4", "--occlusion", "off", env=env)
    assert result.returncode == 0, result.stderr


def test_preview_frame_is_what_convert_writes(sample_b, small_model, tmp_path):
    from faceswap.swap.convert import preview_frame

    settings = ConvertSettings(color="avg")
    original, swapped, faces = preview_frame(sample_b, 30, Swapper(small_model, settings))
    source = next(media.read_frames(sample_b, start=30, end=31)).image
    assert faces == 1 and np.array_equal(original, source)
    out = tmp_path / "full.mp4"
    convert(sample_b, small_model, out, settings, progress=False)
    written = next(media.read_frames(out, start=30, end=31)).image.astype(float)
    changed = np.abs(swapped.astype(float) - source).mean(axis=2) > 12
    assert changed.mean() > 0.01  # the face was swapped
    # the one-frame preview finds the face on that frame alone; convert also tracks and smooths it
    assert np.abs(written - swapped)[changed].mean() < 0.35 * np.abs(written - source)[changed].mean()


def test_composite_fades_out_before_the_model_window_ends(small_model, facesets):
    """The grown, feathered mask reaches past the window at the chin (coverage 0.625): cut there, it would show
    as a hard line across the chin; composite tapers it after growing."""
    from faceswap import faceset

    swapper = Swapper(small_model, ConvertSettings(color="none", occlusion="off", mask="landmarks"))
    size = swapper.size
    _, records = faceset.read_alignments(facesets[1])
    landmarks = np.asarray(records[0]["faces"][0]["landmarks"])
    matrix = swapper.model_matrix(landmarks)
    frame = np.zeros((360, 640, 3), np.uint8)
    job = FaceJob(matrix, align.transform_points(landmarks, matrix), np.zeros((size, size, 3), np.uint8), [], -1,
                  None, np.ones((size, size, 3), np.float32))
    out = swapper.composite(frame, [job])[..., 0]
    centre = align.transform_points(np.array([[size / 2, size / 2]]), align.invert(matrix))[0]
    assert out[int(centre[1]), int(centre[0])] > 240
    along = np.arange(size) + 0.5
    border = np.concatenate([np.stack([along, np.full(size, edge)], 1) for edge in (0.5, size - 0.5)] +
                            [np.stack([np.full(size, edge), along], 1) for edge in (0.5, size - 0.5)])
    points = np.round(align.transform_points(border, align.invert(matrix))).astype(int)
    inside = (points[:, 0] >= 0) & (points[:, 0] < 640) & (points[:, 1] >= 0) & (points[:, 1] < 360)
    assert out[points[inside, 1], points[inside, 0]].max() < 40  # faded out, not cut, where the window ends
