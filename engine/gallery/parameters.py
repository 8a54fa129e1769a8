"""Parameters read from an image, and the checks every reader runs on untrusted values.

:class:`ImageParameters` holds only values that passed the request's own validation (the field registry), so
building a request from them always succeeds. Readers of each format (Darkroom, A1111, other tools) collect raw
values and call :func:`finish`. Safe on any thread.
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Mapping

from .. import samplers
from ..fields import FIELDS
from ..request import BuiltRequest, ValidationError, build_request
from .pngtext import MetadataError

MAX_PROMPT_CHARS = 32_768
#: Longest JSON text parsed.
MAX_JSON_CHARS = 4 * 1024 * 1024
#: Most graph nodes visited while reading a ComfyUI graph.
MAX_GRAPH_VISITS = 2_000

SOURCE_LABELS = {
    "darkroom": "Darkroom",
    "a1111": "AUTOMATIC1111",
    "fooocus": "Fooocus",
    "comfyui": "ComfyUI",
    "invokeai": "InvokeAI",
}


@dataclass(frozen=True, eq=False)
class ImageParameters:
    """Parameters read from an image.

    ``fields`` holds only values that passed validation, keyed by :class:`GenerationRequest` field names, so
    ``build_request(**fields)`` always succeeds (missing fields take the form's defaults; a missing seed becomes
    a random one). ``model_name``/``model_hash`` are what the image says about its model, for display and for
    matching a local model; ``fields["model"]`` is set only from Darkroom's own chunk.
    """

    source: str
    fields: Mapping[str, Any]
    model_name: str = ""
    model_hash: str = ""
    warnings: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)
    created: float | None = None
    #: Validated recipe parts (source image, mask, LoRAs, controls) from Darkroom's own chunk, and a hires fix
    #: from any infotext. Their image paths are relative to the gallery folder and only count where the file's
    #: hash matches.
    parts: Mapping[str, Any] = field(default_factory=dict)
    #: Checked settings of picture edits that infotext names without their pictures (A1111's "Denoising
    #: strength", "Mask blur"…): keyword arguments for ``engine.edit.edit_parts`` (strength, resize, mask_blur,
    #: mask_invert, only_masked, mask_padding, outpaint, controls as ``ControlInput`` settings without the image),
    #: to use once the pictures are chosen again. Never part of :meth:`build`.
    edit: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source_label(self) -> str:
        return SOURCE_LABELS.get(self.source, self.source)

    def build(self) -> BuiltRequest:
        """A complete request: these fields over the defaults (batch of one)."""
        return build_request(**{k: v for k, v in self.fields.items() if k != "batch_count"}, **self.parts, batch_count=1)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "parameters": dict(self.fields),
            "model_name": self.model_name,
            "model_hash": self.model_hash,
            "warnings": list(self.warnings),
            "extra": dict(self.extra),
            "edit": dict(self.edit),
        }


def _as_text(value: Any, label: str, warnings: list[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        warnings.append(f"The {label} is not text and was ignored.")
        return None
    if len(value) > MAX_PROMPT_CHARS:
        warnings.append(f"The {label} is very long; it was cut to {MAX_PROMPT_CHARS} characters.")
        value = value[:MAX_PROMPT_CHARS]
    # Control characters (NUL, escapes) cannot be part of a request: drop them rather than the whole prompt.
    return "".join(ch for ch in value if ch in "\n\t" or unicodedata.category(ch) != "Cc")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() and abs(value) < 2**63 else None
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 40:
            return None
        try:
            return int(text, 10)
        except ValueError:
            f = _as_float(text)
            return _as_int(f) if f is not None else None
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        try:
            f = float(value)
        except OverflowError:
            return None
        return f if math.isfinite(f) else None
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 40:
            return None
        try:
            f = float(text)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def short(value: Any, limit: int = 200) -> str:
    if isinstance(value, str):
        return value[:limit]
    try:
        return json.dumps(value, ensure_ascii=False, default=str)[:limit]
    except Exception:  # noqa: BLE001 - deep or odd values from untrusted JSON
        return "…"


def finish(
    source: str,
    raw: Mapping[str, Any],
    warnings: list[str],
    *,
    model_name: Any = "",
    model_hash: Any = "",
    extra: Mapping[str, Any] | None = None,
    created: float | None = None,
) -> ImageParameters:
    """Check every field; keep the good ones, turn the bad ones into warnings."""
    fields: dict[str, Any] = {}
    text_fields = {"prompt": "prompt", "negative_prompt": "negative prompt", "model": "model"}
    for name, label in text_fields.items():
        if name in raw:
            v = _as_text(raw[name], label, warnings)
            if v is not None:
                fields[name] = v
    for name in ("seed", "steps", "width", "height", "batch_count"):
        if name in raw and raw[name] is not None:
            v = _as_int(raw[name])
            if v is None:
                warnings.append(f"The {name.replace('_', ' ')} {short(raw[name], 40)!r} is not a whole number and was ignored.")
            else:
                fields[name] = v
    if "cfg" in raw and raw["cfg"] is not None:
        v = _as_float(raw["cfg"])
        if v is None:
            warnings.append(f"The CFG scale {short(raw['cfg'], 40)!r} is not a number and was ignored.")
        else:
            fields["cfg"] = v
    if "sampler" in raw and raw["sampler"] is not None:
        if isinstance(raw["sampler"], str) and raw["sampler"] in samplers.SAMPLER_NAMES:
            fields["sampler"] = raw["sampler"]
        else:
            warnings.append(f"Sampler {short(raw['sampler'], 60)!r} is not available in Darkroom; the current sampler is kept.")
    # Let the request's own validation judge ranges; drop what it rejects.
    for _ in range(len(FIELDS) + 1):
        try:
            build_request(**fields)
            break
        except ValidationError as exc:
            bad = [k for k in exc.errors if k in fields]
            if not bad:
                fields = {}
                break
            for k in bad:
                warnings.append(exc.errors[k])
                fields.pop(k)
        except Exception:  # noqa: BLE001 - never let odd values escape as anything but a partial result
            fields = {k: v for k, v in fields.items() if k in ("prompt", "negative_prompt")}
    mn = model_name if isinstance(model_name, str) else ""
    mh = model_hash if isinstance(model_hash, str) else ""
    extras = {}
    for k, v in (extra or {}).items():
        if len(extras) >= 100:
            break
        extras[short(k, 80)] = short(v, 500)
    return ImageParameters(
        source=source,
        fields=fields,
        model_name=mn[:300],
        model_hash=mh[:128],
        warnings=tuple(dict.fromkeys(warnings)),
        extra=extras,
        created=created,
    )


def load_json(text: str, what: str) -> Any:
    if not isinstance(text, str):
        raise MetadataError("malformed", f"The {what} are not text.")
    if len(text) > MAX_JSON_CHARS:
        raise MetadataError("malformed", f"The {what} are too large to read.")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MetadataError("malformed", f"The {what} are not valid JSON.", str(exc)[:200]) from None
