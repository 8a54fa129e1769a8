"""Typed events the engine sends back, every one keyed by ``job_id`` (``None`` for engine-wide status).

Events are immutable and are delivered on the engine's worker thread through the ``on_event`` callback given
to :class:`engine.engine.Engine`; receivers that own a UI must hop to their own thread (the Qt bridge does it
with queued signals). Image arrays are fresh, read-only ``uint8`` H×W×3 numpy arrays that no one else writes.

A job emits, in order: ``Started``, then per image ``Progress``/``Preview`` (interleaved) and ``ImageReady``,
and finally exactly one of ``Finished``, ``Failed`` or ``Cancelled``. A job cancelled while still queued emits
only ``Cancelled``. Later, while the engine has nothing else to do, a ``ReplayDecoded`` follows for each image
whose ``ImageReady`` says ``replay_pending`` (its model previews by decoding, :mod:`engine.replay`). A
forward-process job (:mod:`engine.forward_job`) emits ``ForwardFrame`` s and then one of those three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

import numpy as np

from .request import GenerationRequest


@dataclass(frozen=True)
class StatusChanged:
    """Engine-wide state for the status bar: warming up, loading a model, ready, and the device in use."""

    message: str
    busy: bool = False
    device: str = ""
    dtype: str = ""
    job_id: None = None
    vram_bytes: int | None = None  # GPU memory PyTorch holds (CUDA only)


@dataclass(frozen=True)
class Started:
    job_id: int
    request: GenerationRequest
    model_name: str = ""


@dataclass(frozen=True)
class Progress:
    job_id: int
    step: int  # 1-based, the step just finished
    total: int
    image_index: int  # 0-based within the batch
    image_count: int
    its: float  # denoising steps per second, recent average
    eta_s: float  # seconds left for the whole job
    vram_bytes: int | None = None  # GPU memory PyTorch holds (CUDA only)


@dataclass(frozen=True)
class Preview:
    job_id: int
    image: np.ndarray = field(repr=False)  # read-only uint8 H×W×3
    step: int
    total: int
    image_index: int
    kind: Literal["x0", "xt"] = "x0"


@dataclass(frozen=True)
class GuidanceCapture:
    """Classifier-free guidance at one step, as x0 previews (linear-map RGB at latent resolution, read-only uint8
    H×W×3): the model's guess without the prompt, with it, the guidance term ``cfg·(cond − uncond)`` (mid grey =
    no change) and the guess the sampler went on with, ``uncond + cfg·(cond − uncond)``. For a model that previews
    by decoding, the guesses are VAE decodes at the picture's size and the term their difference in pixels."""

    step: int
    total: int
    cfg: float
    uncond: np.ndarray = field(repr=False)
    cond: np.ndarray = field(repr=False)
    term: np.ndarray = field(repr=False)
    guided: np.ndarray = field(repr=False)
    term_rms: float = 0.0  # root mean square of the guidance term, in latent units


@dataclass(frozen=True)
class ImageReady:
    job_id: int
    image: np.ndarray = field(repr=False)  # read-only uint8 H×W×3, from the full VAE
    request: GenerationRequest  # remakes exactly this image: its own seed, batch of one
    image_index: int
    image_count: int
    model_name: str = ""
    model_hash: str = ""
    device: str = ""
    dtype: str = ""
    seconds: float = 0.0
    notes: tuple[str, ...] = ()
    #: one x0 frame per step (linear-map RGB at latent resolution, read-only uint8), when the job asked for them
    replay: tuple[np.ndarray, ...] = field(default=(), repr=False)
    #: the replay's frames are the VAE's decodes (a ``ReplayDecoded`` put them here), not the linear map's
    replay_decoded: bool = False
    #: a ``ReplayDecoded`` with this replay decoded follows once the engine is idle (unless another model is
    #: loaded first): the model previews by decoding
    replay_pending: bool = False
    #: the guidance probe of the step the job asked to inspect (None when not asked, or CFG was off)
    guidance: GuidanceCapture | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ReplayDecoded:
    """The replay of image ``image_index`` of job ``job_id`` again, every frame decoded by the model's VAE (read-only
    uint8 H×W×3 at the picture's size): sent once for every ``ImageReady`` with ``replay_pending``, after the job
    ended. ``frames`` is empty when the replay could not be decoded (it keeps the linear map's frames)."""

    job_id: int
    image_index: int
    frames: tuple[np.ndarray, ...] = field(repr=False)


@dataclass(frozen=True)
class ForwardFrame:
    """A picture noised to training step ``t`` of its model's schedule and decoded by the VAE (a forward-process
    job): ``x_t = signal·x0 + noise·ε``. ``schedule`` is the model's scheduler configuration (for the plots)."""

    job_id: int
    t: int
    image: np.ndarray = field(repr=False)  # read-only uint8 H×W×3
    signal: float
    noise: float
    schedule: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Finished:
    job_id: int
    images: int


@dataclass(frozen=True)
class Failed:
    job_id: int | None
    kind: str  # see engine.errors.ErrorKind
    message: str  # plain words, one or two sentences
    details: str = ""  # technical details shown on demand


@dataclass(frozen=True)
class Cancelled:
    job_id: int
    images_done: int = 0


Event = Union[StatusChanged, Started, Progress, Preview, ImageReady, ReplayDecoded, ForwardFrame, Finished, Failed,
              Cancelled]
