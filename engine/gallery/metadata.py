"""Generation parameters in PNG files: writing Darkroom's, reading anyone's.

Darkroom writes two text chunks into every image:

- ``parameters``: AUTOMATIC1111's infotext (see :mod:`engine.gallery.infotext`), for every other tool;
- ``darkroom``: versioned JSON holding the full request (``GenerationRequest.to_dict()``) plus the model's name
  and hash, so Darkroom restores the request exactly.

Reading (:func:`read_parameters`) understands, in this order of preference: Darkroom's chunk, A1111/Forge/Fooocus
``parameters`` (infotext or Fooocus JSON), InvokeAI ``invokeai_metadata`` (and InvokeAI 2's ``sd-metadata``), and
ComfyUI's ``prompt`` graph (best effort: it is a program, not a record).

Everything read from an image is untrusted. The PNG reader walks chunks itself with hard limits (chunk sizes,
decompressed sizes, chunk count) and never decodes pixels; the parsers check every type and range. Every public
function here either returns a result (possibly partial, with ``warnings``) or raises :class:`MetadataError`,
nothing else, and runs in time linear in its input.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import struct
import unicodedata
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Mapping

from .. import __version__
from ..errors import DarkroomError, ErrorKind
from .. import samplers
from ..fields import FIELD, FIELDS
from ..request import PART_NAMES, REQUEST_FORMAT_VERSION, BuiltRequest, GenerationRequest, ValidationError, build_request
from . import infotext as _infotext
from .store import open_regular

# -- limits ------------------------------------------------------------------------------------------------
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Largest text chunk read, compressed or not (bigger ones are skipped with a warning).
MAX_CHUNK_BYTES = 4 * 1024 * 1024
#: Largest decompressed text of one chunk.
MAX_TEXT_BYTES = 4 * 1024 * 1024
#: Most text read from one file, all chunks together.
MAX_TOTAL_TEXT_BYTES = 16 * 1024 * 1024
#: Most chunks walked in one file.
MAX_CHUNKS = 100_000
#: Longest prompt kept (longer ones are cut, with a warning).
MAX_PROMPT_CHARS = 32_768
#: Longest JSON text parsed.
MAX_JSON_CHARS = 4 * 1024 * 1024
#: Most graph nodes visited while reading a ComfyUI graph.
MAX_GRAPH_VISITS = 2_000

DARKROOM_KEY = "darkroom"
PARAMETERS_KEY = "parameters"
#: Version of the JSON in the ``darkroom`` chunk.
DARKROOM_FORMAT_VERSION = 1

SOURCE_LABELS = {
    "darkroom": "Darkroom",
    "a1111": "AUTOMATIC1111",
    "fooocus": "Fooocus",
    "comfyui": "ComfyUI",
    "invokeai": "InvokeAI",
}


class MetadataError(DarkroomError):
    """An image's parameters cannot be read. ``code`` says why, for programs:

    - ``"unreadable"``: the file cannot be opened or read;
    - ``"not_png"``: the file is not a PNG image;
    - ``"no_parameters"``: a valid PNG that holds no generation parameters;
    - ``"malformed"``: parameters are there but none of them can be used.
    """

    kind = ErrorKind.VALIDATION

    def __init__(self, code: str, message: str, details: str = ""):
        super().__init__(message, details)
        self.code = code


@dataclass(frozen=True, eq=False)
class PngText:
    """What the chunk walker found: the image size from ``IHDR`` and the text chunks, first of each key."""

    width: int
    height: int
    text: dict[str, str]
    warnings: tuple[str, ...] = ()


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
    #: Validated recipe parts (source image, mask, LoRAs, controls) from Darkroom's own chunk. Their image paths
    #: are relative to the gallery folder and only count where the file's hash matches.
    parts: Mapping[str, Any] = field(default_factory=dict)

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
        }


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


# -- the PNG chunk walker -----------------------------------------------------------------------------------
def _inflate(data: bytes) -> bytes | None:
    """zlib-decompress at most MAX_TEXT_BYTES; None when the data is bad or would be larger."""
    try:
        d = zlib.decompressobj()
        out = d.decompress(data, MAX_TEXT_BYTES + 1)
    except zlib.error:
        return None
    if len(out) > MAX_TEXT_BYTES or d.unconsumed_tail:
        return None
    return out


def _decode_text_chunk(ctype: bytes, data: bytes) -> tuple[str, str, str | None]:
    """``(keyword, text, warning)``; keyword "" when the chunk is unusable."""
    nul = data.find(b"\0", 0, 80)
    if nul <= 0:
        return "", "", "A text chunk has no valid keyword."
    key = data[:nul].decode("latin-1")
    rest = data[nul + 1:]
    if ctype == b"tEXt":
        return key, rest.decode("latin-1"), None
    if ctype == b"zTXt":
        if not rest or rest[0] != 0:
            return "", "", f"Text chunk {key!r} uses an unknown compression."
        raw = _inflate(rest[1:])
        if raw is None:
            return "", "", f"Text chunk {key!r} is damaged or too large."
        return key, raw.decode("latin-1"), None
    # iTXt: compression flag, method, language\0, translated keyword\0, UTF-8 text
    if len(rest) < 2:
        return "", "", f"Text chunk {key!r} is cut short."
    flag, method = rest[0], rest[1]
    rest = rest[2:]
    lang_end = rest.find(b"\0")
    if lang_end < 0:
        return "", "", f"Text chunk {key!r} is damaged."
    trans_end = rest.find(b"\0", lang_end + 1)
    if trans_end < 0:
        return "", "", f"Text chunk {key!r} is damaged."
    body = rest[trans_end + 1:]
    if flag == 1:
        if method != 0:
            return "", "", f"Text chunk {key!r} uses an unknown compression."
        body = _inflate(body)
        if body is None:
            return "", "", f"Text chunk {key!r} is damaged or too large."
    elif flag != 0:
        return "", "", f"Text chunk {key!r} is damaged."
    try:
        return key, body.decode("utf-8"), None
    except UnicodeDecodeError:
        return key, body.decode("utf-8", errors="replace"), f"Text chunk {key!r} is not valid UTF-8; bad bytes were replaced."


def read_png_text_from(fp: BinaryIO) -> PngText:
    """Walk a PNG's chunks and collect its text. Raises :class:`MetadataError` ("not_png") only."""
    if fp.read(8) != PNG_SIGNATURE:
        raise MetadataError("not_png", "This file is not a PNG image.")
    width = height = 0
    text: dict[str, str] = {}
    warnings: list[str] = []
    total = 0
    for count in range(MAX_CHUNKS + 1):
        if count == MAX_CHUNKS:
            warnings.append("The image has too many chunks; the rest were not read.")
            break
        header = fp.read(8)
        if len(header) < 8:
            if count == 0:
                raise MetadataError("not_png", "This PNG image is empty or cut short.")
            warnings.append("The image file is cut short.")
            break
        length, ctype = struct.unpack(">I4s", header)
        if length > 0x7FFFFFFF:
            warnings.append("The image file is damaged.")
            break
        if ctype == b"IHDR" and length <= 64:
            data = fp.read(length + 4)
            if len(data) >= 8 + 4:
                width, height = struct.unpack(">II", data[:8])
            continue
        if ctype == b"IEND":
            break
        if ctype not in (b"tEXt", b"zTXt", b"iTXt"):
            fp.seek(length + 4, io.SEEK_CUR)
            continue
        if length > MAX_CHUNK_BYTES or total + length > MAX_TOTAL_TEXT_BYTES:
            warnings.append("A text chunk is too large and was skipped.")
            fp.seek(length + 4, io.SEEK_CUR)
            continue
        data = fp.read(length)
        crc = fp.read(4)
        if len(data) < length or len(crc) < 4:
            warnings.append("The image file is cut short.")
            break
        if zlib.crc32(ctype + data) != struct.unpack(">I", crc)[0]:
            warnings.append("A damaged text chunk was skipped.")
            continue
        key, value, warning = _decode_text_chunk(ctype, data)
        if warning:
            warnings.append(warning)
        if key and key not in text:
            total += len(value)
            if total > MAX_TOTAL_TEXT_BYTES:
                warnings.append("The image holds too much text; the rest was not read.")
                break
            text[key] = value
    return PngText(width, height, text, tuple(dict.fromkeys(warnings)))


