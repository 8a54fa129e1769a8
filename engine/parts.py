"""The optional parts of a recipe (:class:`engine.request.GenerationRequest`): a source image with its strength, a
mask, outpainting, the hires fix, LoRA references, control inputs, and the record of the textual-inversion
embeddings a job used.

Each part is a frozen dataclass that checks itself when made (ValueError with a message for people) and has a
JSON form (``to_dict``/``from_dict``). Images are referenced by content hash and path (:class:`ImageRef`), never
embedded. A new part is a class here and one row in :data:`PARTS`. Safe to use from any thread.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .fields import SIZE_MULTIPLE, check_text

RESIZE_MODES = ("fit", "fill", "stretch")
HIRES_UPSCALERS = ("latent", "lanczos")
#: Outpainting adds at most this many pixels on one side.
MAX_OUTPAINT = 2048
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _mapping(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"The {what} must be a JSON object.")
    return data


def _whole(value: Any, label: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{label} must be a whole number from {lo} to {hi}.")
    return value


def _fraction(value: Any, label: str, lo: float = 0.0, hi: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{label} must be a number from {lo:g} to {hi:g}.")
    if not lo <= value <= hi:
        raise ValueError(f"{label} must be from {lo:g} to {hi:g}; got {value:g}.")
    return float(value)


@dataclass(frozen=True)
class ImageRef:
    """An image a recipe uses, by content (SHA-256 of the file's bytes) and where it was stored. The hash is
    what counts: a file at ``path`` with other content is not this image."""

    sha256: str
    path: str

    def __post_init__(self) -> None:
        if not isinstance(self.sha256, str) or not _SHA256.match(self.sha256):
            raise ValueError("An image reference needs the SHA-256 of the image (64 lower-case hex digits).")
        check_text(self.path, "An image path", max_chars=4096, single_line=True)
        if not self.path:
            raise ValueError("An image reference needs a path.")

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "path": self.path}

    @classmethod
    def from_dict(cls, data: Any) -> "ImageRef":
        data = _mapping(data, "image reference")
        return cls(data.get("sha256"), data.get("path"))


@dataclass(frozen=True)
class SourceImage:
    """img2img: start from ``image``, noised so that ``strength`` of the schedule is left to run."""

    image: ImageRef
    strength: float = 0.75
    resize: str = "fit"  # how a source of another size is fitted: "fit", "fill" (crop) or "stretch"

    def __post_init__(self) -> None:
        _fraction(self.strength, "Denoising strength")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"Resize mode must be one of {', '.join(RESIZE_MODES)}.")

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image.to_dict(), "strength": self.strength, "resize": self.resize}

    @classmethod
    def from_dict(cls, data: Any) -> "SourceImage":
        data = _mapping(data, "source image")
        return cls(ImageRef.from_dict(data.get("image")), data.get("strength", 0.75), data.get("resize", "fit"))


@dataclass(frozen=True)
class MaskPart:
    """Inpainting: white pixels of ``image`` are repainted; ``blur`` softens its edge (pixels). ``only_masked``
    works on a crop around the mask, grown by ``padding`` pixels, at the request's size, and pastes it back."""

    image: ImageRef
    blur: int = 4
    invert: bool = False
    only_masked: bool = False
    padding: int = 32

    def __post_init__(self) -> None:
        _whole(self.blur, "Mask blur (pixels)", 0, 256)
        if not isinstance(self.invert, bool) or not isinstance(self.only_masked, bool):
            raise ValueError("Mask invert and only-masked must be true or false.")
        _whole(self.padding, "Masked area padding (pixels)", 0, 1024)

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image.to_dict(), "blur": self.blur, "invert": self.invert,
                "only_masked": self.only_masked, "padding": self.padding}

    @classmethod
    def from_dict(cls, data: Any) -> "MaskPart":
        data = _mapping(data, "mask")
        return cls(ImageRef.from_dict(data.get("image")), data.get("blur", 4), data.get("invert", False),
                   data.get("only_masked", False), data.get("padding", 32))


@dataclass(frozen=True)
class OutpaintPart:
    """Outpainting: the source's canvas grows by these many pixels on each side, and the new area is painted."""

    left: int = 0
    right: int = 0
    up: int = 0
    down: int = 0

    def __post_init__(self) -> None:
        for side in ("left", "right", "up", "down"):
            _whole(getattr(self, side), f"Outpainting {side}", 0, MAX_OUTPAINT)
        if not (self.left or self.right or self.up or self.down):
            raise ValueError("Outpainting needs at least one side to extend.")

    @property
    def sides(self) -> tuple[int, int, int, int]:
        return self.left, self.right, self.up, self.down

    def to_dict(self) -> dict[str, Any]:
        return {"left": self.left, "right": self.right, "up": self.up, "down": self.down}

    @classmethod
    def from_dict(cls, data: Any) -> "OutpaintPart":
        data = _mapping(data, "outpainting")
        return cls(data.get("left", 0), data.get("right", 0), data.get("up", 0), data.get("down", 0))


