"""Who is who: the person in a reference photo is kept (extract) or swapped (convert), decided per track;
face set tools measure, sort, filter (non-destructively) and show a set."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from faceswap import curate, faceset, images, media
from faceswap.errors import FaceswapError
from faceswap.faces import make_finder
from faceswap.faces.identity import DEFAULT_THRESHOLD, Embedder, distance
from faceswap.settings import ConvertSettings, ExtractSettings
from faceswap.extract import extract
from faceswap.swap.convert import convert
from helpers import run_cli


@pytest.fixture(scope="module")
def people(sample_a, sample_b, face_models, tmp_path_factory):
    """A | B side by side (48 frames), B cutting in at frame 12 and out at 36 (a black half otherwise), and a
    photo of B (one of his frames) and of A."""
    root = tmp_path_factory.mktemp("people")
    a_frames = [f for f in media.read_frames(sample_a, end=48)]
    b_frames = [f for f in media.read_frames(sample_b, end=48)]
    with media.VideoWriter(root / "side_by_side.mp4", fps=24) as both, \
            media.VideoWriter(root / "b_comes_and_goes.mp4", fps=24) as comes:
        for i, (a, b) in enumerate(zip(a_frames, b_frames)):
            both.write(np.hstack([a.image, b.image]))
            comes.write(np.hstack([a.image, b.image if 12 <= i < 36 else np.zeros_like(b.image)]))
    images.write_png(root / "b.png", b_frames[60 % len(b_frames)].image)
    images.write_png(root / "a.png", a_frames[5].image)
    return root


def test_distances_between_and_within_the_sample_people(sample_a, sample_b, face_models):
    embedder, finder = Embedder(), make_finder("litert")

    def embeddings(path, step):
        return [embedder(f.image, finder(f.image, video=False)[0]) for f in list(media.read_frames(path))[::step]]

    a, b = embeddings(sample_a, 60), embeddings(sample_b, 12)
    same_a = [distance(x, y) for i, x in enumerate(a) for y in a[i + 1:]]
    same_b = [distance(x, y) for i, x in enumerate(b) for y in b[i + 1:]]
    between = [distance(x, y) for x in a for y in b]
    assert max(same_b) < DEFAULT_THRESHOLD < min(between)
    assert np.median(same_a) < DEFAULT_THRESHOLD


def test_extract_keeps_only_the_reference_person(people):
    for clip in ("side_by_side.mp4", "b_comes_and_goes.mp4"):
        out = people / f"set_{clip}"
        summary = extract([people / clip], out, ExtractSettings(reference=people / "b.png"), progress=False)
        _, records = faceset.read_alignments(out)
        boxes = [(r["frame"], f["bbox"]) for r in records for f in r["faces"]]
        assert boxes and all(box[0] >= 640 for _, box in boxes)  # every face kept is his, on the right
        frames = sorted({frame for frame, _ in boxes})
        if clip == "side_by_side.mp4":
            assert len(frames) >= 44 and summary.faces == len(boxes)
        else:
            assert frames[0] >= 12 and frames[-1] < 36 and len(frames) >= 20  # only while he is in view
    excluded = extract([people / "side_by_side.mp4"], people / "set_not_b", ExtractSettings(exclude=people / "b.png"),
                       progress=False)
    _, records = faceset.read_alignments(people / "set_not_b")
    assert excluded.faces and all(f["bbox"][2] <= 640 for r in records for f in r["faces"])  # only her


def test_convert_swaps_only_the_reference_person(people, small_model):
    out = people / "swapped.mp4"
    convert(people / "side_by_side.mp4", small_model, out, ConvertSettings(reference=people / "b.png"),
            progress=False)
    for src, dst in zip(media.read_frames(people / "side_by_side.mp4"), media.read_frames(out)):
        left = np.abs(src.image[:, :640].astype(int) - dst.image[:, :640].astype(int))
        right = np.abs(src.image[:, 640:].astype(int) - dst.image[:, 640:].astype(int))
        assert left.mean() < 1.5, src.index  # her half as it was (codec noise only)
        if src.index in (10, 30):
            assert right.max() > 60  # his face swapped
    manifest = (people / "swapped.mp4.json").read_text()
    assert str(people) not in manifest and '"reference": "b.png"' in manifest  # the photo by name, not path


def test_no_face_clip_gives_no_faces_with_a_reference(people, sample_no_face):
    summary = extract([sample_no_face], people / "none", ExtractSettings(reference=people / "b.png", end=30),
                      progress=False)
    assert summary.faces == 0


def test_reference_photo_errors(people, sample_b, tmp_path):
    blank = tmp_path / "blank.png"
    images.write_png(blank, np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(FaceswapError, match="no face found in the reference photo"):
        extract([sample_b], tmp_path / "x", ExtractSettings(reference=blank, end=5), progress=False)
    with pytest.raises(FaceswapError, match="reference photo not found"):
        extract([sample_b], tmp_path / "y", ExtractSettings(reference=tmp_path / "nope.png", end=5), progress=False)
    two = tmp_path / "two.png"
    images.write_png(two, np.hstack([images.read_image(people / "b.png"), images.read_image(people / "a.png")]))
    result = run_cli("extract", sample_b, "-o", tmp_path / "z", "--reference", two, "--end", "5")
    assert result.returncode == 0 and "using the largest" in result.stderr


def test_faceset_tools_filter_sheet_and_a_damaged_set(facesets, people, tmp_path):
    work = tmp_path / "a"
    shutil.copytree(facesets[0], work)
    before = len(list((work / faceset.FACES).glob("*.png")))
    result = run_cli("faceset", "filter", work, "--reference", people / "b.png", "--dry-run")
    assert result.returncode == 0 and f"{before} to reject" in result.stdout  # none of her faces is him
    assert len(list((work / faceset.FACES).glob("*.png"))) == before
    result = run_cli("faceset", "filter", work, "--max-yaw", "12", "--duplicates", "2")
    assert result.returncode == 0, result.stderr
    rejected = list((tmp_path / "a.rejected" / faceset.FACES).glob("*.png"))
    kept = list((work / faceset.FACES).glob("*.png"))
    assert rejected and kept and len(rejected) + len(kept) == before
    _, records = faceset.read_alignments(work)  # rewritten whole: faceset.json vouches for it
    assert sum(len(r["faces"]) for r in records) == len(kept)
    reasons = [json.loads(line)["why"] for line in (tmp_path / "a.rejected" / "rejected.jsonl").read_text().splitlines()]
    assert len(reasons) == len(rejected) and {"yaw", "near-duplicate"} & set(reasons)
    assert run_cli("faceset", "sheet", work, "-o", tmp_path / "sheet.png", "--sort-by", "yaw").returncode == 0
    assert images.read_image(tmp_path / "sheet.png").shape[1] == 12 * 96
    lines = (work / faceset.ALIGNMENTS).read_text().splitlines()
    (work / faceset.ALIGNMENTS).write_text("\n".join(lines[:3] + ["{broken"] + lines[4:]) + "\n")
    damaged = (work / faceset.ALIGNMENTS).read_bytes()
    result = run_cli("faceset", "filter", work, "--min-size", "1000")
    assert result.returncode != 0 and "alignments.jsonl:4: corrupt record" in result.stderr.strip().splitlines()[-1]
    assert (work / faceset.ALIGNMENTS).read_bytes() == damaged and len(list((work / faceset.FACES).glob("*.png"))) \
        == len(kept)


def test_pose_from_landmarks_is_frontal_for_the_mean_face():
    from faceswap import align

    landmarks = np.zeros((68, 2))
    landmarks[17:] = align.MEAN_FACE * 200
    landmarks[:17] = [[0, 100]] * 17
    yaw, pitch = curate.pose(landmarks)
    assert abs(yaw) < 3 and abs(pitch) < 15
    shifted = landmarks.copy()
    shifted[27:36, 0] += 30  # the nose turned towards the image's right
    assert curate.pose(shifted)[0] > 15
