"""The UI's workspace: every path it takes is confined to one folder, and what it holds is listed by kind."""
from __future__ import annotations

import os
from pathlib import Path

from faceswap import atomic, faceset, media
from faceswap.errors import FaceswapError
from faceswap.models import store

UPLOAD_LIMIT = 2 * 1024 ** 3  # bytes per uploaded file
UI_DIR = ".faceswap-ui"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
PIPELINE_SUFFIXES = (".yaml", ".yml")
UPLOAD_SUFFIXES = tuple(sorted(media.VIDEO_SUFFIXES)) + IMAGE_SUFFIXES + PIPELINE_SUFFIXES  # what the page uses


class Workspace:
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        atomic.ensure_writable_dir(self.root, "the workspace")
        (self.root / UI_DIR).mkdir(exist_ok=True)

    def path(self, relative: str, must_exist: bool = True) -> Path:
        """`relative` inside the workspace: no absolute paths, no `..`, no symlink that leads out of it."""
        if not isinstance(relative, str) or not relative or "\0" in relative:
            raise FaceswapError("a path inside the workspace is needed")
        candidate = Path(relative)
        if candidate.is_absolute():  # not echoed: an error line never shows an absolute path
            raise FaceswapError("an absolute path: only paths inside the workspace are allowed")
        if ".." in candidate.parts or relative.startswith("~"):
            raise FaceswapError(f"{relative}: only paths inside the workspace are allowed")
        return self.inside(self.root / candidate, relative, must_exist)

    def inside(self, path: Path, label: str, must_exist: bool = False) -> Path:
        """`path` resolved (symlinks followed), refused unless it stays in the workspace and out of the UI's own
        folder; `label` names it in the one-line error, which never shows an absolute path."""
        resolved = Path(path).resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise FaceswapError(f"{label}: leads out of the workspace")
        if resolved != self.root and resolved.relative_to(self.root).parts[0] == UI_DIR:
            raise FaceswapError(f"{label}: the UI's own folder")
        if must_exist and not resolved.exists():
            raise FaceswapError(f"{label}: not found in the workspace")
        return resolved

    def contains(self, path: Path) -> bool:
        resolved = Path(path).resolve()
        return resolved == self.root or self.root in resolved.parents

    def relative(self, path: Path) -> str:
        resolved = Path(path).resolve()
        if not self.contains(resolved):
            raise FaceswapError(f"{Path(path).name}: leads out of the workspace")
        return resolved.relative_to(self.root).as_posix()

    def kind(self, path: Path) -> str:
        if path.is_file():
            suffix = path.suffix.lower()
            return "video" if suffix in media.VIDEO_SUFFIXES else "image" if suffix in IMAGE_SUFFIXES else "file"
        if (path / faceset.ALIGNMENTS).is_file():
            return "faceset"
        if (path / store.CONFIG).is_file():
            return "model"
        return "images" if path.is_dir() and media.image_files(path) else "folder"

    def listing(self) -> list[dict]:
        """Everything in the workspace a job can take, two levels deep, by kind (videos, face sets, models...)."""
        found = []
        for path in sorted(self.root.rglob("*")):
            parts = path.relative_to(self.root).parts
            if len(parts) > 3 or any(p.startswith(".") or p.endswith(".rejected") for p in parts):
                continue
            if not self.contains(path):
                continue  # a symlink that leads out: not offered, and refused when named
            if any(self.kind(parent) in ("faceset", "model", "images") for parent in path.parents
                   if parent != self.root and self.root in parent.parents):
                continue  # inside a face set, model or image folder: the folder stands for it
            kind = self.kind(path)
            pipeline = path.is_file() and path.suffix.lower() in PIPELINE_SUFFIXES
            if kind in ("video", "faceset", "model", "images", "image") or pipeline:
                found.append({"path": path.relative_to(self.root).as_posix(), "kind": "pipeline" if pipeline else kind})
        return found

    def faceset(self, relative: str) -> dict:
        folder = self.path(relative)
        if self.kind(folder) != "faceset":
            raise FaceswapError(f"{relative}: not a face set")
        summary = faceset.read_summary(folder)
        faces = [self.relative(p) for p, _ in faceset.face_entries(folder)]
        return {"path": relative, "faces": faces, "count": len(faces), "records": summary.get("records"),
                "sources": [s.get("name") for s in summary.get("sources", {}).values()]}

    def upload_target(self, name: str, folder: str = "uploads") -> Path:
        """Where an uploaded file of this name goes (a plain name, inside the workspace)."""
        name = os.path.basename(name or "")
        if not name or name.startswith("."):
            raise FaceswapError("the upload needs a file name")
        if Path(name).suffix.lower() not in UPLOAD_SUFFIXES:  # no .html, .svg or .js: nothing a browser would run
            raise FaceswapError(f"{name}: only videos, images (png, jpg, webp) and pipeline files (.yaml) upload")
        target = self.path(folder, must_exist=False) / name  # the folder resolved inside; the name has no parts
        target.parent.mkdir(parents=True, exist_ok=True)
        return target
