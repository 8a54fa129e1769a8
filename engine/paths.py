"""Where Darkroom reads and writes files.

Portable mode: when the environment variable ``DARKROOM_HOME`` is set, every file Darkroom writes (settings,
caches, logs, the gallery index and the default gallery folder) lives under it. Otherwise the platform's
standard folders from platformdirs are used. Functions here never create folders; callers create what they
write into.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "Darkroom"

#: The repository's resources folder (bundled models, icons). Darkroom runs from a checkout or an editable
#: install, so it sits beside the packages.
RESOURCES = Path(__file__).resolve().parent.parent / "resources"
BUNDLED_MODELS = RESOURCES / "models"


def home() -> Path | None:
    value = os.environ.get("DARKROOM_HOME", "").strip()
    return Path(value).expanduser().resolve() if value else None


def _platform(kind: str) -> Path:
    import platformdirs

    getter = {
        "config": platformdirs.user_config_dir,
        "data": platformdirs.user_data_dir,
        "cache": platformdirs.user_cache_dir,
        "log": platformdirs.user_log_dir,
    }[kind]
    return Path(getter(APP_NAME, appauthor=False))


def config_dir() -> Path:
    h = home()
    return h / "config" if h else _platform("config")


def data_dir() -> Path:
    h = home()
    return h / "data" if h else _platform("data")


def cache_dir() -> Path:
    h = home()
    return h / "cache" if h else _platform("cache")


def log_dir() -> Path:
    h = home()
    return h / "logs" if h else _platform("log")


def models_dir() -> Path:
    """Folder scanned for user models (diffusers folders and .safetensors files)."""
    return data_dir() / "models"


def loras_dir() -> Path:
    """Folder of LoRA files (``.safetensors``, in subfolders too), named in prompts as ``<lora:name:weight>``."""
    return models_dir() / "loras"


def embeddings_dir() -> Path:
    """Folder of textual-inversion embeddings (``.safetensors``): a prompt word equal to a file's name uses it."""
    return models_dir() / "embeddings"


def default_gallery_dir() -> Path:
    h = home()
    if h:
        return h / "gallery"
    import platformdirs

    return Path(platformdirs.user_pictures_dir()) / APP_NAME
