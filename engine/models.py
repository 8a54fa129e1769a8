"""Which models exist and what a request's ``model`` field points at.

Models come from three places: the ones bundled in ``resources/models``, the user's models folder
(``engine.paths.models_dir()``), and any folder or ``.safetensors`` file named by path. A model is either a
diffusers folder (with ``model_index.json``) or a single ``.safetensors`` checkpoint. Pure file-system code:
safe on any thread, imports no torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import DarkroomError, ModelNotFoundError, ModelUnsupportedError

CHECKPOINT_SUFFIXES = (".safetensors",)
UNSAFE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
DEFAULT_BUNDLED = "darkroom-emoji"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    source: str  # "bundled", "user", "hub" or "path"

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()


def is_model_folder(path: Path) -> bool:
    return (path / "model_index.json").is_file()


def _scan(folder: Path, source: str) -> list[ModelEntry]:
    if not folder.is_dir():
        return []
    found = []
    for child in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
        if child.is_dir() and is_model_folder(child):
            found.append(ModelEntry(child.name, child, source))
        elif child.is_file() and child.suffix.lower() in CHECKPOINT_SUFFIXES:
            found.append(ModelEntry(child.stem, child, source))
    return found


def available_models(extra_paths: tuple[str, ...] = ()) -> list[ModelEntry]:
    """Bundled models first (the default one leading), then the user's models, the models downloaded from the Hub
    (completely), then extra paths that exist."""
    bundled = _scan(paths.BUNDLED_MODELS, "bundled")
    bundled.sort(key=lambda e: e.name != DEFAULT_BUNDLED)
    entries = bundled + _scan(paths.models_dir(), "user")
    known = {e.path.resolve() for e in entries}
    from .hub import completed

    for repo, folder in completed().items():
        if folder.resolve() not in known:
            entries.append(ModelEntry(repo.split("/")[-1], folder, "hub"))
            known.add(folder.resolve())
    for extra in extra_paths:
        p = Path(extra).expanduser()
        if p.exists() and p.resolve() not in known and (is_model_folder(p) or p.suffix.lower() in CHECKPOINT_SUFFIXES):
            entries.append(ModelEntry(p.stem if p.is_file() else p.name, p, "path"))
            known.add(p.resolve())
    return entries


def default_model() -> ModelEntry | None:
    models = available_models()
    return models[0] if models else None


NO_MODEL_MESSAGE = "No model yet — add a model folder or .safetensors file."


def resolve(model: str) -> ModelEntry:
    """Turn a request's ``model`` (empty, a name or a path) into an existing entry, or raise with a clear message."""
    text = model.strip()
    if not text:
        entry = default_model()
        if entry is None:
            raise ModelNotFoundError(NO_MODEL_MESSAGE)
        return entry
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir():
            if not is_model_folder(path):
                raise ModelUnsupportedError(
                    f"The folder {path.name!r} is not a diffusers model: it has no model_index.json.",
                    str(path),
                )
            return ModelEntry(path.name, path, "path")
        suffix = path.suffix.lower()
        if suffix in UNSAFE_SUFFIXES:
            raise ModelUnsupportedError(
                f"{path.name} is a pickle-based checkpoint, which can run code when opened. Darkroom only opens "
                ".safetensors files; convert it to .safetensors first.",
                str(path),
            )
        if suffix not in CHECKPOINT_SUFFIXES:
            raise ModelUnsupportedError(f"{path.name} is not a model file (expected .safetensors).", str(path))
        return ModelEntry(path.stem, path, "path")
    for entry in available_models():
        if entry.name == text or entry.name.lower() == text.lower():
            return entry
    hint = ""
    if _HUB_ID.match(text):
        hint = f" To fetch it from the Hugging Face Hub, run: darkroom models download {text}"
    raise ModelNotFoundError(f"Model {text!r} was not found.{hint}", f"searched: {paths.BUNDLED_MODELS}, {paths.models_dir()}")


def _folder_family(folder: Path):
    """The family class that runs a diffusers folder, from its ``model_index.json`` (None when none does)."""
    from . import families

    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    return families.for_pipeline(index.get("_class_name", "")) if isinstance(index, dict) else None


#: The settings a model folder's ``darkroom.json`` may recommend. The file is data from whoever made the model: only
#: these keys are read and every value is checked by its field, so it can suggest settings, never inject them.
RECOMMENDABLE = ("sampler", "steps", "cfg")
SETTINGS_FILE = "darkroom.json"


def recommended(model: str) -> dict:
    """Settings ``model`` is meant to run with (field name → value), from its family and the variant its config
    names, refined by the folder's own ``darkroom.json``; empty when unknown. File reads only, any thread."""
    from .fields import FIELD

    out: dict = {}
    try:
        entry = resolve(model)
        if not entry.path.is_dir():
            return out
        family = _folder_family(entry.path)
        if family is not None:
            denoiser = entry.path / family.denoiser_component / "config.json"
            config = json.loads(denoiser.read_text(encoding="utf-8")) if denoiser.is_file() else {}
            out.update(family.recommended(config if isinstance(config, dict) else {}))
        own = entry.path / SETTINGS_FILE
        data = json.loads(own.read_text(encoding="utf-8")) if own.is_file() else {}
        wanted = data.get("recommended", {}) if isinstance(data, dict) else {}
        for name, value in (wanted.items() if isinstance(wanted, dict) else ()):
            if name in RECOMMENDABLE:
                try:
                    out[name] = FIELD[name].parse(value)
                except ValueError:
                    pass  # a value the app cannot hold is not a recommendation
    except (DarkroomError, OSError, ValueError, KeyError, TypeError):
        pass
    return {k: v for k, v in out.items() if k in RECOMMENDABLE}


def native_size(model: str) -> tuple[int, int]:
    """The size a model was trained at, from its family's reading of its configs (512×512 when unknown)."""
    try:
        entry = resolve(model)
        family = _folder_family(entry.path) if entry.path.is_dir() else None
        if family is not None:
            return family.native_size(entry.path)
    except (DarkroomError, OSError, ValueError, KeyError, TypeError):
        pass
    return 512, 512
