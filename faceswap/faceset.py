"""The on-disk face set: aligned PNG crops (each carrying its own metadata) and one alignments file.

Layout of a face set folder:
    alignments.jsonl   line 1: header {"schema": "faceswap.alignments", "version": 1, ...}; then one JSON record
                       per frame processed, faceless ones too ("interpolated": true where landmarks were interpolated)
    faces/             <source>_<frame>_<n>.png, each with an iTXt chunk "faceswap" holding its face record
    faceset.json       written last, when extraction completed: counts and settings
    hands.json         the hands over each crop, found by the first training that needed them and kept for the
                       next: {"finder": which hand finder, "hands": {crop content digest: [21 x 2 points, ...]}}

JSON only (no pickle). Lines are appended and flushed as frames finish, so an interrupted extract
resumes after the last whole line; a torn last line is dropped on reopen.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np

from faceswap import atomic, images
from faceswap.errors import FaceswapError

SCHEMA = "faceswap.alignments"
VERSION = 1
ALIGNMENTS = "alignments.jsonl"
SUMMARY = "faceset.json"
HANDS = "hands.json"
FACES = "faces"
PNG_KEY = "faceswap"
FACE_KEYS = {"bbox": list, "score": (int, float), "landmarks": list, "matrix": list, "track": int,
             "blur": (int, float), "file": (str, type(None))}
FRAME_KEYS = {"source": str, "frame": int, "pts": (int, float), "faces": list}


def encode_png(rgb: np.ndarray, metadata: dict) -> bytes:
    """PNG bytes of an RGB image with `metadata` as JSON in an iTXt chunk right after IHDR."""
    return images.png_bytes(rgb, {PNG_KEY: json.dumps(metadata, separators=(",", ":"))})


def read_png_metadata(path: Path) -> dict | None:
    """The faceswap metadata of a crop, or None when it has none."""
    text = images.png_text(Path(path).read_bytes()).get(PNG_KEY)
    return None if text is None else json.loads(text)


def validate_record(record: dict) -> None:
    """Raise ValueError when a frame record does not follow the schema."""
    for key, kind in FRAME_KEYS.items():
        if not isinstance(record.get(key), kind):
            raise ValueError(f"frame record: {key!r} missing or not {kind}")
    for face in record["faces"]:
        for key, kind in FACE_KEYS.items():
            if not isinstance(face.get(key), kind):
                raise ValueError(f"face record: {key!r} missing or not {kind}")
        if np.asarray(face["landmarks"]).shape != (68, 2) or np.asarray(face["matrix"]).shape != (2, 3):
            raise ValueError("face record: landmarks must be 68x2 and matrix 2x3")
        if len(face["bbox"]) != 4:
            raise ValueError("face record: bbox must have 4 numbers")


def validate_header(header: dict) -> None:
    if header.get("schema") != SCHEMA:
        raise ValueError("not a faceswap alignments file")
    if header.get("version") != VERSION:
        raise ValueError(f"alignments version {header.get('version')} is not supported (need {VERSION})")
    for key in ("size", "padding"):
        if not isinstance(header.get(key), (int, float)):
            raise ValueError(f"header: {key!r} missing")


def write_summary(folder: Path, records: int, sources: list[dict], settings: dict) -> int:
    """Write faceset.json, the completion record: the count and hash of the alignments records it vouches for
    and what identifies each source (kept from earlier runs into the same set). Returns the faces held."""
    folder = Path(folder)
    known = read_summary(folder).get("sources", {}) if (folder / SUMMARY).is_file() else {}
    faces = sum(1 for _ in (folder / FACES).glob("*.png"))
    atomic.write_json(folder / SUMMARY, {
        "schema": "faceswap.faceset", "version": 2, "records": records, "faces": faces,
        "alignments_sha256": hashlib.sha256((folder / ALIGNMENTS).read_bytes()).hexdigest(),
        "sources": {**known, **{s["name"]: s for s in sources}}, "settings": settings,
    })
    return faces


def read_summary(folder: Path) -> dict:
    path = Path(folder) / SUMMARY
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FaceswapError(f"{path}: unreadable ({exc})") from None
    if not isinstance(summary, dict):
        raise FaceswapError(f"{path}: not a face set summary")
    return summary


def read_alignments(path: Path, complete: bool = True) -> tuple[dict, list[dict]]:
    """Header and frame records of an alignments file. `complete`: the file must be the one faceset.json vouches
    for (same record count and hash); only extract's resume reads a file cut short (its torn last line ignored)."""
    path = Path(path)
    if path.is_dir():
        path = path / ALIGNMENTS
    if not path.is_file():
        raise FaceswapError(f"{path}: no alignments file (make one with faceswap extract)")
    data = path.read_bytes()
    lines = data.decode("utf-8", errors="replace").splitlines()
    try:
        header = json.loads(lines[0])
        validate_header(header)
    except (IndexError, ValueError) as exc:
        raise FaceswapError(f"{path}: invalid alignments file ({exc})") from None
    records = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # torn last line of an interrupted run
            raise FaceswapError(f"{path}:{number}: corrupt record") from None
        try:
            validate_record(record)
        except ValueError as exc:
            raise FaceswapError(f"{path}:{number}: {exc}") from None
        records.append(record)
    if complete:  # after the lines: a damaged one is named by its number
        _check_complete(path, data)
    return header, records


def _check_complete(path: Path, data: bytes) -> None:
    if not (path.parent / SUMMARY).is_file():
        raise FaceswapError(f"{path.parent}: extraction did not finish (no {SUMMARY}); run the same extract "
                            "command again to complete it")
    summary = read_summary(path.parent)
    records = data.count(b"\n") - 1
    if "records" in summary and records != summary["records"]:
        raise FaceswapError(f"{path}: holds {records} frame records, {SUMMARY} says {summary['records']}: the file "
                            "was cut short or changed; run extract again")
    if summary.get("alignments_sha256") not in (None, hashlib.sha256(data).hexdigest()):
        raise FaceswapError(f"{path}: changed since extraction finished (sha256 differs from {SUMMARY}); run "
                            "extract again")


