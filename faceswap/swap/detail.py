"""The target's own fine detail at convert, from the exemplar faces its model folder carries.

The model gives a face's structure, identity, expression and light; an autoencoder trained for minutes
averages away what changes from frame to frame (pores, stubble, lashes). Real crops of the target person
hold it. For each swapped face: the exemplars nearest in pose and expression (aligned landmarks), each
warped onto the face by landmarks (piecewise affine over a fixed triangulation) and then by the optical flow
from the model's face to it (landmarks place an iris or a lid only roughly), their fine band mixed with
weights that move smoothly along a track, scaled to the detail the frame itself shows, and added inside the
face mask. Eyes and mouth take an exemplar's detail only where its opening matches. Everything runs at the
exemplars' size.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

K = 3               # exemplars chosen per face
KEEP = 5            # most exemplars mixed at once (those fading out included)
SMOOTH = 0.15       # share of a frame's choice in a track's running weights: texture fades, never pops
STAY = 0.9          # distances of exemplars in use shrink by this much: the choice sticks (hysteresis)
GAIN_SMOOTH = 0.1   # the same for the detail's strength
MAX_GAIN = 4.0      # a mix of textures is weaker than one, a soft target's footage than a sharp frame
FLOW_REACH = 1 / 32  # most the optical flow moves an exemplar beyond its landmarks' warp, share of the size
FORGET = 200        # calls after which a track not seen is dropped
EYES = (list(range(36, 42)), list(range(42, 48)))
MOUTH = list(range(48, 60))


def band(images: np.ndarray, size: int) -> np.ndarray:
    """Image minus its Gaussian blur, at a scale that keeps pores, lashes, stubble and the iris's edge, not the
    face's shape."""
    sigma = size / 64
    images = np.asarray(images, np.float32)
    return images - cv2.GaussianBlur(images, (0, 0), sigma)


def openings(landmarks: np.ndarray) -> np.ndarray:
    """(..., 3): each eye's and the inner mouth's height over width."""
    p = np.asarray(landmarks, np.float32)

    def ratio(a, b, c, d, e, f):  # points of a contour: corners a, d; upper b, c; lower f, e
        def gap(i, j):
            return np.linalg.norm(p[..., i, :] - p[..., j, :], axis=-1)
        return (gap(b, f) + gap(c, e)) / (2 * gap(a, d) + 1e-6)

    return np.stack([ratio(36, 37, 38, 39, 40, 41), ratio(42, 43, 44, 45, 46, 47),
                     ratio(60, 61, 63, 64, 65, 67)], axis=-1)


def border_points(size: int) -> np.ndarray:
    """Fixed points around the window, so the triangulation covers all of it."""
    edge = np.array([0, 0.5, 1.0]) * (size - 1)
    return np.array([(x, y) for y in edge for x in edge if x in (0, size - 1) or y in (0, size - 1)], np.float32)


def luma(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, np.float32) @ np.float32([0.299, 0.587, 0.114])


