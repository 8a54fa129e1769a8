"""Loading models from disk, never from the network: diffusers folders and single ``.safetensors`` files.

Runs on the engine's worker thread (imports torch and diffusers). Every failure becomes a
:class:`~engine.errors.DarkroomError` with a message in plain words: a missing folder, a corrupt or truncated
file, a model family Darkroom does not run, a checkpoint whose configuration is not on this computer.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths
from .devices import DeviceChoice
from .errors import DarkroomError, ModelCorruptError, ModelNotFoundError, ModelUnsupportedError
from .models import ModelEntry
from .preview import LatentPreview, preview_for

log = logging.getLogger(__name__)

#: model_index.json ``_class_name`` → family Darkroom runs.
PIPELINE_FAMILIES = {
    "StableDiffusionPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
}

#: Hub repositories holding the configuration (no weights needed) for single-file checkpoints of a family.
FAMILY_CONFIG_REPOS = {
    "sd": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd2": "stabilityai/stable-diffusion-2-1",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}


@dataclass
class LoadedModel:
    pipe: Any  # a diffusers StableDiffusionPipeline or StableDiffusionXLPipeline
    family: str  # "sd" or "sdxl" (SD 2.x runs as "sd")
    entry: ModelEntry
    model_hash: str
    preview: LatentPreview
    device: DeviceChoice

    @property
    def name(self) -> str:
        return self.entry.name


def check_safetensors(path: Path) -> list[str]:
    """Open a .safetensors header and return its tensor names, or raise ModelCorruptError."""
    from safetensors import safe_open

    try:
        if path.stat().st_size < 8:
            raise ValueError("file is too short to hold a header")
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except FileNotFoundError:
        raise ModelNotFoundError(f"The model file {path.name} is missing.", str(path)) from None
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        raise ModelCorruptError(
            f"The model file {path.name} is damaged or incomplete and cannot be read. Download or copy it again.",
            f"{path}: {exc}",
        ) from exc


def _read_model_index(folder: Path) -> dict:
    try:
        data = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except FileNotFoundError:
        raise ModelNotFoundError(f"The model folder {folder.name!r} has no model_index.json.", str(folder)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelCorruptError(f"The model folder {folder.name!r} has a damaged model_index.json.", str(exc)) from exc


def folder_family(folder: Path) -> str:
    class_name = _read_model_index(folder).get("_class_name", "")
    family = PIPELINE_FAMILIES.get(class_name)
    if family is None:
        raise ModelUnsupportedError(
            f"{folder.name!r} is a {class_name or 'unknown'} model; Darkroom runs Stable Diffusion 1.x, 2.x and SDXL.",
            str(folder),
        )
    return family


def checkpoint_family(keys: list[str]) -> str:
    """Family of a single-file (original layout) checkpoint from its tensor names."""
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys) or any(
        k.startswith("model.diffusion_model.") for k in keys
    ):
        return "sd"
    raise ModelUnsupportedError(
        "This .safetensors file is not a Stable Diffusion checkpoint Darkroom can run (SD 1.x, 2.x or SDXL)."
    )


def _weights_file(folder: Path, component: str) -> Path | None:
    sub = folder / component
    if not sub.is_dir():
        return None
    files = sorted(sub.glob("*.safetensors"))
    return files[0] if files else None


def model_hash(entry: ModelEntry) -> str:
    """A1111-style short hash: first 10 hex digits of the SHA-256 of the checkpoint (a folder's U-Net weights).

    Cached by path, size and modification time because hashing gigabytes takes seconds.
    """
    target = entry.path if entry.path.is_file() else _weights_file(entry.path, "unet")
    if target is None:
        return ""
    st = target.stat()
    key = f"{target.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = paths.cache_dir() / "model_hashes.json"
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    if isinstance(cache.get(key), str):
        return cache[key]
    digest = hashlib.sha256()
    with open(target, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    value = digest.hexdigest()[:10]
    cache[key] = value
    try:
        from .gallery.store import write_file_replacing

        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_file_replacing(cache_file, json.dumps(cache).encode("utf-8"), durable=False)
    except OSError:
        log.warning("could not write %s", cache_file)
    return value


def _load_folder(entry: ModelEntry, device: DeviceChoice):
    folder = entry.path
    family = folder_family(folder)
    index = _read_model_index(folder)
    for component, spec in index.items():
        if component.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        if component in ("unet", "vae", "text_encoder", "text_encoder_2"):
            weights = _weights_file(folder, component)
            if weights is None:
                if list((folder / component).glob("*.bin")):
                    raise ModelUnsupportedError(
                        f"{entry.name}/{component} holds only pickle-based .bin weights, which can run code when "
                        "opened. Darkroom only opens .safetensors weights.",
                        str(folder / component),
                    )
                raise ModelCorruptError(
                    f"The model {entry.name!r} is incomplete: its {component} weights are missing.",
                    str(folder / component),
                )
            check_safetensors(weights)
    import diffusers

    cls = getattr(diffusers, index["_class_name"])
    kwargs: dict[str, Any] = {}
    if family == "sd":
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe = cls.from_pretrained(
        str(folder), dtype=device.dtype, local_files_only=True, use_safetensors=True, **kwargs
    )
    return pipe, family


def _load_single_file(entry: ModelEntry, device: DeviceChoice, config_dir: Path | None):
    keys = check_safetensors(entry.path)
    family = checkpoint_family(keys)
    import diffusers

    cls = diffusers.StableDiffusionXLPipeline if family == "sdxl" else diffusers.StableDiffusionPipeline
    config = str(config_dir) if config_dir else FAMILY_CONFIG_REPOS[family]
    kwargs: dict[str, Any] = {}
    if family != "sdxl":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipe = cls.from_single_file(
            str(entry.path), config=config, dtype=device.dtype, local_files_only=True, **kwargs
        )
    except DarkroomError:
        raise
    except Exception as exc:
        text = str(exc)
        if config_dir is None and ("local_files_only" in text or "offline" in text.lower() or "cache" in text.lower()):
            raise ModelNotFoundError(
                f"{entry.name} needs the configuration files of its model family, which are not on this computer "
                f"(no weights, a few megabytes). While online, run once: darkroom models download "
                f"{FAMILY_CONFIG_REPOS[family]} --config-only",
                text,
            ) from exc
        raise
    return pipe, "sdxl" if family == "sdxl" else "sd"


def _quiet_libraries() -> None:
    """diffusers and transformers print progress bars and advice while loading; Darkroom reports its own."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_model(entry: ModelEntry, device: DeviceChoice, config_dir: Path | None = None) -> LoadedModel:
    """Load ``entry`` onto ``device`` in its dtype. ``config_dir`` supplies a single file's family config."""
    _quiet_libraries()
    if not entry.path.exists():
        raise ModelNotFoundError(f"The model {entry.name!r} is no longer at {entry.path}.", str(entry.path))
    try:
        if entry.path.is_dir():
            pipe, family = _load_folder(entry, device)
        else:
            pipe, family = _load_single_file(entry, device, config_dir)
    except DarkroomError:
        raise
    except Exception as exc:
        raise ModelCorruptError(
            f"The model {entry.name!r} could not be loaded; its files may be damaged or from an unsupported version.",
            f"{type(exc).__name__}: {exc}",
        ) from exc
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device.device)
    return LoadedModel(
        pipe=pipe,
        family=family,
        entry=entry,
        model_hash=model_hash(entry),
        preview=preview_for(entry.path if entry.path.is_dir() else None, family),
        device=device,
    )
