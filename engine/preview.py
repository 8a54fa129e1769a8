"""Cheap live previews: a linear map from latent channels to RGB (≈0.2 ms, against ~94 ms for the full VAE),
and the two pipes that hand them to the runtime.

Factors apply to the latent the network sees (model space: shifted and scaled) and give RGB in [-1, 1]. Each
family's latent format carries known factors; a model can ship its own fitted factors as ``preview.json``
(``{"factors": [[r, g, b] per latent channel], "bias": [r, g, b]}``). A model whose VAE costs little next to a
denoising step (the bundled 64-pixel model) adds ``"decode": true``: its previews on the standard path are then
full VAE decodes, exact and at the image's size, where a linear map gives a blurred, off-colour approximation at
the latent's size. The GPU fast path and the lab's replays keep the linear map.

:class:`HostPreviews` converts each preview at its step (the standard path); :class:`DevicePreviews` (the GPU
fast path) converts on the GPU and copies to pinned memory on a side stream, handing each preview over one step
later so the loop never waits for the step it has just queued. Called on the engine's worker thread.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .families.base import LatentFormat

log = logging.getLogger(__name__)


#: Model-space latents (B×C×h×w) → the first image as a read-only uint8 H×W×3 array: the model's own VAE.
Decoder = Callable[[Any], np.ndarray]


@dataclass(frozen=True)
class LatentPreview:
    factors: tuple[tuple[float, ...], ...]  # latent channels × 3
    bias: tuple[float, float, float]
    decoder: Decoder | None = field(default=None, compare=False)  # set when the model asks for decoded previews

    def to_rgb(self, latent) -> np.ndarray:
        """First image of a latent batch (torch tensor B×C×h×w, any device) → read-only uint8 array: the decoded
        image (H×W×3) when the model has a decoder, else the linear map's (h×w×3)."""
        if self.decoder is not None:
            return self.decoder(latent[:1])
        return self.linear_rgb(latent)

    def linear_rgb(self, latent) -> np.ndarray:
        """The linear map's preview (h×w×3) of the first image of a latent batch."""
        import torch

        x = latent[0].float()
        factors = torch.tensor(self.factors, dtype=torch.float32, device=x.device)
        bias = torch.tensor(self.bias, dtype=torch.float32, device=x.device)
        if factors.shape[0] != x.shape[0]:  # unknown layout: show the first channels as grey levels
            factors = torch.eye(x.shape[0], 3, device=x.device)
        rgb = torch.einsum("chw,cr->hwr", x, factors) + bias
        out = ((rgb + 1.0) * 127.5).clamp_(0, 255).to(torch.uint8).cpu().numpy()
        out.setflags(write=False)
        return out


def _valid(factors, bias) -> bool:
    return (
        isinstance(factors, list)
        and len(factors) >= 1
        and all(isinstance(row, list) and len(row) == 3 and all(isinstance(v, (int, float)) for v in row) for row in factors)
        and isinstance(bias, list)
        and len(bias) == 3
        and all(isinstance(v, (int, float)) for v in bias)
    )


def preview_for(model_folder: Path | None, fmt: LatentFormat, decoder: Decoder | None = None) -> LatentPreview:
    """The model's own fitted factors when it ships a valid preview.json, else its family's latent format's.
    ``decoder`` is used only when that preview.json asks for decoded previews (``"decode": true``)."""
    if model_folder is not None:
        path = model_folder / "preview.json"
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and _valid(data.get("factors"), data.get("bias", [0, 0, 0])):
                    bias = data.get("bias", [0.0, 0.0, 0.0])
                    return LatentPreview(tuple(tuple(map(float, r)) for r in data["factors"]), tuple(map(float, bias)),
                                         decoder if data.get("decode") is True else None)
                log.warning("ignoring malformed %s", path)
            except (OSError, ValueError):
                log.warning("could not read %s", path)
    return LatentPreview(tuple(tuple(r) for r in fmt.preview_factors), tuple(fmt.preview_bias))


class HostPreviews:
    """Synchronous previews, exactly as the standard path makes them: each one is handed over at its step."""

    def __init__(self, preview):
        self.preview = preview

    def start_image(self) -> None:
        pass

    def step(self, source, step: int, total: int, kind: str) -> list[tuple[np.ndarray, int, int, str]]:
        if source is None:
            return []
        return [(self.preview.to_rgb(source), step, total, kind)]

    def flush(self) -> list[tuple[np.ndarray, int, int, str]]:
        return []

    def discard(self) -> None:
        pass