class Detail:
    """The exemplars of one side (uint8 N x S x S x 3 faces and their N x 68 x 2 landmarks at the output size)
    and each track's running choice among them. Detail is luminance only: a misplaced colour edge would fringe."""

    def __init__(self, images: np.ndarray, landmarks: np.ndarray, source_landmarks: np.ndarray | None = None):
        """`source_landmarks`: the other side's exemplar landmarks, where the model has them: a face is matched by
        how it differs from its own person's mean shape, not by the two people's different shapes."""
        self.size = images.shape[1]
        self.landmarks = np.asarray(landmarks, np.float32)
        self.features = self.landmarks.reshape(len(images), -1) / self.size
        self.offset = np.zeros(self.features.shape[1], np.float32) if source_landmarks is None or \
            not len(source_landmarks) else self.features.mean(0) - \
            np.asarray(source_landmarks, np.float32).reshape(len(source_landmarks), -1).mean(0) / self.size
        faces = np.stack([luma(image) / 255 for image in images])
        self.bands = np.stack([band(face, self.size) for face in faces])
        # DIS's fastest preset, given quarter-size images: as close a match as its slower ones here, at half the cost
        self.flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self.flow.setFinestScale(0)
        self.quarter = max(8, self.size // 4)
        self.soft_faces = np.stack([self.soft(face) for face in faces])
        self.openings = openings(self.landmarks)
        self.border = border_points(self.size)
        self.points = np.concatenate([self.landmarks, np.broadcast_to(self.border, (len(images),) + self.border.shape)],
                                     axis=1)
        # one triangulation for every face, on the exemplars' mean shape: piecewise affine warps need one topology
        self.triangles = Delaunay(self.points.mean(0)).simplices.astype(np.int32)
        # the warp is computed on a coarse grid and enlarged: a piecewise affine map is continuous and smooth enough
        self.step = max(1, self.size // 16)
        coarse = (np.arange(self.size // self.step) + 0.5) * self.step - 0.5
        gy, gx = np.meshgrid(coarse, coarse, indexing="ij")
        self.grid = np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)], 1).astype(np.float32)
        self.pixels = np.stack(np.meshgrid(np.arange(self.quarter), np.arange(self.quarter)), -1).astype(np.float32)
        self.reset()

    def reset(self) -> None:
        self.tracks: dict[int, dict] = {}
        self.calls = 0

    def choose(self, landmarks: np.ndarray, track: int) -> dict[int, float]:
        """Exemplar -> weight for a face: the K nearest in pose and expression, smoothed along its track."""
        self.calls += 1
        distance = np.linalg.norm(self.features - landmarks.reshape(-1) / self.size - self.offset, axis=1)
        state = self.tracks.get(track) if track >= 0 else None
        if state is not None:
            used = np.fromiter(state["weights"], int)
            distance[used] *= STAY
        nearest = np.argsort(distance, kind="stable")[:K]
        raw = 1 / (distance[nearest] + 1e-4) ** 2
        raw = dict(zip(nearest.tolist(), (raw / raw.sum()).tolist()))
        if state is None:
            weights = raw
        else:
            weights = {i: (1 - SMOOTH) * state["weights"].get(i, 0.0) + SMOOTH * raw.get(i, 0.0)
                       for i in set(state["weights"]) | set(raw)}
            weights = dict(sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:KEEP])
            total = sum(weights.values())
            weights = {i: w / total for i, w in weights.items() if w / total > 0.01}
        if track >= 0:
            self.tracks[track] = dict(self.tracks.get(track, {"gain": None}), weights=weights, seen=self.calls)
            self.tracks = {t: s for t, s in self.tracks.items() if self.calls - s["seen"] <= FORGET}
        return weights

    def maps(self, indices: list[int], landmarks: np.ndarray) -> np.ndarray:
        """For each exemplar in `indices`, where each point of the coarse grid of a face with `landmarks` lies on it
        (m x G x G x 2): piecewise affine over the triangulation, by barycentric coordinates."""
        corners = np.concatenate([landmarks, self.border]).astype(np.float32)[self.triangles]  # T x 3 x 2
        a = corners[:, 0]
        ab, ac = corners[:, 1] - a, corners[:, 2] - a
        area = ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0]
        flat = np.abs(area) < 1e-3  # a folded (degenerate) triangle is never the one a point lies in
        area = np.where(flat, 1.0, area)[:, None]
        to_uv = np.stack([np.stack([ac[:, 1], -ac[:, 0]], 1), np.stack([-ab[:, 1], ab[:, 0]], 1)], 1) / area[..., None]
        uv = np.concatenate([to_uv, -(to_uv @ a[..., None])], 2) @ self.grid.T  # T x 2 x P: (u, v) of each point
        u, v = uv[:, 0], uv[:, 1]
        inside = np.minimum(np.minimum(1 - u - v, u), v)
        inside[flat] = -np.inf
        tri = np.argmax(inside, 0)  # the triangle each grid point lies in (or lies nearest)
        u, v = u[tri, np.arange(len(tri))], v[tri, np.arange(len(tri))]
        weights = np.stack([1 - u - v, u, v], 1)  # P x 3: barycentric coordinates in that triangle
        corners = self.points[indices][:, self.triangles[tri]]  # m x P x 3 x 2
        return np.einsum("pk,mpkd->mpd", weights, corners).reshape(len(indices), self.size // self.step, -1, 2)

    def soft(self, image: np.ndarray) -> np.ndarray:
        """What the optical flow compares: the face blurred by size/64, at a quarter of the size, as uint8."""
        soft = cv2.resize(cv2.GaussianBlur(image, (0, 0), self.size / 64), (self.quarter,) * 2,
                          interpolation=cv2.INTER_AREA)
        return np.clip(soft * 255 + 0.5, 0, 255).astype(np.uint8)

    def refined(self, index: int, coarse: np.ndarray, soft_face: np.ndarray) -> np.ndarray:
        """An exemplar's map (`coarse`, from `maps`) at full size, moved by the optical flow from `soft_face` (the
        model's face, `soft`) to the exemplar warped by it: what the landmarks leave misplaced (an iris, a lid, a
        tooth) lands on the model's. The flow and the map's move are made at a quarter of the size."""
        q, scale = self.quarter, self.quarter / self.size
        where = cv2.resize(coarse, (q, q), interpolation=cv2.INTER_LINEAR)
        small = (where + 0.5) * scale - 0.5  # pixel centres at the quarter size
        warped = cv2.remap(self.soft_faces[index], small, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        flow = self.flow.calc(soft_face, warped, None)  # face(x) ~ warped(x + flow(x))
        reach = q * FLOW_REACH
        flow = np.clip(flow, -reach, reach) + self.pixels  # a wrong match on a smooth cheek moves little
        where = cv2.remap(where, flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return cv2.resize(where, (self.size, self.size), interpolation=cv2.INTER_LINEAR)

    def region(self, points: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray]:
        """A soft mask of the polygon `points` (an eye, the mouth), grown a little, on its own box of the face."""
        grow = max(3, int(self.size * 0.04)) | 1
        polygon = np.round(points).astype(np.int32)
        x0, y0 = np.maximum(polygon.min(0) - 3 * grow, 0)
        x1, y1 = np.minimum(polygon.max(0) + 3 * grow + 1, self.size)
        mask = np.zeros((max(1, y1 - y0), max(1, x1 - x0)), np.float32)
        cv2.fillConvexPoly(mask, (polygon - [x0, y0]).astype(np.int32), 1.0)
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
        return (slice(y0, y1), slice(x0, x1)), cv2.GaussianBlur(mask, (0, 0), grow / 3)

    def __call__(self, swapped: np.ndarray, original: np.ndarray, landmarks: np.ndarray, mask: np.ndarray,
                 track: int = -1) -> np.ndarray:
        """`swapped` (float RGB, model space) with the exemplars' detail added inside `mask`, at the level of
        detail `original` (the frame's face there, uint8) shows."""
        landmarks = np.asarray(landmarks, np.float32)
        inside = (mask > 0.5).astype(np.uint8)
        if cv2.countNonZero(inside) < 16:
            return swapped
        weights = self.choose(landmarks, track)
        indices = list(weights)
        face = luma(swapped).astype(np.float32)
        soft_face = self.soft(face)
        maps = [self.refined(index, where, soft_face) for index, where in zip(indices, self.maps(indices, landmarks))]
        parts = [cv2.remap(self.bands[index], where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0) for index, where in zip(indices, maps)]
        mixed = sum(weights[index] * part for index, part in zip(indices, parts))
        # eyes and mouth are left to the model where an exemplar's opening differs
        differ = np.clip((np.abs(self.openings[indices] - openings(landmarks)) - 0.04) / 0.06, 0, 1)
        for r, points in enumerate((*EYES, MOUTH)):
            if differ[:, r].any():
                box, soft = self.region(landmarks[points])
                mixed[box] -= soft * sum(weights[i] * d * part[box] for i, d, part in zip(indices, differ[:, r], parts)
                                         if d > 0)
        limit = 1.5 * _rms(mixed, inside) + 1e-6
        mixed = limit * np.tanh(mixed / limit)  # strong edges of a misplaced exemplar (a double lid) stay faint
        wanted = _rms(band(luma(original) / 255, self.size), inside) ** 2
        has = _rms(band(face, self.size), inside) ** 2
        gain = float(np.clip(np.sqrt(max(0.0, wanted - has) / max(_rms(mixed, inside) ** 2, 1e-8)), 0, MAX_GAIN))
        state = self.tracks.get(track) if track >= 0 else None
        if state is not None:
            gain = gain if state["gain"] is None else (1 - GAIN_SMOOTH) * state["gain"] + GAIN_SMOOTH * gain
            state["gain"] = gain
        out = swapped + (gain * mask * mixed)[..., None]
        return np.clip(out, 0, 1, out=out)


def _rms(image: np.ndarray, where: np.ndarray) -> float:
    """Root mean square of a zero-mean band over the pixels where `where` (uint8) is set."""
    mean, std = cv2.meanStdDev(image, mask=where)
    return float(np.sqrt(mean[0, 0] ** 2 + std[0, 0] ** 2))
