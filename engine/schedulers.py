"""AUTOMATIC1111 sampler names → diffusers schedulers, built from the model's own scheduler config.

Also says how to read the model's current estimate of the final image (x0) off a step, because schedulers
keep their latents in one of two spaces: k-diffusion style ones (Euler, Euler a, Heun) hold x = x0 + σ·ε,
the others hold x_t = √ᾱ·x0 + √(1−ᾱ)·ε.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .request import SCHEDULERS


@dataclass(frozen=True)
class SchedulerSpec:
    class_name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    sigma_space: bool = False


SPECS: dict[str, SchedulerSpec] = {
    "Euler": SchedulerSpec("EulerDiscreteScheduler", sigma_space=True),
    "Euler a": SchedulerSpec("EulerAncestralDiscreteScheduler", sigma_space=True),
    "Heun": SchedulerSpec("HeunDiscreteScheduler", sigma_space=True),
    "DPM++ 2M": SchedulerSpec("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M Karras": SchedulerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}
    ),
    "DPM++ 2M SDE Karras": SchedulerSpec(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DDIM": SchedulerSpec("DDIMScheduler", {"clip_sample": False}),
    "DDPM": SchedulerSpec("DDPMScheduler", {"clip_sample": False}),
    "UniPC": SchedulerSpec("UniPCMultistepScheduler"),
    "LCM": SchedulerSpec("LCMScheduler", {"clip_sample": False}),
}
assert tuple(SPECS) == SCHEDULERS

# Keys that only make sense for the scheduler the model shipped with and break others.
_DROP = {"_class_name", "_diffusers_version", "skip_prk_steps", "set_alpha_to_one", "algorithm_type", "solver_order",
         "use_karras_sigmas", "clip_sample", "solver_type", "lower_order_final", "thresholding"}


def make_scheduler(name: str, base_config: dict[str, Any]):
    """A fresh scheduler (schedulers hold per-run state, so every image gets its own)."""
    import diffusers

    spec = SPECS[name]
    cls = getattr(diffusers, spec.class_name)
    config = {k: v for k, v in dict(base_config).items() if k not in _DROP}
    config.update(spec.overrides)
    return cls.from_config(config)
