"""Where batch work runs: this machine (`Local`) or a Ray cluster (`Ray`), behind one small interface.

An executor has check, extract, train (set_b None: pretrain) and convert, as `Local` shows. On Ray every source clip
is an extract task writing a part face set that the driver merges; train is one task, or with `workers` N a Ray Train
run of N DDP workers; convert is an actor per worker (per GPU where there are GPUs) converting clip after clip. Paths
travel, never frames: the work folder and the inputs must be on storage every node sees. The driver alone writes
pipeline state.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import cv2
from tqdm import tqdm

from faceswap import atomic, credentials, faceset, media, outputs
from faceswap.errors import FaceswapError
from faceswap.extract import ExtractSummary, extract
from faceswap.settings import ConvertSettings, ExtractSettings, TrainSettings
from faceswap.swap.batch import Worker, run_batch
from faceswap.training.loop import pretrain, train

log = logging.getLogger(__name__)
INSTALL = "--ray needs Ray, an optional extra: pip install 'faceswap[ray]' (or pip install 'ray[train]>=2.56')"
RETRIES = 1  # a clip whose worker died is converted once more, on the restarted worker


def parts_dir(output: Path) -> Path:
    """Where a face set's parts are extracted before the merge (beside it, hidden)."""
    output = Path(output)
    return output.with_name(f".{output.name}.parts")


def _train(set_a, set_b, output, settings: TrainSettings, progress: bool):
    return pretrain([set_a], output, settings, progress=progress) if set_b is None else \
        train(set_a, set_b, output, settings, progress=progress)


class _Executor:
    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Local(_Executor):
    """This machine: extract and train in this process, clips converted by a pool of `jobs` threads."""

    def __init__(self, jobs: int = 1):
        self.jobs = jobs

    def check(self, paths) -> None:
        pass

    def extract(self, sources, output, settings: ExtractSettings, progress: bool) -> ExtractSummary:
        return extract(sources, output, settings, progress=progress)

    def train(self, set_a, set_b, output, settings: TrainSettings, progress: bool):
        return _train(set_a, set_b, output, settings, progress)

    def convert(self, jobs, model_dir, settings: ConvertSettings, progress: bool) -> list[dict]:
        return run_batch(jobs, model_dir, settings, self.jobs, progress=progress)


# -- what runs on the cluster's nodes (module functions: Ray imports them there by name) -------------------
def _missing(paths: list[str]) -> tuple[str, list[str]]:
    return os.uname().nodename, [p for p in paths if not os.path.exists(p)]


def _sweep(outputs_: list[str], pids: dict[str, list[int]], seconds: float = 15) -> None:
    """Once this node's given worker processes are gone, the partial files their writers left are removed."""
    import ray

    mine, end = pids.get(ray.get_runtime_context().get_node_id(), []), time.monotonic() + seconds
    while time.monotonic() < end and any(atomic._alive(p) for p in mine):
        time.sleep(0.05)
    for output in outputs_:
        atomic.partial_path(Path(output))  # it drops the partial files of writers that died


def _extract_part(source: str, part: str, settings: ExtractSettings) -> ExtractSummary:
    cv2.setNumThreads(1)  # as the extract command: OpenCV's own threads only wait on ours
    return extract([Path(source)], Path(part), settings, progress=False)


def _train_rank(config: dict):
    """One Ray Train worker: the same loop under the process group Ray Train started; rank 0 alone writes."""
    import torch

    if torch.cuda.is_available():  # the GPU Ray Train gave this worker, read as the local rank by the loop
        from ray.train.torch import get_device

        os.environ["LOCAL_RANK"] = str(get_device().index)
    return _train(*config["args"], False)


class _Converter:
    """One worker, its model loaded once, converting clip after clip as a local batch's worker does."""

    def __init__(self, model_dir: str, settings: ConvertSettings, cpus: int):
        import torch

        if not torch.cuda.is_available():
            torch.set_num_threads(max(1, cpus))  # its share of the node, as share_cpu_with_video gives a local run
        self.worker = Worker(Path(model_dir), settings)

    def where(self) -> tuple[str, int]:
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()

    def convert(self, job: tuple) -> dict:
        return self.worker(job)


