"""Write to a temporary name beside the target and rename on success: nothing half-written at the final path.
A file's sha256 is here too: it is how a reader tells that a file is whole and the one written."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

from faceswap.errors import FaceswapError


def partial_path(path: Path) -> Path:
    """A hidden sibling, unique to this writer, that keeps the suffix (so container formats are still guessed
    right); partial files left by writers that died are removed."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.stem}.partial-*{path.suffix}"):
        pid = stale.name.removeprefix(f".{path.stem}.partial-").split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            discard(stale)
    return path.with_name(f".{path.stem}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


@contextlib.contextmanager
def exclusive(target: Path, what: str):
    """Hold an advisory lock on `target` (a model folder, a face set, an output file) for the block; a second
    job on the same target fails at once with one line naming the process that holds it."""
    target = Path(target)
    # beside the target, not in it: outputs are replaced whole, and a lock must outlive that
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = open(target.with_name(f".{target.name}.lock"), "a+")
    except OSError as exc:
        raise FaceswapError(f"{target}: cannot write the {what} here ({exc.strerror})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise FaceswapError(f"{target}: {what} in use by PID {holder}; wait for it to finish") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        if not target.exists():  # a refused or failed first run leaves no lock file behind either
            with contextlib.suppress(OSError):
                os.unlink(handle.name)
        handle.close()


@contextlib.contextmanager
def shared_or_exclusive(path: Path, shared: bool):
    """A blocking advisory lock on the file `path`: shared for readers, exclusive for the one writer."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield


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


def ensure_writable_dir(folder: Path, what: str) -> None:
    """Create `folder` if needed and prove it takes a file; else one clear error naming `what` it is for."""
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


def discard(partial: Path) -> None:
    partial = Path(partial)
    if partial.is_dir():
        shutil.rmtree(partial, ignore_errors=True)
    elif partial.exists():
        partial.unlink()


class Committing:
    """`with writer:` calls close() when the block succeeds and abort() when it raises."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        (self.close if exc_type is None else self.abort)()
        return False


@contextlib.contextmanager
def atomic_path(final: Path):
    """Yield a temporary path to write; rename it to `final` only if the block finishes."""
    partial = partial_path(final)
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


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
