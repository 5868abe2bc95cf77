"""Mean face, Umeyama similarity, and the matrices that crop an aligned face and paste it back.

Convention: an alignment matrix (2x3) maps image pixels to mean-face units, where the 51 inner landmarks
(brows, nose, eyes, mouth: iBUG 17-67) of an average face span [0, 1]. A crop of `size` pixels with
`padding` shows [-padding, 1 + padding] of that space, so the jaw, chin and some forehead are in view.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

MEAN_FACE = np.array([  # (51, 2): iBUG points 17..67
    (0.000213256, 0.106454), (0.0752622, 0.038915), (0.18113, 0.0187482), (0.29077, 0.0344891), (0.393397, 0.0773906),
    (0.586856, 0.0773906), (0.689483, 0.0344891), (0.799124, 0.0187482), (0.904991, 0.038915), (0.98004, 0.106454),
    (0.490127, 0.203352), (0.490127, 0.307009), (0.490127, 0.409805), (0.490127, 0.515625), (0.36688, 0.587326),
    (0.426036, 0.609345), (0.490127, 0.628106), (0.554217, 0.609345), (0.613373, 0.587326), (0.121737, 0.216423),
    (0.187122, 0.178758), (0.265825, 0.179852), (0.334606, 0.231733), (0.260918, 0.245099), (0.182743, 0.244077),
    (0.645647, 0.231733), (0.714428, 0.179852), (0.793132, 0.178758), (0.858516, 0.216423), (0.79751, 0.244077),
    (0.719335, 0.245099), (0.254149, 0.780233), (0.340985, 0.745405), (0.428858, 0.727388), (0.490127, 0.742578),
    (0.551395, 0.727388), (0.639268, 0.745405), (0.726104, 0.780233), (0.642159, 0.864805), (0.556721, 0.902192),
    (0.490127, 0.909281), (0.423532, 0.902192), (0.338094, 0.864805), (0.290379, 0.784792), (0.428096, 0.778746),
    (0.490127, 0.785343), (0.552157, 0.778746), (0.689874, 0.784792), (0.553364, 0.824182), (0.490127, 0.831803),
    (0.42689, 0.824182)])
DEFAULT_PADDING = 0.3125  # the mean-face box is 1 / (1 + 2 * 0.3125) = 61.5 % of the crop


def similarity_2d(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity (Umeyama 1991) taking 2-D points `src` onto `dst`, as a 2x3 matrix, in closed
    form: far cheaper than the SVD route, for every face of every frame (the tests check the two agree)."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    p, q = src - src_mean, dst - dst_mean
    norm = (p * p).sum()
    a = (p * q).sum() / norm
    b = (p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]).sum() / norm
    linear = np.array([[a, -b], [b, a]])
    return np.hstack([linear, (dst_mean - linear @ src_mean)[:, None]])


def eye_distance(landmarks68: np.ndarray) -> float:
    """Between the centres of the two eyes (iBUG 36-41, 42-47): the face's own unit of length."""
    points = np.asarray(landmarks68)
    return float(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))


def alignment_matrix(landmarks68: np.ndarray) -> np.ndarray:
    """2x3 matrix taking image pixels to mean-face units, fitted on points 17-67."""
    return similarity_2d(np.asarray(landmarks68)[17:68], MEAN_FACE)


