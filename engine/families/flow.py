"""What the flow-matching families (SD3, Flux) share: their schedule's shift, the sampler table's flow forms,
and the half-precision choice their text encoders need.

Flow matching holds latents as ``x_t = (1−σ)·x0 + σ·ε`` and the network predicts the velocity ``ε − x0``.
A model's schedule is shifted towards high noise, σ' = shift·σ / (1 + (shift − 1)·σ): SD3 fixes the shift
(3.0); Flux derives it from the image's token count (``use_dynamic_shifting``), as diffusers' FluxPipeline does.
Worker thread only; torch and diffusers are imported inside the functions.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping

from .. import samplers
from ..devices import DeviceChoice

log = logging.getLogger(__name__)

#: diffusers' flow-matching scheduler classes a flow family's own scheduler config may name.
FLOW_SCHEDULERS = frozenset({"FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler",
                             "FlowMatchLCMScheduler"})


def calculate_shift(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096,
                    base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """The exponent μ of Flux's shift for an image of ``image_seq_len`` tokens: linear in the token count, from
    ``base_shift`` at ``base_seq_len`` to ``max_shift`` at ``max_seq_len`` (FluxPipeline's formula)."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * m + base_shift - m * base_seq_len


def image_shift(config: Mapping[str, Any], image_seq_len: int) -> float:
    """The schedule's shift for an image of ``image_seq_len`` tokens: e^μ when the config asks for dynamic
    shifting (diffusers' exponential time shift with μ is the same curve as a fixed shift of e^μ), else its own."""
    if config.get("use_dynamic_shifting"):
        mu = calculate_shift(image_seq_len, int(config.get("base_image_seq_len", 256)),
                             int(config.get("max_image_seq_len", 4096)), float(config.get("base_shift", 0.5)),
                             float(config.get("max_shift", 1.15)))
        return math.exp(mu)
    return float(config.get("shift", 1.0))


def flow_schedule(sampler: samplers.Sampler, config: Mapping[str, Any], steps: int, shift: float, title: str,
                  pipeline_sigmas: bool = False):
    """A fresh flow scheduler for ``sampler`` (its row of :data:`engine.samplers.FLOW_SAMPLERS`) with ``steps``
    timesteps set on the CPU. ``pipeline_sigmas``: start from σ = linspace(1, 1/steps, steps) before the shift,
    as FluxPipeline does, where the scheduler takes a σ list."""
    import numpy as np

    flow = samplers.for_flow(sampler.name)
    if flow.note:
        log.info(flow.note.format(title=title, name=sampler.name))
    scheduler = flow.make(config, shift)
    if pipeline_sigmas and flow.own_config:
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1.0 / steps, steps).tolist(), device="cpu")
    else:
        scheduler.set_timesteps(steps, device="cpu")
    return scheduler


def check_flow(config: Mapping[str, Any], title: str) -> None:
    """Refuse (ModelUnsupportedError) a model whose scheduler is not a flow-matching one."""
    from ..errors import ModelUnsupportedError

    name = config.get("_class_name", "")
    if name not in FLOW_SCHEDULERS:
        raise ModelUnsupportedError(f"This {title} model's scheduler {name or 'unknown'!r} is not flow matching, "
                                    "which Darkroom does not run for this family.")


def prefer_bfloat16(device: DeviceChoice) -> DeviceChoice:
    """bfloat16 instead of float16 on a CUDA device that has it: T5 and these transformers overflow float16
    (their activations pass 65,504), which gives black or noisy images."""
    if device.device == "cuda" and device.dtype_name == "float16":
        import torch

        if torch.cuda.is_bf16_supported():
            return DeviceChoice("cuda", "bfloat16")
    return device
