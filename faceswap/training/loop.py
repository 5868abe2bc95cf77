"""`faceswap train`: the loop. AMP, channels_last, optional torch.compile, NaN guard, atomic checkpoints
with a rolling backup, exact resume (step, optimizer, RNG, data stream), previews, and DDP under torchrun.
"""
from __future__ import annotations

import contextlib
import enum
import json
import logging
import math
import os
import random
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from faceswap import __version__, align, atomic, images, outputs
from faceswap.device import PRECISIONS, autocast_dtype, measured_cpu_amp, use_tf32
from faceswap.errors import FaceswapError
from faceswap.faces import Timed
from faceswap.models import arch as arch_mod
from faceswap.models import store
from faceswap.training import report
from faceswap.settings import TrainSettings
from faceswap.training.config import TrainConfig
from faceswap.training.data import FaceData, PairStream, default_workers, loader
from faceswap.training.loss import side_loss

log = logging.getLogger(__name__)
PREVIEW_FACES = 6
ETA_AFTER = 30  # steps timed before the expected training time is printed
EXEMPLARS_PER_SIDE = 64  # faces per side the model folder carries for convert's detail: enough to cover the poses


class Stopped(str, enum.Enum):
    """Why a training run ended."""
    DONE = "done"
    ALREADY_DONE = "already at the step asked for"
    TIME_BUDGET = "time budget reached"
    INTERRUPTED = "interrupted"   # SIGINT: exit 130
    TERMINATED = "terminated"     # SIGTERM: exit 143
    FAILED = "loss became NaN/inf"

    @property
    def exit_code(self) -> int:
        return {Stopped.INTERRUPTED: 130, Stopped.TERMINATED: 143}.get(self, 0)


@dataclass
class TrainSummary(Timed):
    start_step: int = 0
    step: int = 0
    examples: int = 0
    loss_a: float = float("nan")
    loss_b: float = float("nan")
    stopped: Stopped = Stopped.DONE

    def line(self) -> str:
        return (f"train: steps {self.start_step} -> {self.step} ({self.stopped.value}), loss A {self.loss_a:.4f}, "
                f"loss B {self.loss_b:.4f}, {self.rate(self.examples):.1f} EGs/sec, {self.seconds:.0f} s")


def distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); starts the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


