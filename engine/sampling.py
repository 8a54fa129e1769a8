"""The denoising loop, owned by Darkroom rather than wrapped, for the SD 1.x/2.x and SDXL families.

Owning the loop gives the model's estimate of the final image (x0) at every step for previews, a cancel that
stops within one step and skips the VAE decode, and one place for speed work. Runs on the engine's worker
thread. Determinism: the initial noise comes from a CPU generator seeded with the image's seed, so the same
request on the same device and dtype gives the same pixels.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .loader import LoadedModel
from .request import GenerationRequest
from .schedulers import SPECS, make_scheduler


#: Samplers whose step draws no noise (Euler's draw is unused without churn): on the fast path they get no CPU
#: generator, whose draw would be a blocking copy to the GPU at every step. Same pixels either way.
NOISE_FREE_SAMPLERS = frozenset({"Euler", "Heun", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC"})


class Interrupted(Exception):
    """Raised inside the loop when the job was cancelled; nothing after it (decode, save) runs."""


@dataclass
class Conditioning:
    """Prompt embeddings (uncond first when CFG is on), reused for every image of a batch."""

    embeds: Any
    added: dict[str, Any] | None  # SDXL: text_embeds, time_ids
    cfg: bool


class StepState:
    """One finished step. ``x0`` (the model's current estimate of the clean latent) and ``xt_view`` (the noisy
    latent normalised to unit variance) are computed only when a preview asks for them, so throttled or
    switched-off previews add no work to the loop."""

    def __init__(self, step: int, total: int, latents: Any, views: Callable[[], tuple[Any, Any]]):
        self.step = step  # completed steps, 1-based
        self.total = total
        self.latents = latents  # x_t after this step, in the scheduler's space
        self._views = views
        self._cached: tuple[Any, Any] | None = None

    def _get(self) -> tuple[Any, Any]:
        if self._cached is None:
            self._cached = self._views()
        return self._cached

    @property
    def x0(self):
        return self._get()[0]

    @property
    def xt_view(self):
        return self._get()[1]


def encode(model: LoadedModel, request: GenerationRequest, height: int, width: int) -> Conditioning:
    import torch

    pipe = model.pipe
    device = model.device.device
    cfg = request.cfg > 1.0
    with torch.inference_mode():
        if model.family == "sdxl":
            pe, ne, pooled, npooled = pipe.encode_prompt(
                prompt=request.prompt,
                device=device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=cfg,
                negative_prompt=request.negative_prompt or None,
            )
            proj = pipe.text_encoder_2.config.projection_dim if pipe.text_encoder_2 is not None else pooled.shape[-1]
            time_ids = pipe._get_add_time_ids(
                (height, width), (0, 0), (height, width), dtype=pe.dtype, text_encoder_projection_dim=proj
            ).to(device)
            if cfg:
                pe, pooled, time_ids = torch.cat([ne, pe]), torch.cat([npooled, pooled]), torch.cat([time_ids, time_ids])
            return Conditioning(pe, {"text_embeds": pooled, "time_ids": time_ids}, cfg)
        pe, ne = pipe.encode_prompt(request.prompt, device, 1, cfg, request.negative_prompt or None)
        return Conditioning(torch.cat([ne, pe]) if cfg else pe, None, cfg)


def initial_noise(model: LoadedModel, seed: int, height: int, width: int):
    import torch

    pipe = model.pipe
    scale = pipe.vae_scale_factor
    shape = (1, pipe.unet.config.in_channels, height // scale, width // scale)
    generator = torch.Generator("cpu").manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(model.device.device, model.device.dtype)


def denoise(
    model: LoadedModel,
    request: GenerationRequest,
    cond: Conditioning,
    seed: int,
    on_step: Callable[[StepState], None],
    should_stop: Callable[[], bool],
    unet: Callable[..., Any] | None = None,
    fast: bool = False,
):
    """Run the reverse chain for one image and return the final latents (scaled, in x0 space).

    ``unet`` replaces ``pipe.unet`` for the forward pass (the GPU fast path passes a compiled one).
    ``fast`` (the GPU fast path) keeps the scheduler's timesteps and sigmas on the CPU and feeds the U-Net
    timesteps uploaded once, as float32, so queuing a step never waits for the GPU.
    """
    import torch

    pipe = model.pipe
    device = model.device.device
    spec = SPECS[request.scheduler]
    scheduler = make_scheduler(request.scheduler, pipe.scheduler.config)
    scheduler.set_timesteps(request.steps, device="cpu" if fast else device)
    prediction = scheduler.config.get("prediction_type", "epsilon")
    generator = torch.Generator("cpu").manual_seed(seed)
    latents = initial_noise(model, seed, request.height, request.width) * scheduler.init_noise_sigma
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    if fast and request.scheduler in NOISE_FREE_SAMPLERS:
        step_kwargs = {}
    forward = unet or pipe.unet
    alphas = scheduler.alphas_cumprod.to(device="cpu" if fast else device, dtype=torch.float32)
    timesteps = scheduler.timesteps
    done = 0

    with torch.inference_mode():
        unet_t = [t.clone() for t in timesteps.to(device=device, dtype=torch.float32)] if fast else None
        for i, t in enumerate(timesteps):
            if should_stop():
                raise Interrupted()
            model_in = torch.cat([latents] * 2) if cond.cfg else latents
            model_in = scheduler.scale_model_input(model_in, t)
            out = forward(
                model_in,
                unet_t[i] if fast else t,
                encoder_hidden_states=cond.embeds,
                added_cond_kwargs=cond.added,
                return_dict=False,
            )[0]
            if cond.cfg:
                uncond, text = out.chunk(2)
                out = uncond + request.cfg * (text - uncond)

            # Read before stepping (scheduler.step advances step_index); x0 itself is computed lazily.
            if spec.sigma_space:
                if fast:  # a host number: no copy to the GPU
                    sigma = float(scheduler.sigmas[scheduler.step_index])
                else:
                    sigma = scheduler.sigmas[scheduler.step_index].to(device=device, dtype=torch.float32)
                views = _sigma_views(latents, out, sigma, prediction)
            else:
                a = alphas[int(t)]
                if fast:
                    root_a, root_1a = math.sqrt(float(a)), math.sqrt(1.0 - float(a))
                else:
                    root_a, root_1a = a.sqrt(), (1 - a).sqrt()
                views = _alpha_views(latents, out, root_a, root_1a, prediction)

            latents = scheduler.step(out, t, latents, return_dict=False, **step_kwargs)[0]
            # Second-order samplers (Heun) evaluate the model about twice per step: report whole steps only.
            completed = (i + 1) * request.steps // len(timesteps)
            if completed > done:
                done = completed
                on_step(StepState(done, request.steps, latents, views))
    return latents


def _sigma_views(latents, out, sigma, prediction: str) -> Callable[[], tuple[Any, Any]]:
    """x0 and the unit-variance noisy latent for k-diffusion style samplers, where x = x0 + σ·ε."""

    def views():
        x, o = latents.float(), out.float()
        if prediction == "v_prediction":
            x0 = x / (sigma**2 + 1) - o * sigma / (sigma**2 + 1) ** 0.5
        else:
            x0 = x - sigma * o
        return x0, x / (sigma**2 + 1) ** 0.5

    return views


def _alpha_views(latents, out, root_a, root_1a, prediction: str) -> Callable[[], tuple[Any, Any]]:
    """x0 and the noisy latent for samplers holding x_t = √ᾱ·x0 + √(1−ᾱ)·ε."""

    def views():
        x, o = latents.float(), out.float()
        x0 = root_a * x - root_1a * o if prediction == "v_prediction" else (x - root_1a * o) / root_a
        return x0, x

    return views


def decode(model: LoadedModel, latents, half_first: bool = False) -> tuple[np.ndarray, tuple[str, ...]]:
    """Full VAE decode to a read-only uint8 H×W×3 image. Redoes the decode in float32 when half precision
    overflows (NaN → a black square), and keeps the VAE in float32 from then on. ``half_first`` (the GPU fast
    path) tries half precision even for a VAE whose config asks for an upcast, as diffusers' SD pipeline does,
    and relies on that overflow check."""
    import torch

    vae = model.pipe.vae
    notes: list[str] = []
    scaled = latents / vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None)
    if shift:
        scaled = scaled + shift
    with torch.inference_mode():
        if vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False) and not half_first:
            vae.to(torch.float32)
        image = vae.decode(scaled.to(vae.dtype), return_dict=False)[0]
        if not torch.isfinite(image).all() and vae.dtype != torch.float32:
            vae.to(torch.float32)
            image = vae.decode(scaled.float(), return_dict=False)[0]
            notes.append("The VAE overflowed in half precision; the image was decoded in full precision.")
        if not torch.isfinite(image).all():
            raise ValueError("The model produced an invalid image (NaN values) even in full precision.")
        out = ((image[0].float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    out = np.ascontiguousarray(out)
    out.setflags(write=False)
    return out, tuple(notes)
