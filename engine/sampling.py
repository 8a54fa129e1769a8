"""The denoising loop, written once for every model family.

The loop owns time: it asks the sampler (:mod:`engine.samplers`) for the timesteps, calls the family's network
(:meth:`~engine.families.base.Family.predict`), applies classifier-free guidance and steps. It knows no U-Net
or transformer. Owning it gives the model's estimate of the final image (x0) at every step for previews, a
cancel that stops within one step and skips the VAE decode, and one place for speed work.

The schedule stays on the host: the scheduler's tensors live on the CPU, σ and ᾱ are read as host floats, and
the timesteps go to the device once per image, so queuing a step never waits for the GPU. The GPU fast path
only supplies a compiled ``denoiser`` (and its own preview pipe, in the runtime); the arithmetic is the same.

Image editing enters the same loop through a :class:`Pass`: img2img starts at the step where ``strength`` of the
schedule is left, from the source latents noised with the seed's noise by the sampler's own ``add_noise`` (or
``scale_noise`` for flow matching), so every sampler works; inpainting replaces the known region after every
step by the source noised to the level the latents are at (or feeds an inpainting U-Net's extra input channels).

Runs on the engine's worker thread. Determinism: the initial noise (and a stochastic sampler's noise) comes
from CPU generators seeded with the image's seed, so the same request on the same device and dtype gives the
same pixels.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable

from . import samplers
from .families.base import Conditioning, Prediction
from .forward import img2img_start
from .loader import LoadedModel
from .request import GenerationRequest


class Interrupted(Exception):
    """Raised inside the loop when the job was cancelled; nothing after it (decode, save) runs."""


@dataclass(frozen=True)
class NoiseLevel:
    """Where the latent of a step sits, as host floats: ``x = signal·x0 + noise·ε``, and ``norm`` =
    √(signal² + noise²), the standard deviation of ``x`` for a unit-variance ``x0``."""

    signal: float
    noise: float
    norm: float

    @classmethod
    def alpha(cls, alpha_bar: float) -> "NoiseLevel":
        """Variance-preserving schedulers: x_t = √ᾱ·x0 + √(1−ᾱ)·ε (norm 1 by construction)."""
        return cls(math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar), 1.0)

    @classmethod
    def sigma(cls, sigma: float) -> "NoiseLevel":
        """k-diffusion style samplers (Euler, Heun…): x = x0 + σ·ε."""
        return cls(1.0, sigma, math.sqrt(sigma * sigma + 1.0))

    @classmethod
    def flow(cls, sigma: float) -> "NoiseLevel":
        """Flow matching (rectified flow): x_t = (1−σ)·x0 + σ·ε."""
        return cls(1.0 - sigma, sigma, math.sqrt((1.0 - sigma) ** 2 + sigma * sigma))


def predicted_x0(prediction: Prediction, x, out, level: NoiseLevel):
    """The model's estimate of the clean latent from its output ``out`` at latent ``x`` (tensors, float32).

    ε: x0 = (x − noise·ε̂)/signal (√ᾱ form: (x − √(1−ᾱ)ε̂)/√ᾱ; σ form: x − σε̂).
    v: with x/norm = α·x0 + σ'·ε, α = signal/norm, σ' = noise/norm and v = α·ε − σ'·x0, x0 = α·x/norm − σ'·v̂
    (√ᾱ·x − √(1−ᾱ)·v̂ for variance-preserving latents).
    flow: v = ε − x0 and x = (1−σ)·x0 + σ·ε give x0 = x − σ·v̂.
    """
    if prediction == "epsilon":
        return (x - level.noise * out) / level.signal
    if prediction == "v_prediction":
        return x * level.signal / level.norm**2 - out * level.noise / level.norm
    if prediction == "flow":
        return x - level.noise * out
    raise ValueError(f"unknown prediction kind {prediction!r}")


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


def _views(latents, out, level: NoiseLevel, prediction: Prediction) -> Callable[[], tuple[Any, Any]]:
    def views():
        x = latents.float()
        return predicted_x0(prediction, x, out.float(), level), (x if level.norm == 1.0 else x / level.norm)

    return views


@dataclass(frozen=True, eq=False)
class Pass:
    """One run of the loop for one image: text-to-image over the whole schedule unless editing fills the rest.

    ``source``: clean model-space latents to start from when ``strength`` < 1 (and to keep, with ``keep``).
    ``keep``: latent-resolution mask (1 = repaint, shaped to multiply the latents); after every step the rest
    is replaced by ``source`` noised to the current level, and by ``source`` itself after the last step.
    ``extra``: an inpainting U-Net's extra input channels (mask, masked-picture latents), batch of one,
    joined to the latents after the sampler scales them. ``before_model(i, n)`` is told before each of the
    ``n`` network calls (control windows). Progress reports ``step_offset`` + the steps done, out of
    ``step_total`` (default: the steps this pass runs).
    """

    height: int
    width: int
    steps: int
    strength: float = 1.0
    source: Any = None
    keep: Any = None
    extra: Any = None
    before_model: Callable[[int, int], None] | None = None
    step_offset: int = 0
    step_total: int | None = None

    @classmethod
    def of(cls, request: GenerationRequest) -> "Pass":
        return cls(request.height, request.width, request.steps)

    @property
    def runs(self) -> int:
        """Steps this pass runs: ⌈strength · steps⌉ (all of them without a source)."""
        return img2img_start(self.strength, self.steps)[0] if self.source is not None else self.steps


def add_noise(scheduler, clean, noise, timestep):
    """``clean`` noised to the level of ``timestep`` (a 1-element tensor) the way the sampler holds its latents."""
    if hasattr(scheduler, "scale_noise"):  # flow matching
        return scheduler.scale_noise(clean, timestep, noise)
    return scheduler.add_noise(clean, noise, timestep)


def noise_level(scheduler, sampler: samplers.Sampler, prediction: Prediction, t, index: int) -> NoiseLevel:
    """The current step's :class:`NoiseLevel`, read before ``scheduler.step`` advances it (host floats only)."""
    if prediction == "flow" or sampler.sigma_space:
        position = scheduler.step_index if getattr(scheduler, "step_index", None) is not None else index
        sigma = float(scheduler.sigmas[position])
        return NoiseLevel.flow(sigma) if prediction == "flow" else NoiseLevel.sigma(sigma)
    return NoiseLevel.alpha(float(scheduler.alphas_cumprod[int(t)]))


