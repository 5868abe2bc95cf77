"""Which device and which reduced precision pay off here."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """bf16 pays on CPUs with AMX or AVX512-BF16 (2-3x here); elsewhere it is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast_dtype(choice: str, device: torch.device, model_size: int = 128) -> torch.dtype | None:
    """The autocast dtype for `choice` (auto | bf16 | fp16 | off/fp32) on `device`; None means fp32.

    auto on a GPU: reduced precision from 128 px models up. The 64 px models leave an H100 waiting on kernel
    launches, where autocast's extra casts cost more than they save (measured: lite 1,001 EGs/s fp32 against
    761 bf16; original 1,620 against 1,484); fp32 matmuls there use TF32 (see `use_tf32`)."""
    if choice in ("off", "fp32"):
        return None
    if choice == "fp16":
        return torch.float16
    if choice == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        if model_size < 128:
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def use_tf32() -> None:
    """Let fp32 matrix products and convolutions on NVIDIA GPUs run as TF32 (Ampere and newer)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def share_cpu_with_video() -> None:
    """Once per process, before converting on the CPU (never inside library code that may run in threads):
    torch gets half the cores, since decoding, face finding and encoding run beside the model and threads
    that outnumber the cores spin against each other."""
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
