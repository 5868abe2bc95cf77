"""Each evaluate metric on cases with known answers, then the command on a real model and output."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from helpers import run_cli
from faceswap import masks, media
from faceswap.evaluate import (evaluate, face_sharpness, jitter, landmark_error, masked_change,
                               resolution_ceiling, seam_strength, video)


def rewrite(src, out, change):
    info = media.probe(src)
    with media.open_writer(out, like=info, audio_from=src, crf=12) as writer:
        for frame in media.read_frames(src):
            writer.write_frame(frame, change(frame))


def test_video_against_itself_is_zero(sample_b, face_models):
    report, strip = video(sample_b, sample_b)
    assert report["frames_equal"] and report["timestamps_equal"]
    assert report["landmark_error_px"] == 0 and report["seam_excess"] == 0
    assert report["flicker_ratio"] == 1.0 and report["jitter_out"] == report["jitter_src"]
    assert strip is not None and strip.shape[1] >= 640


def test_shifted_copy_gives_the_shift(sample_b, face_models, tmp_path):
    shifted = tmp_path / "shifted.mp4"
    matrix = np.float32([[1, 0, 6], [0, 1, 0]])
    rewrite(sample_b, shifted, lambda f: cv2.warpAffine(f.image, matrix, (f.image.shape[1], f.image.shape[0]),
                                                           borderMode=cv2.BORDER_REPLICATE))
    report, _ = video(sample_b, shifted, every=4)
    assert report["landmark_error_px"] == pytest.approx(6, abs=1.5)


def test_added_flicker_is_detected(sample_b, face_models, tmp_path):
    flickering = tmp_path / "flicker.mp4"
    rewrite(sample_b, flickering, lambda f: np.clip(f.image.astype(int) + (12 if f.index % 2 else -12), 0, 255)
            .astype(np.uint8))
    report, _ = video(sample_b, flickering)
    assert report["flicker_ratio"] > 2.0


def test_hard_paste_has_a_stronger_seam_than_feathered():
    background = np.tile(np.linspace(60, 120, 200, dtype=np.float32), (200, 1))
    background = np.repeat(background[..., None], 3, axis=2)
    patch = np.full_like(background, 170)
    landmarks = np.zeros((68, 2))
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    landmarks[:] = np.stack([100 + 50 * np.cos(t), 100 + 60 * np.sin(t)], 1)
    mask = masks.hull_mask(landmarks, (200, 200))
    feathered = cv2.GaussianBlur(mask, (0, 0), 8)
    hard = (background * (1 - mask[..., None]) + patch * mask[..., None]).astype(np.uint8)
    soft = (background * (1 - feathered[..., None]) + patch * feathered[..., None]).astype(np.uint8)
    assert seam_strength(hard, mask) > 1.5 * seam_strength(soft, mask)


def test_resolution_ceiling_grows_with_the_output_size(sample_b, face_models):
    from faceswap.faces import make_finder

    frame = next(media.read_frames(sample_b, start=10))
    landmarks = make_finder("litert")(frame.image, video=False)[0].landmarks
    source = face_sharpness(frame.image, landmarks)
    ceilings = [resolution_ceiling(frame.image, landmarks, (size, 0.625, 0.3125)) / source for size in (64, 128, 512)]
    # a 64 px face pasted onto his 155 px one keeps a quarter of its detail; a window larger than the face, most
    assert 0.1 < ceilings[0] < 0.35 < ceilings[1] < ceilings[2] and ceilings[2] > 0.8


def test_metric_functions_known_answers():
    points = np.random.default_rng(0).uniform(0, 100, (68, 2))
    assert landmark_error(points, points + [3, 4])[0] == pytest.approx(5)
    steady = np.repeat(points[None], 10, axis=0)
    moving = steady + np.arange(10)[:, None, None] * 2.0  # constant motion: no jitter
    assert jitter(steady) == 0 and jitter(moving) == pytest.approx(0, abs=1e-9)
    frame = np.zeros((10, 10, 3), np.uint8)
    assert masked_change(frame, frame + 7, np.ones((10, 10), np.float32)) == pytest.approx(7)


def test_evaluate_command_on_model_and_output(small_model, sample_b, tmp_path):
    from faceswap.swap.convert import convert

    out = tmp_path / "b_swapped.mp4"
    convert(sample_b, small_model, out, progress=False)
    report_path = tmp_path / "report.json"
    result = run_cli("evaluate", "-m", small_model, "--video", sample_b, out, "--report", report_path, "--every", "3",
                     timeout=600)
    assert result.returncode == 0, result.stderr
    assert "SSIM" in result.stdout and "flicker ratio" in result.stdout
    report = json.loads(report_path.read_text())
    for side in ("a", "b"):
        values = report["model"]["reconstruction"][side]
        assert 0 < values["ssim"] < 1 and values["psnr"] > 5
        assert 0 <= values["swap_nearer_target"] <= 1 and values["swap_distance_to_target"] > 0  # identity
    assert report["video"]["frames_equal"] and report["video"]["timestamps_equal"]
    assert 0 <= report["video"]["identity_target_share"] <= 1 and report["video"]["sharpness_ratio"] > 0
    assert 0.1 < report["video"]["sharpness_ceiling"] < 0.6  # the small model's 64 px output on a 237 px face
    assert report_path.with_suffix(".png").is_file()
    assert report["video"]["frames_compared"] == 24  # every 3rd of 72
    assert report["video"]["landmark_error_px"] > 0 and report["video"]["flicker_out"] != report["video"]["flicker_src"]
    same = tmp_path / "same.json"  # the command on a clip and itself: every measure at its known answer
    assert run_cli("evaluate", "--video", sample_b, sample_b, "--report", same, "--every", "3",
                   timeout=600).returncode == 0
    known = json.loads(same.read_text())["video"]
    assert known["frames_compared"] == 24 and known["landmark_error_px"] == 0 and known["seam_excess"] == 0
    assert known["flicker_ratio"] == 1.0 and known["sharpness_ratio"] == 1.0
    compare = evaluate(small_model, compare=small_model)
    assert compare["model"]["reconstruction"] == compare["compare_model"]["reconstruction"]
