"""GPU memory modes: how much of a model stays in GPU memory while it runs.

- ``normal``: every part of the model lives on the GPU (the fastest).
- ``low`` (low VRAM): model CPU offload (each part moves to the GPU only while it runs, through accelerate's
  hooks as diffusers installs them), the VAE decodes large pictures in tiles and batches one picture at a time,
  and the T5 text encoder of SD3 and Flux, the largest part after the denoiser, runs on the CPU.
- ``auto``: ``low`` when the model's weights would take more than :data:`AUTO_LOW_SHARE` of the GPU's memory,
  ``normal`` otherwise.

Modes only matter on CUDA; elsewhere every mode runs as ``normal``. A CUDA out-of-memory error in ``normal``
mode makes the runtime redo the picture once in ``low`` mode (:meth:`engine.runtime.Runtime.run_job`).

Everything here runs on the engine's worker thread.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

MODES = ("auto", "normal", "low")
LABELS = {"auto": "Auto", "normal": "Normal", "low": "Low VRAM"}
#: auto picks low VRAM when the weights take more than this share of the GPU's memory: activations, the VAE
#: decode and other programs need the rest.
AUTO_LOW_SHARE = 0.7
#: Devices where parts of a model can wait in CPU memory: the ones with memory of their own.
OFFLOAD_DEVICES = ("cuda",)
OOM_NOTE = "The GPU ran out of memory, so this picture was made in low-VRAM mode (slower, same settings)."


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"memory mode must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def weights_bytes(path: Path) -> int:
    """Bytes of a model's weight files (a folder's ``.safetensors`` or a single file): what it needs on the GPU,
    give or take the dtype it is loaded in."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*.safetensors") if f.is_file())


def gpu_total_bytes() -> int | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.get_device_properties(0).total_memory)


def effective(mode: str, device: str, weights: int, gpu_total: int | None) -> str:
    """The mode a model runs in: ``mode`` resolved for ``device`` and a model of ``weights`` bytes on a GPU of
    ``gpu_total`` bytes (None: unknown)."""
    check_mode(mode)
    if device not in OFFLOAD_DEVICES:
        return "normal"
    if mode != "auto":
        return mode
    return "low" if gpu_total and weights > AUTO_LOW_SHARE * gpu_total else "normal"


def lower(mode: str) -> str | None:
    """The next mode down after an out-of-memory error, or None when there is none."""
    return "low" if mode == "normal" else None


def is_out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def apply(family, mode: str, device: str) -> None:
    """Put a loaded model's parts where ``mode`` wants them. ``normal`` is how families load; ``low`` installs
    offload hooks on the family's pipeline (its modules are the family's own), so each part comes to ``device``
    when it runs and goes back after, and moves the family's CPU text encoder (T5) to the CPU for good."""
    check_mode(mode)
    if mode != "low":
        return
    pipe = family.pipeline
    if pipe is None:
        return
    cpu_part = family.cpu_text_encoder
    pipe.enable_model_cpu_offload(device=device)
    if cpu_part is not None and getattr(pipe, cpu_part, None) is not None:
        _to_cpu(getattr(pipe, cpu_part))
    for vae in (getattr(pipe, "vae", None),):
        if vae is not None:
            vae.enable_tiling()
            vae.enable_slicing()
    log.info("%s runs in low-VRAM mode (model CPU offload, VAE tiling%s)", family.title,
             ", T5 on the CPU" if cpu_part else "")


def _to_cpu(module) -> None:
    """A module onto the CPU for good: its offload hook removed, in a dtype the CPU computes (bf16 stays, fp16
    becomes bf16: same memory, and CPUs have no fast fp16 matrix products)."""
    import torch
    from accelerate.hooks import remove_hook_from_module

    remove_hook_from_module(module, recurse=True)
    dtype = torch.bfloat16 if module.dtype == torch.float16 else module.dtype
    module.to("cpu", dtype)


def vram_in_use() -> int | None:
    """Bytes of GPU memory PyTorch holds now (a host-side counter: no synchronisation), or None off CUDA."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.memory_reserved())