@dataclass(frozen=True)
class HiresPart:
    """Hires fix: the picture made at the request's size is upscaled ``scale`` times (in latent space or with
    Lanczos on the pixels) and refined by a second pass at ``strength`` (``steps`` 0: the request's steps)."""

    scale: float = 2.0
    strength: float = 0.5
    upscaler: str = "latent"
    steps: int = 0

    def __post_init__(self) -> None:
        _fraction(self.scale, "Hires upscale", 1.0, 4.0)
        _fraction(self.strength, "Hires denoising strength")
        if self.upscaler not in HIRES_UPSCALERS:
            raise ValueError(f"Hires upscaler must be one of {', '.join(HIRES_UPSCALERS)}.")
        _whole(self.steps, "Hires steps", 0, 150)

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The upscaled size of a ``width`` × ``height`` picture (multiples of 8)."""
        return (SIZE_MULTIPLE * max(1, round(width * self.scale / SIZE_MULTIPLE)),
                SIZE_MULTIPLE * max(1, round(height * self.scale / SIZE_MULTIPLE)))

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "strength": self.strength, "upscaler": self.upscaler, "steps": self.steps}

    @classmethod
    def from_dict(cls, data: Any) -> "HiresPart":
        data = _mapping(data, "hires fix")
        return cls(data.get("scale", 2.0), data.get("strength", 0.5), data.get("upscaler", "latent"),
                   data.get("steps", 0))


@dataclass(frozen=True)
class LoraRef:
    """A LoRA applied with ``weight``, by name (a file's name in the LoRA folder, as in ``<lora:name:weight>``)
    and, once the engine has found its file, that file's SHA-256. ``from_prompt``: it came from a tag in the
    prompt, so it is re-read from the prompt whenever the request is built (see :func:`build_request`)."""

    name: str
    weight: float = 1.0
    sha256: str = ""
    from_prompt: bool = False

    def __post_init__(self) -> None:
        check_text(self.name, "A LoRA name", max_chars=255, single_line=True)
        if not self.name.strip():
            raise ValueError("A LoRA needs a name.")
        _fraction(self.weight, f"The weight of LoRA {self.name[:40]!r}", -10.0, 10.0)
        if self.sha256 and not _SHA256.match(self.sha256):
            raise ValueError(f"The hash of LoRA {self.name[:40]!r} is not a SHA-256.")
        if not isinstance(self.from_prompt, bool):
            raise ValueError("A LoRA's from_prompt must be true or false.")

    def to_dict(self) -> dict[str, Any]:
        data = {"name": self.name, "weight": self.weight, "sha256": self.sha256}
        return {**data, "from_prompt": True} if self.from_prompt else data

    @classmethod
    def from_dict(cls, data: Any) -> "LoraRef":
        data = _mapping(data, "LoRA")
        return cls(data.get("name"), data.get("weight", 1.0), data.get("sha256", ""), data.get("from_prompt", False))


def prompt_loras(prompt: str, loras: tuple[LoraRef, ...]) -> tuple[LoraRef, ...]:
    """The LoRAs a request applies: those chosen outside the prompt (a list, a grid axis), then one per
    ``<lora:name:weight>`` tag of the prompt whose LoRA is not among them. Entries from tags are always re-read
    from the prompt, so removing a tag removes its LoRA; a file hash already recorded for the name is kept.
    Tags in the negative prompt apply nothing (they are only taken out of its text). Raises ValueError for a tag
    whose name or weight a LoRA cannot have."""
    from .prompts import extract_loras

    chosen = [lora for lora in loras if not lora.from_prompt]
    recorded = {lora.name: lora.sha256 for lora in loras if lora.from_prompt}
    names = {lora.name for lora in chosen}
    _, tags = extract_loras(prompt)
    tagged = [LoraRef(tag.name, tag.weight, recorded.get(tag.name, ""), from_prompt=True)
              for tag in tags if tag.name not in names]
    return tuple(chosen + tagged)


@dataclass(frozen=True)
class EmbeddingRef:
    """A textual-inversion embedding a job's prompts used, recorded by the engine: its name (the word in the
    prompt) and its file's SHA-256. A record only: the prompt's words are what call an embedding up."""

    name: str
    sha256: str

    def __post_init__(self) -> None:
        check_text(self.name, "An embedding name", max_chars=255, single_line=True)
        if not self.name.strip() or not isinstance(self.sha256, str) or not _SHA256.match(self.sha256):
            raise ValueError("An embedding record needs a name and the SHA-256 of its file.")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Any) -> "EmbeddingRef":
        data = _mapping(data, "embedding")
        return cls(data.get("name"), data.get("sha256"))


@dataclass(frozen=True)
class ControlPart:
    """A control model steering the layout with ``image``, at ``weight``, over a fraction of the steps."""

    model: str
    image: ImageRef
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0

    def __post_init__(self) -> None:
        check_text(self.model, "A control model", max_chars=4096, single_line=True)
        if not self.model.strip():
            raise ValueError("A control input needs a control model.")
        _fraction(self.weight, "Control weight", 0.0, 2.0)
        _fraction(self.start, "Control start")
        _fraction(self.end, "Control end")
        if self.start > self.end:
            raise ValueError("A control input must start before it ends.")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "image": self.image.to_dict(), "weight": self.weight, "start": self.start,
                "end": self.end}

    @classmethod
    def from_dict(cls, data: Any) -> "ControlPart":
        data = _mapping(data, "control input")
        return cls(data.get("model"), ImageRef.from_dict(data.get("image")), data.get("weight", 1.0),
                   data.get("start", 0.0), data.get("end", 1.0))


#: The optional parts: name → (class of one item, whether the request holds a tuple of them).
PARTS: dict[str, tuple[type, bool]] = {
    "source": (SourceImage, False),
    "mask": (MaskPart, False),
    "outpaint": (OutpaintPart, False),
    "hires": (HiresPart, False),
    "loras": (LoraRef, True),
    "controls": (ControlPart, True),
    "embeddings": (EmbeddingRef, True),
}


PART_NAMES: tuple[str, ...] = tuple(PARTS)
