"""Forward-process jobs: a picture encoded by a model's VAE, noised to chosen training steps of that model's
schedule with a fixed ε, and decoded back to pixels, so people can watch the forward process the model was
trained to undo: ``x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε`` (flow matching: ``(1−σ_t)·x0 + σ_t·ε``).

A :class:`ForwardRequest` goes through :meth:`engine.engine.Engine.submit` like a generation and runs on the
engine's worker thread (the VAE lives there); it emits one :class:`~engine.events.ForwardFrame` per step asked,
then ``Finished`` (or ``Cancelled``/``Failed``). The clean latents of the last picture are kept, so dragging a
slider over t costs one noising and one VAE decode per position, not an encode.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DarkroomError, ErrorKind
from .events import Cancelled, Finished, ForwardFrame
from .fields import SEED_MAX, SIZE_MULTIPLE
from .forward import schedule_from_config

#: Most steps one job may ask for (a slider sends one at a time; an animation of the process a few dozen).
MAX_STEPS_PER_JOB = 1000


@dataclass(frozen=True, eq=False)
class ForwardRequest:
    """Noise ``image`` (uint8 H×W×3) or the picture at ``path`` to each training step of ``t`` under ``model``'s
    schedule, with ε drawn from ``seed``. The picture is scaled to fit the model's native size (``max_side``
    overrides the longest side), sides rounded to multiples of 8."""

    model: str
    t: tuple[int, ...]
    image: np.ndarray | None = field(default=None, repr=False)
    path: str | None = None
    seed: int = 0
    max_side: int = 0

    def __post_init__(self) -> None:
        if (self.image is None) == (self.path is None):
            raise ValueError("A forward-process request takes either an image or a path.")
        if self.image is not None:
            image = self.image
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError("The picture must be a uint8 H×W×3 array.")
            frozen = np.array(image, copy=True)
            frozen.setflags(write=False)
            object.__setattr__(self, "image", frozen)
        t = tuple(self.t)
        if not t or len(t) > MAX_STEPS_PER_JOB:
            raise ValueError(f"Ask for 1 to {MAX_STEPS_PER_JOB} steps.")
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 for v in t):
            raise ValueError("Training steps are whole numbers from 0.")
        object.__setattr__(self, "t", tuple(int(v) for v in t))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= SEED_MAX:
            raise ValueError(f"The noise seed must be a whole number from 0 to {SEED_MAX}.")
        if isinstance(self.max_side, bool) or not isinstance(self.max_side, int) or not 0 <= self.max_side <= 4096:
            raise ValueError("The size must be from 0 (the model's own) to 4096 pixels.")


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """``width``×``height`` scaled so the longest side is ``max_side``, sides rounded to multiples of 8."""
    scale = max_side / max(width, height)
    return (max(SIZE_MULTIPLE, SIZE_MULTIPLE * round(width * scale / SIZE_MULTIPLE)),
            max(SIZE_MULTIPLE, SIZE_MULTIPLE * round(height * scale / SIZE_MULTIPLE)))


def load_picture(request: ForwardRequest, native: tuple[int, int]) -> np.ndarray:
    """The request's picture at the size the VAE gets. Raises DarkroomError (unreadable file)."""
    from .images import read_image, resize_to

    rgb = request.image if request.image is not None else read_image(Path(request.path))[0].rgb
    width, height = fitted_size(rgb.shape[1], rgb.shape[0], request.max_side or max(native))
    return resize_to(rgb, width, height, "stretch")


class ForwardRunner:
    """Runs forward-process jobs on the engine's worker thread, keeping the clean latents of the last picture."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._latents: np.ndarray | None = None

    def run(self, runtime, job, emit) -> None:
        import torch

        request: ForwardRequest = job.request
        model = runtime.model_for(request.model)
        family = model.family
        config = dict(family.scheduler_config)
        schedule = schedule_from_config(config)
        if max(request.t) >= schedule.steps:
            raise DarkroomError(f"This model's schedule has training steps 0 to {schedule.steps - 1}.",
                                kind=ErrorKind.VALIDATION)
        x0 = self._clean_latents(request, model)
        done = 0
        for t in request.t:
            if job.token.cancelled:
                emit(Cancelled(job.job_id, done))
                return
            noisy = schedule.noised(x0, t, request.seed)
            latents = torch.from_numpy(noisy).to(model.device.device, model.device.dtype)
            image, _notes = family.decode(latents)
            emit(ForwardFrame(job.job_id, t, image, float(schedule.signal[t]), float(schedule.noise[t]), config))
            done += 1
        emit(Finished(job.job_id, done))

    def _clean_latents(self, request: ForwardRequest, model) -> np.ndarray:
        """The picture's model-space latents (float32, 1×C×h×w), encoded once per picture, size and model."""
        from .models import native_size

        rgb = load_picture(request, native_size(request.model))
        key = (str(model.entry.path), model.model_hash, rgb.shape, hashlib.sha256(rgb.tobytes()).hexdigest())
        if key != self._key:
            latents = model.family.encode_image(rgb)
            self._latents = latents.float().cpu().numpy()
            self._key = key
        return self._latents