@dataclass
class _Pending:
    event: Any
    meta: tuple[int, int, str]
    slot: Any = None  # pinned host buffer, when this step has a preview
    keep: Any = None  # the device image, alive until its copy is done


class DevicePreviews:
    """Latent → RGB on the GPU; a non-blocking copy into pinned memory on a side stream; handed over one step
    later. Every step records a marker, and the loop waits for the previous step's marker only, so the GPU
    always has the current step queued while the host catches up. The three CUDA primitives (:meth:`_stream`,
    :meth:`_marker`, :meth:`_copy`) are separate so the hand-over logic can be tested without a GPU."""

    def __init__(self, preview, lag: int = 1):
        import torch

        self.preview = preview
        self._torch = torch
        self._lag = lag
        self._side = self._stream()
        self._weights: dict[tuple[int, str], tuple[Any, Any]] = {}
        self._free: list[Any] = []
        self._pending: deque[_Pending] = deque()
        self._first = True

    # -- CUDA primitives -----------------------------------------------------------------------------------
    def _stream(self):
        return self._torch.cuda.Stream()

    def _marker(self):
        """An event at the current point of the compute stream."""
        event = self._torch.cuda.Event()
        event.record(self._torch.cuda.current_stream())
        return event

    def _copy(self, rgb):
        """Start copying ``rgb`` into a pinned buffer on the side stream; return the buffer and its event."""
        torch = self._torch
        slot = self._slot(rgb.shape)
        self._side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._side):
            slot.copy_(rgb, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self._side)
        rgb.record_stream(self._side)
        return slot, event

    def _slot(self, shape):
        while self._free:
            slot = self._free.pop()
            if tuple(slot.shape) == tuple(shape):
                return slot
        return self._torch.empty(shape, dtype=self._torch.uint8, pin_memory=True)

    # -- the loop's side -----------------------------------------------------------------------------------
    def start_image(self) -> None:
        self._first = True

    def _rgb(self, latent):
        """Exactly :meth:`LatentPreview.linear_rgb`'s arithmetic, left on the device (factors uploaded once)."""
        torch = self._torch
        x = latent[0].float()
        key = (x.shape[0], str(x.device))
        if key not in self._weights:
            factors = torch.tensor(self.preview.factors, dtype=torch.float32)
            if factors.shape[0] != x.shape[0]:  # unknown layout: the first channels as grey levels
                factors = torch.eye(x.shape[0], 3)
            bias = torch.tensor(self.preview.bias, dtype=torch.float32)
            self._weights[key] = (factors.to(x.device), bias.to(x.device))
        factors, bias = self._weights[key]
        rgb = torch.einsum("chw,cr->hwr", x, factors) + bias
        return ((rgb + 1.0) * 127.5).clamp_(0, 255).to(torch.uint8).contiguous()

    def step(self, source, step: int, total: int, kind: str) -> list[tuple[np.ndarray, int, int, str]]:
        """Queue this step's preview (``source`` is None when throttled) and return the ones now ready."""
        if source is not None:
            rgb = self._rgb(source)
            slot, event = self._copy(rgb)
            item = _Pending(event, (step, total, kind), slot, rgb)
        else:
            item = _Pending(self._marker(), (step, total, kind))
        self._pending.append(item)
        keep = 0 if (self._first and source is not None) else self._lag  # an image's first preview comes at once
        if source is not None:
            self._first = False
        ready = []
        while len(self._pending) > keep:
            ready.extend(self._complete(self._pending.popleft()))
        return ready

    def _complete(self, item: _Pending) -> list[tuple[np.ndarray, int, int, str]]:
        item.event.synchronize()
        if item.slot is None:
            return []
        image = item.slot.numpy().copy()
        image.setflags(write=False)
        self._free.append(item.slot)
        return [(image, *item.meta)]

    def flush(self) -> list[tuple[np.ndarray, int, int, str]]:
        """Everything still pending (the image's last steps), once its copies are done."""
        ready = []
        while self._pending:
            ready.extend(self._complete(self._pending.popleft()))
        return ready

    def discard(self) -> None:
        """Drop what is pending (cancel or failure) once its copies are done, so no buffer is written later."""
        while self._pending:
            item = self._pending.popleft()
            try:
                item.event.synchronize()
            except Exception:  # noqa: BLE001 - a broken device: nothing left to protect
                return
            if item.slot is not None:
                self._free.append(item.slot)
