"""The alignment math on synthetic landmarks."""
import numpy as np
import pytest

from faceswap import align


def similarity(scale, angle, tx, ty):
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


@pytest.mark.parametrize("seed", range(5))
def test_similarity_fits_recover_random_similarity(seed):
    rng = np.random.default_rng(seed)
    truth = similarity(rng.uniform(0.2, 5), rng.uniform(-np.pi, np.pi), *rng.uniform(-300, 300, 2))
    src = rng.uniform(0, 500, (51, 2))
    dst = align.transform_points(src, truth)
    assert np.allclose(align.umeyama(src, dst)[:2], truth, atol=1e-8)
    assert np.allclose(align.similarity_2d(src, dst), truth, atol=1e-8)
    noisy = dst + rng.normal(0, 5, dst.shape)  # no exact answer: both least-squares fits must agree
    assert np.allclose(align.similarity_2d(src, noisy), align.umeyama(src, noisy)[:2], atol=1e-8)


def test_alignment_matrix_maps_a_placed_mean_face_back():
    """A face made by scaling, rotating and moving the mean face aligns back onto the mean face."""
    place = similarity(180, 0.3, 250, 120)
    landmarks = np.zeros((68, 2))
    landmarks[17:] = align.transform_points(align.MEAN_FACE, place)
    matrix = align.alignment_matrix(landmarks)
    assert np.allclose(align.transform_points(landmarks[17:], matrix), align.MEAN_FACE, atol=1e-9)
    crop = align.crop_matrix(matrix, 256)
    inner = align.transform_points(landmarks[17:], crop)
    scale = 256 / (1 + 2 * align.DEFAULT_PADDING)
    assert inner.min() >= 256 * align.DEFAULT_PADDING / (1 + 2 * align.DEFAULT_PADDING) - 1
    assert np.allclose(inner, align.MEAN_FACE * scale + align.DEFAULT_PADDING * scale)


def test_model_matrix_is_coverage_crop_resized():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    matrix = similarity(1 / 150, 0.1, -0.8, -0.5)
    crop = align.crop_face(image, matrix, 256)
    direct = align.model_matrix(matrix, 256, 0.75, 64)
    a = align.transform_points([[200, 150]], direct)
    b = align.transform_points([[200, 150]], align.crop_matrix(matrix, 256))
    assert np.allclose(a, (b - 32) * 64 / 192)
    assert align.coverage_crop(crop, 0.75).shape == (192, 192, 3)