def crop_matrix(matrix: np.ndarray, size: int, padding: float = DEFAULT_PADDING) -> np.ndarray:
    """2x3 matrix taking image pixels to pixels of a `size` crop with `padding` around the mean face."""
    scale = size / (1 + 2 * padding)
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0, 0, 1]])
    to_crop = np.array([[scale, 0, padding * scale], [0, scale, padding * scale], [0, 0, 1]])
    return (to_crop @ full)[:2]


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def source_box(matrix: np.ndarray, box, shape=None, margin: int = 0) -> tuple[int, int, int, int]:
    """The image pixels (x0, y0, x1, y1), grown by `margin`, that `matrix` (image -> output) carries onto the
    output `box`, clipped to `shape` if given; in plain floats, as numpy's per-call cost would dominate."""
    (a, b, c), (d, e, f) = np.asarray(matrix, dtype=np.float64).tolist()
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det  # the inverse's linear part
    x0, y0, x1, y1 = box
    xs = [ia * (x - c) + ib * (y - f) for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
    ys = [id_ * (x - c) + ie * (y - f) for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
    left, top = math.floor(min(xs)) - margin, math.floor(min(ys)) - margin
    right, bottom = math.ceil(max(xs)) + margin, math.ceil(max(ys)) + margin
    if shape is not None:
        h, w = shape[:2]
        left, right = min(max(left, 0), w), min(max(right, 0), w)
        top, bottom = min(max(top, 0), h), min(max(bottom, 0), h)
    return left, top, right, bottom


def halve(image: np.ndarray, times: int) -> np.ndarray:
    """`image` halved `times` times, each a 2x bilinear resize (the mean of 2x2 pixels, cheaper than INTER_AREA)."""
    for _ in range(times):
        h, w = image.shape[:2]
        image = cv2.resize(image[:h // 2 * 2, :w // 2 * 2], (w // 2, h // 2), interpolation=cv2.INTER_LINEAR)
    return image


def warp(image: np.ndarray, matrix: np.ndarray, size: int, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """`image` warped by `matrix` (image -> output px) into a size x size output, bilinear, after halving it as
    often as the shrink allows: warpAffine takes INTER_AREA as bilinear, which aliases faces shrunk several times
    (1080p and 4K: sparkle in crops, shaky landmarks). The part read is padded (`border`) to all the output covers,
    as warpAffine's path for samples outside the image is slow (the same output but for 1/32 px rounding)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = max(math.sqrt(abs(matrix[0, 0] * matrix[1, 1] - matrix[0, 1] * matrix[1, 0])), 1e-6)
    factor = 2 ** max(0, math.floor(math.log2(1 / scale)))
    x0, y0, x1, y1 = source_box(matrix, (0, 0, size, size), None, 2 * factor)  # all the output covers
    h, w = image.shape[:2]
    left, top, right, bottom = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)  # the part inside the image
    width, height = (right - left) // factor * factor, (bottom - top) // factor * factor
    if width < factor or height < factor:  # (almost) all outside the image
        return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)
    part = image[top:top + height, left:left + width]
    if factor > 1:
        part = halve(part, factor.bit_length() - 1)
    # pad the part (in its own, halved, pixels) so it holds everything the output covers
    pad_left, pad_top = -(-(left - x0) // factor), -(-(top - y0) // factor)
    pad_right = max(0, -(-(x1 - left) // factor) - part.shape[1])
    pad_bottom = max(0, -(-(y1 - top) // factor) - part.shape[0])
    if pad_left or pad_top or pad_right or pad_bottom:
        part = cv2.copyMakeBorder(part, pad_top, pad_bottom, pad_left, pad_right, border)
    # part pixel (u, v) is the mean of a factor x factor block centred at image pixel
    # (left + (u - pad_left + 0.5) * factor - 0.5, ...)
    to_image = np.array([[factor, 0, left + (0.5 - pad_left) * factor - 0.5],
                         [0, factor, top + (0.5 - pad_top) * factor - 0.5], [0, 0, 1]])
    return cv2.warpAffine(part, matrix @ to_image, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)


def enlarge_flag(output_size: int) -> int:
    """Bicubic keeps model outputs of 128 px and more sharper; smaller ones gain nothing: bilinear costs a sixth."""
    return cv2.INTER_CUBIC if output_size >= 128 else cv2.INTER_LINEAR


def crop_face(image: np.ndarray, matrix: np.ndarray, size: int, padding: float = DEFAULT_PADDING) -> np.ndarray:
    """The aligned face: the image warped by the alignment matrix into a size x size crop."""
    return warp(image, crop_matrix(matrix, size, padding), size)


def model_matrix(matrix: np.ndarray, model_size: int, coverage: float,
                 padding: float = DEFAULT_PADDING) -> np.ndarray:
    """What a model sees, in training and convert: 2x3 matrix from what `matrix` maps to mean-face units (image px,
    for an alignment matrix) to the model's input, the central `coverage` of a `padding` crop at `model_size`."""
    scale = model_size / (coverage * (1 + 2 * padding))
    offset = model_size / 2 - 0.5 * scale  # the mean face's centre is the input's centre
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0, 0, 1]])
    return (np.array([[scale, 0, offset], [0, scale, offset], [0, 0, 1]]) @ full)[:2]


def crop_to_face(size: int, padding: float = DEFAULT_PADDING) -> np.ndarray:
    """2x3 matrix from the pixels of an aligned `size` crop back to mean-face units."""
    return invert(crop_matrix(np.eye(2, 3), size, padding))
