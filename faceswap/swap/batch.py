"""Converting many clips: a folder of clips or several inputs, a bounded pool, a table and a JSON report."""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from faceswap import atomic, media, outputs
from faceswap.errors import FaceswapError
from faceswap.settings import ConvertSettings
from faceswap.swap.convert import Swapper, convert

log = logging.getLogger(__name__)


def table(rows: list[dict]) -> str:
    header = f"{'clip':<32} {'frames':>7} {'faces':>7} {'fps':>7}  status"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{Path(r['clip']).name[:32]:<32} {r.get('frames', 0):>7} {r.get('faces', 0):>7} "
                     f"{r.get('fps', 0):>7.1f}  {r['status']}" + (f", retried {r['retries']}x" if r.get("retries") else ""))
    return "\n".join(lines)


class Worker:
    """One worker of a batch: its model loaded at its first clip and kept for the next (convert.Swapper)."""

    def __init__(self, model_dir: Path, settings: ConvertSettings):
        self.model_dir, self.settings, self.swapper = Path(model_dir), settings, None

    def __call__(self, job: tuple[Path, Path, dict], progress: bool = False) -> dict:
        """One (clip, output, extra) job's row; a failure is recorded in it, not raised (the batch goes on)."""
        clip, output, extra = job
        started = time.perf_counter()
        try:
            self.swapper = self.swapper or Swapper(self.model_dir, self.settings)
            summary = convert(clip, self.model_dir, output, self.settings, progress=progress, swapper=self.swapper)
            return dict(extra, clip=str(clip), output=str(output), frames=summary.frames, faces=summary.faces,
                        fps=round(summary.fps, 2), status="ok")
        except Exception as exc:  # noqa: BLE001 - one bad clip must not stop the batch
            log.debug("convert %s failed", clip, exc_info=True)
            return dict(extra, clip=str(clip), output=str(output), status=f"failed: {exc}",
                        seconds=round(time.perf_counter() - started, 2))


def run_batch(jobs: list[tuple[Path, Path, dict]], model_dir: Path, settings: ConvertSettings, workers: int = 1,
              progress: bool = False) -> list[dict]:
    """Convert (clip, output, extra) jobs on a bounded pool of threads, a Worker each; a failure is recorded."""
    mine = threading.local()

    def one(job):
        if not hasattr(mine, "worker"):
            mine.worker = Worker(model_dir, settings)
        return mine.worker(job, progress and workers == 1)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, jobs))


def convert_many(inputs: list[Path], output: Path, model_dir: Path, settings: ConvertSettings,
                 alignments: Path | None = None, progress: bool = True, echo=print, jobs: int = 1,
                 executor=None) -> list[dict]:
    """`executor`: where the clips of a batch are converted (cluster.Ray); None: a pool of `jobs` threads here."""
    clips = media.expand_inputs(inputs)
    output = Path(output)
    if executor is not None and alignments:
        raise FaceswapError("--alignments works without --ray (one input converted here)")
    if len(inputs) == 1 and clips == [Path(inputs[0])] and executor is None:  # one video or image folder
        summary = convert(clips[0], model_dir, output, settings, alignments, progress)
        echo(summary.line())
        return [{"clip": str(clips[0]), "status": "ok", "frames": summary.frames}]
    if alignments:
        raise FaceswapError("--alignments works with one input; convert several clips without it")
    if output.exists() and not output.is_dir():
        raise FaceswapError(f"{output}: several inputs need an output folder, and this is a file")
    outputs.claim(output, "batch", [*clips, model_dir])
    names = [c.stem + ".mp4" for c in clips]
    if len(set(names)) != len(names):
        raise FaceswapError("two input clips share a name; their outputs would collide")
    for name in names if output.is_dir() else ():  # a new output folder holds nothing to refuse
        outputs.claim(output / name, "converted", also=("preview",))
    output.mkdir(parents=True, exist_ok=True)
    work = [(c, output / n, {}) for c, n in zip(clips, names)]
    rows = run_batch(work, model_dir, settings, jobs, progress=progress) if executor is None else \
        executor.convert(work, model_dir, settings, progress)
    echo(table(rows))
    atomic.write_json(output / "report.json", {"schema": outputs.BATCH_SCHEMA, "clips": rows})
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        raise FaceswapError(f"{len(failed)} of {len(rows)} clips failed (see {output / 'report.json'})")
    return rows