def read_png_text(source: str | os.PathLike | bytes) -> PngText:
    """The text chunks of a PNG given as a path or as bytes. Raises :class:`MetadataError` only."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return read_png_text_from(io.BytesIO(bytes(source)))
    try:
        with open_regular(source) as fp:  # never blocks on a FIFO named *.png
            return read_png_text_from(fp)
    except MetadataError:
        raise
    except OSError as exc:
        raise MetadataError(
            "unreadable", f"Cannot read {Path(source).name}: {exc.strerror or exc}.", repr(exc)
        ) from None
    except Exception as exc:  # noqa: BLE001 - a reader of untrusted files reports, never crashes
        raise MetadataError("unreadable", f"Cannot read {Path(source).name}.", repr(exc)) from None


# -- value checks -----------------------------------------------------------------------------------------
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


def _short(value: Any, limit: int = 200) -> str:
    if isinstance(value, str):
        return value[:limit]
    try:
        return json.dumps(value, ensure_ascii=False, default=str)[:limit]
    except Exception:  # noqa: BLE001 - deep or odd values from untrusted JSON
        return "…"


def _finish(
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
                warnings.append(f"The {name.replace('_', ' ')} {_short(raw[name], 40)!r} is not a whole number and was ignored.")
            else:
                fields[name] = v
    if "cfg" in raw and raw["cfg"] is not None:
        v = _as_float(raw["cfg"])
        if v is None:
            warnings.append(f"The CFG scale {_short(raw['cfg'], 40)!r} is not a number and was ignored.")
        else:
            fields["cfg"] = v
    if "sampler" in raw and raw["sampler"] is not None:
        if isinstance(raw["sampler"], str) and raw["sampler"] in samplers.SAMPLER_NAMES:
            fields["sampler"] = raw["sampler"]
        else:
            warnings.append(f"Sampler {_short(raw['sampler'], 60)!r} is not available in Darkroom; the current sampler is kept.")
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
        extras[_short(k, 80)] = _short(v, 500)
    return ImageParameters(
        source=source,
        fields=fields,
        model_name=mn[:300],
        model_hash=mh[:128],
        warnings=tuple(dict.fromkeys(warnings)),
        extra=extras,
        created=created,
    )


def _load_json(text: str, what: str) -> Any:
    if not isinstance(text, str):
        raise MetadataError("malformed", f"The {what} are not text.")
    if len(text) > MAX_JSON_CHARS:
        raise MetadataError("malformed", f"The {what} are too large to read.")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MetadataError("malformed", f"The {what} are not valid JSON.", str(exc)[:200]) from None


# -- Darkroom ---------------------------------------------------------------------------------------------
def parse_darkroom(text: str) -> ImageParameters:
    data = _load_json(text, "Darkroom parameters")
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
    result = _finish(
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
    """The recipe parts of a Darkroom request that validate; each bad one becomes a warning."""
    parts: dict[str, Any] = {}
    for name in PART_NAMES:
        if request.get(name) in (None, [], {}):
            continue
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
    ignored = [k for k in p if k not in _A1111_USED and k != "Version"]
    if ignored:
        shown = ", ".join(k[:40] for k in ignored[:8]) + ("…" if len(ignored) > 8 else "")
        warnings.append(f"Settings Darkroom does not use were ignored: {shown}.")
    if not p:
        warnings.append("Only a prompt was found; steps, seed and the other settings are missing.")
    return _finish(
        "a1111",
        raw,
        warnings,
        model_name=p.get("Model", ""),
        model_hash=p.get("Model hash", ""),
        extra={k: v for k, v in p.items() if k not in _A1111_USED},
    )


def _comfy_sampler(sampler: Any, schedule: Any, warnings: list[str]) -> str | None:
    """ComfyUI / Fooocus style names ("dpmpp_2m", "karras") as a Darkroom sampler."""
    if not isinstance(sampler, str):
        return None
    sched = schedule.strip().lower() if isinstance(schedule, str) else ""
    name, warning = samplers.from_a1111(sampler, "Karras" if sched == "karras" else (sched or "Uniform"))
    if warning:
        warnings.append(warning)
    return name


def parse_fooocus(text: str) -> ImageParameters:
    data = _load_json(text, "Fooocus parameters")
    if not isinstance(data, dict):
        raise MetadataError("malformed", "The Fooocus parameters in this image are damaged.")
    warnings: list[str] = []
    raw: dict[str, Any] = {}
    for key, name in (("prompt", "prompt"), ("negative_prompt", "negative_prompt"), ("steps", "steps"),
                      ("guidance_scale", "cfg"), ("seed", "seed")):
        if key in data:
            raw[name] = data[key]
    res = data.get("resolution")
    if isinstance(res, str) and len(res) < 40:
        parts = [p.strip() for p in res.strip("()[] ").split(",")]
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            raw["width"], raw["height"] = int(parts[0]), int(parts[1])
    elif isinstance(res, list) and len(res) == 2:
        raw["width"], raw["height"] = res
    name = _comfy_sampler(data.get("sampler"), data.get("scheduler"), warnings)
    if name:
        raw["sampler"] = name
    if not raw:
        raise MetadataError("malformed", "The Fooocus parameters in this image hold nothing Darkroom can use.")
    return _finish("fooocus", raw, warnings, model_name=data.get("base_model", ""), model_hash=data.get("base_model_hash", ""))


# -- InvokeAI -------------------------------------------------------------------------------------------------
def _invoke_sampler(value: Any, warnings: list[str]) -> str | None:
    if not isinstance(value, str):
        return None
    name = samplers.from_alias(value)
    if name is None:
        warnings.append(f"Sampler {value[:60]!r} is not available in Darkroom; the current sampler is kept.")
    return name


def parse_invokeai(text: str) -> ImageParameters:
    data = _load_json(text, "InvokeAI parameters")
    if not isinstance(data, dict):
        raise MetadataError("malformed", "The InvokeAI parameters in this image are damaged.")
    warnings: list[str] = []
    raw: dict[str, Any] = {}
    for key, name in (("positive_prompt", "prompt"), ("negative_prompt", "negative_prompt"), ("seed", "seed"),
                      ("steps", "steps"), ("cfg_scale", "cfg"), ("width", "width"), ("height", "height")):
        if key in data:
            raw[name] = data[key]
    if "scheduler" in data:
        name = _invoke_sampler(data["scheduler"], warnings)
        if name:
            raw["sampler"] = name
    model = data.get("model")
    model_name = model_hash = ""
    if isinstance(model, dict):
        for k in ("name", "model_name"):
            if isinstance(model.get(k), str):
                model_name = model[k]
                break
        if isinstance(model.get("hash"), str):
            model_hash = model["hash"]
    elif isinstance(model, str):
        model_name = model
    if not raw:
        raise MetadataError("malformed", "The InvokeAI parameters in this image hold nothing Darkroom can use.")
    return _finish("invokeai", raw, warnings, model_name=model_name, model_hash=model_hash,
                   extra={k: data[k] for k in ("app_version", "generation_mode") if k in data})


def parse_invokeai_legacy(text: str) -> ImageParameters:
    """InvokeAI 2's ``sd-metadata`` chunk."""
    data = _load_json(text, "InvokeAI parameters")
    image = data.get("image") if isinstance(data, dict) else None
    if not isinstance(image, dict):
        raise MetadataError("malformed", "The InvokeAI parameters in this image are damaged.")
    warnings: list[str] = []
    raw: dict[str, Any] = {}
    prompt = image.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], dict):
        prompt = prompt[0].get("prompt")
    if isinstance(prompt, str):
        # InvokeAI 2 kept the negative prompt in [brackets] inside the prompt.
        raw["prompt"] = prompt
    for key, name in (("seed", "seed"), ("steps", "steps"), ("cfg_scale", "cfg"), ("width", "width"), ("height", "height")):
        if key in image:
            raw[name] = image[key]
    if "sampler" in image:
        name = _invoke_sampler(image["sampler"], warnings)
        if name:
            raw["sampler"] = name
    if not raw:
        raise MetadataError("malformed", "The InvokeAI parameters in this image hold nothing Darkroom can use.")
    return _finish("invokeai", raw, warnings, model_name=data.get("model_weights", "") if isinstance(data, dict) else "")


