"""The face stage (keep, track, smooth, bridge, choose, align) and the bounded thread stages."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from faceswap import align, threads
from faceswap.faces import Face
from faceswap.faces.stage import FaceStage, FrameRef


def face_at(x: float, size: float = 100.0) -> Face:
    landmarks = np.zeros((68, 2))
    landmarks[17:] = align.MEAN_FACE * size + [x, 50]
    return Face(bbox=np.array([x, 50, x + size, 50 + size]), score=0.9, landmarks=landmarks)


def run(stage: FaceStage, faces_per_frame: list[list[Face]]) -> list[list[Face]]:
    items = [(FrameRef(i, i / 25, (480, 640, 3)), faces, True) for i, faces in enumerate(faces_per_frame)]
    out = list(stage.run(items))
    assert [ref.index for ref, _, _ in out] == list(range(len(faces_per_frame)))
    return [faces for _, faces, _ in out]


def test_a_short_loss_inside_a_track_is_bridged_a_long_one_is_not():
    frames = [[face_at(10 + 4 * i)] if i not in (3, 4) and not 10 <= i < 17 else [] for i in range(20)]
    out = run(FaceStage(smooth=False, bridge=5), frames)
    assert [len(f) for f in out[:10]] == [1] * 10 and all(len(f) == 0 for f in out[10:17])
    for i in (3, 4):
        assert out[i][0].bridged and out[i][0].track == out[0][0].track
        assert np.allclose(out[i][0].landmarks, face_at(10 + 4 * i).landmarks)  # linear between frames 2 and 5
        assert out[i][0].matrix is not None
    assert not out[2][0].bridged


def test_the_chosen_person_is_kept_through_a_bridged_loss():
    small, large = (lambda i: face_at(400, 60)), (lambda i: face_at(20 + i, 120))
    frames = [[small(i), large(i)] if i != 4 else [small(i)] for i in range(8)]
    out = run(FaceStage(smooth=False, bridge=3, track="largest"), frames)
    assert all(len(f) == 1 and f[0].size > 100 for f in out)  # never switched to the small face
    without_bridge = run(FaceStage(smooth=False, bridge=0, track="largest"), frames)
    assert without_bridge[4][0].size < 100  # only the small face was left in frame 4


def test_photos_get_no_bridging_or_smoothing():
    frames = [[face_at(10)], [], [face_at(300)]]
    out = run(FaceStage(bridge=5, consecutive=False), frames)
    assert [len(f) for f in out] == [1, 0, 1]
    assert np.allclose(out[2][0].landmarks, face_at(300).landmarks)


def test_small_faces_are_dropped_and_max_faces_keeps_the_largest():
    out = run(FaceStage(min_size=50, max_faces=1, smooth=False), [[face_at(0, 40), face_at(100, 80), face_at(300, 90)]])
    assert [f.size for f in out[0]] == [90]


def test_run_ahead_reraises_and_stops_early():
    def broken():
        yield 1
        raise ValueError("decode failed")

    with pytest.raises(ValueError, match="decode failed"):
        list(threads.run_ahead(broken()))
    produced = []

    def endless():
        for i in range(10 ** 6):
            produced.append(i)
            yield i

    for item in threads.run_ahead(endless(), size=4):
        if item == 10:
            break
    time.sleep(0.2)
    assert len(produced) < 30  # the producer stopped with the consumer
    assert threading.active_count() < 10


def test_behind_reraises_first_error_and_finishes_in_order():
    done = []
    with threads.Behind(done.append, size=2) as behind:
        for i in range(50):
            behind.put(i)
    assert done == list(range(50))

    def fails(item):
        if item == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with threads.Behind(fails, size=2) as behind:
            for i in range(1000):
                behind.put(i)
                time.sleep(0.001)
    slow = threads.Behind(lambda item: time.sleep(0.05), size=100)
    for i in range(100):
        slow.put(i)
    started = time.perf_counter()
    slow.abort()  # skips what is queued
    assert time.perf_counter() - started < 1.0
