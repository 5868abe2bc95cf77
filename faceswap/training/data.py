"""Training data: face sets in memory as uint8, a held-out share, and augmentation run in worker processes.

Each example: the target is the face after a random affine (rotation, zoom, shift, flip) and colour changes; for a share
of the examples (`warp_share`) the input is the same image after a 5x5-grid random warp as well (the denoising idea), so
the decoder must restore the face, not copy it; the others teach exact detail. A model whose output is larger than its
input gets the input shrunk. Mask targets and eye/mouth loss weights come from the landmarks, moved by the same affine.
"""
from __future__ import annotations

import logging
import math
import os
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from faceswap import align, faceset, masks
from faceswap.images import decode_image, read_image
from faceswap.errors import FaceswapError
from faceswap.faces import Face
from faceswap.faces.hands import HandFinder
from faceswap.settings import Augment

log = logging.getLogger(__name__)
MIN_FACES = 32
HAND_REACH = 4  # faces (in frame order) either side of one with a hand that exemplars leave out


class CropHands:
    """The hands over each crop (left out of the loss), found once a face set: kept in its hands.json by crop
    content, so the next training, a resume included, reads them instead of running the finder on every crop."""

    def __init__(self, folders):
        self.finder = HandFinder()
        self.tables = {folder: faceset.read_crop_hands(folder, self.finder.identity) for folder in folders}
        self.found_in: set = set()  # the folders whose table grew

    def over(self, path, data, crop: np.ndarray, landmarks: np.ndarray) -> list[np.ndarray]:
        """The hands over one crop (its file's bytes, pixels and landmarks in crop pixels), in crop pixels."""
        folder, digest = faceset.set_of(path), faceset.crop_digest(data)
        table = self.tables[folder]
        if digest not in table:
            face = Face(bbox=np.concatenate([landmarks.min(0), landmarks.max(0)]), score=1.0, landmarks=landmarks)
            # rounded as kept, so a run that finds them trains as one that reads them
            table[digest] = [np.round(h, 2).tolist() for h in self.finder(crop, [face], video=False)]
            self.found_in.add(folder)
        return [np.asarray(h, np.float64) for h in table[digest]]

    def keep(self) -> None:
        for folder in self.found_in:
            faceset.write_crop_hands(folder, self.finder.identity, self.tables[folder])