def denoise(
    model: LoadedModel,
    request: GenerationRequest,
    cond: Conditioning,
    seed: int,
    on_step: Callable[[StepState], None],
    should_stop: Callable[[], bool],
    denoiser: Callable[..., Any] | None = None,
    plan: Pass | None = None,
    on_guidance: Callable[..., None] | None = None,
):
    """Run the reverse chain for one image and return the final latents (model space, x0 at the end).

    ``plan`` says what to run (default: text-to-image at the request's size and steps). ``denoiser`` replaces
    the family's network for the forward pass (the GPU fast path passes a compiled one, control models a
    wrapper). ``on_guidance(step, total, latents, uncond, cond, level)`` sees both halves of every guided
    network call before they are combined.
    """
    import torch

    plan = plan or Pass.of(request)
    family = model.family
    device = model.device.device
    sampler = samplers.get(request.sampler)
    scheduler = family.schedule(sampler, plan.steps, plan.height, plan.width)
    prediction = family.prediction
    runs = plan.runs
    if runs == 0:
        return plan.source
    noise = family.initial_noise(seed, plan.height, plan.width)
    timesteps = scheduler.timesteps
    if plan.source is None or runs == plan.steps:
        latents = noise * getattr(scheduler, "init_noise_sigma", 1.0)  # strength 1 is text-to-image's start
    else:
        begin = (plan.steps - runs) * getattr(scheduler, "order", 1)
        timesteps = timesteps[begin:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(begin)
        latents = add_noise(scheduler, plan.source, noise, timesteps[:1])
    # Noise-free samplers get no generator: a draw from a CPU generator would be a blocking copy to the GPU at
    # every step, and its value would be unused (same pixels either way).
    takes_generator = "generator" in inspect.signature(scheduler.step).parameters
    step_kwargs = {}
    if takes_generator and not sampler.noise_free:
        step_kwargs["generator"] = torch.Generator("cpu").manual_seed(seed)
    scale_input = getattr(scheduler, "scale_model_input", None)
    extra = None
    if plan.extra is not None:
        extra = torch.cat([plan.extra] * 2) if cond.cfg else plan.extra
    total = plan.step_total or runs
    calls = len(timesteps)
    done = 0

    with torch.inference_mode():
        # One upload per image; each step's timestep is its own 0-d tensor (the compiled network guards on it).
        device_t = [t.clone() for t in timesteps.to(device=device, dtype=torch.float32)]
        for i, t in enumerate(timesteps):
            if should_stop():
                raise Interrupted()
            model_in = torch.cat([latents] * 2) if cond.cfg else latents
            if scale_input is not None:
                model_in = scale_input(model_in, t)
            if extra is not None:
                model_in = torch.cat([model_in, extra.to(model_in.dtype)], dim=1)
            if plan.before_model is not None:
                plan.before_model(i, calls)
            out = family.predict(model_in, device_t[i], cond, denoiser)
            if cond.cfg:
                uncond, text = out.chunk(2)
                if on_guidance is not None:  # the Diffusion Lab's guidance probe (engine.replay.GuidanceProbe)
                    on_guidance(plan.step_offset + i * runs // calls + 1, total, latents, uncond, text,
                                noise_level(scheduler, sampler, prediction, t, i))
                out = uncond + request.cfg * (text - uncond)

            # Read before stepping (scheduler.step advances its index); x0 itself is computed lazily.
            views = _views(latents, out, noise_level(scheduler, sampler, prediction, t, i), prediction)
            latents = scheduler.step(out, t, latents, return_dict=False, **step_kwargs)[0]
            if plan.keep is not None:
                known = plan.source if i == calls - 1 else add_noise(scheduler, plan.source, noise, timesteps[i + 1:i + 2])
                latents = known * (1 - plan.keep) + latents * plan.keep
            # Second-order samplers (Heun) evaluate the model about twice per step: report whole steps only.
            completed = (i + 1) * runs // calls
            if completed > done:
                done = completed
                on_step(StepState(plan.step_offset + done, total, latents, views))
    return latents
