"""Which device and which reduced precision pay off here."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch

from faceswap import atomic

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """bf16 pays on CPUs with AMX or AVX512-BF16; elsewhere it is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


PRECISIONS = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}  # autocast dtype -> setting


def autocast_dtype(choice: str, device: torch.device, model_size: int = 128) -> torch.dtype | None:
    """The autocast dtype for `choice` (auto | bf16 | fp16 | off/fp32) on `device`; None means fp32. auto on a
    GPU: reduced precision from 128 px models up; smaller ones leave the GPU waiting on kernel launches, where
    autocast's extra casts cost more than they save (they use TF32, `use_tf32`)."""
    if choice in ("off", "fp32", "fp16", "bf16"):
        return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(choice)
    if device.type == "cuda":
        return None if model_size < 128 else torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def amp_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "faceswap" / "amp.json"


def measured_cpu_amp(architecture: str, step: Callable[[torch.dtype | None], None], repeats: int = 3):
    """bf16 or fp32 (None) for training `architecture` on this CPU, by timing `step(dtype)` both ways once, cached
    per CPU model, torch and architecture: a CPU flag does not tell which way a model goes."""
    key = f"{_cpu_name()} | {os.cpu_count()} cores | torch {torch.__version__} | {architecture}"
    path = amp_cache()
    try:
        cache = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        seconds = {}
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            step(dtype)  # warm-up: first calls pick kernels
            taken = []
            for _ in range(repeats):
                started = time.perf_counter()
                step(dtype)
                taken.append(time.perf_counter() - started)
                if name == "bf16" and sum(taken) >= 0.9 * repeats * seconds["fp32"]:
                    break  # bf16 can no longer win (where it is emulated a step takes 10x): the rest is wasted
            seconds[name] = sum(taken) / len(taken)
        choice = "bf16" if seconds["bf16"] < 0.9 * seconds["fp32"] else "fp32"
        cache[key] = {"choice": choice, "fp32_s": round(seconds["fp32"], 4), "bf16_s": round(seconds["bf16"], 4)}
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_json(path, cache)
        log.info("--precision auto: a %s step takes %.0f ms in bf16 and %.0f ms in fp32 on this CPU: %s (kept in %s)",
                 architecture, 1000 * seconds["bf16"], 1000 * seconds["fp32"], choice, path)
    return torch.bfloat16 if cache[key]["choice"] == "bf16" else None


def use_tf32() -> None:
    """Let fp32 matrix products and convolutions on NVIDIA GPUs run as TF32 (Ampere and newer)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def encoder_threads() -> int:
    """Threads for convert's video encoder: one on a machine of two cores, which decoding, face finding and
    the model fill already (x264's frame threads only wait there); elsewhere the encoder's own choice (0)."""
    return 1 if (os.cpu_count() or 2) <= 2 else 0


def share_cpu_with_video() -> None:
    """Once per process, before converting (never in library code): on the CPU torch gets half the cores, as
    decoding, face finding and encoding run beside it and threads outnumbering the cores spin; OpenCV gets one
    thread, as its own threads on a face's small images only wait on ours."""
    import cv2

    cv2.setNumThreads(1)
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
