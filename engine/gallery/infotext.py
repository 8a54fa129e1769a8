"""AUTOMATIC1111's "infotext": the ``parameters`` PNG text chunk that most Stable Diffusion tools read and write.

The format, as A1111 writes it::

    <prompt, may span lines>
    Negative prompt: <negative, may span lines>      (left out when empty)
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 965400086, Size: 512x512, ...

The last line is ``key: value`` pairs joined by ``", "``; a value holding ``,``, ``:`` or a newline is written as
a JSON string. A reader treats the last line as parameters only when it holds at least three pairs.

:func:`format_infotext` writes it for a :class:`~engine.request.GenerationRequest`; :func:`parse_infotext`
reads anyone's. The parser is a linear scan (no backtracking regular expressions), so hostile text cannot make
it hang; it never raises for any ``str``.

Sampler names map to A1111's ``Sampler`` and ``Schedule type`` through the sampler table
(:mod:`engine.samplers`); the other keys come from the field registry (:mod:`engine.fields`), and those of
picture edits (``Denoising strength``, ``Mask blur``, ``Hires upscale``, ``ControlNet 0``…) from
:mod:`engine.gallery.infotext_edits`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .. import samplers
from ..fields import FIELDS
from ..request import GenerationRequest

#: Longest infotext read; longer text is cut (with a warning) before parsing.
MAX_INFOTEXT_CHARS = 256 * 1024
#: Longest single parameter value kept.
MAX_VALUE_CHARS = 8192


def format_number(value: float | int) -> str:
    """A number as A1111 would show it, without a pointless ``.0`` (7.0 -> "7"), and without losing digits."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def quote(value: object) -> str:
    """A1111's quoting: JSON-encode values holding ``,``, ``:`` or a newline."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text and "\r" not in text and not text.startswith('"'):
        return text
    return json.dumps(text, ensure_ascii=False)


def format_params_line(params: dict[str, object]) -> str:
    return ", ".join(f"{k}: {quote(v)}" for k, v in params.items() if v is not None and v != "")


#: The order A1111 writes its keys in; keys of newer fields follow, then "Version".
_A1111_ORDER = ("Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash", "Model")


def model_label(model: str) -> str:
    """A model given as a path is named by its file or folder name: image metadata never carries the user's paths."""
    model = model.strip().replace("\\", "/").rstrip("/")
    name = model.rsplit("/", 1)[-1]
    for suffix in (".safetensors", ".ckpt"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def format_infotext(
    request: GenerationRequest,
    model_name: str = "",
    model_hash: str = "",
    version: str = "",
) -> str:
    """The ``parameters`` text for ``request`` (one image of it: its own seed), keys in the registry's order, then
    those of its edits."""
    params: dict[str, object] = {}
    for f in FIELDS:
        value = getattr(request, f.name)
        if f.a1111 is None or f.a1111 in params:
            continue
        if f.a1111 == "Size":
            params["Size"] = f"{request.width}x{request.height}"
        elif f.kind == "sampler":
            row = samplers.get(value)
            params["Sampler"], params["Schedule type"] = row.a1111_name, row.schedule
        elif f.kind == "model":
            params["Model hash"] = model_hash or None
            params["Model"] = model_name or model_label(value) or None
        else:
            params[f.a1111] = format_number(value)
    ordered = {k: params.pop(k) for k in _A1111_ORDER if k in params}
    # Imported here: that module reads this one's helpers.
    from .infotext_edits import edit_params

    params = {**ordered, **params, **edit_params(request), **hash_params(request), "Version": version or None}
    text = request.prompt
    if request.negative_prompt:
        text += f"\nNegative prompt: {request.negative_prompt}"
    return f"{text}\n{format_params_line(params)}"


#: Keys recording the files a picture used, by name and short hash (A1111's); read back as a record only.
HASH_KEYS = ("Lora hashes", "TI hashes")


def _hash_list(items) -> str | None:
    # A1111 drops ":" and "," from names so the list stays readable.
    text = ", ".join(f"{name.replace(':', '').replace(',', '')}: {sha256[:10]}" for name, sha256 in items if sha256)
    return text or None


def hash_params(request: GenerationRequest) -> dict[str, object]:
    """``Lora hashes`` (and ``TI hashes``) as A1111 writes them: ``"name: first 10 hex digits of the file's
    SHA-256, …"``, for the files the engine resolved (a request not yet run has no hashes, and no key)."""
    params: dict[str, object] = {"Lora hashes": _hash_list((lora.name, lora.sha256) for lora in request.loras),
                                 "TI hashes": _hash_list((e.name, e.sha256) for e in request.embeddings)}
    return {k: v for k, v in params.items() if v}


@dataclass(frozen=True)
class Infotext:
    """What an infotext says, as text: ``params`` maps A1111's keys (``"Steps"``, ``"Size"``…) to raw values."""

    prompt: str
    negative_prompt: str
    params: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def _is_key_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_ -/"


def _scan_quoted(line: str, start: int) -> int:
    """Index just past the closing quote of the JSON-style string opening at ``start``, or -1."""
    i = start + 1
    n = len(line)
    while i < n:
        ch = line[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1 if i > start + 1 else -1  # A1111 needs at least one character inside quotes
        i += 1
    return -1


def parse_params_line(line: str) -> list[tuple[str, str]]:
    """The ``key: value`` pairs of a parameters line, in order. Linear time; never raises."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            break
        # key: a word character, then word characters, spaces, '-' or '/', then ':'
        j = i
        if line[j].isalnum() or line[j] == "_":
            j += 1
            while j < n and _is_key_char(line[j]):
                j += 1
        if j - i < 2 or j >= n or line[j] != ":":
            # Not a pair: skip to the next comma.
            comma = line.find(",", i)
            if comma < 0:
                break
            i = comma + 1
            continue
        key = line[i:j].strip()
        k = j + 1
        while k < n and line[k].isspace():
            k += 1
        value = None
        if k < n and line[k] == '"':
            end = _scan_quoted(line, k)
            if end > 0:
                rest = end
                if rest >= n or line[rest] == ",":
                    raw = line[k:end]
                    try:
                        decoded = json.loads(raw)
                        value = decoded if isinstance(decoded, str) else raw
                    except (ValueError, RecursionError):
                        value = raw
                    i = rest + 1
        if value is None:
            comma = line.find(",", k)
            end = n if comma < 0 else comma
            value = line[k:end]
            i = end + 1
        pairs.append((key, value[:MAX_VALUE_CHARS]))
    return pairs


def parse_infotext(text: str) -> Infotext:
    """Read A1111-style infotext. Never raises for a ``str``; anything odd becomes a warning."""
    warnings: list[str] = []
    if not isinstance(text, str):
        return Infotext("", "", {}, ("The parameters are not text.",))
    if len(text) > MAX_INFOTEXT_CHARS:
        text = text[:MAX_INFOTEXT_CHARS]
        warnings.append("The parameters text is very long; only its beginning was read.")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    *lines, last = text.strip().split("\n")
    pairs = parse_params_line(last)
    if len(pairs) < 3:
        lines.append(last)
        pairs = []
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in lines:
        line = line.strip()
        if not in_negative and line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    params: dict[str, str] = {}
    for key, value in pairs:
        if len(params) >= 200:
            warnings.append("The parameters hold too many entries; the rest were ignored.")
            break
        params.setdefault(key, value)
    return Infotext("\n".join(prompt_lines), "\n".join(negative_lines), params, tuple(warnings))
