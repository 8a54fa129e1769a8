"""Where Darkroom reads and writes files.

Portable mode: when the environment variable ``DARKROOM_HOME`` is set, every file Darkroom writes (settings,
caches, logs, the gallery index and the default gallery folder) lives under it. Otherwise the platform's
standard folders from platformdirs are used. Functions here never create folders; callers create what they
write into.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

APP_NAME = "Darkroom"

#: The package a wheel installs the resources folder as (pyproject.toml maps it onto ``resources/``).
RESOURCES_PACKAGE = "darkroom_resources"
#: A file every resources folder has, to tell Darkroom's from some other folder named "resources".
_RESOURCES_MARKER = Path("icons") / "darkroom.svg"


def resources_dir() -> Path:
    """Darkroom's read-only resources (bundled models, icons), found the same way however Darkroom was installed.

    - a frozen bundle (PyInstaller: ``sys.frozen``): ``resources/`` in the bundle's data folder (``sys._MEIPASS``);
    - a checkout or an editable install: ``resources/`` beside the ``engine`` package;
    - an installed wheel: the ``darkroom_resources`` package in site-packages.

    When none is there, the checkout's path is returned, so messages name a place that was looked at.
    """
    if getattr(sys, "frozen", False):
        base = getattr(sys, "_MEIPASS", None) or os.path.dirname(sys.executable)
        return Path(base) / "resources"
    checkout = Path(__file__).resolve().parent.parent / "resources"
    if (checkout / _RESOURCES_MARKER).is_file():
        return checkout
    try:
        spec = importlib.util.find_spec(RESOURCES_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(location) / _RESOURCES_MARKER).is_file():
            return Path(location)
    return checkout


#: Found once at import; tests and tools may point these elsewhere.
RESOURCES = resources_dir()
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


def log_file() -> Path:
    """The window's log (rotated beside it: ``darkroom.log.1``, ``.2``)."""
    return log_dir() / "darkroom.log"


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
