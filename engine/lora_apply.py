"""LoRAs put on and taken off the loaded model, with diffusers' own loaders (``load_lora_weights``: kohya, diffusers
and PEFT formats, PEFT layers in the U-Net or transformer and the text encoders).

One :class:`AppliedLoras` per runtime, on the engine's worker thread. A job's LoRAs (resolved by
:func:`engine.loras.resolve`) are applied before its prompt is encoded; LoRAs already in the model stay there and
only their weights are set, so a series of jobs with the same LoRAs loads each file once. A job without LoRAs
removes every PEFT layer (``unload_lora_weights``), which puts the model's own modules back: it computes exactly
what it computed before any LoRA. Before a file reaches diffusers, :mod:`engine.loras` refuses one made for another
kind of model; after loading, a LoRA with layers the model lacks (diffusers only warns of those) is refused too.
Any failure takes every LoRA off, so the model keeps working, and raises a :class:`DarkroomError` in plain words.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

from . import loras as lora_files
from .errors import DarkroomError, ErrorKind

log = logging.getLogger(__name__)


class AppliedLoras:
    """Which LoRAs the loaded model holds (adapter name → LoRA name), and putting a job's set in place."""

    def __init__(self) -> None:
        self._family = None
        self._loaded: dict[str, str] = {}

    @property
    def active(self) -> bool:
        """Whether the model holds LoRA layers now (the GPU fast path's compiled graphs do not know them)."""
        return bool(self._loaded)

    def apply(self, family, loras: Sequence[lora_files.ResolvedLora]) -> None:
        """Make ``family`` (the loaded model) run with exactly ``loras`` at their weights: none takes every LoRA
        off. The same file listed twice adds its weights. Raises DarkroomError, the model left without LoRAs."""
        if family is not self._family:
            self._family, self._loaded = family, {}
        weights: dict[str, float] = {}
        chosen: dict[str, lora_files.ResolvedLora] = {}
        for lora in loras:
            weights[lora.adapter_name] = weights.get(lora.adapter_name, 0.0) + lora.ref.weight
            chosen.setdefault(lora.adapter_name, lora)
        if not chosen:
            self.clear()
            return
        pipe = self._pipeline(family)
        try:
            stale = [name for name in self._loaded if name not in chosen]
            if stale:
                pipe.delete_adapters(stale)
                for name in stale:
                    del self._loaded[name]
            for name, lora in chosen.items():
                if name not in self._loaded:
                    self._load(pipe, family, name, lora)
            pipe.set_adapters(list(chosen), adapter_weights=[weights[name] for name in chosen])
        except DarkroomError:
            self.clear(force=True)
            raise
        except Exception as exc:  # a shape diffusers could not load, and the like
            self.clear(force=True)
            names = ", ".join(repr(lora.ref.name) for lora in chosen.values())
            raise DarkroomError(f"The LoRA {names} could not be applied to this model: it does not fit it (was it "
                                "made for another model?).", f"{type(exc).__name__}: {exc}",
                                kind=ErrorKind.MODEL_UNSUPPORTED) from exc

    def clear(self, force: bool = False) -> None:
        """Take every LoRA off (``force``: even when none is known to be on, after a failed load)."""
        if (self._loaded or force) and self._family is not None:
            pipe = getattr(self._family, "pipeline", None)
            if pipe is not None:
                pipe.unload_lora_weights()
        self._loaded = {}

    def forget(self) -> None:
        """The model was dropped: nothing to take off."""
        self._family, self._loaded = None, {}

    @staticmethod
    def _pipeline(family):
        import importlib.util

        if importlib.util.find_spec("peft") is None:
            raise DarkroomError("LoRAs need the peft package, which is missing: reinstall Darkroom's dependencies.",
                                kind=ErrorKind.INTERNAL)
        pipe = getattr(family, "pipeline", None)
        if pipe is None or not hasattr(pipe, "load_lora_weights"):
            raise DarkroomError(f"LoRAs are not available for {family.title} models yet.",
                                kind=ErrorKind.MODEL_UNSUPPORTED)
        return pipe

    def _load(self, pipe, family, name: str, lora: lora_files.ResolvedLora) -> None:
        tensors = lora_files.read(lora)
        lora_files.check_family(lora, tensors, family)
        converted = type(pipe).lora_state_dict(dict(tensors), **_convert_options(pipe))
        converted = converted[0] if isinstance(converted, tuple) else converted
        expected = lora_files.down_count(converted)
        with warnings.catch_warnings():  # PEFT warns whenever a model gets a second adapter: expected here
            warnings.filterwarnings("ignore", message=".*multiple adapters.*")
            pipe.load_lora_weights(dict(tensors), adapter_name=name)
        self._loaded[name] = lora.ref.name
        found = _adapted_layers(pipe, name)
        log.info("LoRA %s: %d of %d layers adapted", lora.ref.name, found, expected)
        if found == 0 or found < expected:
            raise DarkroomError(f"The LoRA {lora.ref.name!r} has weights for {expected - found} layers this model does "
                                "not have (unknown tensor names); it was probably made for another model.",
                                kind=ErrorKind.MODEL_UNSUPPORTED)


def _convert_options(pipe) -> dict:
    """What each pipeline's ``load_lora_weights`` passes its own ``lora_state_dict`` (SDXL: the U-Net's config)."""
    if type(pipe).__name__.startswith("StableDiffusionXL"):
        return {"unet_config": pipe.unet.config}
    return {}


def _adapted_layers(pipe, adapter: str) -> int:
    """How many layers of the pipeline's models hold ``adapter``'s LoRA matrices."""
    import torch

    count = 0
    for component in getattr(pipe, "_lora_loadable_modules", ()):
        model = getattr(pipe, component, None)
        if isinstance(model, torch.nn.Module):
            count += sum(1 for m in model.modules() if adapter in getattr(m, "lora_A", {}))
    return count
