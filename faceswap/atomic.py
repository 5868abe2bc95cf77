"""Write to a temporary name beside the target and rename on success: nothing half-written at the final path."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path


def partial_path(path: Path) -> Path:
    """A hidden sibling that keeps the suffix (so container formats are still guessed right)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def commit(partial: Path, final: Path) -> None:
    """Move a finished file or folder into place (fsynced first, so a crash cannot leave it empty)."""
    partial, final = Path(partial), Path(final)
    if partial.is_file():
        fsync_file(partial)
    if final.is_dir() and partial.is_dir():
        shutil.rmtree(final)
    os.replace(partial, final)
    fsync_dir(final.parent)


def ensure_writable_dir(folder: Path, what: str) -> Path:
    """Create `folder` if needed and prove it takes a file; else one clear error naming `what` it is for."""
    from faceswap.errors import FaceswapError

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FaceswapError(f"{folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise FaceswapError(f"{folder}: cannot write {what} here ({exc.strerror})") from None
    return folder


def discard(partial: Path) -> None:
    partial = Path(partial)
    if partial.is_dir():
        shutil.rmtree(partial, ignore_errors=True)
    elif partial.exists():
        partial.unlink()


@contextlib.contextmanager
def atomic_path(final: Path):
    """Yield a temporary path to write; rename it to `final` only if the block finishes."""
    final = Path(final)
    partial = partial_path(final)
    discard(partial)
    try:
        yield partial
    except BaseException:
        discard(partial)
        raise
    commit(partial, final)


def write_bytes(final: Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        Path(tmp).write_bytes(data)


def write_json(final: Path, obj) -> None:
    write_bytes(final, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())
