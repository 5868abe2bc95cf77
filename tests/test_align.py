"""The alignment math on synthetic landmarks."""
import cv2
import numpy as np
import pytest

from faceswap import align


def umeyama(src, dst):
    """The general route (Umeyama 1991, with scale; SVD), as the reference for align.similarity_2d."""
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    sign = np.ones(2)
    if np.linalg.det(cov) < 0:
        sign[-1] = -1
    u, s, vt = np.linalg.svd(cov)
    rotation = u @ np.diag(sign) @ vt
    scale = (s * sign).sum() / src_c.var(0).sum()
    return np.hstack([scale * rotation, (dst_mean - scale * rotation @ src_mean)[:, None]])


def similarity(scale, angle, tx, ty):
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


@pytest.mark.parametrize("seed", range(5))
def test_similarity_fits_recover_random_similarity(seed):
    rng = np.random.default_rng(seed)
    truth = similarity(rng.uniform(0.2, 5), rng.uniform(-np.pi, np.pi), *rng.uniform(-300, 300, 2))
    src = rng.uniform(0, 500, (51, 2))
    dst = align.transform_points(src, truth)
    assert np.allclose(umeyama(src, dst), truth, atol=1e-8)
    assert np.allclose(align.similarity_2d(src, dst), truth, atol=1e-8)
    noisy = dst + rng.normal(0, 5, dst.shape)  # no exact answer: both least-squares fits must agree
    assert np.allclose(align.similarity_2d(src, noisy), umeyama(src, noisy), atol=1e-8)


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
    matrix = similarity(1 / 150, 0.1, -0.8, -0.5)
    direct = align.model_matrix(matrix, 64, 0.75)
    a = align.transform_points([[200, 150]], direct)
    b = align.transform_points([[200, 150]], align.crop_matrix(matrix, 256))
    assert np.allclose(a, (b - 32) * 64 / 192)
    # from a crop's pixels: the same window
    via_crop = align.model_matrix(align.crop_to_face(256), 64, 0.75)
    assert np.allclose(align.transform_points(b, via_crop), a)


def test_warp_averages_when_it_shrinks():
    """A 5x shrink of fine grain: bilinear sampling keeps the grain (aliasing); warp averages it away
    as cv2.resize(INTER_AREA) does, and agrees with a plain warp on smooth content and at the border."""
    rng = np.random.default_rng(0)
    grain = rng.integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    shrink = similarity(0.2, 0.1, -20, 30)
    aliased = cv2.warpAffine(grain, shrink, (256, 256), flags=cv2.INTER_LINEAR)
    averaged = align.warp(grain, shrink, 256)
    area = cv2.resize(grain, (300, 300), interpolation=cv2.INTER_AREA)
    assert aliased.std() > 60 and averaged.std() < 1.2 * area.std() < 20
    assert abs(float(averaged.mean()) - float(grain.mean())) < 2
    yy, xx = np.mgrid[0:1500, 0:1500]
    smooth = np.repeat((127 + 100 * np.sin(xx / 90.0) * np.cos(yy / 70.0))[..., None], 3, 2).astype(np.uint8)
    # inside the image; partly off its edge (replicated edge pixels differ a little: averaged or not);
    # a mild shrink (a plain warp, the same but for fixed-point rounding)
    for matrix, limit in ((shrink, 0.6), (similarity(0.2, -0.2, 60, -40), 1.0), (similarity(0.8, 0.3, -100, 50), 0.01)):
        plain = cv2.warpAffine(smooth, matrix, (256, 256), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        assert np.abs(align.warp(smooth, matrix, 256).astype(int) - plain).mean() <= limit


def test_warp_past_the_edge_matches_a_plain_warp():
    """Outputs reaching past the image (faces at a frame's edge) are warped from a padded copy of the part
    read; with either border they equal OpenCV's own warp but for fixed-point rounding."""
    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8), (3, 3), 1)
    for _ in range(200):
        scale, angle = np.exp(rng.uniform(np.log(0.55), np.log(3))), rng.uniform(-np.pi, np.pi)
        centre = rng.uniform([-150, -150], [790, 510])  # inside, across an edge, or all outside
        matrix = similarity(scale, angle, 0, 0)
        matrix[:, 2] = 96 - matrix[:, :2] @ centre
        for border in (cv2.BORDER_REPLICATE, cv2.BORDER_CONSTANT):
            plain = cv2.warpAffine(image, matrix, (192, 192), flags=cv2.INTER_LINEAR, borderMode=border)
            assert np.abs(align.warp(image, matrix, 192, border).astype(int) - plain).max() <= 1
