"""Generation parameters in PNG files: writing Darkroom's, reading anyone's.

Darkroom writes two text chunks into every image:

- ``parameters``: AUTOMATIC1111's infotext (see :mod:`engine.gallery.infotext`), for every other tool;
- ``darkroom``: versioned JSON holding the full request (``GenerationRequest.to_dict()``) plus the model's name
  and hash, so Darkroom restores the request exactly.

Reading (:func:`read_parameters`) understands, in this order of preference: Darkroom's chunk, A1111/Forge/Fooocus
``parameters`` (infotext or Fooocus JSON), InvokeAI ``invokeai_metadata`` (and InvokeAI 2's ``sd-metadata``), and
ComfyUI's ``prompt`` graph (best effort: it is a program, not a record).

Everything read from an image is untrusted. The PNG reader (:mod:`engine.gallery.pngtext`) walks chunks itself
with hard limits and never decodes pixels; the parsers (here for Darkroom and A1111, :mod:`other_tools` for the
rest) check every value through :mod:`engine.gallery.parameters`. Every public function here either returns a
result (possibly partial, with ``warnings``) or raises :class:`MetadataError`, nothing else, and runs in time
linear in its input.
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime, timezone
from typing import Any, Mapping

from .. import __version__, samplers
from ..fields import FIELD
from ..request import PART_NAMES, REQUEST_FORMAT_VERSION, GenerationRequest, ValidationError, build_request
from . import infotext as _infotext
from .infotext_edits import is_edit_key, read_edit_params
from .other_tools import parse_comfyui, parse_fooocus, parse_invokeai, parse_invokeai_legacy
from .parameters import MAX_PROMPT_CHARS, SOURCE_LABELS, ImageParameters, finish, load_json
from .pngtext import PNG_SIGNATURE, MetadataError, PngText, read_png_text, read_png_text_from

__all__ = [
    "DARKROOM_KEY", "PARAMETERS_KEY", "DARKROOM_FORMAT_VERSION", "MAX_PROMPT_CHARS", "PNG_SIGNATURE", "SOURCE_LABELS",
    "ImageParameters", "MetadataError", "PngText", "darkroom_text_chunks", "parameters_from_text", "parse_a1111",
    "parse_comfyui", "parse_darkroom", "parse_fooocus", "parse_invokeai", "parse_invokeai_legacy", "read_parameters",
    "read_png_text", "read_png_text_from",
]

DARKROOM_KEY = "darkroom"
PARAMETERS_KEY = "parameters"
#: Version of the JSON in the ``darkroom`` chunk.
DARKROOM_FORMAT_VERSION = 1

# -- writing ------------------------------------------------------------------------------------------------
def darkroom_text_chunks(
    request: GenerationRequest,
    *,
    model_name: str = "",
    model_hash: str = "",
    created: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The text chunks Darkroom writes into an image: ``parameters`` (A1111) and ``darkroom`` (JSON)."""
    created = created or datetime.now(timezone.utc)
    recipe = request.to_dict()
    # A shared image must not reveal the user's folders: the model is recorded by name (and hash), not path.
    recipe["model"] = model_name or _infotext.model_label(request.model)
    payload: dict[str, Any] = {
        "darkroom": DARKROOM_FORMAT_VERSION,
        "app": f"darkroom {__version__}",
        "request": recipe,
        "model_name": model_name,
        "model_hash": model_hash,
        "created": created.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
    }
    if extra:
        payload.update({k: v for k, v in extra.items() if k not in payload})
    return {
        PARAMETERS_KEY: _infotext.format_infotext(request, model_name, model_hash, f"darkroom {__version__}"),
        DARKROOM_KEY: json.dumps(payload, ensure_ascii=True, separators=(",", ":")),
    }


# -- Darkroom ---------------------------------------------------------------------------------------------
def parse_darkroom(text: str) -> ImageParameters:
    data = load_json(text, "Darkroom parameters")
    if not isinstance(data, dict) or not isinstance(data.get("request"), dict):
        raise MetadataError("malformed", "The Darkroom parameters in this image are damaged.")
    warnings: list[str] = []
    version = data.get("darkroom")
    if isinstance(version, int) and not isinstance(version, bool) and version > DARKROOM_FORMAT_VERSION:
        warnings.append("This image was made by a newer Darkroom; some settings may not be restored.")
    request = data["request"]
    rversion = request.get("version")
    if isinstance(rversion, int) and not isinstance(rversion, bool) and rversion > REQUEST_FORMAT_VERSION:
        warnings.append("This image's request comes from a newer Darkroom; some settings may not be restored.")
    raw = {k: request[k] for k in FIELD if k in request}
    if "sampler" not in raw and "scheduler" in request:  # request format 1
        raw["sampler"] = request["scheduler"]
    created = None
    if isinstance(data.get("created"), str) and len(data["created"]) < 64:
        try:
            created = datetime.fromisoformat(data["created"]).timestamp()
        except (ValueError, OverflowError, OSError):
            created = None
    extra = {k: data[k] for k in ("app", "device", "dtype", "seconds") if k in data}
    result = finish(
        "darkroom",
        raw,
        warnings,
        model_name=data.get("model_name", ""),
        model_hash=data.get("model_hash", ""),
        extra=extra,
        created=created,
    )
    parts = _parts(request, warnings)
    if parts:
        result = dataclasses.replace(result, parts=parts, warnings=tuple(dict.fromkeys(result.warnings + tuple(warnings))))
    return result


