"""What a generation leaves behind for the Diffusion Lab: one x0 frame per step (the replay) and, on request, the
unconditional and conditional predictions of one step (the guidance probe).

Both use the model's linear latent → RGB map (:class:`engine.preview.LatentPreview`'s factors), so they cost an
einsum on latents, not a VAE decode. Frames stay on the device as small ``uint8`` tensors while the loop runs and
come to the host in one copy when the image is finished, so the GPU loop never waits for them.

A model whose live previews are decodes (its ``preview.json`` says ``"decode": true``: a VAE so small that a
decode costs less than a step) keeps each step's x0 latent too. The :class:`ReplayRefiner` decodes them one frame
at a time while the engine has nothing else to do, and hands the decoded replay over as ``ReplayDecoded``: the
picture is never late for it, and a new job never waits more than one decode.

Memory bound: a frame is the latent's size (1/8 of the image per side), pooled down to at most :data:`MAX_SIDE`
pixels per side, so a 50-step 1024² SDXL replay is 50 × 128² × 3 bytes ≈ 2.5 MB and the largest possible one
(150 steps of a 1536² image, whose 192² latent is kept as it is; larger ones are pooled by whole factors, a
2048² image's to 128²) 150 × 192² × 3 ≈ 16.6 MB.

Runs on the engine's worker thread; the arrays handed over are fresh and read-only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .events import GuidanceCapture, ReplayDecoded
from .sampling import NoiseLevel, predicted_x0

log = logging.getLogger(__name__)

#: Longest side of a replay frame (latent pixels; larger latents are average-pooled down).
MAX_SIDE = 192


class LinearRGB:
    """The latent → RGB linear map of a :class:`~engine.preview.LatentPreview`, applied on the latent's device.

    Gives ``uint8`` h×w×3 tensors that stay there (the weights are uploaded once per device)."""

    def __init__(self, preview) -> None:
        self._preview = preview
        self._weights: dict[tuple[int, str], tuple[Any, Any]] = {}

    def _factors(self, channels: int, device) -> tuple[Any, Any]:
        import torch

        key = (channels, str(device))
        if key not in self._weights:
            factors = torch.tensor(self._preview.factors, dtype=torch.float32)
            if factors.shape[0] != channels:  # unknown layout: the first channels as grey levels, as previews do
                factors = torch.eye(channels, 3)
            bias = torch.tensor(self._preview.bias, dtype=torch.float32)
            self._weights[key] = (factors.to(device), bias.to(device))
        return self._weights[key]

    def rgb(self, latent, *, bias: bool = True, max_side: int = 0):
        """First image of a latent batch (B×C×h×w) → ``uint8`` h×w×3 on its device. ``bias=False`` maps a
        difference of latents (mid grey = no change); ``max_side`` pools larger latents down."""
        import torch

        x = latent[:1].float()
        if max_side and max(x.shape[-2:]) > max_side:
            f = math.ceil(max(x.shape[-2:]) / max_side)
            x = torch.nn.functional.avg_pool2d(x, f, ceil_mode=True)
        factors, offset = self._factors(x.shape[1], x.device)
        rgb = torch.einsum("chw,cr->hwr", x[0], factors)
        if bias:
            rgb = rgb + offset
        return ((rgb + 1.0) * 127.5).clamp_(0, 255).to(torch.uint8)

    def to_host(self, tensors) -> tuple[np.ndarray, ...]:
        """Device tensors of one shape → read-only host arrays, in one copy."""
        import torch

        if not tensors:
            return ()
        stacked = torch.stack(list(tensors)).cpu().numpy()
        stacked.setflags(write=False)
        return tuple(stacked)  # views of the read-only block: read-only too


class ReplayRecorder:
    """Keeps every step's x0 as a small RGB frame on the device; :meth:`frames` hands them over at the end. With
    ``keep_latents`` it keeps the x0 latents too, for :class:`ReplayRefiner`."""

    def __init__(self, linear: LinearRGB, max_side: int = MAX_SIDE, keep_latents: bool = False) -> None:
        self._linear = linear
        self._max_side = max_side
        self._keep_latents = keep_latents
        self._frames: list[Any] = []
        self._latents: list[Any] = []

    def start_image(self) -> None:
        self._frames = []
        self._latents = []

    def add(self, x0) -> None:
        self._frames.append(self._linear.rgb(x0, max_side=self._max_side))
        if self._keep_latents:
            self._latents.append(x0[:1].detach().clone())

    def frames(self) -> tuple[np.ndarray, ...]:
        """Every frame recorded since :meth:`start_image`, as read-only ``uint8`` h×w×3 arrays, in step order.
        Frames of passes at other sizes (a hires fix) are kept only when they match the last pass's size."""
        return self._linear.to_host(_last_pass(self._frames))

    def latents(self) -> list:
        """The x0 latents of :meth:`frames`' steps (device tensors 1×C×h×w); empty unless kept."""
        return _last_pass(self._latents)


def _last_pass(items: list) -> list:
    """The items shaped like the last one: a hires fix's first pass, at another size, is left out."""
    return [x for x in items if x.shape == items[-1].shape] if items else []


@dataclass
class _Waiting:
    job_id: int
    image_index: int
    model: Any  # the model folder the latents belong to
    latents: list
    decoded: list = field(default_factory=list)


