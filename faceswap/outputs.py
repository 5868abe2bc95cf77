"""What a command may write over: nothing yet, an empty folder, or an earlier output of the same kind made by
faceswap (it says so itself). Anything else, the user's own files, an input, a face set or a model where another
kind of output goes, is refused before any work starts, and left as it was."""
from __future__ import annotations

import json
import re
from pathlib import Path

from faceswap.errors import FaceswapError

PNG_MARK = {"Software": "faceswap"}  # every PNG faceswap writes carries it (images.write_png)
VIDEO_MARK = "faceswap"               # in the comment tag of every video faceswap writes (libav owns "encoder")
REPORT_SCHEMA = "faceswap.evaluate"
BATCH_SCHEMA = "faceswap.batch"
_FRAME = re.compile(r"frame_\d{6}\.png")
WHAT = {"faceset": "face set", "model": "model folder", "converted": "converted output", "png": "PNG",
        "report": "report", "preview": "preview", "rejected": "folder of rejected faces",
        "work": "pipeline work folder", "batch": "folder of converted clips"}
FOLDERS = {"faceset", "model", "rejected", "work", "batch"}
# what a pipeline writes before its first stage ends: a run stopped that early may start again (a training's
# files before its first checkpoint: store.TRAINING_FILES)
_WORK_FILES = {"facesets", "model", "base", "output", "report.json", "pipeline-state.json"}


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _png_marked(path: Path) -> bool:
    from faceswap import images

    try:
        return images.png_text(path.read_bytes()).get("Software") == PNG_MARK["Software"]
    except OSError:
        return False


def _video_marked(path: Path) -> bool:
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            return VIDEO_MARK in str(container.metadata.get("comment", ""))
    except (av.FFmpegError, OSError, ValueError):
        return False


def _converted_file(path: Path) -> bool:
    """A video or image convert wrote: its manifest beside it names it and holds its sha256."""
    from faceswap.atomic import sha256_of
    from faceswap.credentials import manifest_path

    manifest = _json(manifest_path(path))
    return manifest.get("schema") == "faceswap.manifest" and \
        (manifest.get("output") or {}).get("sha256") == sha256_of(path)


def _converted_folder(path: Path) -> bool:
    """A frame folder convert wrote: its manifest lists every file in it, and nothing else is there (or, made
    before a crash, it holds only numbered frames)."""
    from faceswap.credentials import manifest_path

    names = {p.name for p in path.iterdir()} - {manifest_path(path).name, "timestamps.json"}
    manifest = _json(manifest_path(path))
    if manifest.get("schema") == "faceswap.manifest":
        return names <= set((manifest.get("output") or {}).get("files") or {})
    return bool(names) and all(_FRAME.fullmatch(n) for n in names)  # stopped before its manifest was written


def _all_converted(path: Path) -> bool:
    """Only converted clips (with their manifests and credential sidecars) and hidden files. A clip stopped
    between its video and its manifest counts too: its container says faceswap wrote it."""
    from faceswap.credentials import manifest_path, sidecar_path

    files = [p for p in path.iterdir() if not p.name.startswith(".")]
    clips = [p for p in files if p.is_file() and p.suffix.lower() != ".json" and p.suffix.lower() != ".c2pa"]
    extras = {q.name for p in clips for q in (manifest_path(p), sidecar_path(p))}
    return bool(clips) and all(_converted_file(p) or _video_marked(p) for p in clips) and \
        all(p in clips or p.name in extras for p in files)


def kind_of(path: Path) -> str | None:
    """Which faceswap output `path` is, from its own marks; None for anything else."""
    from faceswap import faceset, media  # media writes with this module's marks: imported here, not above
    from faceswap.models import store

    path = Path(path)
    if path.is_dir():
        names = {p.name for p in path.iterdir()}
        if faceset.ALIGNMENTS in names or faceset.SUMMARY in names:
            return "faceset"
        if _json(path / store.CONFIG).get("schema") == store.SCHEMA or \
                names and all(n in store.TRAINING_FILES or n.startswith(".") for n in names):
            return "model"
        shown = {n for n in names if not n.startswith(".")}  # locks and partial files are hidden
        if shown <= _WORK_FILES and ("pipeline-state.json" in shown or "facesets" in shown):
            return "work"
        if "rejected.jsonl" in names:
            return "rejected"
        if _converted_folder(path):
            return "converted"
        return "batch" if _json(path / "report.json").get("schema") == BATCH_SCHEMA or _all_converted(path) else None
    if not path.is_file():
        return None
    suffix = path.suffix.lower()
    if suffix == ".json" and _json(path).get("schema") == REPORT_SCHEMA:
        return "report"
    if _converted_file(path):
        return "converted"
    if suffix == ".png" and _png_marked(path):
        return "png"
    if suffix in media.VIDEO_SUFFIXES and _video_marked(path):
        return "preview"  # a converted video whose manifest is missing is replaced too (claim's `also`)
    return None


def _inside(inner: Path, outer: Path) -> bool:
    inner, outer = inner.resolve(), outer.resolve()
    return inner == outer or outer in inner.parents


def _leftover(name: str) -> bool:
    """A lock or partial file an interrupted writer left: a folder holding only these counts as empty."""
    return name.startswith(".") and (name.endswith(".lock") or ".partial" in name)


def claim(path: Path, kind: str, inputs=(), also: tuple = ()) -> None:
    """Refuse `path` as an output of `kind` (or of one of `also`) unless it is new, an empty folder, or an
    earlier faceswap output of that kind; and refuse it when it is, or holds, one of `inputs`."""
    path = Path(path)
    if kind not in FOLDERS:
        if path.is_dir() and kind != "converted":
            raise FaceswapError(f"{path}: is a folder; give the {WHAT[kind]} a file name")
        if not path.parent.is_dir():
            raise FaceswapError(f"{path.parent}: no such folder for the {WHAT[kind]}")
    for source in filter(None, inputs):
        if Path(source).exists() and _inside(Path(source), path):
            raise FaceswapError(f"{path}: is an input ({source}); write the {WHAT[kind]} somewhere else")
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and all(_leftover(p.name) for p in path.iterdir()):
        return
    found = kind_of(path)
    if found in (kind, *also):
        return
    held = f"a {WHAT[found]}" if found else ("someone's files" if path.is_dir() else "a file faceswap did not make")
    raise FaceswapError(f"{path}: already exists and holds {held}; faceswap only replaces its own "
                        f"{WHAT[kind]}s: choose a new path, or move it away first")
