"""The forward process of a model's noise schedule: how an image dissolves into noise over training time t.

For the DDPM family (SD 1.x/2.x, SDXL) ``x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε`` with ``ᾱ_t = ∏(1−β_s)``; for flow matching
(SD3, Flux) ``x_t = (1−σ_t)·x_0 + σ_t·ε``. :class:`ForwardSchedule` holds, per t, the signal and noise
coefficients, β_t, ᾱ_t and the signal-to-noise ratio, computed from the model's scheduler configuration the way
diffusers computes them, and noises a latent with a fixed ε seed. Also says where img2img at a given strength
starts. numpy only: safe on any thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True, eq=False)
class ForwardSchedule:
    kind: str  # "ddpm" or "flow"
    signal: np.ndarray  # coefficient of x0 at t = 0 … T−1
    noise: np.ndarray  # coefficient of ε
    betas: np.ndarray | None  # DDPM only

    @property
    def steps(self) -> int:
        return len(self.signal)

    @property
    def alphas_cumprod(self) -> np.ndarray:
        """ᾱ_t (for flow matching, the squared signal coefficient, which plays the same role in the plots)."""
        return self.signal**2

    @property
    def snr(self) -> np.ndarray:
        return self.signal**2 / np.maximum(self.noise**2, 1e-20)

    def noised(self, x0: np.ndarray, t: int, seed: int = 0) -> np.ndarray:
        """``x_t`` of ``x0`` (any shape, float) at training step ``t``, with ε drawn from ``seed``."""
        if not 0 <= t < self.steps:
            raise ValueError(f"t must be from 0 to {self.steps - 1}")
        eps = np.random.default_rng(seed).standard_normal(x0.shape).astype(np.float32)
        return (self.signal[t] * x0 + self.noise[t] * eps).astype(np.float32)


def _betas(config: Mapping[str, Any], n: int) -> np.ndarray:
    start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    kind = config.get("beta_schedule", "linear")
    if kind == "linear":
        return np.linspace(start, end, n, dtype=np.float64)
    if kind == "scaled_linear":
        return np.linspace(start**0.5, end**0.5, n, dtype=np.float64) ** 2
    if kind == "squaredcos_cap_v2":
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        return np.array([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)])
    raise ValueError(f"unknown beta schedule {kind!r}")


def _rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """β rescaled so that √ᾱ_T = 0 while √ᾱ_0 is kept (Lin et al. 2024, algorithm 1; what diffusers does for
    ``rescale_betas_zero_snr``): √ᾱ is shifted down by its last value and stretched back to its first."""
    root = np.sqrt(np.cumprod(1.0 - betas))
    first, last = root[0], root[-1]
    abar = ((root - last) * first / (first - last)) ** 2
    return 1.0 - np.concatenate([abar[:1], abar[1:] / abar[:-1]])


def schedule_from_config(config: Mapping[str, Any]) -> ForwardSchedule:
    """The forward process of a diffusers scheduler configuration (a model's ``scheduler_config.json``)."""
    n = int(config.get("num_train_timesteps", 1000))
    if "FlowMatch" in str(config.get("_class_name", "")):
        shift = float(config.get("shift", 1.0))
        sigmas = np.linspace(1.0, n, n, dtype=np.float64) / n  # t = 0 … T−1 ↦ σ = 1/T … 1
        sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
        return ForwardSchedule("flow", 1.0 - sigmas, sigmas, None)
    betas = _betas(config, n)
    if config.get("rescale_betas_zero_snr"):
        betas = _rescale_zero_terminal_snr(betas)
    alphas_cumprod = np.cumprod(1.0 - betas)
    return ForwardSchedule("ddpm", np.sqrt(alphas_cumprod), np.sqrt(1.0 - alphas_cumprod), betas)


def img2img_start(strength: float, steps: int) -> tuple[int, float]:
    """Where img2img at ``strength`` starts: the number of steps it runs (⌈strength·steps⌉) and the fraction of
    training time it starts from (1.0 = pure noise)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError("strength must be from 0 to 1")
    run = min(steps, math.ceil(strength * steps - 1e-9))
    return run, run / steps if steps else 0.0


def img2img_start_t(config: Mapping[str, Any], strength: float, steps: int) -> int | None:
    """The training step img2img at ``strength`` with ``steps`` steps starts from: the first timestep the sampler
    keeps after skipping ``steps − ⌈strength·steps⌉``, under the model's timestep spacing (``leading``,
    ``trailing`` or ``linspace``, as diffusers spaces them). For flow matching, the same fraction of training
    time. None at strength 0 (nothing is redone)."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    run, fraction = img2img_start(strength, steps)
    if run == 0:
        return None
    n = int(config.get("num_train_timesteps", 1000))
    if "FlowMatch" in str(config.get("_class_name", "")):
        return min(n - 1, max(0, round(fraction * n) - 1))
    spacing = config.get("timestep_spacing", "leading")
    if spacing == "linspace":
        timesteps = np.linspace(0, n - 1, steps).round()[::-1]
    elif spacing == "trailing":
        timesteps = np.round(np.arange(n, 0, -n / steps)) - 1
    else:
        timesteps = (np.arange(0, steps) * (n // steps)).round()[::-1] + int(config.get("steps_offset", 0))
    return int(min(n - 1, max(0, timesteps[steps - run])))
