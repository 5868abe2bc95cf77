"""Key-frame interpolation of landmarks: close to measuring every frame, fewer mesh runs, and never
used across sudden moves or between unrelated photos."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceswap import faceset, media
from faceswap.extract import ExtractSettings, extract
from faceswap.faces import keyframes
from faceswap.faces.litert import LiteRTFaces


class CountingFinder(LiteRTFaces):
    """The real finder, counting its mesh runs."""
    meshes = 0

    def mesh(self, *args, **kwargs):
        self.meshes += 1
        return super().mesh(*args, **kwargs)


def landmarks_and_meshes(frames, gap):
    finder = CountingFinder()
    found = [(frame.index, faces) for frame, faces, _ in keyframes.find_faces(frames, finder, gap)]
    assert [index for index, _ in found] == [frame.index for frame in frames]  # every frame, in order
    assert all(len(faces) == 1 for _, faces in found)
    return np.array([faces[0].landmarks for _, faces in found]), finder.meshes


@pytest.fixture(scope="module")
def frames_a(sample_a, face_models):
    return list(media.read_frames(sample_a))


def test_interpolated_landmarks_are_close_to_measured(frames_a):
    measured, all_meshes = landmarks_and_meshes(frames_a, gap=0)
    interpolated, fewer_meshes = landmarks_and_meshes(frames_a, gap=2)
    eyes = np.linalg.norm(measured[:, 36:42].mean(1) - measured[:, 42:48].mean(1), axis=1)
    error = np.linalg.norm(interpolated - measured, axis=2).mean(1) / eyes
    print(f"meshes {fewer_meshes} against {all_meshes}; error mean {error.mean():.4f} max {error.max():.4f}")
    assert fewer_meshes < 0.8 * all_meshes
    assert error.mean() < 0.012 and error.max() < 0.08  # the mesh's own frame-to-frame jitter here: 0.010


def test_sudden_moves_are_measured_not_interpolated(frames_a):
    """The face jumps 60 px sideways every frame: every frame must be measured, none blended."""
    shaken = [media.Frame(np.roll(f.image, 60 if f.index % 2 else 0, axis=1), f.pts, f.index) for f in frames_a[:45]]
    measured, _ = landmarks_and_meshes(shaken, gap=0)
    guarded, _ = landmarks_and_meshes(shaken, gap=2)
    assert np.abs(guarded - measured).max() < 3  # px; an interpolated frame would be ~30 px off


def test_image_folders_are_not_interpolated(photos_abba, face_models, tmp_path):
    """Photos A, B, B, A: the two A's agree, but the B's between them must get B's own landmarks."""
    folder, _, _ = photos_abba
    extract([folder], tmp_path / "set", progress=False)
    _, records = faceset.read_alignments(tmp_path / "set")
    marks = [np.asarray(r["faces"][0]["landmarks"]) for r in records]
    assert np.abs(marks[0] - marks[3]).max() < 1
    assert np.abs(marks[1] - marks[0]).mean() > 20 and np.abs(marks[1] - marks[2]).max() < 1


def test_extract_uses_interpolation_on_video(sample_b, face_models, tmp_path):
    """Extraction with and without interpolation finds the same faces in the same places."""
    results = []
    for gap in (0, 2):
        out = tmp_path / f"gap{gap}"
        summary = extract([sample_b], out, ExtractSettings(interpolate=gap), progress=False)
        _, records = faceset.read_alignments(out)
        marked = sum(1 for r in records if r.get("interpolated"))
        assert marked == summary.interpolated and (marked > 20 if gap else marked == 0)
        results.append((summary.faces, np.array([r["faces"][0]["landmarks"] for r in records if r["faces"]])))
    (faces0, marks0), (faces2, marks2) = results
    assert faces0 == faces2
    assert np.abs(marks0 - marks2).mean() < 1.5


def test_interpolation_follows_timestamps(frames_a):
    """Variable frame rate: a frame 10 % of the way in time between two key frames gets landmarks 10 %
    of the way, not a third."""
    still = [f for f in frames_a[200:204]]
    times = [0.0, 0.01, 0.02, 0.1]
    frames = [media.Frame(f.image, t, i) for i, (f, t) in enumerate(zip(still, times))]
    found = [faces for _, faces, _ in keyframes.find_faces(frames, LiteRTFaces(), gap=2, tolerance=1.0)]
    first, second, last = found[0][0].landmarks, found[1][0].landmarks, found[3][0].landmarks
    assert np.abs(last - first).max() > 1  # the face moves between the key frames
    assert np.allclose(second, first + (last - first) * 0.1, atol=1e-6)


@pytest.mark.parametrize("gap", [0, 2])  # 0: as convert finds faces; 2: as extract does
def test_a_face_coming_into_view_is_followed_back_to_its_first_frame(frames_a, sample_b, gap):
    """Sample A beside a black half where sample B's face cuts in at frame 20. The detector runs only every
    12 frames while a face is tracked, so it finds B up to 12 frames late; B must still be listed from
    frame 20 on, with landmarks as good as a detection of that frame alone."""
    b_frames = list(media.read_frames(sample_b, end=50))
    frames = [media.Frame(np.hstack([a.image, cv2.resize(b_frames[i].image, (640, 360)) if i >= 20
                                     else np.zeros((360, 640, 3), np.uint8)]), a.pts, i)
              for i, a in enumerate(frames_a[:50])]
    finder = LiteRTFaces(redetect_every=12 // (gap + 1))  # every 12 frames, as extract and convert set it
    found = {frame.index: faces for frame, faces, _ in keyframes.find_faces(frames, finder, gap)}
    assert sorted(found) == list(range(50))
    counts = [len(found[i]) for i in range(50)]
    assert counts == [1] * 20 + [2] * 30
    alone = LiteRTFaces()
    for index in (20, 22):  # followed back into these frames from a later detection
        b_face = next(f for f in found[index] if f.bbox[0] > 640)
        reference = next(f for f in alone(frames[index].image, video=False) if f.bbox[0] > 640)
        eyes = np.linalg.norm(reference.landmarks[36:42].mean(0) - reference.landmarks[42:48].mean(0))
        assert np.linalg.norm(b_face.landmarks - reference.landmarks, axis=1).mean() < 0.03 * eyes
