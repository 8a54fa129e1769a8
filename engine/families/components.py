"""Building blocks families share: loading a diffusers pipeline offline, padded token ids, and the VAE decode
with its half-precision overflow redo. Plain functions (no base-class tower): each family calls what it uses.

Worker thread only; torch is imported inside the functions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .base import LatentFormat

log = logging.getLogger(__name__)

OVERFLOW_NOTE = "The VAE overflowed in half precision; the image was decoded in full precision."


def load_pipeline(pipeline_class, source: Path, device, options: Mapping[str, Any], config: Path | None = None):
    """A diffusers pipeline from a folder (``config`` None) or a single file with its local ``config`` folder,
    in the device's dtype, from local files only. Weights are left on the CPU; the family moves what it keeps."""
    if config is None:
        return pipeline_class.from_pretrained(
            str(source), dtype=device.dtype, local_files_only=True, use_safetensors=True, **options
        )
    # A local folder as ``config`` is read directly; a repository name could make diffusers go online.
    return pipeline_class.from_single_file(
        str(source), config=str(config), dtype=device.dtype, local_files_only=True, **options
    )


def clip_input_ids(tokenizer, text: str, max_length: int | None = None):
    """Token ids padded (and cut) to ``max_length`` (default: the tokenizer's limit, 77 for CLIP)."""
    length = max_length or tokenizer.model_max_length
    tokens = tokenizer(text, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    untruncated = tokenizer(text, padding="longest", return_tensors="pt").input_ids
    if untruncated.shape[-1] > tokens.input_ids.shape[-1]:
        log.info("the prompt is longer than %d tokens; the rest is ignored", length)
    return tokens


def move(modules: Mapping[str, Any], device: str) -> None:
    for module in modules.values():
        if module is not None:
            module.to(device)


def vae_encode(vae, rgb: np.ndarray, fmt: LatentFormat, device: str, dtype):
    """A uint8 H×W×3 picture → model-space latents (the mean of the VAE's posterior, so the same picture always
    gives the same latents), on ``device`` in ``dtype``. Half precision that overflows is redone in float32."""
    import torch

    pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    with torch.inference_mode():
        if vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
            vae.to(torch.float32)
        latents = vae.encode(pixels.to(device, vae.dtype)).latent_dist.mode()
        if not torch.isfinite(latents).all() and vae.dtype != torch.float32:
            vae.to(torch.float32)
            latents = vae.encode(pixels.to(device, torch.float32)).latent_dist.mode()
        if not torch.isfinite(latents).all():
            raise ValueError("The VAE could not encode this picture (NaN values) even in full precision.")
        if fmt.shift:
            latents = latents - fmt.shift
        return (latents * fmt.scaling_factor).to(dtype)


def vae_decode(vae, latents, fmt: LatentFormat, half_first: bool = False) -> tuple[np.ndarray, tuple[str, ...]]:
    """Model-space latents → a read-only uint8 H×W×3 image (first of the batch).

    Redoes the decode in float32 when half precision overflows (NaN → a black square), and keeps the VAE in
    float32 from then on. ``half_first`` (the GPU fast path) tries half precision even for a VAE whose config
    asks for an upcast, as diffusers' SD pipeline does, and relies on that overflow check."""
    import torch

    notes: list[str] = []
    scaled = latents / fmt.scaling_factor
    if fmt.shift:
        scaled = scaled + fmt.shift
    with torch.inference_mode():
        if vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False) and not half_first:
            vae.to(torch.float32)
        image = vae.decode(scaled.to(vae.dtype), return_dict=False)[0]
        if not torch.isfinite(image).all() and vae.dtype != torch.float32:
            vae.to(torch.float32)
            image = vae.decode(scaled.float(), return_dict=False)[0]
            notes.append(OVERFLOW_NOTE)
        if not torch.isfinite(image).all():
            raise ValueError("The model produced an invalid image (NaN values) even in full precision.")
        out = ((image[0].float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    out = np.ascontiguousarray(out)
    out.setflags(write=False)
    return out, tuple(notes)
