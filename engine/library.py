"""The model library: every model Darkroom can use, with what people want to know before choosing one — its
family, precision, size on disk and where it came from — and adding or removing models by path.

Everything is read from file headers (``model_index.json``, the JSON header of ``.safetensors`` files), never by
loading weights, so listing a library of large models takes milliseconds and imports no torch. Any thread.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from . import families, hub, models
from .errors import DarkroomError, ErrorKind
from .models import ModelEntry

#: safetensors dtype names → what the library shows
_PRECISION = {"F16": "fp16", "BF16": "bf16", "F32": "fp32", "F64": "fp64", "F8_E4M3": "fp8", "F8_E5M2": "fp8"}
#: A header larger than this is not read (real ones are well under a few MB).
MAX_HEADER = 64 * 1024 * 1024
SOURCE_WORDS = {"bundled": "bundled with Darkroom", "user": "in your models folder", "path": "added by path",
                "hub": "downloaded from the Hugging Face Hub"}


@dataclass(frozen=True)
class LibraryEntry:
    model: ModelEntry
    family: str  # the family's title, or "unknown"
    precision: str  # "fp16", "fp32", "bf16", "mixed (fp16, fp32)" or "unknown"
    size_bytes: int

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def source(self) -> str:
        return self.model.source


def read_header(path: Path) -> dict:
    """The JSON header of a ``.safetensors`` file (tensor name → dtype, shape, offsets). ValueError when the file
    is not one."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError("too short")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_HEADER:
            raise ValueError("header too large")
        header = json.loads(f.read(length))
    if not isinstance(header, dict):
        raise ValueError("not a safetensors header")
    header.pop("__metadata__", None)
    return header


def _weights(entry: ModelEntry) -> list[Path]:
    if entry.path.is_file():
        return [entry.path]
    return sorted(p for p in entry.path.rglob("*.safetensors") if p.is_file())


def _precision(files: list[Path]) -> str:
    seen: set[str] = set()
    for path in files:
        try:
            header = read_header(path)
        except (OSError, ValueError):
            continue
        seen.update(_PRECISION.get(str(v.get("dtype")), str(v.get("dtype")).lower())
                    for v in header.values() if isinstance(v, dict))
    if not seen:
        return "unknown"
    return seen.pop() if len(seen) == 1 else f"mixed ({', '.join(sorted(seen))})"


def _family(entry: ModelEntry) -> str:
    try:
        if entry.path.is_dir():
            index = json.loads((entry.path / "model_index.json").read_text(encoding="utf-8"))
            family = families.for_pipeline(index.get("_class_name", "")) if isinstance(index, dict) else None
        else:
            header = read_header(entry.path)
            found = families.for_checkpoint({k: v.get("shape") for k, v in header.items() if isinstance(v, dict)})
            family = found[0] if found else None
    except (OSError, ValueError):
        return "unknown"
    return family.title if family is not None else "unknown"


def _size(entry: ModelEntry) -> int:
    files = [entry.path] if entry.path.is_file() else [p for p in entry.path.rglob("*") if p.is_file()]
    total = 0
    for p in files:
        try:
            total += p.stat().st_size  # follows the Hugging Face cache's links to its blobs
        except OSError:
            pass
    return total


def describe(entry: ModelEntry) -> LibraryEntry:
    return LibraryEntry(entry, _family(entry), _precision(_weights(entry)), _size(entry))


def library(extra_paths: tuple[str, ...] = ()) -> list[LibraryEntry]:
    """Every model: bundled, in the models folder, downloaded, added by path."""
    return [describe(e) for e in models.available_models(extra_paths)]


def add(path: str | Path, user_models: list[str]) -> str:
    """Add a model by path to ``user_models`` (the settings' list) and return its canonical path. Raises
    DarkroomError for anything that is not a model Darkroom can open (the file itself is not loaded)."""
    p = Path(path).expanduser()
    entry = models.resolve(str(p))  # refuses missing paths, pickle files, folders without model_index.json
    value = str(entry.path.resolve())
    if value not in user_models:
        user_models.append(value)
    return value


def remove(name: str, user_models: list[str]) -> str:
    """Remove a model added by path (from ``user_models``) or a downloaded one (from the library; its files stay in
    the shared Hugging Face cache). Returns what was removed; DarkroomError when it is bundled, in the models
    folder (delete the file), or unknown."""
    for entry in models.available_models(tuple(user_models)):
        if name not in (entry.name, str(entry.path)) and Path(name).expanduser().resolve() != entry.path.resolve():
            continue
        if entry.source == "path":
            user_models[:] = [m for m in user_models if Path(m).resolve() != entry.path.resolve()]
            return entry.name
        if entry.source == "hub":
            hub.forget(next(repo for repo, folder in hub.completed().items() if folder == entry.path))
            return entry.name
        where = "comes with Darkroom" if entry.source == "bundled" else f"is a file in {entry.path.parent}; delete it there"
        raise DarkroomError(f"{entry.name} {where}.", kind=ErrorKind.VALIDATION)
    raise DarkroomError(f"No model named {name!r} in the library.", kind=ErrorKind.VALIDATION)


def format_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit != "MB" else f"{size:.1f} MB"
        size /= 1024
    return f"{size:.1f} GB"
