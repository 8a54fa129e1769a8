"""What a model family is: the part of Darkroom that knows one kind of model, so the denoising loop needs none.

A family knows how to recognise its models (a diffusers folder's pipeline class, a single file's tensor names),
how to load them (its load options live here and nowhere else), how to turn a prompt into conditioning, how to
call its network (:meth:`Family.predict`), what that network predicts (ε, v or a flow velocity), the layout of
its latents (:class:`LatentFormat`) and how to decode them. The loop in :mod:`engine.sampling` asks the sampler
for times, calls ``predict``, applies guidance and steps; it never touches a U-Net or a transformer itself.

Family modules import torch, diffusers and transformers only inside methods, and only the parts they use, so
the registry costs nothing to import and loading one family does not pull in another's code. A loaded family
is used on the engine's worker thread only (the fast path's compile thread reads :attr:`Family.denoiser`).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

#: What the network predicts: the noise ε, the velocity v = √ᾱ·ε − √(1−ᾱ)·x0, or (flow matching, where
#: x_t = (1−σ)·x0 + σ·ε) the velocity ε − x0.
Prediction = Literal["epsilon", "v_prediction", "flow"]


@dataclass(frozen=True)
class LatentFormat:
    """The layout of a family's latents, in the space the network works in ("model space").

    The VAE's latent ``z`` and the model-space latent ``x`` are related by ``x = (z − shift) · scaling_factor``.
    Preview factors (latent channels × RGB) and bias map a model-space latent to RGB in [−1, 1].
    """

    channels: int
    scaling_factor: float
    shift: float = 0.0
    vae_scale_factor: int = 8  # image pixels per latent pixel, per side
    preview_factors: tuple[tuple[float, float, float], ...] = ()
    preview_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class Conditioning:
    """A prompt's conditioning in its family's own form (unconditional first when CFG is on), made once per job
    and reused for every image of a batch. Only the family that made it reads ``tensors``."""

    tensors: dict[str, Any]
    cfg: bool


class Family(ABC):
    """One model family. Class attributes and class methods recognise and load models; an instance is one
    loaded model's parts, on one device, ready to run."""

    #: Short identifier ("sd", "sdxl"), stable: recorded in logs and used by the registry.
    name: ClassVar[str]
    #: What people call it, for messages ("Stable Diffusion 1.x/2.x").
    title: ClassVar[str]
    #: ``_class_name`` values in ``model_index.json`` this family runs.
    pipelines: ClassVar[tuple[str, ...]]
    #: Folder components that must hold ``.safetensors`` weights.
    weight_components: ClassVar[tuple[str, ...]]
    #: The folder component holding the network (its config gives the native size).
    denoiser_component: ClassVar[str]
    #: Keyword arguments for diffusers' loaders (components to leave out and the like): the one place they live.
    load_options: ClassVar[Mapping[str, Any]] = {}
    #: Image sides must be multiples of this (the VAE's downscaling times the network's patch size).
    size_multiple: ClassVar[int] = 8
    #: Settings this family's models are meant to run with (field name → value), before a model's own
    #: ``darkroom.json`` and distilled variants refine them; see :func:`engine.models.recommended`.
    recommended_settings: ClassVar[Mapping[str, Any]] = {}

    # -- recognising and loading (class level) -------------------------------------------------------------
    @classmethod
    @abstractmethod
    def checkpoint_config(cls, keys: Collection[str]) -> str | None:
        """For a single-file checkpoint with these tensor names: the Hugging Face repository whose configuration
        (no weights) it needs, or ``None`` when the file is not of this family. ``keys`` may be a mapping of
        tensor name → shape, for families that tell their variants apart by shapes."""

    @classmethod
    @abstractmethod
    def load_folder(cls, folder: Path, device) -> "Family":
        """Load a diffusers folder (already checked: its weights exist and are readable) onto ``device``."""

    @classmethod
    @abstractmethod
    def load_single_file(cls, path: Path, config: Path, device) -> "Family":
        """Load a single-file checkpoint whose configuration is the local folder ``config``, never the network."""

    @classmethod
    def recommended(cls, denoiser_config: Mapping[str, Any]) -> dict[str, Any]:
        """Recommended settings for a model of this family whose network has ``denoiser_config`` (file reads
        only, any thread). Families with variants (Flux dev and schnell) tell them apart here."""
        return dict(cls.recommended_settings)

    @classmethod
    def native_size(cls, folder: Path) -> tuple[int, int]:
        """The size the model was trained at, from its denoiser's and VAE's configs (file reads only)."""
        denoiser = json.loads((folder / cls.denoiser_component / "config.json").read_text(encoding="utf-8"))
        vae = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
        size = int(denoiser["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
        return size, size

    # -- one loaded model (instance level) -----------------------------------------------------------------
    #: What :meth:`predict` returns.
    prediction: Prediction
    #: Latent layout, scaling and preview factors.
    latent_format: LatentFormat
    #: The model's own scheduler configuration, the base every sampler is built from.
    scheduler_config: Mapping[str, Any]

    #: The diffusers pipeline holding this model's modules (the same objects the family runs), for diffusers'
    #: LoRA loaders (:mod:`engine.lora_apply`) and offload hooks (:mod:`engine.memory`); None where neither applies.
    pipeline: Any = None
    #: The pipeline component that low-VRAM mode runs on the CPU (a T5 encoder), or None.
    cpu_text_encoder: str | None = None

    def __init__(self, device) -> None:
        self.device = device  # engine.devices.DeviceChoice

    @property
    @abstractmethod
    def denoiser(self):
        """The network module (U-Net or transformer): what the GPU fast path compiles."""

    @abstractmethod
    def encode(self, prompt: str, negative_prompt: str, cfg: bool, height: int, width: int) -> Conditioning:
        """The prompt's conditioning for images of ``height`` × ``width`` (with the negative prompt first when
        ``cfg``)."""

    @abstractmethod
    def model_inputs(self, x, t, cond: Conditioning) -> tuple[tuple, dict[str, Any]]:
        """Positional and keyword arguments of one call of :attr:`denoiser` on latents ``x`` (the CFG batch
        included) at timestep ``t`` (a 0-d float32 tensor on the device, in the scheduler's units)."""

    @abstractmethod
    def decode(self, latents, half_first: bool = False) -> tuple[np.ndarray, tuple[str, ...]]:
        """Model-space latents → a read-only uint8 H×W×3 image and notes for people (e.g. a precision redo)."""

    def encode_image(self, rgb: np.ndarray):
        """A picture (uint8 H×W×3, sides multiples of the VAE's scale) → model-space latents shaped like
        :meth:`initial_noise`'s, on the device in its dtype: what image editing starts from. A family that cannot
        encode pictures yet raises ModelUnsupportedError."""
        from ..errors import ModelUnsupportedError

        raise ModelUnsupportedError(f"Editing pictures with {self.title} models is not available yet.")

    @property
    def extra_input_channels(self) -> int:
        """Channels the network takes beyond the latents (an inpainting U-Net's mask and masked picture: 5)."""
        return int(getattr(self.denoiser.config, "in_channels", 0)) - self.latent_format.channels

    def mask_to_latent(self, mask: np.ndarray):
        """A mask (float H×W in [0, 1], 1 = repaint) at latent resolution, shaped to multiply latents: each latent
        pixel takes the largest value of the image pixels it covers, so every pixel to repaint is free."""
        import torch

        f = self.latent_format.vae_scale_factor
        m = torch.from_numpy(np.array(mask, dtype=np.float32))[None, None]
        m = torch.nn.functional.max_pool2d(m, f) if f > 1 else m
        return m.to(self.device.device, self.device.dtype)

    def condition(self, request, size: tuple[int, int] | None = None) -> Conditioning:
        """The conditioning of a request (a :class:`~engine.request.GenerationRequest`): its prompts, with a CFG
        batch when its CFG scale is above 1, for pictures of its size or of ``size`` (width, height; the hires
        fix's second pass). A family whose guidance is a network input (Flux) reads the scale here. Refuses sizes
        the network cannot take, before any work."""
        width, height = size or (request.width, request.height)
        m = self.size_multiple
        if width % m or height % m:
            from ..errors import DarkroomError, ErrorKind

            raise DarkroomError(f"{self.title} models need a width and height that are multiples of {m}; "
                                f"{width}×{height} is not.", kind=ErrorKind.VALIDATION)
        return self.encode(request.prompt, request.negative_prompt, request.cfg > 1.0, height, width)

    def schedule(self, sampler, steps: int, height: int, width: int):
        """A fresh scheduler for ``sampler`` with its ``steps`` timesteps set (on the CPU) for an image of
        ``height`` × ``width``. Flux overrides it: its schedule's shift depends on the image's size."""
        scheduler = self.scheduler_for(sampler)
        scheduler.set_timesteps(steps, device="cpu")
        return scheduler

    def scheduler_for(self, sampler):
        """A fresh scheduler for ``sampler`` (an :class:`engine.samplers.Sampler`), built on the model's own
        scheduler config. A family whose time runs differently (flow matching) maps samplers to its own."""
        return sampler.make(self.scheduler_config)

    def predict(self, x, t, cond: Conditioning, denoiser=None):
        """The network's output for ``x`` at ``t``; ``denoiser`` replaces :attr:`denoiser` (a compiled one)
        and must take the same arguments."""
        args, kwargs = self.model_inputs(x, t, cond)
        return (denoiser or self.denoiser)(*args, **kwargs)[0]

    def noise_shape(self, height: int, width: int) -> tuple[int, ...]:
        """Shape of one image's initial noise (and latents) for an image of ``height`` × ``width``."""
        f = self.latent_format.vae_scale_factor
        return (1, self.latent_format.channels, height // f, width // f)

    def initial_noise(self, seed: int, height: int, width: int):
        """Unit Gaussian noise from a CPU generator seeded with ``seed``, so a seed means the same picture on
        every device; moved to the device in its dtype."""
        import torch

        generator = torch.Generator("cpu").manual_seed(seed)
        noise = torch.randn(self.noise_shape(height, width), generator=generator, dtype=torch.float32)
        return noise.to(self.device.device, self.device.dtype)

    def example_inputs(self, height: int, width: int, cond: Conditioning) -> tuple[tuple, dict[str, Any]]:
        """The denoiser's arguments for one step of a loop at this size, with the latents and timestep on the
        meta device (shapes and dtypes only): what the fast path keys and compiles on."""
        import torch

        shape = self.noise_shape(height, width)
        x = torch.empty(((2 if cond.cfg else 1) * shape[0], *shape[1:]), dtype=self.device.dtype, device="meta")
        t = torch.empty((), dtype=torch.float32, device="meta")
        return self.model_inputs(x, t, cond)


def check_prediction(value: Any, title: str) -> Prediction:
    """A scheduler config's ``prediction_type`` as a :data:`Prediction`, or ModelUnsupportedError."""
    from ..errors import ModelUnsupportedError

    if value not in ("epsilon", "v_prediction"):
        raise ModelUnsupportedError(f"This {title} model predicts {value!r}, which Darkroom does not run yet.")
    return value


def vae_scale_factor(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def as_float(value: Any, default: float = 0.0) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default
