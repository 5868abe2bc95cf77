"""Extraction on the real sample clips: detection rates, crops, alignments file, resume, options, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from faceswap import align, faceset, images, media
from faceswap.evaluate import jitter
from faceswap.extract import ExtractSettings, extract
from faceswap.faces import fan
from helpers import invoke_cli, run_cli, start_cli


@pytest.fixture(scope="module")
def faceset_a(sample_a, face_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("fs") / "a"
    summary = extract([sample_a], out, ExtractSettings(preview=out.parent / "preview_a.png"), progress=False)
    return out, summary


@pytest.fixture(scope="module")
def faceset_b(sample_b, face_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("fs") / "b"
    return out, extract([sample_b], out, progress=False)


def test_detection_rates_on_samples(faceset_a, faceset_b):
    (_, a), (_, b) = faceset_a, faceset_b
    assert a.frames == 472 and (a.frames - a.frames_without_face) / a.frames >= 0.98
    assert b.frames == 72 and (b.frames - b.frames_without_face) / b.frames >= 0.95
    assert a.faces <= a.frames * 1.02  # one person: no phantom second faces


def test_no_face_clip_gives_zero_faces_and_exit_0(sample_no_face, face_models, tmp_path):
    result = run_cli("-q", "extract", sample_no_face, "-o", tmp_path / "none")
    assert result.returncode == 0, result.stderr
    assert "0 faces" in result.stdout and "no face found" in result.stderr
    header, records = faceset.read_alignments(tmp_path / "none")
    assert len(records) == 95 and all(not r["faces"] for r in records)


def test_alignments_schema_and_self_describing_crops(faceset_a):
    folder, summary = faceset_a
    header, records = faceset.read_alignments(folder)
    assert header["schema"] == faceset.SCHEMA and header["size"] == 256
    assert [r["frame"] for r in records] == list(range(472))
    for record in records:
        faceset.validate_record(record)
    crops = sorted((folder / "faces").glob("*.png"))
    assert len(crops) == summary.faces
    meta = faceset.read_png_metadata(crops[10])
    assert meta["source"] == "WolfgangLanger_Pexels.mp4" and np.asarray(meta["landmarks"]).shape == (68, 2)
    assert np.asarray(meta["matrix"]).shape == (2, 3) and images.read_image(crops[10]).shape == (256, 256, 3)
    assert (folder / "faceset.json").is_file()
    with pytest.raises(ValueError):
        faceset.validate_record({"source": "x", "frame": 1, "pts": 0.0, "faces": [{"bbox": [1, 2]}]})


def test_crops_look_like_the_source_face(faceset_a, sample_a):
    """The crop's central skin region has the colour of the face region in the frame it came from."""
    folder, _ = faceset_a
    _, records = faceset.read_alignments(folder)
    frames = {f.index: f.image for f in media.read_frames(sample_a, end=200, step=40)}
    for index, image in frames.items():
        face = records[index]["faces"][0]
        crop = images.read_image(folder / "faces" / face["file"]).astype(float)
        points = np.asarray(face["landmarks"])
        # cheeks and nose: between the eyes' lower line and the mouth, inside the jaw
        x1, x2 = points[[36, 45], 0]
        y1, y2 = points[[29, 33], 1]
        source_patch = image[int(y1):int(y2), int(x1):int(x2)].reshape(-1, 3).astype(float)
        crop_points = align.transform_points(points, align.crop_matrix(face["matrix"], 256))
        cx1, cx2 = crop_points[[36, 45], 0]
        cy1, cy2 = crop_points[[29, 33], 1]
        crop_patch = crop[int(cy1):int(cy2), int(cx1):int(cx2)].reshape(-1, 3)
        assert np.abs(source_patch.mean(0) - crop_patch.mean(0)).max() < 6
        assert np.abs(source_patch.std(0) - crop_patch.std(0)).max() < 8
        # aligned: the eyes sit level and where the mean face puts them
        eyes = crop_points[36:48].reshape(2, 6, 2).mean(1)
        assert abs(eyes[0, 1] - eyes[1, 1]) < 6


def test_smoothing_bounds_landmark_jitter(sample_b, face_models, tmp_path):
    """A still face, shown 40 times with a little sensor noise: smoothed landmarks barely move."""
    still = tmp_path / "still"
    frame = next(media.read_frames(sample_b)).image
    rng = np.random.default_rng(0)
    with media.ImageFolderWriter(still) as writer:
        for _ in range(40):
            noisy = np.clip(frame.astype(np.int16) + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)
            writer.write(noisy)
    results = {}
    for smooth in (False, True):
        out = tmp_path / f"smooth_{smooth}"
        extract([still], out, ExtractSettings(smooth=smooth, sequence=True), progress=False)
        _, records = faceset.read_alignments(out)
        results[smooth] = jitter(np.array([r["faces"][0]["landmarks"] for r in records]))
    print("jitter raw %.5f smoothed %.5f" % (results[False], results[True]))
    assert results[True] < results[False] * 0.5
    assert results[True] < 0.004


