"""The one object that carries everything a generation needs into the engine: a recipe with parts.

A :class:`GenerationRequest` is frozen and always valid: build it with :func:`build_request`, which checks every
core field against the registry (:mod:`engine.fields`), resolves a "random" seed into the integer actually used
and rounds sizes to the model's multiple (returning a notice that says so). Beside the core fields it holds
optional parts (:mod:`engine.parts`, re-exported here), each self-validating and empty until a feature uses it: a
source image with its strength, a mask, LoRA references, control inputs, and the record of the textual-inversion
embeddings a job used. Images are referenced by content hash and path, never embedded. The engine never reads
widgets or settings, only requests. Safe to use from any thread.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from .fields import FIELD, FIELDS, SEED_MAX, SIZE_MULTIPLE, parse_seed, random_seed
from .parts import (  # noqa: F401 - the parts are part of this module's interface
    HIRES_UPSCALERS,
    MAX_OUTPAINT,
    PART_NAMES,
    PARTS as _PARTS,
    RESIZE_MODES,
    ControlPart,
    EmbeddingRef,
    HiresPart,
    ImageRef,
    LoraRef,
    MaskPart,
    OutpaintPart,
    SourceImage,
    prompt_loras,
)

__all__ = [
    "SEED_MAX", "SIZE_MULTIPLE", "REQUEST_FORMAT_VERSION", "ValidationError", "ImageRef", "SourceImage", "MaskPart",
    "OutpaintPart", "HiresPart", "LoraRef", "ControlPart", "EmbeddingRef", "PART_NAMES", "GenerationRequest", "BuiltRequest",
    "build_request", "parse_seed", "random_seed", "prompt_loras",
]

#: Version of the JSON form written by :meth:`GenerationRequest.to_dict` (1: flat fields with "scheduler").
REQUEST_FORMAT_VERSION = 2

#: Largest side of a hires-fixed image.
MAX_HIRES_SIDE = 4096


class ValidationError(ValueError):
    """One or more fields are invalid. ``errors`` maps field name to a message meant for people."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(self.errors.values()))


@dataclass(frozen=True)
class GenerationRequest:
    """A complete, validated recipe. ``model`` is a model name or a path ("" means the default model)."""

    prompt: str
    negative_prompt: str = FIELD["negative_prompt"].default
    seed: int = 0
    steps: int = FIELD["steps"].default
    cfg: float = FIELD["cfg"].default
    width: int = FIELD["width"].default
    height: int = FIELD["height"].default
    sampler: str = FIELD["sampler"].default
    model: str = FIELD["model"].default
    batch_count: int = FIELD["batch_count"].default
    source: SourceImage | None = None
    mask: MaskPart | None = None
    outpaint: OutpaintPart | None = None
    hires: HiresPart | None = None
    loras: tuple[LoraRef, ...] = ()
    controls: tuple[ControlPart, ...] = ()
    embeddings: tuple[EmbeddingRef, ...] = ()

    def image_request(self, index: int) -> "GenerationRequest":
        """The request that remakes image ``index`` of this batch alone (seed + index, batch of one)."""
        return dataclasses.replace(self, seed=(self.seed + index) % (SEED_MAX + 1), batch_count=1)

    @property
    def parts(self) -> tuple[str, ...]:
        """Names of the optional parts this request uses."""
        return tuple(name for name in _PARTS if getattr(self, name))

    def core(self) -> dict[str, Any]:
        """The core fields, keyed by registry name."""
        return {f.name: getattr(self, f.name) for f in FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (format 2): the core fields, then only the parts in use."""
        data: dict[str, Any] = {"version": REQUEST_FORMAT_VERSION, **self.core()}
        for name, (_, many) in _PARTS.items():
            value = getattr(self, name)
            if value:
                data[name] = [item.to_dict() for item in value] if many else value.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BuiltRequest":
        """Validate a dict read from JSON (format 1 or 2) into a request. Unknown keys are ignored."""
        if not isinstance(data, Mapping):
            raise ValidationError({"request": "Parameters must be a JSON object."})
        values = {k: v for k, v in data.items() if k in FIELD or k in _PARTS}
        if "sampler" not in values and "scheduler" in data:  # format 1 called the sampler "scheduler"
            values["sampler"] = data["scheduler"]
        return build_request(**values)


@dataclass(frozen=True)
class BuiltRequest:
    request: GenerationRequest
    notices: tuple[str, ...] = ()


def _part(name: str, value: Any) -> Any:
    """A part from a part object, a JSON dict, or (for lists) a list of either. Raises ValueError."""
    kind, many = _PARTS[name]
    if many:
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"The {name} must be a list.")
        return tuple(item if isinstance(item, kind) else kind.from_dict(item) for item in value)
    if value is None or isinstance(value, kind):
        return value
    return kind.from_dict(value)


def build_request(**values: Any) -> BuiltRequest:
    """Check every field and part and build a request, or raise :class:`ValidationError` listing every bad one.

    Takes registry field names (missing ones take their defaults) and part names. A "random" seed (or None,
    "", -1) is replaced by a fresh random integer so the request records the seed actually used. Sizes that are
    not multiples of 8 are rounded to the nearest multiple, with a notice. The prompt's ``<lora:name:weight>``
    tags become ``loras`` entries here (:func:`prompt_loras`): the one place tags turn into LoRAs, so every
    request lists all the LoRAs it applies, a bad tag is reported before any job runs, and the engine only
    resolves names to files.
    """
    unknown = set(values) - set(FIELD) - set(_PARTS)
    if unknown:
        raise TypeError(f"build_request() got unknown fields: {', '.join(sorted(unknown))}")
    errors: dict[str, str] = {}
    notices: list[str] = []
    typed: dict[str, Any] = {}
    for field in FIELDS:
        try:
            value = field.parse(values.get(field.name, field.default))
        except ValueError as exc:
            errors[field.name] = str(exc)
            continue
        if field.multiple > 1:
            value, notice = field.round(value)
            if notice:
                notices.append(notice)
        typed[field.name] = value
    for name in _PARTS:
        try:
            typed[name] = _part(name, values.get(name))
        except (ValueError, TypeError) as exc:
            errors[name] = str(exc)
    if "prompt" in typed and "loras" in typed:
        try:
            typed["loras"] = prompt_loras(typed["prompt"], typed["loras"])
        except ValueError as exc:
            errors["prompt"] = f"A <lora:…> tag in the prompt is not usable: {exc}"
    if not errors:
        errors.update(_part_conflicts(typed))
    if errors:
        raise ValidationError(errors)
    if typed["seed"] is None:
        typed["seed"] = random_seed()
    return BuiltRequest(GenerationRequest(**typed), tuple(notices))


def _part_conflicts(typed: Mapping[str, Any]) -> dict[str, str]:
    """Parts that need another part, or that cannot go together: part name → message."""
    errors: dict[str, str] = {}
    for name, what in (("mask", "Inpainting"), ("outpaint", "Outpainting")):
        if typed[name] is not None and typed["source"] is None:
            errors[name] = f"{what} needs a source image."
    hires = typed["hires"]
    if hires is not None:
        if typed["mask"] is not None or typed["outpaint"] is not None:
            errors["hires"] = "Hires fix works on whole pictures, not with inpainting or outpainting."
        elif max(hires.size(typed["width"], typed["height"])) > MAX_HIRES_SIDE:
            w, h = hires.size(typed["width"], typed["height"])
            errors["hires"] = f"Hires fix would make a {w}×{h} picture; at most {MAX_HIRES_SIDE} pixels a side."
    return errors