class FaceData:
    """One identity's crops, resized to the work size (model size / coverage), with crop-space landmarks."""

    def __init__(self, folder, model_size: int, coverage: float, holdout: float = 0.1, label: str = "A",
                 occlusion: bool = True, input_size: int | None = None, only: list[str] | None = None):
        """`model_size`: the model's output side; `input_size`: its input side where smaller. `occlusion`: find the
        hands over each crop (left out of the loss; kept in the face set). `only`: just these crops, all held out."""
        folders = list(folder) if isinstance(folder, (list, tuple)) else [folder]  # several: pooled (pretrain)
        entries = [entry for one in folders for entry in faceset.face_entries(one)]
        folder = ", ".join(map(str, folders))
        if only is not None:
            wanted = set(only)
            entries = [e for e in entries if e[0].name in wanted]
            holdout = 1.0
        if not entries:
            raise FaceswapError(f"{folder}: face set {label} holds no faces (make one with faceswap extract)")
        if len(entries) < MIN_FACES and only is None:
            raise FaceswapError(f"{folder}: face set {label} has {len(entries)} faces; training needs at least "
                                f"{MIN_FACES}")
        crop_size = int(entries[0][1].get("size", 256))
        paddings = {float(meta.get("padding", align.DEFAULT_PADDING)) for _, meta in entries}
        if len(paddings) > 1:
            raise FaceswapError(f"{folder}: face set {label} mixes crops of paddings {sorted(paddings)}")
        self.padding = paddings.pop()
        if crop_size * coverage < model_size:
            raise FaceswapError(f"{folder}: crops are {crop_size} px, too small for a {model_size} px model at "
                                f"coverage {coverage} (need {math.ceil(model_size / coverage)} px); "
                                "extract again with a larger --size")
        self.work = int(math.ceil(model_size / coverage))
        self.model_size, self.coverage = model_size, coverage
        self.input_size = input_size or model_size
        self._centre = align.model_matrix(align.crop_to_face(self.work, self.padding), model_size, coverage,
                                          self.padding)
        # hold out a contiguous block (the last frames): neighbouring frames are near-copies
        entries.sort(key=lambda e: (e[1].get("source", ""), e[1].get("frame", 0), e[0].name))
        count = max(1, int(round(len(entries) * holdout))) if holdout > 0 else 0
        self.entries, held_entries = entries[:len(entries) - count], entries[len(entries) - count:]
        self.files = [p.name for p, _ in self.entries]
        # the window's pixels the smallest crop holds, up to twice the output: convert's detail is added at this size
        crop_px = min(int(meta.get("size", 256)) for _, meta in entries) * coverage
        self.detail_size = max(model_size, min(2 * model_size, int(crop_px) // 16 * 16))
        self.holdout_files = [p.name for p, _ in held_entries]
        hands = CropHands({faceset.set_of(path) for path, _ in entries}) if occlusion else None
        self.images, self.landmarks, self.hands = self._load(self.entries, hands)
        self.holdout_images, self.holdout_landmarks, self.holdout_hands = self._load(held_entries, hands)
        if hands is not None:
            hands.keep()

    def _load(self, entries, crop_hands: CropHands | None):
        """Crops at work size, their landmarks, and {index: hands (21 x 2 points each)} in work-size pixels."""
        images = np.zeros((len(entries), self.work, self.work, 3), np.uint8)
        points = np.zeros((len(entries), 68, 2), np.float32)
        hands = {}
        for i, (path, meta) in enumerate(entries):
            data = np.fromfile(str(path), np.uint8)
            crop = decode_image(data, path)
            size = crop.shape[0]
            images[i] = cv2.resize(crop, (self.work, self.work), interpolation=cv2.INTER_AREA)
            matrix = align.crop_matrix(meta["matrix"], size, meta.get("padding", align.DEFAULT_PADDING))
            landmarks = align.transform_points(meta["landmarks"], matrix)
            points[i] = landmarks * self.work / size
            if crop_hands is not None and (found := crop_hands.over(path, data, crop, landmarks)):
                hands[i] = [h * self.work / size for h in found]
        return images, points, hands

    def occlusion(self, hands: list | None, matrix: np.ndarray) -> np.ndarray | None:
        """The hands of one crop moved by `matrix` (work px -> model px), as a mask at model size, or None."""
        if not hands:
            return None
        moved = [align.transform_points(h, matrix) for h in hands]
        return masks.hand_mask(moved, (self.model_size,) * 2, margin=0.02 * self.model_size)

    def __len__(self) -> int:
        return len(self.images)

    def centre_matrix(self) -> np.ndarray:
        """Work-size crop -> model input, no augmentation: convert's window (align.model_matrix)."""
        return self._centre

    def plain(self, images: np.ndarray) -> np.ndarray:
        """Un-augmented model inputs for previews and evaluation."""
        return np.stack([cv2.warpAffine(im, self.centre_matrix(), (self.model_size,) * 2, flags=cv2.INTER_AREA,
                                        borderMode=cv2.BORDER_REPLICATE) for im in images])

    def exemplars(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to `count` training faces (and landmarks) at `detail_size`, for convert's detail: none near a hand, not
        the blurriest quarter, then farthest-point sampling over the landmarks, to cover the set's poses."""
        matrix = self.centre_matrix()
        points = np.stack([align.transform_points(p, matrix) for p in self.landmarks]).astype(np.float32)
        # the hand finder misses a frame here and there: a face near one with a hand may have one too
        near_hands = {j for i in self.hands for j in range(i - HAND_REACH, i + HAND_REACH + 1)}
        free = np.array([i for i in range(len(self.images)) if i not in near_hands], int)
        if not len(free):  # hands in most frames: those the finder saw none in will have to do
            free = np.array([i for i in range(len(self.images)) if i not in self.hands], int)
        size = self.detail_size
        if not len(free) or count <= 0:
            return np.zeros((0, size, size, 3), np.uint8), np.zeros((0, 68, 2), np.float32)
        sharpness = np.array([_face_sharpness(self.images[i], self.landmarks[i]) for i in free])
        free = free[sharpness >= np.quantile(sharpness, 0.25)]
        features = points[free].reshape(len(free), -1) / self.model_size
        chosen = [int(np.argmin(np.linalg.norm(features - features.mean(0), axis=1)))]  # the most typical first
        distance = np.linalg.norm(features - features[chosen[0]], axis=1)
        while len(chosen) < min(count, len(free)):
            chosen.append(int(np.argmax(distance)))
            distance = np.minimum(distance, np.linalg.norm(features - features[chosen[-1]], axis=1))
        picked, faces = free[chosen], []
        for crop in (read_image(self.entries[i][0]) for i in picked):
            window = align.model_matrix(align.crop_to_face(crop.shape[0], self.padding), size, self.coverage,
                                        self.padding)
            faces.append(align.warp(crop, window, size))
        return np.stack(faces), points[picked] * (size / self.model_size)

    def inputs(self, faces: np.ndarray) -> np.ndarray:
        """Model inputs from faces at the output size (area-shrunk where the input is smaller)."""
        if self.input_size == self.model_size:
            return faces
        side = (self.input_size,) * 2
        return np.stack([cv2.resize(face, side, interpolation=cv2.INTER_AREA) for face in faces])

    def holdout_visible(self, index: int) -> np.ndarray:
        """The plain window's face mask of held-out face `index`, less its hands (what evaluation scores)."""
        matrix = self.centre_matrix()
        mask = masks.hull_mask(align.transform_points(self.holdout_landmarks[index], matrix), (self.model_size,) * 2)
        occluded = self.occlusion(self.holdout_hands.get(index), matrix)
        return mask if occluded is None else mask * (1 - occluded)


def _face_sharpness(image: np.ndarray, landmarks: np.ndarray) -> float:
    """Variance of the Laplacian of the grey face inside its landmark hull."""
    inside = masks.hull_mask(landmarks, image.shape[:2]) > 0.5
    laplacian = cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_32F)
    return float(laplacian[inside].var()) if inside.any() else 0.0


def random_warp(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Displace a 5x5 grid of control points by N(0, sigma * size) and remap smoothly."""
    size = image.shape[0]
    grid = np.linspace(0, size - 1, 5, dtype=np.float32)
    map_x, map_y = np.meshgrid(grid, grid)
    map_x = map_x + rng.normal(0, sigma * size, (5, 5)).astype(np.float32)
    map_y = map_y + rng.normal(0, sigma * size, (5, 5)).astype(np.float32)
    map_x = cv2.resize(map_x, (size, size), interpolation=cv2.INTER_CUBIC)  # the coarse grid up to full size
    map_y = cv2.resize(map_y, (size, size), interpolation=cv2.INTER_CUBIC)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class Occluders:
    """What to put in front of training faces, so the mask head learns that what covers a face (a cup, hair: no
    detector knows them) is not face: the face sets' hands, else blobs of the crops' own surroundings."""

    def __init__(self, datas: tuple[FaceData, ...], limit: int = 64):
        self.patches: list[tuple[np.ndarray, np.ndarray]] = []  # (RGB uint8, alpha float32), work-size pixels
        for data in datas:
            for index in sorted(data.hands)[:limit]:
                alpha = masks.hand_mask(data.hands[index], data.images.shape[1:3], margin=1)
                ys, xs = np.nonzero(alpha > 0.5)
                if len(xs) > 100:
                    box = slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)
                    self.patches.append((data.images[index][box], alpha[box]))
        self.surroundings = datas

    def put(self, target: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`target` with an occluder over its face; and the occluder's mask (float32, 1 where it covers)."""
        size = target.shape[0]
        rgb, alpha = self.patches[int(rng.integers(len(self.patches)))] if self.patches else self._blob(rng)
        scale = rng.uniform(0.35, 0.7) * size / max(rgb.shape[:2])
        matrix = cv2.getRotationMatrix2D((rgb.shape[1] / 2, rgb.shape[0] / 2), rng.uniform(-60, 60), scale)
        matrix[:, 2] += rng.uniform(0.2, 0.8, 2) * size - [rgb.shape[1] / 2, rgb.shape[0] / 2]
        rgb = cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        alpha = cv2.warpAffine(alpha, matrix, (size, size), flags=cv2.INTER_LINEAR)[..., None]
        return (target * (1 - alpha) + rgb * alpha + 0.5).astype(np.uint8), alpha[..., 0]

    def _blob(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A patch of a crop's edge (outside the face) in a random smooth blob shape."""
        data = self.surroundings[int(rng.integers(len(self.surroundings)))]
        image = data.images[int(rng.integers(len(data.images)))]
        side = image.shape[0] // 3
        corner = rng.integers(0, 2, 2) * (image.shape[0] - side)
        patch = image[corner[0]:corner[0] + side, corner[1]:corner[1] + side]
        points = rng.uniform(0.1, 0.9, (7, 2)) * side
        alpha = np.zeros((side, side), np.uint8)
        cv2.fillConvexPoly(alpha, cv2.convexHull(points.astype(np.int32)), 255)
        return patch, cv2.GaussianBlur(alpha, (0, 0), 1.5).astype(np.float32) / 255


class Augmenter:
    def __init__(self, data: FaceData, settings: Augment, occluders: Occluders | None = None):
        os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # its import would look for updates online
        import albumentations as A

        self.data, self.s, self.occluders = data, settings, occluders
        self.colour = A.Compose([A.CLAHE(clip_limit=2.0, tile_grid_size=(4, 4), p=settings.clahe)])

    def affine(self, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        s, data = self.s, self.data
        angle = rng.uniform(-s.rotation, s.rotation)
        zoom = 1 + rng.uniform(-s.zoom, s.zoom)
        shift = rng.uniform(-s.shift, s.shift, 2) * data.model_size
        centre = data.model_size / 2  # rotate and zoom about the input's centre, after the plain window
        jitter = cv2.getRotationMatrix2D((centre, centre), angle, zoom)
        jitter[:, 2] += shift
        matrix = jitter @ np.vstack([data.centre_matrix(), [0, 0, 1]])
        flip = rng.random() < s.flip
        if flip:
            matrix[0] = -matrix[0]
            matrix[0, 2] += data.model_size
        return matrix, flip

    def lab_shift(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Lightness gain and offset, a* and b* shifts: one lookup table pass in L*a*b*."""
        gain = 1 + rng.uniform(-self.s.brightness, self.s.brightness) * 0.5
        offset = rng.uniform(-self.s.brightness, self.s.brightness) * 0.5 * 100
        shift_a, shift_b = rng.uniform(-self.s.colour, self.s.colour, 2) * 255
        ramp = np.arange(256, dtype=np.float32)
        table = np.stack([ramp * gain + offset, ramp + shift_a, ramp + shift_b], -1)
        table = np.clip(table, 0, 255).astype(np.uint8)[:, None, :]
        lab = cv2.LUT(cv2.cvtColor(image, cv2.COLOR_RGB2LAB), table)
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)

    def __call__(self, index: int, rng: np.random.Generator):
        data, size = self.data, self.data.model_size
        matrix, _ = self.affine(rng)
        target = cv2.warpAffine(data.images[index], matrix, (size, size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        target = self.lab_shift(target, rng)
        self.colour.set_random_seed(int(rng.integers(2 ** 31)))  # albumentations' own RNG, driven by ours
        target = self.colour(image=target)["image"]
        occluded = data.occlusion(data.hands.get(index), matrix)
        if self.occluders is not None and rng.random() < self.s.occluders:
            target, extra = self.occluders.put(target, rng)
            occluded = extra if occluded is None else np.maximum(occluded, extra)
        warped = random_warp(target, rng, self.s.warp) if rng.random() < self.s.warp_share else target
        if data.input_size != size:  # a model with a larger output learns it from its own larger crops
            warped = cv2.resize(warped, (data.input_size,) * 2, interpolation=cv2.INTER_AREA)
        points = align.transform_points(data.landmarks[index], matrix)
        mask = masks.hull_mask(points, (size, size))
        weights = masks.region_weights(points, (size, size), self.s.eyes, self.s.mouth)
        if occluded is not None:  # the visible face: what covers it is neither learned as face nor scored
            mask, weights = mask * (1 - occluded), weights * (1 - occluded)
        return warped, target, mask, weights


class PairStream(IterableDataset):
    """Endless batches of (A, B) examples, each seeded by (seed, rank, step): resume is exact."""

    def __init__(self, data_a: FaceData, data_b: FaceData, batch_size: int, settings: Augment,
                 seed: int = 0, rank: int = 0, world: int = 1, start_step: int = 0):
        self.data = (data_a, data_b)
        self.batch_size, self.settings = batch_size, settings
        self.seed, self.rank, self.world, self.start_step = seed, rank, world, start_step

    def __iter__(self):
        for batch in self.arrays():
            yield [to_tensors(*side) for side in batch]

    def arrays(self):
        """The batches as arrays: per side, lists of warped, target (uint8), mask and weights (float32)."""
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        if info:
            cv2.setNumThreads(1)
            torch.set_num_threads(1)
            os.nice(19)  # the model step comes first; the worker fills the queue in the gaps
        occluders = Occluders(self.data) if self.settings.occluders > 0 else None
        augmenters = [Augmenter(d, self.settings, occluders) for d in self.data]
        # each rank draws from its own shard of each face set
        shards = [np.arange(self.rank, len(d), self.world) for d in self.data]
        # The DataLoader takes batches from its workers in turn, so worker w makes the batches of steps
        # start + w, start + w + workers, ...; each batch's randomness depends only on its step.
        step = self.start_step + worker
        while True:
            rng = np.random.default_rng([self.seed, self.rank, step])
            batch = []
            for augment, shard in zip(augmenters, shards):
                picks = rng.choice(shard, self.batch_size, replace=len(shard) < self.batch_size)
                batch.append(list(zip(*(augment(int(i), rng) for i in picks))))
            yield batch
            step += workers


def to_tensors(warped, target, mask, weights):
    def images(arrays):
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)

    return {"input": images(warped), "target": images(target),
            "mask": torch.from_numpy(np.stack(mask))[:, None], "weights": torch.from_numpy(np.stack(weights))[:, None]}


class _Packed(IterableDataset):
    """The stream as it crosses from a worker process: each batch as three tensors (inputs, targets, maps), not eight
    (each costs a shared-memory segment and a file descriptor), images as uint8: a quarter of the bytes."""

    def __init__(self, stream: PairStream):
        self.stream = stream

    def __iter__(self):
        for batch in self.stream.arrays():
            inputs = np.stack([np.stack(warped) for warped, _, _, _ in batch])      # side, N, H, W, 3
            targets = np.stack([np.stack(target) for _, target, _, _ in batch])
            maps = np.stack([np.stack([np.stack(mask), np.stack(weights)], 1)
                             for _, _, mask, weights in batch])                     # side, N, 2, H, W
            yield (torch.from_numpy(inputs).permute(0, 1, 4, 2, 3), torch.from_numpy(targets).permute(0, 1, 4, 2, 3),
                   torch.from_numpy(maps))


def _unpack(inputs: torch.Tensor, targets: torch.Tensor, maps: torch.Tensor) -> list[dict]:
    inputs, targets = inputs.float().div_(255), targets.float().div_(255)
    return [{"input": x, "target": y, "mask": side_maps[:, :1], "weights": side_maps[:, 1:]}
            for x, y, side_maps in zip(inputs, targets, maps)]


def default_workers(device: torch.device) -> int:
    """Worker processes for making batches. None on a CPU of 2 cores: the model step already uses both,
    and a batch made between steps costs less than one handed over by a worker."""
    cores = os.cpu_count() or 2
    return 0 if device.type == "cpu" and cores <= 2 else min(4, max(1, cores // 2))


def loader(stream: PairStream, workers: int):
    """An iterator of `stream`'s batches, made in `workers` processes (0: in this one)."""
    if not workers:
        return iter(stream)
    # spawn, not fork: a forked child of a process whose OpenMP/BLAS threads have run can deadlock
    batches = DataLoader(_Packed(stream), batch_size=None, num_workers=workers, prefetch_factor=4,
                         persistent_workers=True, pin_memory=torch.cuda.is_available(),
                         multiprocessing_context="spawn")
    return (_unpack(*packed) for packed in batches)