def _parts(request: Mapping[str, Any], warnings: list[str]) -> dict[str, Any]:
    """The recipe parts of a Darkroom request that validate; each bad one becomes a warning. Parts are checked
    together first, since some need each other (a mask needs its source image)."""
    raw = {name: request[name] for name in PART_NAMES if request.get(name) not in (None, [], {})}
    # The prompt too: LoRAs from its <lora:…> tags are re-read from it, keeping their recorded hashes.
    prompt = request.get("prompt") if isinstance(request.get("prompt"), str) else ""
    try:
        together = build_request(prompt=prompt, **raw).request
        return {name: getattr(together, name) for name in raw}
    except (ValidationError, TypeError, RecursionError):
        pass
    parts: dict[str, Any] = {}
    for name in raw:
        try:
            parts[name] = getattr(build_request(**{name: request[name]}).request, name)
        except (ValidationError, TypeError, RecursionError) as exc:
            message = exc.errors.get(name, str(exc)) if isinstance(exc, ValidationError) else "damaged"
            warnings.append(f"The image's {name} could not be restored: {message[:200]}")
    return parts


# -- AUTOMATIC1111 / Forge / Fooocus ------------------------------------------------------------------------
_A1111_USED = {"Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model", "Model hash"}


def parse_a1111(text: str) -> ImageParameters:
    if not isinstance(text, str):
        raise MetadataError("malformed", "The parameters are not text.")
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            return parse_fooocus(stripped)
        except MetadataError:
            pass  # a prompt that merely starts with "{": read it as infotext
    info = _infotext.parse_infotext(text)
    warnings = list(info.warnings)
    p = info.params
    raw: dict[str, Any] = {"prompt": info.prompt, "negative_prompt": info.negative_prompt}
    if not p and not info.prompt.strip():
        raise MetadataError("malformed", "The parameters text in this image is empty.")
    for key, name in (("Steps", "steps"), ("CFG scale", "cfg"), ("Seed", "seed")):
        if key in p:
            raw[name] = p[key]
    size = p.get("Size")
    if size is not None:
        w, sep, h = size.strip().partition("x")
        if sep and w.isdigit() and h.isdigit() and len(w) <= 6 and len(h) <= 6:
            raw["width"], raw["height"] = int(w), int(h)
        else:
            warnings.append(f"The size {size[:40]!r} is not of the form WIDTHxHEIGHT and was ignored.")
    if "Sampler" in p:
        name, warning = samplers.from_a1111(p["Sampler"], p.get("Schedule type"))
        if warning:
            warnings.append(warning)
        if name is not None:
            raw["sampler"] = name
    hires, edit = read_edit_params(p, warnings)
    if edit.keys() - {"resize"}:
        # Only Darkroom's own chunk references pictures; infotext cannot bring them back.
        warnings.append("This image was made from other pictures (a source image, mask or control image) that its "
                        "parameters cannot bring back; their settings were read, the pictures must be chosen again.")
    ignored = [k for k in p if k not in _A1111_USED and k != "Version" and not is_edit_key(k)
               and k not in _infotext.HASH_KEYS]
    if ignored:
        shown = ", ".join(k[:40] for k in ignored[:8]) + ("…" if len(ignored) > 8 else "")
        warnings.append(f"Settings Darkroom does not use were ignored: {shown}.")
    if not p:
        warnings.append("Only a prompt was found; steps, seed and the other settings are missing.")
    result = finish(
        "a1111",
        raw,
        warnings,
        model_name=p.get("Model", ""),
        model_hash=p.get("Model hash", ""),
        extra={k: v for k, v in p.items() if k not in _A1111_USED},
    )
    return _with_edits(result, hires, edit)


def _with_edits(result: ImageParameters, hires: Any, edit: dict[str, Any]) -> ImageParameters:
    """``result`` with the hires fix as a part, when it fits the fields read (its size is bounded), and the
    edit settings."""
    parts: dict[str, Any] = {}
    warnings = list(result.warnings)
    if hires is not None:
        try:
            build_request(**result.fields, hires=hires)
            parts["hires"] = hires
        except ValidationError as exc:
            warnings.append(f"The hires fix was not restored: {exc.errors.get('hires', str(exc))[:200]}")
    if not parts and not edit and len(warnings) == len(result.warnings):
        return result
    return dataclasses.replace(result, parts=parts, edit=edit, warnings=tuple(dict.fromkeys(warnings)))


# -- dispatch ---------------------------------------------------------------------------------------------------
_READERS = (
    (DARKROOM_KEY, parse_darkroom),
    (PARAMETERS_KEY, parse_a1111),
    ("invokeai_metadata", parse_invokeai),
    ("sd-metadata", parse_invokeai_legacy),
    ("prompt", parse_comfyui),
)


def parameters_from_text(text: Mapping[str, str]) -> ImageParameters:
    """The best parameters among an image's text chunks. Raises :class:`MetadataError` only."""
    problems: list[MetadataError] = []
    for key, reader in _READERS:
        value = text.get(key)
        if not isinstance(value, str):
            continue
        try:
            result = reader(value)
        except MetadataError as exc:
            problems.append(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - untrusted input: report, never crash
            problems.append(MetadataError("malformed", "The parameters in this image could not be read.", repr(exc)[:300]))
            continue
        if problems:
            result = dataclasses.replace(result, warnings=tuple(p.message for p in problems) + result.warnings)
        return result
    if problems:
        raise MetadataError("malformed", problems[0].message, "; ".join(p.details for p in problems if p.details))
    raise MetadataError("no_parameters", "This image holds no generation parameters.")


def read_parameters(source: str | os.PathLike | bytes) -> ImageParameters:
    """The generation parameters of a PNG file (a path or its bytes). Raises :class:`MetadataError` only."""
    png = read_png_text(source)
    result = parameters_from_text(png.text)
    if png.warnings:
        result = dataclasses.replace(result, warnings=result.warnings + png.warnings)
    return result
