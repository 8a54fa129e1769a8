"""The one field registry: every core setting of a generation, described once.

A :class:`Field` row gives a request field its name, type, range, default, label, tooltip, AUTOMATIC1111 infotext
key and command-line option, and parses values as people type them or as JSON holds them. Validation
(:func:`engine.request.build_request`), the window's form, the saved settings, ``darkroom generate``'s options and
the image metadata all read these rows, so a new field is one row here plus the code that uses it.

Pure data: safe on any thread, imports no torch and no Qt.
"""

from __future__ import annotations

import math
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any

from . import samplers

SEED_MAX = 2**32 - 1
#: Latent downsampling of every supported family: sizes must be multiples of it.
SIZE_MULTIPLE = 8
#: Longest prompt accepted (A1111 prompts of a few thousand characters are common; this is far above).
MAX_TEXT_CHARS = 32_768


def parse_seed(value: Any) -> int | None:
    """An integer seed in [0, 2³²−1], or None for "random". Raises ValueError with a message for people."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("Seed must be a whole number or \"random\".")
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "random", "-1"):
            return None
        try:
            value = int(text, 10)
        except ValueError:
            raise ValueError(f"Seed must be a whole number from 0 to {SEED_MAX} or \"random\", not {value.strip()[:40]!r}.") from None
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("Seed must be a whole number.")
        value = int(value)
    if not isinstance(value, int):
        raise ValueError("Seed must be a whole number or \"random\".")
    if value == -1:
        return None
    if not 0 <= value <= SEED_MAX:
        raise ValueError(f"Seed must be between 0 and {SEED_MAX}; {value} is out of range.")
    return value


def random_seed() -> int:
    return secrets.randbelow(SEED_MAX + 1)


def check_text(value: Any, label: str, *, max_chars: int = MAX_TEXT_CHARS, single_line: bool = False) -> str:
    """Text a person could have typed: a ``str`` that encodes as UTF-8, with no control characters but line
    breaks and tabs. Undecodable bytes (which Python hands over as lone surrogates, e.g. from a shell variable
    in another encoding) and NUL bytes are refused here, where the request is built, rather than deep inside a
    tokenizer or a PNG writer."""
    if not isinstance(value, str):
        raise ValueError(f"{label} must be text.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{label} holds bytes that are not valid UTF-8 text; check its encoding.") from None
    allowed = "" if single_line else "\n\t\r"
    for ch in value:
        if ch not in allowed and unicodedata.category(ch) == "Cc":
            name = "a NUL byte" if ch == "\0" else f"the control character U+{ord(ch):04X}"
            raise ValueError(f"{label} holds {name}, which cannot be stored in an image; remove it.")
    if len(value) > max_chars:
        raise ValueError(f"{label} is too long ({len(value):,} characters; at most {max_chars:,}).")
    return value


def _number(value: Any, integer: bool) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip()) if not integer else int(value.strip())
        except ValueError:
            return None
    if isinstance(value, float) and integer:
        return int(value) if value.is_integer() else None
    if isinstance(value, int) and not integer:
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (int, float)) else None


@dataclass(frozen=True)
class Field:
    name: str  # GenerationRequest attribute, settings key, JSON key
    label: str
    tooltip: str
    kind: str  # "text" | "int" | "float" | "seed" | "sampler" | "model"
    default: Any
    range: tuple[float, float] | None = None
    a1111: str | None = None  # infotext key; width and height share "Size"
    cli: str | None = None  # option of ``darkroom generate``; None: not an option (the prompt is positional)
    cli_metavar: str = ""
    multiple: int = 1  # values are rounded to a multiple of this (with a notice)

    def choices(self) -> tuple[str, ...]:
        return samplers.SAMPLER_NAMES if self.kind == "sampler" else ()

    def parse(self, value: Any) -> Any:
        """The typed value of ``value`` (as typed, or from JSON). Raises ValueError with a message for people.
        A seed parses to None for "random"."""
        if self.kind in ("text", "model"):
            text = check_text(value, self.label, single_line=self.kind == "model")
            return text.strip() if self.kind == "model" else text
        if self.kind == "seed":
            return parse_seed(value)
        if self.kind == "sampler":
            if value not in samplers.SAMPLER_NAMES:
                raise ValueError(f"Unknown sampler {str(value)[:40]!r}; choose one of: {', '.join(samplers.SAMPLER_NAMES)}.")
            return value
        lo, hi = self.range
        number = _number(value, self.kind == "int")
        if number is None:
            what = "a whole number" if self.kind == "int" else "a number"
            raise ValueError(f"{self.label} must be {what} from {lo:g} to {hi:g}.")
        if not lo <= number <= hi:
            raise ValueError(f"{self.label} must be from {lo:g} to {hi:g}; got {number:g}.")
        return number

    def round(self, value: Any) -> tuple[Any, str]:
        """``value`` rounded to this field's multiple, and a notice saying so ("" when it was already one)."""
        if self.multiple <= 1 or value % self.multiple == 0:
            return value, ""
        lo, hi = self.range
        rounded = int(max(lo, min(hi, self.multiple * ((value + self.multiple // 2) // self.multiple))))
        return rounded, f"{self.label} {value} is not a multiple of {self.multiple}; using {rounded}."

    @property
    def help(self) -> str:
        """The command line's help for this field: the tooltip and, where useful, the range and default."""
        extra = ""
        if self.range:
            extra = f" ({self.range[0]:g}-{self.range[1]:g}, default {self.default:g})"
        elif self.kind == "sampler":
            extra = f": {', '.join(samplers.SAMPLER_NAMES)} (default {self.default})"
        elif self.kind == "seed":
            extra = f' (0-{SEED_MAX} or "random", the default)'
        return self.tooltip.rstrip(".") + extra


FIELDS: tuple[Field, ...] = (
    Field("prompt", "Prompt", "What to draw.", "text", ""),
    Field("negative_prompt", "Negative prompt", "What to keep out of the picture.", "text", "",
          cli="--negative", cli_metavar="TEXT"),
    Field("seed", "Seed", "The starting noise: the same seed and settings give the same picture.", "seed", "random",
          a1111="Seed", cli="--seed", cli_metavar="N"),
    Field("steps", "Steps", "Denoising steps: more refine further, and take longer.", "int", 25, (1, 150),
          a1111="Steps", cli="--steps", cli_metavar="N"),
    Field("cfg", "CFG scale", "Classifier-free guidance: how strongly the prompt steers the picture.", "float", 7.0,
          (0.0, 30.0), a1111="CFG scale", cli="--cfg", cli_metavar="X"),
    Field("width", "Width", "Image width in pixels.", "int", 512, (64, 2048), a1111="Size", multiple=SIZE_MULTIPLE),
    Field("height", "Height", "Image height in pixels.", "int", 512, (64, 2048), a1111="Size",
          multiple=SIZE_MULTIPLE),
    Field("sampler", "Sampler", "How each denoising step is taken.", "sampler", samplers.DEFAULT_SAMPLER,
          a1111="Sampler", cli="--sampler", cli_metavar="NAME"),
    Field("model", "Model", "A model name, folder or .safetensors file; empty for the default model.", "model", "",
          a1111="Model", cli="--model", cli_metavar="PATH_OR_NAME"),
    Field("batch_count", "Batch count", "How many pictures to make; picture k uses seed + k.", "int", 1, (1, 100),
          cli="--batch", cli_metavar="N"),
)

FIELD: dict[str, Field] = {f.name: f for f in FIELDS}