# -- ComfyUI ----------------------------------------------------------------------------------------------------
_SAMPLER_CLASSES = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
_TEXT_KEYS = ("text", "text_g", "prompt", "string", "value", "text_l", "positive", "wildcard_text", "populated_text")


class _Graph:
    """A ComfyUI API graph: {node id: {"class_type": str, "inputs": {name: value or [node id, output]}}}."""

    def __init__(self, data: dict):
        self.nodes: dict[str, dict] = {}
        for k, v in list(data.items())[:10_000]:
            if isinstance(v, dict):
                inputs = v.get("inputs")
                self.nodes[str(k)] = {
                    "class_type": v.get("class_type") if isinstance(v.get("class_type"), str) else "",
                    "inputs": inputs if isinstance(inputs, dict) else {},
                }
        self.visits = 0

    @staticmethod
    def link(value: Any) -> str | None:
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) and not isinstance(value[0], bool):
            return str(value[0])
        return None

    def find(self, start: Any, keys: Iterable[str], want: type | tuple[type, ...], follow_all: bool = True) -> Any:
        """Breadth-first from the node ``start`` links to, the first input named in ``keys`` holding a ``want``."""
        keys = tuple(keys)
        self.visits = 0
        first = self.link(start)
        if first is None:
            return start if isinstance(start, want) and not isinstance(start, bool) else None
        queue, seen = [first], {first}
        while queue and self.visits < MAX_GRAPH_VISITS:
            self.visits += 1
            node = self.nodes.get(queue.pop(0))
            if node is None:
                continue
            inputs = node["inputs"]
            for key in keys:
                if key in inputs:
                    v = inputs[key]
                    if isinstance(v, want) and not isinstance(v, bool):
                        return v
                    target = self.link(v)
                    if target is not None and target not in seen:
                        seen.add(target)
                        queue.insert(0, target)  # a value fed from another node: look there first
            if follow_all:
                for v in inputs.values():
                    target = self.link(v)
                    if target is not None and target not in seen:
                        seen.add(target)
                        queue.append(target)
        return None

    def class_of(self, value: Any) -> str:
        target = self.link(value)
        node = self.nodes.get(target) if target is not None else None
        return node["class_type"] if node else ""