class ReplayRefiner:
    """Replays waiting for their frames to be decoded, oldest first. Worker thread only.

    Every replay added gets exactly one ``ReplayDecoded``: :meth:`step` decodes one frame at a time with the
    loaded model's preview decoder and sends the decoded frames when a replay is complete. A replay that cannot be
    decoded gets empty ``frames`` (it keeps the linear map's): another model was loaded first, its decode failed,
    or more than :attr:`MAX_WAITING` waited. Only models with tiny VAEs keep latents (the bundled model's: 100 KB
    for 25 steps), so a whole batch may wait."""

    MAX_WAITING = 100  # the largest batch count

    def __init__(self, emit) -> None:
        self._emit = emit
        self._waiting: list[_Waiting] = []

    def add(self, job_id: int, image_index: int, model, latents: list) -> bool:
        """Queue a replay's x0 latents for decoding; False when there are none (nothing will be sent)."""
        if not latents:
            return False
        self._waiting.append(_Waiting(job_id, image_index, model, latents))
        while len(self._waiting) > self.MAX_WAITING:
            self._drop()
        return True

    def clear(self) -> None:
        """Give up on every waiting replay (the model they belong to is going away)."""
        while self._waiting:
            self._drop()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _drop(self) -> None:
        item = self._waiting.pop(0)
        self._emit(ReplayDecoded(item.job_id, item.image_index, ()))

    def step(self, model, decoder) -> bool:
        """Decode one waiting frame of ``model`` (the loaded model's folder) with ``decoder``; False when nothing
        waits. A failing decode gives up on that replay: it is logged, never raised."""
        if not self._waiting:
            return False
        item = self._waiting[0]
        if decoder is None or item.model != model:
            self._drop()
            return True
        try:
            item.decoded.append(decoder(item.latents[len(item.decoded)]))
        except Exception as exc:  # noqa: BLE001 - the replay keeps its linear frames
            log.warning("decoding the replay of job %s failed: %s", item.job_id, exc)
            self._drop()
            return True
        if len(item.decoded) == len(item.latents):
            self._waiting.pop(0)
            self._emit(ReplayDecoded(item.job_id, item.image_index, tuple(item.decoded)))
        return True


@dataclass
class GuidanceProbe:
    """Captures, at step ``step`` (1-based, as progress counts steps), the model's two predictions of the clean
    image: without the prompt (unconditional) and with it, the guidance term ``cfg·(cond − uncond)`` and the x0 the
    sampler went on with. The loop calls it with every guided network call; only the first call of ``step``
    is kept. Nothing happens when CFG is off (the loop has no unconditional half then).

    With a ``decoder`` (a model that previews by decoding) the three guesses are the VAE's decodes and the term
    is their difference in pixels, guided − unconditional (mid grey = no change); otherwise all four are the
    linear map's, at latent resolution."""

    step: int
    cfg: float
    prediction: str
    linear: LinearRGB
    decoder: Any = None
    captured: GuidanceCapture | None = field(default=None, init=False)
    _total: int = field(default=0, init=False)

    def start_image(self) -> None:
        self.captured = None

    def __call__(self, step: int, total: int, latents, uncond, cond, level: NoiseLevel) -> None:
        if self.captured is not None or step != self.step:
            return
        x = latents.float()
        x0_uncond = predicted_x0(self.prediction, x, uncond.float(), level)
        x0_cond = predicted_x0(self.prediction, x, cond.float(), level)
        term = self.cfg * (x0_cond - x0_uncond)
        images = self._decoded(x0_uncond, x0_cond, x0_uncond + term) if self.decoder is not None else None
        if images is None:
            rgb = self.linear.rgb
            images = self.linear.to_host([rgb(x0_uncond), rgb(x0_cond), rgb(term, bias=False),
                                          rgb(x0_uncond + term)])
        self.captured = GuidanceCapture(step, total, self.cfg, *images,
                                        term_rms=float(term.pow(2).mean().sqrt()))

    def _decoded(self, uncond, cond, guided) -> tuple[np.ndarray, ...] | None:
        """(uncond, cond, term, guided) as decoded pictures, or None when a decode fails (the linear map then)."""
        try:
            uncond_rgb, cond_rgb, guided_rgb = (self.decoder(x[:1]) for x in (uncond, cond, guided))
        except Exception as exc:  # noqa: BLE001 - the probe must not fail the picture
            log.warning("decoding the guidance probe failed: %s", exc)
            return None
        term = np.clip(127.5 + (guided_rgb.astype(np.float32) - uncond_rgb) / 2, 0, 255).round().astype(np.uint8)
        term.setflags(write=False)
        return uncond_rgb, cond_rgb, term, guided_rgb


class JobRecording:
    """What one job asked to record (its :class:`~engine.engine.JobOptions`), for the runtime to feed: call
    :meth:`start_image` before each image (and again when an image is remade), :meth:`on_step` at every step,
    pass :attr:`on_guidance` to the loop, and read :meth:`frames` and :attr:`guidance` when the image is done."""

    def __init__(self, options, preview, prediction: str, cfg: float) -> None:
        linear = LinearRGB(preview)
        decoder = getattr(preview, "decoder", None)  # set when the model previews by decoding
        replay = getattr(options, "replay", False)
        self._replay = ReplayRecorder(linear, keep_latents=decoder is not None) if replay else None
        step = getattr(options, "inspect_step", None)
        self._probe = GuidanceProbe(step, cfg, prediction, linear, decoder) if step else None

    def start_image(self) -> None:
        if self._replay is not None:
            self._replay.start_image()
        if self._probe is not None:
            self._probe.start_image()

    def on_step(self, state) -> None:
        if self._replay is not None:
            self._replay.add(state.x0)

    @property
    def on_guidance(self):
        return self._probe

    def frames(self) -> tuple[np.ndarray, ...]:
        return self._replay.frames() if self._replay is not None else ()

    def latents(self) -> list:
        """The frames' x0 latents, when the model previews by decoding (for :class:`ReplayRefiner`)."""
        return self._replay.latents() if self._replay is not None else []

    @property
    def guidance(self) -> GuidanceCapture | None:
        return self._probe.captured if self._probe is not None else None