class Pair(torch.nn.Module):
    """Both identities in one forward, so DDP sees every parameter used in each step."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x_a, x_b):
        return self.model.both(x_a, x_b)


# -- optimizer and RNG state as safetensors + JSON -----------------------------------------------------
def optimizer_tensors(optimizer, scaler) -> tuple[dict, dict]:
    state = optimizer.state_dict()
    tensors, meta = {}, {"param_groups": state["param_groups"], "scalars": {}}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{key}"] = value
            else:
                meta["scalars"][f"{index}.{key}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    meta["rng_numpy"] = np.random.get_state()[1].tolist(), int(np.random.get_state()[2])
    meta["rng_python"] = [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]]
    if scaler is not None:
        meta["scaler"] = {k: (float(v) if torch.is_tensor(v) else v) for k, v in scaler.state_dict().items()}
    return tensors, meta


def restore_optimizer(optimizer, scaler, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for name, value in tensors.items():
        if name.startswith("state."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    # saved contiguous; the fused kernel reads moments in their parameter's memory layout (channels-last)
    for param, values in optimizer.state.items():
        for key, value in values.items():
            if torch.is_tensor(value) and value.shape == param.shape:
                values[key] = torch.empty_like(param).copy_(value)
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    if "rng_numpy" in meta:
        keys, pos = meta["rng_numpy"]
        np.random.set_state(("MT19937", np.array(keys, dtype=np.uint32), pos, 0, 0.0))
    if "rng_python" in meta:
        version, internal, gauss = meta["rng_python"]
        random.setstate((version, tuple(internal), gauss))
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])


class Trainer:
    def __init__(self, faceset_a, faceset_b, model_dir, settings: TrainSettings, progress: bool = True,
                 generic: bool = False):
        """`generic`: pretrain a base: faceset_a is a list of face sets, pooled, through one decoder."""
        self.settings = settings
        self.generic = generic
        self.faceset_paths = ([Path(p).resolve() for p in faceset_a], None) if generic else \
            (Path(faceset_a).resolve(), Path(faceset_b).resolve())
        self.model_dir = Path(model_dir)
        self.progress = progress
        self.rank, self.world, local_rank = distributed()
        self.main = self.rank == 0
        self.device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            use_tf32()
        existing = store.read_config(self.model_dir) if (self.model_dir / store.CONFIG).is_file() else None
        if self.main:
            atomic.ensure_writable_dir(self.model_dir, "the model")
        self.train_config = TrainConfig.resolve(settings, existing, self.model_dir, generic)
        self.cfg = self.train_config.arch
        self.config = existing or {}
        s = settings
        self.data_a = FaceData(faceset_a, self.cfg.out_size, self.cfg.coverage, s.holdout,
                               "to pretrain on" if generic else "A", input_size=self.cfg.size)
        self.data_b = self.data_a if generic else \
            FaceData(faceset_b, self.cfg.out_size, self.cfg.coverage, s.holdout, "B", input_size=self.cfg.size)
        if self.data_a.padding != self.data_b.padding:
            raise FaceswapError(f"face sets A and B were extracted with different --padding ({self.data_a.padding}, "
                                f"{self.data_b.padding}); extract them alike")
        if existing and existing.get("padding", align.DEFAULT_PADDING) != self.data_a.padding:
            raise FaceswapError(f"{self.model_dir}: was trained on crops of padding {existing.get('padding')}, "
                                f"these are {self.data_a.padding}")
        # the target's fine detail for convert, carried in the model folder so it converts without the face sets
        self.exemplars = None if generic or not self.main else store.exemplar_tensors(
            {side: data.exemplars(EXEMPLARS_PER_SIDE) for side, data in (("a", self.data_a), ("b", self.data_b))})
        torch.manual_seed(s.seed + self.rank)
        self.model = arch_mod.build(self.cfg).to(self.device)
        if generic:  # one decoder learns every face: "b" is "a"
            self.model.decoders["b"] = self.model.decoders["a"]
        self.base = self._base(existing)
        self.model = self.model.to(memory_format=torch.channels_last)
        if s.precision == "auto" and self.device.type == "cpu":
            with torch.random.fork_rng(devices=[]):  # the timing's random batches leave no trace in the run
                self.amp_dtype = measured_cpu_amp(self.cfg.name, self._timing_step)
        else:
            self.amp_dtype = autocast_dtype(s.precision, self.device, self.cfg.size)
        # fused: one kernel for all parameters (CPU and CUDA)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.train_config.lr, betas=(s.beta1, 0.999),
                                          fused=True)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.step = 0
        if existing:
            self._resume(existing)
        self.pair = Pair(self.model)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.pair = DistributedDataParallel(self.pair, device_ids=[self.device.index] if self.device.type == "cuda"
                                                else None)
        self.forward = torch.compile(self.pair) if s.compile else self.pair
        self.stop_reason: Stopped | None = None
        self.loss_log: report.LossLog | None = None

    # -- set-up helpers ---------------------------------------------------------------------------
    def _base(self, existing: dict | None) -> dict | None:
        """With --from: check the base, and (for a new model) start from its weights. The base's record."""
        source = self.settings.pretrained
        if source is None:
            return (existing or {}).get("pretrained")
        source = Path(source)
        config = store.read_config(source)
        if config.get("kind") != "base":
            raise FaceswapError(f"{source}: not a base model (make one with faceswap pretrain)")
        base_cfg = store.arch_from_config(config)
        if base_cfg != self.cfg:
            raise FaceswapError(f"{source}: the base is a {base_cfg.name} model ({base_cfg.size} px, "
                                f"{base_cfg.latent_type} latent, coverage {base_cfg.coverage}); this model is "
                                f"{self.cfg.name} ({self.cfg.size} px, {self.cfg.latent_type}, coverage "
                                f"{self.cfg.coverage}): pretrain one like it, or leave out --model/--size/--latent")
        if config.get("padding", align.DEFAULT_PADDING) != self.data_a.padding:
            raise FaceswapError(f"{source}: the base was trained on crops of padding {config.get('padding')}, "
                                f"these face sets are {self.data_a.padding}")
        record = {"name": source.name, "sha256": config["files"][store.WEIGHTS], "step": config.get("step"),
                  "faces": config.get("facesets", {}).get("pool", {}).get("train")}
        if existing:
            if (existing.get("pretrained") or {}).get("sha256") != record["sha256"]:
                raise FaceswapError(f"{self.model_dir}: already trained, not from {source}; --from starts new "
                                    "models only")
            return record
        store.load_weights(self.model, source, config)  # each file's sha256 checked against the base's config
        if self.main:
            log.info("starting from base %s (step %s)", source, record["step"])
        return record

    def _resume(self, config: dict) -> None:
        store.load_weights(self.model, self.model_dir, config)
        if store.OPTIMIZER in config.get("files", {}):
            tensors = store.load_tensors(self.model_dir, store.OPTIMIZER, config)
            meta = store.load_json(self.model_dir, store.TRAINER_STATE, config)
            restore_optimizer(self.optimizer, self.scaler, tensors, meta)
        self.step = int(config.get("step", 0))
        if self.main:
            log.info("resuming %s at step %d", self.model_dir, self.step)

    def _timing_step(self, dtype: torch.dtype | None) -> None:
        """One forward and backward of a batch of random faces, for --precision auto to time (gradients discarded)."""
        batch = self.train_config.batch_size
        x = torch.rand(batch, 3, self.cfg.size, self.cfg.size).contiguous(memory_format=torch.channels_last)
        target = torch.rand(batch, 3, self.cfg.out_size, self.cfg.out_size)
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            (rgb, *_), _ = self.model.both(x, x)
            loss = (rgb.float() - target).abs().mean()
        loss.backward()
        self.model.zero_grad(set_to_none=True)

    def _config(self) -> dict:
        s, run = self.settings, self.train_config
        return {
            "faceswap_version": __version__,
            "architecture": self.cfg.as_dict(),
            "padding": self.data_a.padding,  # with coverage, the window convert gives the model (align.model_matrix)
            "step": self.step,
            "batch_size": run.batch_size, "lr": run.lr, "beta1": s.beta1, "schedule": run.schedule,
            "seed": s.seed, "world_size": self.world,
            "precision": PRECISIONS[self.amp_dtype],
            "loss": asdict(run.loss), "augment": asdict(run.augment),
            "facesets": {
                "pool": {"paths": [str(p) for p in self.faceset_paths[0]], "train": len(self.data_a)},
            } if self.generic else {
                "a": {"path": str(self.faceset_paths[0]), "train": len(self.data_a), "holdout": self.data_a.holdout_files},
                "b": {"path": str(self.faceset_paths[1]), "train": len(self.data_b), "holdout": self.data_b.holdout_files},
            },
            **({"kind": "base"} if self.generic else {}),
            **({"pretrained": self.base} if self.base else {}),
            "created": self.config.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def save(self) -> None:
        if not self.main:
            return
        tensors, meta = optimizer_tensors(self.optimizer, self.scaler)
        weights = self.model.state_dict()
        if self.generic:  # safetensors stores no shared tensors: the base holds its one decoder twice
            weights = {k: v.clone() if k.startswith("decoders.b.") else v for k, v in weights.items()}
        store.save(self.model_dir, self._config(),
                   {store.WEIGHTS: weights, store.OPTIMIZER: tensors, **({store.EXEMPLARS: self.exemplars}
                                                                    if self.exemplars else {})},
                   {store.TRAINER_STATE: (json.dumps(meta) + "\n").encode()})
        self.config = store.read_config(self.model_dir)
        if self.loss_log is not None:  # the loss history survives whatever the checkpoint survives
            self.loss_log.flush(self.model_dir)

    def lr_at(self, step: int, progress: float) -> float:
        warm = min(1.0, (step + 1) / max(1, self.settings.warmup))
        run = self.train_config
        if run.schedule == "cosine":
            return run.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
        return run.lr * warm

    # -- the loop -----------------------------------------------------------------------------------
    def _preview_batches(self):
        """Per side: the preview's model inputs and what covers each face (hands, tinted in the preview). Held-out
        faces where there are enough; the last column shows a face with a hand over it where the set has one."""
        def pick(data):
            held = len(data.holdout_images) >= PREVIEW_FACES
            images, hands = (data.holdout_images, data.holdout_hands) if held else (data.images, data.hands)
            chosen = [(images[i], hands.get(i)) for i in np.linspace(0, len(images) - 1, PREVIEW_FACES).astype(int)]
            if data.hands and not any(h for _, h in chosen):
                i = sorted(data.hands)[len(data.hands) // 2]
                chosen[-1] = (data.images[i], data.hands[i])
            faces = data.plain(np.stack([image for image, _ in chosen]))
            covered = [data.occlusion(h, data.centre_matrix()) for _, h in chosen]
            return torch.from_numpy(data.inputs(faces)).permute(0, 3, 1, 2).float().div(255).to(self.device), covered

        (inputs_a, covered_a), (inputs_b, covered_b) = pick(self.data_a), pick(self.data_b)
        return inputs_a, inputs_b, covered_a, covered_b

    def write_preview(self, faces) -> None:
        if not self.main:
            return
        grid = report.preview_grid(self.model, *faces)
        images.write_png(self.model_dir / store.PREVIEW, grid)
        if self.settings.timelapse:
            folder = self.model_dir / store.TIMELAPSE
            folder.mkdir(exist_ok=True)
            images.write_png(folder / f"{self.step:08d}.png", grid)

    def _move(self, batch):
        moved = {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
        return {key: value.contiguous(memory_format=torch.channels_last) if value.shape[1] == 3 else value
                for key, value in moved.items()}

    def losses(self, batch_a, batch_b):
        """Each side's loss, with that side's own KL term; and the mean absolute code of both sides."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            side_a, side_b = self.forward(batch_a["input"], batch_b["input"])
            code_l1 = sum(side.code.detach().float().abs().mean() for side in (side_a, side_b)) / 2
            return (side_loss(side_a, batch_a, self.train_config.loss),
                    side_loss(side_b, batch_b, self.train_config.loss), code_l1)

    def train_step(self, batch_a, batch_b, lr: float):
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_a, loss_b, code_l1 = self.losses(batch_a, batch_b)
        total = loss_a + loss_b
        if not torch.isfinite(total):
            return None
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            total.backward()
            self.optimizer.step()
        return float(loss_a.detach()), float(loss_b.detach()), float(code_l1)

    def _handle_signals(self):
        def request_stop(signum, _frame):
            self.stop_reason = Stopped.INTERRUPTED if signum == signal.SIGINT else Stopped.TERMINATED

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                previous[sig] = signal.signal(sig, request_stop)
        return previous

    def run(self) -> TrainSummary:
        s = self.settings
        s.require_budget()
        summary = TrainSummary(start_step=self.step, step=self.step)
        if s.iterations is not None and self.step >= s.iterations:
            summary.stopped = Stopped.ALREADY_DONE
            return summary
        stream = PairStream(self.data_a, self.data_b, self.train_config.batch_size, self.train_config.augment,
                            s.seed, self.rank, self.world, self.step)
        with torch.random.fork_rng(devices=[]):  # the DataLoader draws a seed from it: keep resume exact
            batches = loader(stream, default_workers(self.device) if s.data_workers is None else s.data_workers)
        preview_faces = self._preview_batches()
        self.loss_log = report.LossLog(self.model_dir, enabled=self.main, upto=self.step)
        previous_handlers = self._handle_signals()
        started = last_save = time.perf_counter()
        total = s.iterations - self.step if s.iterations else None
        bar = tqdm(total=total, desc="train", unit="it", disable=not (self.progress and self.main), leave=False)
        recent = []
        self.model.train()
        try:
            while True:
                elapsed = time.perf_counter() - started
                if s.iterations is not None and self.step >= s.iterations:
                    break
                if s.minutes is not None and elapsed >= s.minutes * 60:
                    summary.stopped = Stopped.TIME_BUDGET
                    break
                if self.stop_reason:
                    summary.stopped = self.stop_reason
                    break
                progress = self.step / s.iterations if s.iterations else elapsed / (s.minutes * 60)
                batch_a, batch_b = (self._move(b) for b in next(batches))
                losses = self.train_step(batch_a, batch_b, self.lr_at(self.step, progress))
                if losses is None:
                    summary.stopped = Stopped.FAILED
                    raise FaceswapError(f"loss became NaN/inf at step {self.step}; training stopped and the last "
                                        f"good checkpoint (step {self.config.get('step', 0)}) was kept; try a "
                                        "lower --lr or --precision fp32")
                self.step += 1
                summary.examples += 2 * self.train_config.batch_size * self.world
                if self.main and total and self.step - summary.start_step == ETA_AFTER:  # past the warm-up steps
                    rate = ETA_AFTER / (time.perf_counter() - started)
                    log.info("train: %d steps to go, about %.0f min at this machine's %.1f steps/s",
                             s.iterations - self.step, (s.iterations - self.step) / rate / 60, rate)
                recent.append(losses)
                summary.loss_a, summary.loss_b = losses[:2]
                bar.update(1)
                if self.step % 10 == 0 or self.step == 1:
                    rate = summary.examples / max(1e-9, time.perf_counter() - started)
                    mean_a, mean_b, code_l1 = np.mean(recent, axis=0)
                    recent = []
                    bar.set_postfix(loss_a=f"{mean_a:.4f}", loss_b=f"{mean_b:.4f}", egs=f"{rate:.1f}", refresh=False)
                    self.loss_log.add(step=self.step, loss_a=mean_a, loss_b=mean_b, code_l1=code_l1,
                                      lr=self.optimizer.param_groups[0]["lr"],
                              examples_per_s=rate, elapsed_s=time.perf_counter() - started)
                if self.step % s.preview_every == 0:
                    self.write_preview(preview_faces)
                    self.loss_log.flush(self.model_dir)
                if self.step % s.save_every == 0 or time.perf_counter() - last_save > s.save_minutes * 60:
                    self.save()
                    last_save = time.perf_counter()
        finally:
            bar.close()
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            summary.step = self.step
            summary.seconds = time.perf_counter() - started
            if summary.stopped is not Stopped.FAILED and self.step > summary.start_step:
                if self.config.get("step") != self.step:  # not saved at this step yet (a second save would
                    self.save()                           # make backup/ a copy of the current state)
                if self.step % s.preview_every:
                    self.write_preview(preview_faces)
                self.loss_log.flush(self.model_dir)
                if s.timelapse and self.main:
                    report.timelapse(self.model_dir / store.TIMELAPSE, self.model_dir / store.TIMELAPSE_VIDEO)
        return summary


def pretrain(facesets: list, base_dir, settings: TrainSettings | None = None, progress: bool = True) -> TrainSummary:
    """Pretrain a base: the shared encoder and one generic decoder, a denoising autoencoder over any face sets."""
    settings = settings or TrainSettings()
    if settings.pretrained:
        raise FaceswapError("pretrain starts from scratch or resumes its own base; --from is for train")
    if not facesets:
        raise FaceswapError("pretrain needs at least one face set")
    return train(list(facesets), None, base_dir, settings, progress, generic=True)


def train(faceset_a, faceset_b, model_dir, settings: TrainSettings | None = None, progress: bool = True,
          generic: bool = False) -> TrainSummary:
    settings = settings or TrainSettings()
    settings.require_budget()
    model_dir = Path(model_dir)
    sources = list(faceset_a) if generic else [faceset_a, faceset_b]
    rank, world, _ = distributed()
    if settings.workers not in (1, world):
        raise FaceswapError(f"workers {settings.workers}: that many training processes are asked for and {world} "
                            f"run: use run --ray (Ray Train), or train under torchrun --nproc_per_node "
                            f"{settings.workers}")
    outputs.claim(model_dir, "model", [*sources, settings.pretrained])
    created = not model_dir.exists()
    with atomic.exclusive(model_dir, "model folder") if rank == 0 else contextlib.nullcontext():
        try:
            trainer = Trainer(faceset_a, faceset_b, model_dir, settings, progress, generic)
        except BaseException:
            if created:  # a run that could not start leaves no empty model folder behind
                atomic.discard(model_dir)
            raise
        try:
            return trainer.run()
        finally:
            if trainer.world > 1:
                import torch.distributed as dist

                dist.barrier()
                dist.destroy_process_group()