def parse_comfyui(text: str) -> ImageParameters:
    data = _load_json(text, "ComfyUI parameters")
    if not isinstance(data, dict):
        raise MetadataError("malformed", "The ComfyUI graph in this image is damaged.")
    graph = _Graph(data)
    samplers = [(nid, n) for nid, n in graph.nodes.items() if n["class_type"] in _SAMPLER_CLASSES]
    if not samplers:
        samplers = [
            (nid, n) for nid, n in graph.nodes.items()
            if any(k in n["inputs"] for k in ("seed", "noise_seed")) and "positive" in n["inputs"]
        ]
    if not samplers:
        raise MetadataError("malformed", "The ComfyUI graph in this image has no sampler Darkroom can read.")

    def sort_key(item: tuple[str, dict]) -> tuple[int, int, str]:
        nid, node = item
        latent_class = graph.class_of(node["inputs"].get("latent_image"))
        first_pass = 0 if latent_class.startswith("Empty") else 1
        return (first_pass, int(nid) if nid.isdigit() and len(nid) < 12 else 1 << 40, nid)

    samplers.sort(key=sort_key)
    _, node = samplers[0]
    inputs = node["inputs"]
    warnings = ["ComfyUI graphs are read as well as possible; check the settings before generating."]
    if len(samplers) > 1:
        warnings.append("The graph has several samplers; the settings of the first pass were used.")
    raw: dict[str, Any] = {}
    number = (int, float)

    guider = inputs.get("guider")
    positive = inputs.get("positive", None)
    negative = inputs.get("negative", None)
    if positive is None and guider is not None:
        gid = graph.link(guider)
        gnode = graph.nodes.get(gid or "", {"inputs": {}})
        positive = gnode["inputs"].get("positive", gnode["inputs"].get("conditioning"))
        negative = gnode["inputs"].get("negative")
    if positive is not None:
        raw["prompt"] = graph.find(positive, _TEXT_KEYS, str)
    if negative is not None:
        neg = graph.find(negative, _TEXT_KEYS, str)
        if neg is not None:
            raw["negative_prompt"] = neg
    seed = graph.find(inputs.get("seed", inputs.get("noise_seed", inputs.get("noise"))), ("seed", "noise_seed", "value"), number)
    if seed is not None:
        raw["seed"] = seed
    steps = graph.find(inputs.get("steps", inputs.get("sigmas")), ("steps", "value"), number, follow_all=False)
    if steps is not None:
        raw["steps"] = steps
    cfg = inputs.get("cfg")
    if cfg is None and guider is not None:
        cfg = graph.find(guider, ("cfg",), number, follow_all=False)
    cfg = graph.find(cfg, ("cfg", "value"), number, follow_all=False) if cfg is not None else None
    if cfg is not None:
        raw["cfg"] = cfg
    sampler_name = graph.find(inputs.get("sampler_name", inputs.get("sampler")), ("sampler_name", "value"), str, follow_all=False)
    schedule = graph.find(inputs.get("scheduler", inputs.get("sigmas")), ("scheduler", "value"), str, follow_all=False)
    if sampler_name is not None:
        name = _comfy_sampler(sampler_name, schedule, warnings)
        if name:
            raw["sampler"] = name
    latent = inputs.get("latent_image")
    if latent is not None:
        w = graph.find(latent, ("width",), number)
        h = graph.find(latent, ("height",), number)
        if w is not None and h is not None:
            raw["width"], raw["height"] = w, h
    model_name = graph.find(inputs.get("model", guider), ("ckpt_name", "unet_name", "model_name"), str) or ""
    if raw.get("prompt") is None and "seed" not in raw and "steps" not in raw:
        raise MetadataError("malformed", "The ComfyUI graph in this image holds nothing Darkroom can use.")
    raw = {k: v for k, v in raw.items() if v is not None}
    return _finish("comfyui", raw, warnings, model_name=model_name)


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
            result = ImageParameters(
                result.source, result.fields, result.model_name, result.model_hash,
                tuple(p.message for p in problems) + result.warnings, result.extra, result.created,
            )
        return result
    if problems:
        raise MetadataError("malformed", problems[0].message, "; ".join(p.details for p in problems if p.details))
    raise MetadataError("no_parameters", "This image holds no generation parameters.")


def read_parameters(source: str | os.PathLike | bytes) -> ImageParameters:
    """The generation parameters of a PNG file (a path or its bytes). Raises :class:`MetadataError` only."""
    png = read_png_text(source)
    result = parameters_from_text(png.text)
    if png.warnings:
        result = ImageParameters(
            result.source, result.fields, result.model_name, result.model_hash,
            result.warnings + png.warnings, result.extra, result.created,
        )
    return result
