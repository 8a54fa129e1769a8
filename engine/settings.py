"""Darkroom's settings: one typed object saved as JSON in :func:`engine.paths.config_dir`.

Holds the last-used generation parameters (``generation``: the form's values keyed by field name, see
:mod:`engine.fields`), the preview mode, the models a person added by hand, the gallery
folder and the window's geometry. The window reads and writes it; the CLI reads it, so ``darkroom generate``
saves into the gallery folder chosen in the app. Loading never fails: a missing, unreadable or partly wrong file gives defaults for what is
missing or wrong (and ``load_problem`` says what happened). Saving writes a temporary file beside the real one
and renames it, so a crash never leaves half a file. No Qt here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import memory, paths
from .fields import FIELD, FIELDS

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
SETTINGS_VERSION = 2
PREVIEW_MODES = ("x0", "xt", "off")


@dataclass
class Settings:
    # generation form: field name → value (the seed as typed: a number or "random")
    generation: dict[str, Any] = field(default_factory=lambda: {f.name: f.default for f in FIELDS})
    last_seed: int | None = None  # the seed of the last image made, for "reuse last seed"
    # view
    preview_mode: str = "x0"
    autosave: bool = True  # save every finished image into the gallery
    fast_path: bool = True  # GPU fast path (compiled U-Net, CUDA graphs); off: plain eager PyTorch
    memory_mode: str = "auto"  # GPU memory mode, one of engine.memory.MODES
    gallery_dir: str = ""  # "" means the default gallery folder (engine.paths.default_gallery_dir())
    user_models: list[str] = field(default_factory=list)  # paths added with "Add model…"
    last_dir: str = ""  # last folder used in a file dialog
    # window (base64 of Qt's saveGeometry/saveState)
    window_geometry: str = ""
    window_state: str = ""
    splitter_state: str = ""
    version: int = SETTINGS_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> tuple["Settings", list[str]]:
        """Settings from a JSON object; fields of the wrong type fall back to defaults (listed in the result)."""
        settings = cls()
        bad: list[str] = []
        if not isinstance(data, dict):
            return settings, ["(whole file)"]
        if "generation" not in data:  # version 1 kept the form's values as top-level keys
            data = {**data, "generation": {k: data[k] for k in (*FIELD, "scheduler") if k in data}}
        for f in dataclasses.fields(cls):
            if f.name not in data or f.name in ("version", "generation"):
                continue
            value = data[f.name]
            default = getattr(settings, f.name)
            ok = _coerce(f.name, value, default)
            if ok is _BAD:
                bad.append(f.name)
            else:
                setattr(settings, f.name, ok)
        settings.generation, bad_fields = _generation(data["generation"])
        bad += bad_fields
        if settings.preview_mode not in PREVIEW_MODES:
            settings.preview_mode = "x0"
            bad.append("preview_mode")
        if settings.memory_mode not in memory.MODES:
            settings.memory_mode = "auto"
            bad.append("memory_mode")
        return settings, bad


_BAD = object()


def _generation(data: Any) -> tuple[dict[str, Any], list[str]]:
    """The form's values: each field as saved when it parses, else its default (and its name in the result)."""
    values = {f.name: f.default for f in FIELDS}
    if not isinstance(data, dict):
        return values, ["generation"]
    if "sampler" not in data and "scheduler" in data:
        data = {**data, "sampler": data["scheduler"]}
    bad = []
    for f in FIELDS:
        if f.name not in data:
            continue
        try:
            f.parse(data[f.name])
        except ValueError:
            bad.append(f.name)
        else:
            values[f.name] = data[f.name]
    return values, bad


def _coerce(name: str, value: Any, default: Any) -> Any:
    if name == "last_seed":
        return value if value is None or (isinstance(value, int) and not isinstance(value, bool)) else _BAD
    if isinstance(default, bool):
        return value if isinstance(value, bool) else _BAD
    if isinstance(default, int):
        return value if isinstance(value, int) and not isinstance(value, bool) else _BAD
    if isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else _BAD
    if isinstance(default, str):
        return value if isinstance(value, str) else _BAD
    if isinstance(default, list):
        return list(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else _BAD
    return _BAD


def settings_path() -> Path:
    return paths.config_dir() / SETTINGS_FILE


def load(path: Path | None = None) -> tuple[Settings, str]:
    """Read settings. Returns the settings and a problem description for people ("" when all was well)."""
    path = path or settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings(), ""
    except OSError as exc:
        log.warning("could not read %s: %s", path, exc)
        return Settings(), f"Your settings could not be read ({exc.strerror}); using defaults."
    try:
        data = json.loads(text)
    except ValueError as exc:
        log.warning("settings file %s is not valid JSON: %s", path, exc)
        return Settings(), "Your settings file was damaged; using defaults. It will be rewritten when you quit."
    settings, bad = Settings.from_dict(data)
    if bad:
        log.warning("settings file %s: ignored invalid values for %s", path, ", ".join(bad))
    return settings, ""


def save(settings: Settings, path: Path | None = None) -> None:
    """Write settings atomically (temp file + rename). Raises OSError when the folder cannot be written.

    No fsync: settings are small and rewritten often, and a file lost to a power cut only costs defaults.
    """
    from .gallery.store import write_file_replacing

    path = path or settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(settings.to_dict(), indent=2, ensure_ascii=False)
    write_file_replacing(path, text.encode("utf-8"), durable=False)