class AlignmentsWriter:
    """Appends frame records; reopening an existing file keeps its whole lines and resumes after them."""

    def __init__(self, folder: Path, header: dict, sync_every: int = 50):
        self.path = Path(folder) / ALIGNMENTS
        self.done: dict[str, int] = {}  # source name -> last frame index written
        self.records = 0
        if self.path.exists():
            old_header, records = read_alignments(self.path, complete=False)
            for key in ("size", "padding"):
                if old_header.get(key) != header.get(key):
                    raise FaceswapError(f"{folder}: holds a face set made with {key}={old_header.get(key)}; "
                                        f"use another output folder or the same settings")
            for record in records:
                self.done[record["source"]] = max(self.done.get(record["source"], -1), record["frame"])
            self.records = len(records)
            self._rewrite([old_header] + records)
        else:
            self._rewrite([header])
        self.handle = open(self.path, "a", encoding="utf-8")
        self.sync_every = sync_every
        self.pending = 0

    def _rewrite(self, items: list[dict]) -> None:
        atomic.write_bytes(self.path, "".join(json.dumps(i, separators=(",", ":")) + "\n" for i in items).encode())

    def append(self, record: dict) -> None:
        self.handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.records += 1
        self.pending += 1
        if self.pending >= self.sync_every:
            self.sync()

    def sync(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.pending = 0

    def close(self) -> None:
        self.sync()
        self.handle.close()


def set_of(crop: Path) -> Path:
    """The face set folder a crop belongs to (its faces/ folder's parent; a bare folder of crops itself)."""
    return crop.parent.parent if crop.parent.name == FACES else crop.parent


def crop_digest(data: bytes) -> str:
    """What a crop is known by in hands.json: its bytes' digest, so a changed or copied crop is never mistaken."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_crop_hands(folder: Path, finder: str) -> dict[str, list]:
    """hands.json's table when the same hand finder wrote it, less any entry that is not a list of 21 x 2 finite
    points; else empty (unreadable or stale: found again)."""
    try:
        kept = json.loads((Path(folder) / HANDS).read_text())
        return {digest: hands for digest, hands in kept["hands"].items() if _points(hands)} \
            if kept.get("finder") == finder else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _points(hands) -> bool:
    try:
        return isinstance(hands, list) and all(np.isfinite(h).all() and np.shape(h) == (21, 2)
                                               for h in map(np.asarray, hands))
    except (TypeError, ValueError):  # not numbers, or rows of different lengths
        return False


def write_crop_hands(folder: Path, finder: str, table: dict[str, list]) -> None:
    """Keep a face set's hands for the next training: only in a face set that extract made (never in a bare
    folder of someone's crops), and quietly not where the folder is read-only."""
    folder = Path(folder)
    if (folder / SUMMARY).is_file():
        with contextlib.suppress(OSError):
            atomic.write_bytes(folder / HANDS, json.dumps({"finder": finder, "hands": table},
                                                          separators=(",", ":")).encode())


def face_entries(folder: Path) -> Iterator[tuple[Path, dict]]:
    """(crop path, face record) for every face in a face set folder; also works on a bare folder of crops."""
    folder = Path(folder)
    if not folder.exists():
        raise FaceswapError(f"{folder}: face set not found")
    if (folder / ALIGNMENTS).is_file():
        header, records = read_alignments(folder)
        for record in records:
            for face in record["faces"]:
                if face.get("file"):
                    path = folder / FACES / face["file"]
                    if path.is_file():
                        yield path, dict(face, source=record["source"], frame=record["frame"],
                                         size=header["size"], padding=header["padding"])
        return
    for path in sorted((folder / FACES if (folder / FACES).is_dir() else folder).glob("*.png")):
        if (meta := read_png_metadata(path)) is not None:
            yield path, meta


def merge(parts: list[Path], output: Path, settings: dict) -> int:
    """One face set from finished parts (extract's, one source each), as one extract of all the sources writes
    it: built under a temporary name, renamed into place, and only then the parts removed. Returns its faces."""
    parts, output = [Path(p) for p in parts], Path(output)
    if not parts:
        raise FaceswapError(f"{output}: no parts to merge")
    headers = [read_alignments(p)[0] for p in parts]  # each part complete, and its lines valid
    for part, header in zip(parts[1:], headers[1:]):
        if any(header.get(k) != headers[0].get(k) for k in ("size", "padding")):
            raise FaceswapError(f"{part}: made with other settings than {parts[0]}; cannot merge")
    partial = atomic.partial_path(output)
    try:
        (partial / FACES).mkdir(parents=True)
        lines, sources = [], {}
        for i, part in enumerate(parts):
            lines += (part / ALIGNMENTS).read_bytes().splitlines(keepends=True)[0 if i == 0 else 1:]
            sources.update(read_summary(part).get("sources", {}))
            for crop in (part / FACES).glob("*.png"):
                try:
                    os.link(crop, partial / FACES / crop.name)  # the parts stay whole until the merge is in place
                except OSError:
                    shutil.copy2(crop, partial / FACES / crop.name)
        (partial / ALIGNMENTS).write_bytes(b"".join(lines))
        atomic.fsync_file(partial / ALIGNMENTS)
        faces = write_summary(partial, len(lines) - 1, list(sources.values()), settings)
        atomic.commit(partial, output)
    except BaseException:
        atomic.discard(partial)
        raise
    for part in parts:
        shutil.rmtree(part, ignore_errors=True)
    return faces
