"""The one object that carries everything a generation needs into the engine.

A :class:`GenerationRequest` is frozen and always valid: build it with :func:`build_request`, which checks
every field, resolves a "random" seed into the integer actually used and rounds sizes to the model's
multiple (returning a notice that says so). The engine never reads widgets or settings, only requests.
Safe to use from any thread.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from dataclasses import dataclass
from typing import Any, Mapping

SEED_MAX = 2**32 - 1
STEPS_RANGE = (1, 150)
CFG_RANGE = (0.0, 30.0)
SIZE_RANGE = (64, 2048)
BATCH_RANGE = (1, 100)
#: Latent downsampling of every supported family (SD1.x, SD2.x, SDXL): sizes must be multiples of it.
SIZE_MULTIPLE = 8

#: Sampler names as people know them from AUTOMATIC1111, in menu order.
SCHEDULERS = (
    "Euler",
    "Euler a",
    "Heun",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ 2M SDE Karras",
    "DDIM",
    "DDPM",
    "UniPC",
    "LCM",
)
DEFAULT_SCHEDULER = "DPM++ 2M"

#: Version of the JSON form written by :meth:`GenerationRequest.to_dict`.
REQUEST_FORMAT_VERSION = 1


class ValidationError(ValueError):
    """One or more fields are invalid. ``errors`` maps field name to a message meant for people."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(self.errors.values()))


@dataclass(frozen=True)
class GenerationRequest:
    """A complete, validated recipe. ``model`` is a model name or a path ("" means the default model)."""

    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 25
    cfg: float = 7.0
    width: int = 512
    height: int = 512
    scheduler: str = DEFAULT_SCHEDULER
    model: str = ""
    batch_count: int = 1

    def image_request(self, index: int) -> "GenerationRequest":
        """The request that remakes image ``index`` of this batch alone (seed + index, batch of one)."""
        return dataclasses.replace(self, seed=(self.seed + index) % (SEED_MAX + 1), batch_count=1)

    def to_dict(self) -> dict[str, Any]:
        return {"version": REQUEST_FORMAT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BuiltRequest":
        """Validate a dict (e.g. read from JSON) into a request. Unknown keys are ignored."""
        if not isinstance(data, Mapping):
            raise ValidationError({"request": "Parameters must be a JSON object."})
        fields = {f.name for f in dataclasses.fields(cls)}
        return build_request(**{k: v for k, v in data.items() if k in fields})


@dataclass(frozen=True)
class BuiltRequest:
    request: GenerationRequest
    notices: tuple[str, ...] = ()


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


def _int_in(errors: dict, name: str, label: str, value: Any, lo: int, hi: int) -> int | None:
    if isinstance(value, bool):
        value = None
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            value = None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        errors[name] = f"{label} must be a whole number from {lo} to {hi}."
        return None
    if not lo <= value <= hi:
        errors[name] = f"{label} must be from {lo} to {hi}; got {value}."
        return None
    return value


def build_request(
    prompt: Any = "",
    negative_prompt: Any = "",
    seed: Any = "random",
    steps: Any = 25,
    cfg: Any = 7.0,
    width: Any = 512,
    height: Any = 512,
    scheduler: Any = DEFAULT_SCHEDULER,
    model: Any = "",
    batch_count: Any = 1,
) -> BuiltRequest:
    """Check every field and build a request, or raise :class:`ValidationError` listing every bad field.

    A "random" seed (or None, "", -1) is replaced by a fresh random integer so the request records the seed
    actually used. Sizes that are not multiples of 8 are rounded to the nearest multiple, with a notice.
    """
    errors: dict[str, str] = {}
    notices: list[str] = []

    if not isinstance(prompt, str):
        errors["prompt"] = "Prompt must be text."
    if not isinstance(negative_prompt, str):
        errors["negative_prompt"] = "Negative prompt must be text."
    try:
        seed_value = parse_seed(seed)
    except ValueError as exc:
        errors["seed"] = str(exc)
        seed_value = 0
    steps_v = _int_in(errors, "steps", "Steps", steps, *STEPS_RANGE)
    try:
        cfg_v = float(cfg.strip() if isinstance(cfg, str) else cfg) if not isinstance(cfg, bool) else None
    except (TypeError, ValueError):
        cfg_v = None
    if cfg_v is None or not math.isfinite(cfg_v):
        errors["cfg"] = f"CFG scale must be a number from {CFG_RANGE[0]:g} to {CFG_RANGE[1]:g}."
    elif not CFG_RANGE[0] <= cfg_v <= CFG_RANGE[1]:
        errors["cfg"] = f"CFG scale must be from {CFG_RANGE[0]:g} to {CFG_RANGE[1]:g}; got {cfg_v:g}."
    sizes = {}
    for name, label, value in (("width", "Width", width), ("height", "Height", height)):
        v = _int_in(errors, name, label, value, *SIZE_RANGE)
        if v is not None and v % SIZE_MULTIPLE:
            rounded = max(SIZE_RANGE[0], min(SIZE_RANGE[1], SIZE_MULTIPLE * ((v + SIZE_MULTIPLE // 2) // SIZE_MULTIPLE)))
            notices.append(f"{label} {v} is not a multiple of {SIZE_MULTIPLE}; using {rounded}.")
            v = rounded
        sizes[name] = v
    if scheduler not in SCHEDULERS:
        errors["scheduler"] = f"Unknown sampler {str(scheduler)[:40]!r}; choose one of: {', '.join(SCHEDULERS)}."
    if not isinstance(model, str):
        errors["model"] = "Model must be a name or a path."
    batch_v = _int_in(errors, "batch_count", "Batch count", batch_count, *BATCH_RANGE)

    if errors:
        raise ValidationError(errors)
    request = GenerationRequest(
        prompt=prompt,
        negative_prompt=negative_prompt,
        seed=random_seed() if seed_value is None else seed_value,
        steps=steps_v,
        cfg=float(cfg_v),
        width=sizes["width"],
        height=sizes["height"],
        scheduler=scheduler,
        model=model.strip(),
        batch_count=batch_v,
    )
    return BuiltRequest(request, tuple(notices))