def _in_thread(fn):
    """fn() in a thread of its own, where Ray Train sets no Ctrl-C handler (its own ends the driver with exit 1 and
    no word): Ctrl-C ends the driver as at any other stage, and its workers with it."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as itself
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


class Ray(_Executor):
    """A Ray cluster: joined at `address` ('auto': the one this machine runs), or started here with `cpus`."""

    def __init__(self, address: str | None = None, cpus: int | None = None):
        try:
            import ray
        except ImportError:
            raise FaceswapError(INSTALL) from None
        self.ray = ray
        self.owned = not ray.is_initialized()  # a cluster someone else started in this process stays up
        if self.owned:
            try:
                if address:
                    ray.init(address=address, logging_level=logging.WARNING)
                else:
                    ray.init(num_cpus=cpus or os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise FaceswapError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}") \
                    from None
        resources = ray.cluster_resources()
        self.gpus, self.cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()

    def _on_each_node(self, fn, *args) -> list:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = self.ray.remote(num_cpus=0)(fn)
        nodes = [n["NodeID"] for n in self.ray.nodes() if n["Alive"]]
        return self.ray.get([task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False))
                             .remote(*args) for n in nodes])

    def check(self, paths) -> None:
        """Every node sees every path (shared storage), or one line says which node cannot see what."""
        paths = sorted({str(Path(p).resolve()) for p in paths})
        blind = [f"{node} cannot see {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else "")
                 for node, missing in self._on_each_node(_missing, paths) if missing]
        if blind:
            raise FaceswapError("; ".join(blind) + ": the work folder and the inputs must be on storage every "
                                "node mounts (NFS, a mounted bucket)")

    def _wait(self, refs: list, what: str, progress: bool) -> list:
        """The results of tasks in order, one bar over them; the first error raised as itself, the rest cancelled."""
        ray, index = self.ray, {ref: i for i, ref in enumerate(refs)}
        results, pending = [None] * len(refs), list(refs)
        with tqdm(total=len(refs), desc=what, unit="task", disable=not progress, leave=False) as bar:
            try:
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    results[index[done[0]]] = self._get(done[0])
                    bar.update(1)
            except BaseException:
                for ref in pending:
                    ray.cancel(ref)  # a part stopped mid-way resumes from its last whole record on the next run
                if pending:  # train saves its checkpoint as it stops
                    ray.wait(pending, num_returns=len(pending), timeout=60)
                raise
        return results

    def _get(self, ref):
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, Exception) else FaceswapError(str(exc).splitlines()[0])) from None

    def extract(self, sources, output, settings: ExtractSettings, progress: bool) -> ExtractSummary:
        """Each source clip a task writing a part face set; the parts merged as one local extract writes them."""
        clips, output = media.expand_inputs(sources), Path(output)
        for clip in clips:
            media.probe(clip)  # every input checked before any work
        if len({c.name for c in clips}) != len(clips):
            raise FaceswapError("two inputs share a file name; rename one so the face set can tell them apart")
        outputs.claim(output, "faceset", clips)
        folder = parts_dir(output)
        folder.mkdir(parents=True, exist_ok=True)
        self.check([*clips, folder])
        parts = [folder / f"{i:04d}_{c.name}" for i, c in enumerate(clips)]
        task = self.ray.remote(num_cpus=1, max_retries=RETRIES)(_extract_part)
        quiet = settings.model_copy(update={"preview": None})  # one preview: the first clip's
        refs = [task.remote(str(c), str(p), settings if i == 0 else quiet) for i, (c, p) in
                enumerate(zip(clips, parts))]
        summaries = self._wait(refs, f"extract {output.name}", progress)
        total = ExtractSummary()
        for s in summaries:
            for key in ("frames", "faces", "frames_without_face", "seconds", "skipped_resumed", "interpolated"):
                setattr(total, key, getattr(total, key) + getattr(s, key))
        total.faces_in_set = faceset.merge(parts, output, settings.as_json())
        shutil.rmtree(folder, ignore_errors=True)  # the parts' lock files
        return total

    def train(self, set_a, set_b, output, settings: TrainSettings, progress: bool):
        """One task (on a GPU, where there is one) or `settings.workers` DDP workers through Ray Train; resumable."""
        self.check([p for p in (set_a, set_b, settings.pretrained) if p] + [Path(output).parent])
        if settings.workers > 1:
            return self._train_workers(set_a, set_b, output, settings)
        task = self.ray.remote(num_cpus=1, num_gpus=1 if self.gpus else 0, max_retries=RETRIES)(_train)
        return self._wait([task.remote(set_a, set_b, output, settings, False)], "train", progress)[0]

    def _train_workers(self, set_a, set_b, output, settings: TrainSettings):
        """Ray Train's TorchTrainer runs the loop in every worker (DDP); when a worker dies the group starts once
        more and resumes from the model's last checkpoint, while an error of the loop's own is raised as itself."""
        try:
            from ray.train import RunConfig, ScalingConfig, TrainingFailedError
            from ray.train.torch import TorchTrainer
        except ImportError:
            raise FaceswapError(INSTALL) from None
        have, kind = (self.gpus, "GPU") if self.gpus else (self.cpus, "CPU")
        if settings.workers > have:  # Ray Train would wait for them without end
            raise FaceswapError(f"train: workers {settings.workers} need a {kind} each and the cluster has {have}")
        # the workers run in a folder of Ray Train's own: paths travel absolute
        set_a, set_b, output = (None if p is None else Path(p).resolve() for p in (set_a, set_b, output))
        record = output.with_name(f".{output.name}.ray-train")  # Ray Train's own run folder, removed after
        for attempt in range(RETRIES + 1):
            trainer = TorchTrainer(_train_rank, train_loop_config={"args": (set_a, set_b, output, settings)},
                                   scaling_config=ScalingConfig(num_workers=settings.workers, use_gpu=bool(self.gpus)),
                                   run_config=RunConfig(name="train", storage_path=str(record)))
            try:
                return _in_thread(trainer.fit).return_value
            except TrainingFailedError as exc:
                failures = list(getattr(exc, "worker_failures", {}).values())
                raised = [f._base_exc for f in failures if hasattr(f, "_base_exc")]  # by the loop, not by Ray
                if attempt < RETRIES and len(raised) < len(failures):  # a worker died or hung
                    log.warning("train: a worker died; the workers start again from the last checkpoint")
                    continue
                if ours := [e for e in raised if isinstance(e, FaceswapError)]:
                    raise ours[0] from None
                lines = str((raised or failures or [exc])[0]).strip().splitlines() or [type(exc).__name__]
                raise FaceswapError(f"train: {lines[0]}") from None
            finally:
                shutil.rmtree(record, ignore_errors=True)

    def convert(self, jobs, model_dir, settings: ConvertSettings, progress: bool) -> list[dict]:
        """An actor per worker converts clip after clip; a clip whose worker died is converted once more."""
        if not jobs:
            return []
        ray = self.ray
        self.check([model_dir, *(j[0] for j in jobs), *{Path(j[1]).parent for j in jobs}])
        credentials.load_signing()  # the local key made here once: workers making it at the same time would clash
        workers = min(len(jobs), self.gpus or self.cpus)
        # threaded (2): `where` answers while a clip converts; the scheduler below gives each one clip at a time
        actor = ray.remote(_Converter).options(num_cpus=1, num_gpus=1 if self.gpus else 0, max_concurrency=2,
                                               max_restarts=RETRIES * len(jobs), max_task_retries=0)
        actors = [actor.remote(str(model_dir), settings, 1) for _ in range(workers)]
        queue, attempts, rows, running = list(range(len(jobs))), [0] * len(jobs), [None] * len(jobs), {}

        def submit(worker):
            if queue:
                i = queue.pop(0)
                running[worker.convert.remote(jobs[i])] = (worker, i)

        for worker in actors:
            submit(worker)
        started, frames = time.perf_counter(), 0
        bar = tqdm(total=len(jobs), desc="convert", unit="clip", disable=not progress)
        try:
            while running:
                done, _ = ray.wait(list(running), num_returns=1)
                worker, i = running.pop(done[0])
                try:
                    row = ray.get(done[0])
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                    if attempts[i] < RETRIES:
                        attempts[i] += 1
                        log.warning("%s: its worker died; converting it again", jobs[i][0])
                        queue.insert(0, i)
                        if not self._restarted(worker):  # Ray restarts it (max_restarts), or a new one
                            actors.append(worker := actor.remote(str(model_dir), settings, 1))
                        submit(worker)
                        continue
                    row = {"clip": str(jobs[i][0]), "output": str(jobs[i][1]), **jobs[i][2],
                           "status": f"failed: its worker died {attempts[i] + 1} times ({type(exc).__name__})"}
                rows[i] = dict(row, retries=attempts[i])
                frames += row.get("frames", 0)
                bar.update(1)
                bar.set_postfix(fps=f"{frames / (time.perf_counter() - started):.1f}")
                submit(worker)
        except BaseException:
            for ref in running:
                ray.cancel(ref)
            raise
        finally:
            bar.close()
            self._stop(actors, [str(j[1]) for j in jobs])
        return rows

    def _restarted(self, worker, seconds: float = 120) -> bool:
        """Whether a worker that died is back (Ray restarts it); calls made while it restarts would fail."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.ray.get(worker.where.remote(), timeout=seconds)
                return True
            except self.ray.exceptions.ActorUnavailableError:
                time.sleep(0.2)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.GetTimeoutError):
                return False
        return False

    def _stop(self, actors, outputs_: list[str]) -> None:
        """The workers killed, then on each node the partial files of any writer that died removed."""
        ray = self.ray
        pids: dict[str, list[int]] = {}
        for a in actors:
            with contextlib.suppress(Exception):  # a worker already gone: what it left is swept below all the same
                node, pid = ray.get(a.where.remote(), timeout=10)
                pids.setdefault(node, []).append(pid)
        for a in actors:
            ray.kill(a, no_restart=True)
        self._on_each_node(_sweep, outputs_, pids)
