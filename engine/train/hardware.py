"""Where and how the trainer computes: the seeds, the device, and mixed precision where the hardware does it
natively (CUDA; CPUs with AVX512-BF16 or AMX). Called on the training thread; torch is imported inside."""

from __future__ import annotations

import random


def seed_everything(seed: int):
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_for(device, precision: str = "auto"):
    """A factory of autocast contexts for the training step: mixed precision where the hardware does it natively,
    plain fp32 otherwise or when ``precision`` is "fp32". Losses and optimiser state stay fp32 either way."""
    import contextlib

    import torch

    if precision not in ("auto", "fp32"):
        raise ValueError(f"precision must be auto or fp32, not {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return lambda: torch.autocast("cuda", dtype=dtype)
    if device.type == "cpu" and _cpu_has_bf16():
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext


def _cpu_has_bf16() -> bool:
    import torch

    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((probe and probe()) or (amx and amx()))