def test_resume_after_kill(sample_a, face_models, tmp_path):
    out = tmp_path / "resumed"
    process = start_cli("-q", "extract", sample_a, "-o", out)
    alignments = out / "alignments.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if alignments.is_file() and alignments.read_text().count("\n") > 120:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    _, partial_records = faceset.read_alignments(out, complete=False)
    assert 0 < len(partial_records) < 472
    assert not (out / "faceset.json").exists()
    result = run_cli("-q", "extract", sample_a, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "already done" in result.stdout
    _, records = faceset.read_alignments(out)
    assert [r["frame"] for r in records] == list(range(472))
    for record in records:
        for face in record["faces"]:
            assert images.read_image(out / "faces" / face["file"]).shape == (256, 256, 3)


def test_several_faces_tracks_and_choice(sample_a, sample_b, face_models, tmp_path):
    pair = tmp_path / "pair"
    with media.ImageFolderWriter(pair) as writer:
        for fa, fb in zip(media.read_frames(sample_a, end=12), media.read_frames(sample_b, end=12)):
            writer.write(np.hstack([fa.image, fb.image]))
    both = extract([pair], tmp_path / "both", progress=False)
    assert both.faces == 24
    _, records = faceset.read_alignments(tmp_path / "both")
    assert {tuple(sorted(f["track"] for f in r["faces"])) for r in records} == {(0, 1)}
    largest = extract([pair], tmp_path / "largest", ExtractSettings(track="largest"), progress=False)
    limited = extract([pair], tmp_path / "one", ExtractSettings(max_faces=1), progress=False)
    assert largest.faces == limited.faces == 12
    _, records = faceset.read_alignments(tmp_path / "largest")
    assert len({r["faces"][0]["track"] for r in records}) == 1
    assert records[0]["faces"][0]["bbox"][0] < 640  # the woman in the left half has the larger face


def test_every_range_and_several_inputs(sample_a, sample_b, face_models, tmp_path):
    out = tmp_path / "mixed"
    summary = extract([sample_a, sample_b], out, ExtractSettings(every=5, start=10, end=60), progress=False)
    _, records = faceset.read_alignments(out)
    assert summary.frames == 20
    assert [r["frame"] for r in records if r["source"] == "single_face.mp4"] == list(range(10, 60, 5))
    assert {r["source"] for r in records} == {"WolfgangLanger_Pexels.mp4", "single_face.mp4"}


def test_preview_contact_sheet(faceset_a, sample_a):
    folder, _ = faceset_a
    sheet = images.read_image(folder.parent / "preview_a.png")
    assert sheet.shape[1] == 4 * 320 and sheet.shape[0] >= 4 * 180
    import cv2

    tiles = [sheet[r * 180:(r + 1) * 180, c * 320:(c + 1) * 320].astype(int) for r in range(4) for c in range(4)]
    boxes = [int(((t[..., 1] > t[..., 0] + 60) & (t[..., 1] > t[..., 2] + 60)).sum()) for t in tiles]
    assert min(boxes) > 50, boxes  # a green box round the face in every cell
    first = cv2.resize(next(media.read_frames(sample_a)).image, (320, 180), interpolation=cv2.INTER_AREA)
    assert np.abs(tiles[0].astype(int) - first).mean() < 12  # the first cell is the clip's first frame


@pytest.mark.parametrize("case", ["missing", "not_video", "corrupt", "empty_folder", "output_is_file", "unwritable"])
def test_bad_input(case, sample_a, sample_b, face_models, tmp_path):
    source, out = sample_b, tmp_path / "out"
    if case == "missing":
        source = tmp_path / "nope.mp4"
    elif case == "corrupt":  # the header is whole (it probes), the frames are cut off (none decodes)
        source = tmp_path / "cut.mp4"
        source.write_bytes(sample_a.read_bytes()[:30000])
    elif case == "not_video":
        source = tmp_path / "text.mp4"
        source.write_text("hello")
    elif case == "empty_folder":
        source = tmp_path / "empty"
        source.mkdir()
    elif case == "output_is_file":
        out.write_text("x")
    elif case == "unwritable":
        blocker = tmp_path / "blocker"
        blocker.write_text("a file where a folder should be")
        out = blocker / "sub"
    result = run_cli("extract", source, "-o", out)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("faceswap: error:") and "Traceback" not in result.stderr
    if case != "output_is_file":
        assert not out.exists()  # nothing left behind


def test_fan_aligner_matches_default(sample_b, face_models, tmp_path):
    missing = fan.missing_weights()
    if missing:
        result = run_cli("extract", sample_b, "-o", tmp_path / "fan", "--aligner", "fan")
        assert result.returncode != 0 and "face-alignment weights" in result.stderr
        pytest.skip(f"face-alignment weights {missing} not in {fan.weights_dir()} (no network here); "
                    "checked the clear error instead")
    summary = extract([sample_b], tmp_path / "fan", ExtractSettings(aligner="fan", end=10), progress=False)
    reference = extract([sample_b], tmp_path / "lite", ExtractSettings(end=10), progress=False)
    assert summary.faces == reference.faces == 10
    _, fan_records = faceset.read_alignments(tmp_path / "fan")
    _, lite_records = faceset.read_alignments(tmp_path / "lite")
    diff = np.abs(np.array(fan_records[0]["faces"][0]["landmarks"]) - lite_records[0]["faces"][0]["landmarks"])
    assert diff.mean() < 10


def test_alignment_file_is_json_not_pickle(faceset_a):
    folder, _ = faceset_a
    lines = (folder / "alignments.jsonl").read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert header["schema"] == "faceswap.alignments" and header["version"] == 1
    assert header["landmarks"] == "ibug68" and header["size"] == 256 and header["padding"] > 0
    records = [json.loads(line) for line in lines[1:]]  # every line is plain JSON
    assert len(records) == 472 and [r["frame"] for r in records] == list(range(472))
    face = next(f for r in records for f in r["faces"])
    assert np.array(face["landmarks"]).shape == (68, 2) and np.array(face["matrix"]).shape == (2, 3)
    assert (folder / "faces" / face["file"]).is_file()


def test_a_face_that_comes_in_is_picked_up(sample_a, sample_b, face_models, tmp_path):
    """A second person entering while the first is tracked is found at the next re-detection."""
    clip = tmp_path / "enter"
    with media.ImageFolderWriter(clip) as writer:
        for fa, fb in zip(media.read_frames(sample_a, end=30), media.read_frames(sample_b, end=30)):
            right = fb.image if fa.index >= 6 else np.zeros_like(fb.image)
            writer.write(np.hstack([fa.image, right]))
    extract([clip], tmp_path / "set", ExtractSettings(sequence=True), progress=False)
    _, records = faceset.read_alignments(tmp_path / "set")
    counts = [len(r["faces"]) for r in records]
    assert counts[:6] == [1] * 6 and counts[-6:] == [2] * 6, counts
    assert counts.index(2) <= 13  # at the first re-detection after it came in (every 12 frames)


def test_grain_on_large_faces_does_not_shake_landmarks(sample_a, face_models, tmp_path, make_clip):
    """1080p with film grain: the mesh sees the face shrunk about 5x, and with plain bilinear sampling the
    grain aliases into its input, raising raw landmark jitter by half; area averaging keeps it as clean."""
    jitters = {}
    for name, filters in (("clean", "scale=1920:1080"), ("grain", "scale=1920:1080,noise=alls=25:allf=t")):
        clip = tmp_path / f"{name}.mp4"
        make_clip("-i", sample_a, "-t", "2", "-vf", filters, "-c:v", "libx264", "-preset", "veryfast", "-crf", "12",
                  "-an", clip)
        extract([clip], tmp_path / name, ExtractSettings(interpolate=0, smooth=False), progress=False)
        _, records = faceset.read_alignments(tmp_path / name)
        jitters[name] = jitter(np.array([r["faces"][0]["landmarks"] for r in records]))
    print(jitters)
    assert jitters["grain"] < 1.4 * jitters["clean"]  # 1.2 here; 1.76 with plain bilinear sampling


def test_a_folder_of_videos_stands_for_its_videos(sample_b, sample_no_face, face_models, tmp_path):
    """As convert takes them: a folder holding clips (and no images) is extracted clip by clip into one set."""
    clips = tmp_path / "clips"
    clips.mkdir()
    for clip in (sample_b, sample_no_face):
        (clips / clip.name).write_bytes(clip.read_bytes())
    (clips / "notes.txt").write_text("not a clip")
    summary = extract([clips], tmp_path / "set", ExtractSettings(end=20), progress=False)
    _, records = faceset.read_alignments(tmp_path / "set")
    assert sorted({r["source"] for r in records}) == sorted([sample_b.name, sample_no_face.name])
    assert summary.frames == 40 and summary.faces == 20  # a face in every frame of B, none in no_face


def test_image_folders_extract_train_and_convert(sample_b, face_models, tmp_path):
    """A folder of JPEG photos (each searched on its own) and one of PNG frames (--sequence), through extract,
    train (one as A, the other as B) and convert: the README's `extract b.mp4 b_photos/` example."""
    import cv2

    sets = {}
    for kind in ("photos", "frames"):
        folder = tmp_path / kind
        folder.mkdir()
        for frame in media.read_frames(sample_b, step=2):  # 36 images: training needs 32 faces a side
            name = folder / (f"IMG_{frame.index:04d}.jpg" if kind == "photos" else f"{frame.index:06d}.png")
            cv2.imwrite(str(name), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        sets[kind] = tmp_path / f"{kind}_set"
        result = run_cli("-q", "extract", folder, "-o", sets[kind], *(["--sequence"] if kind == "frames" else []))
        assert result.returncode == 0, result.stderr
        _, records = faceset.read_alignments(sets[kind])
        assert len(records) == 36 and all(len(r["faces"]) == 1 for r in records)
        assert [r["pts"] for r in records[:2]] == [0.0, 0.04]  # 25 fps when a folder says nothing of its timing
    model = tmp_path / "model"
    result = run_cli("-q", "train", sets["photos"], sets["frames"], "-m", model, "--iterations", "2",
                     "--data-workers", "0")
    assert result.returncode == 0, result.stderr
    for kind, direction in (("photos", "a2b"), ("frames", "b2a")):
        result = run_cli("-q", "convert", tmp_path / kind, "-m", model, "-o", tmp_path / f"{kind}_out",
                         "--direction", direction)
        assert result.returncode == 0, result.stderr
        assert len(list((tmp_path / f"{kind}_out").glob("frame_*.png"))) == 36


@pytest.mark.parametrize("case", ["missing photo", "photo without a face", "text named .png", "empty folder"])
def test_refused_extract_leaves_nothing(case, sample_b, sample_no_face, face_models, tmp_path):
    inputs, options = [sample_b], []
    if case == "missing photo":
        options = ["--reference", tmp_path / "nobody.jpg"]
    elif case == "photo without a face":
        import cv2

        cv2.imwrite(str(tmp_path / "cartoon.png"), cv2.cvtColor(next(media.read_frames(sample_no_face)).image,
                                                               cv2.COLOR_RGB2BGR))
        options = ["--reference", tmp_path / "cartoon.png"]
    elif case == "text named .png":
        (tmp_path / "fake.png").write_text("not an image")
        options = ["--reference", tmp_path / "fake.png"]
    else:
        (tmp_path / "empty").mkdir()
        inputs = [tmp_path / "empty"]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = invoke_cli("extract", *inputs, "-o", tmp_path / "out", *options)
    assert result.exit_code != 0 and result.stderr.strip().splitlines()[-1].startswith("faceswap: error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no face set, no lock file


@pytest.mark.parametrize("case", ["a folder", "under a file"])
def test_preview_path_errors_are_plain(case, sample_b, face_models, tmp_path):
    (tmp_path / "afile").write_text("x")
    preview = tmp_path if case == "a folder" else tmp_path / "afile" / "x.png"
    result = invoke_cli("extract", sample_b, "-o", tmp_path / "out", "--preview", preview)
    line = result.stderr.strip().splitlines()[-1]
    assert result.exit_code != 0 and line.startswith("faceswap: error:")
    assert "Errno" not in line and ".partial" not in line and "preview" in line
    assert not (tmp_path / "out").exists()


def test_ctrl_c_during_extract_exits_130_and_resumes(sample_a, face_models, tmp_path):
    out = tmp_path / "set"
    process = start_cli("extract", sample_a, "-o", out, stderr=subprocess.PIPE, text=True)
    alignments = out / "alignments.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (alignments.is_file() and alignments.read_text().count("\n") > 40):
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    error = process.stderr.read()
    assert "terminate called" not in error and "faceswap: interrupted" in error
    result = run_cli("-q", "extract", sample_a, "-o", out)
    assert result.returncode == 0, result.stderr
    _, records = faceset.read_alignments(out)
    assert [r["frame"] for r in records] == list(range(472))


def test_missing_face_model_leaves_no_output(sample_b, tmp_path, monkeypatch):
    monkeypatch.setenv("FACESWAP_MODELS", str(tmp_path / "none"))
    result = invoke_cli("extract", sample_b, "-o", tmp_path / "out")
    assert result.exit_code != 0 and result.stderr.strip().splitlines()[-1].startswith("faceswap: error:")
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.lock").exists()
