"""`faceswap faceset sheet|sort|filter`: look at a face set, order it, and clean it before days of training.

Each face is measured from what the set already holds, its record and crop (`measure`). Filtering is non-destructive:
rejected crops move beside the set (`apply`), and training uses what is left.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceswap import atomic, faceset, images, outputs
from faceswap.errors import FaceswapError
from faceswap.faces import make_finder
from faceswap.faces.identity import Embedder, distance, reference


def pose(landmarks: np.ndarray) -> tuple[float, float]:
    """Rough yaw and pitch in degrees from 68 points: the nose tip's offset from the middle of the eyes, against
    the eye distance (sideways) and the eyes-to-mouth height (up and down); 0, 0 is frontal."""
    points = np.asarray(landmarks, np.float64)
    left, right = points[36:42].mean(0), points[42:48].mean(0)
    eyes = (left + right) / 2
    across = right - left
    eye_distance = max(np.linalg.norm(across), 1e-6)
    unit = across / eye_distance
    normal = np.array([-unit[1], unit[0]])
    nose, mouth = points[30] - eyes, points[48:68].mean(0) - eyes
    yaw = math.degrees(math.asin(float(np.clip(2 * (nose @ unit) / eye_distance, -1, 1))))
    height = max(float(mouth @ normal), 1e-6)
    pitch = math.degrees(math.asin(float(np.clip(2 * ((nose @ normal) / height - 0.6), -1, 1))))
    return yaw, pitch


@dataclass
class Entry:
    path: Path  # a face's crop
    measures: dict


def measure(folder: Path, reference_photo: Path | None = None) -> list[Entry]:
    """Every face of a complete face set with its measures (a damaged set is an error naming the line)."""
    folder = Path(folder)
    _, records = faceset.read_alignments(folder)
    embedder = finder = references = None
    if reference_photo:
        embedder, finder = Embedder(), make_finder("litert")
        references = reference(reference_photo, embedder, finder)
    entries = []
    for record in records:
        for face in record["faces"]:
            path = folder / faceset.FACES / (face.get("file") or "")
            if not face.get("file") or not path.is_file():
                continue
            yaw, pitch = pose(face["landmarks"])
            box = face["bbox"]
            measures = {"blur": face["blur"], "yaw": round(yaw, 1), "pitch": round(pitch, 1),
                        "size": round(max(box[2] - box[0], box[3] - box[1]), 1)}
            if references is not None:
                crop = images.read_image(path)
                found = finder(crop, video=False)
                measures["identity"] = round(min(distance(embedder(crop, max(found, key=lambda f: f.size)), r)
                                                 for r in references), 4) if found else None
            entries.append(Entry(path, measures))
    return entries


def near_duplicates(entries: list[Entry], threshold: float) -> set[str]:
    """Crops (file names) whose 16 px grey thumbnail differs from an earlier kept one's by under `threshold`."""
    kept, duplicates = [], set()
    for entry in entries:
        thumb = cv2.resize(cv2.cvtColor(images.read_image(entry.path), cv2.COLOR_RGB2GRAY), (16, 16),
                           interpolation=cv2.INTER_AREA).astype(np.float32)
        if any(np.abs(thumb - other).mean() < threshold for other in kept[-50:]):
            duplicates.add(entry.path.name)
        else:
            kept.append(thumb)
    return duplicates


def rejections(entries: list[Entry], max_identity: float | None = None, min_blur: float | None = None,
               max_yaw: float | None = None, max_pitch: float | None = None, min_size: float | None = None,
               duplicates: float | None = None) -> dict[str, str]:
    """File name -> why, for the faces the limits reject."""
    why = {}
    for entry in entries:
        m = entry.measures
        reasons = [name for name, bad in (
            ("identity", max_identity is not None and (m.get("identity") is None or m["identity"] > max_identity)),
            ("blur", min_blur is not None and m["blur"] < min_blur),
            ("yaw", max_yaw is not None and abs(m["yaw"]) > max_yaw),
            ("pitch", max_pitch is not None and abs(m["pitch"]) > max_pitch),
            ("size", min_size is not None and m["size"] < min_size)) if bad]
        if reasons:
            why[entry.path.name] = ", ".join(reasons)
    if duplicates is not None:
        for name in near_duplicates([e for e in entries if e.path.name not in why], duplicates):
            why[name] = "near-duplicate"
    return why


def apply(folder: Path, why: dict[str, str]) -> int:
    """Move the rejected crops beside the set and rewrite its alignments and faceset.json atomically."""
    folder = Path(folder)
    if not why:
        return 0
    rejected = folder.with_name(folder.name + ".rejected")
    outputs.claim(rejected, "rejected", [folder])
    (rejected / faceset.FACES).mkdir(parents=True, exist_ok=True)
    header, records = faceset.read_alignments(folder)
    log_lines = []
    for record in records:
        log_lines += [json.dumps({"source": record["source"], "frame": record["frame"], "why": why[face["file"]],
                                  "face": face}) for face in record["faces"] if face.get("file") in why]
        record["faces"] = [face for face in record["faces"] if face.get("file") not in why]
    summary = faceset.read_summary(folder)
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in [header] + records)
    for name in why:  # the crops first: a crash here leaves every record pointing at a crop that exists
        if (folder / faceset.FACES / name).is_file():
            os.replace(folder / faceset.FACES / name, rejected / faceset.FACES / name)
    with open(rejected / "rejected.jsonl", "a", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in log_lines))
    atomic.write_bytes(folder / faceset.ALIGNMENTS, text.encode())
    faceset.write_summary(folder, len(records), list(summary.get("sources", {}).values()), summary.get("settings", {}))
    return len(why)


def sheet(entries: list[Entry], path: Path, columns: int = 12, cell: int = 96, label: str | None = None) -> Path:
    """A contact sheet PNG of the faces in the given order (with one measure printed under each, if asked)."""
    if not entries:
        raise FaceswapError("no faces to show")
    tiles = []
    for entry in entries:
        tile = cv2.resize(images.read_image(entry.path), (cell, cell), interpolation=cv2.INTER_AREA)
        if label:
            value = entry.measures.get(label)
            cv2.putText(tile, "-" if value is None else f"{value:g}", (3, cell - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                        (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    images.write_png(path, images.grid(tiles, columns))
    return Path(path)


def sort(entries: list[Entry], key: str) -> list[Entry]:
    """Worst first: farthest from the reference, blurriest, most turned, smallest."""
    order = {"identity": lambda m: -(m.get("identity") if m.get("identity") is not None else 9.0),
             "blur": lambda m: m["blur"], "yaw": lambda m: -abs(m["yaw"]), "pitch": lambda m: -abs(m["pitch"]),
             "size": lambda m: m["size"]}[key]
    return sorted(entries, key=lambda e: order(e.measures))

