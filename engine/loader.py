"""Loading models from disk, never from the network: diffusers folders and single ``.safetensors`` files.

The model's family (:mod:`engine.families`) is found from the folder's pipeline class or the file's tensor
names, and does the loading itself. A single file needs its family's configuration (a few megabytes of JSON
and tokenizer files): it is read from a folder given by the caller, the local Hugging Face cache or the
configurations shipped with Darkroom, never downloaded here. Runs on the engine's worker thread (families import torch and diffusers). Every failure becomes a
:class:`~engine.errors.DarkroomError` with a message in plain words: a missing folder, a corrupt or truncated
file, a model family Darkroom does not run, a checkpoint whose configuration is not on this computer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from . import families, paths
from .devices import DeviceChoice
from .errors import DarkroomError, ModelCorruptError, ModelNotFoundError, ModelUnsupportedError
from .families import Family
from .models import ModelEntry
from .preview import LatentPreview, preview_for

log = logging.getLogger(__name__)

#: Files a single file's configuration folder needs per component kind, besides model_index.json.
_CONFIG_FILES = {"scheduler": "scheduler_config.json", "tokenizer": "tokenizer_config.json"}
#: Components a single file never loads (families pass None for them).
_NOT_LOADED = {"safety_checker", "feature_extractor", "image_encoder"}


@dataclass
class LoadedModel:
    family: Family  # the loaded model's parts, ready to run
    entry: ModelEntry
    model_hash: str
    preview: LatentPreview
    device: DeviceChoice

    @property
    def name(self) -> str:
        return self.entry.name


def check_safetensors(path: Path) -> dict[str, tuple[int, ...]]:
    """Open a .safetensors header and return its tensors' names and shapes, or raise ModelCorruptError."""
    from .single_file import tensor_shapes

    try:
        if path.stat().st_size < 8:
            raise ValueError("file is too short to hold a header")
        return tensor_shapes(path)
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


def folder_family(folder: Path) -> type[Family]:
    class_name = _read_model_index(folder).get("_class_name", "")
    family = families.for_pipeline(class_name)
    if family is None:
        raise ModelUnsupportedError(
            f"{folder.name!r} is a {class_name or 'unknown'} model; Darkroom runs {families.SUPPORTED}.",
            str(folder),
        )
    return family


def checkpoint_family(keys) -> tuple[type[Family], str]:
    """Family of a single-file checkpoint from its tensor names (or names → shapes), with its config repository."""
    found = families.for_checkpoint(keys)
    if found is None:
        raise ModelUnsupportedError(
            f"This .safetensors file is not a checkpoint Darkroom can run ({families.SUPPORTED})."
        )
    return found


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


def _load_folder(entry: ModelEntry, device: DeviceChoice) -> Family:
    folder = entry.path
    family = folder_family(folder)
    index = _read_model_index(folder)
    for component in family.weight_components:
        spec = index.get(component)
        if not isinstance(spec, list) or not spec or spec[0] is None:
            continue
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
    return family.load_folder(folder, device)


def missing_config_files(folder: Path) -> list[str]:
    """Files a single file's configuration folder lacks (relative paths); [] when it is complete."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ["model_index.json"]
    missing = []
    for component, spec in index.items() if isinstance(index, dict) else ():
        if component.startswith("_") or component in _NOT_LOADED or not isinstance(spec, list) or spec[0] is None:
            continue
        kind = "scheduler" if component == "scheduler" else "tokenizer" if component.startswith("tokenizer") else ""
        name = f"{component}/{_CONFIG_FILES.get(kind, 'config.json')}"
        if not (folder / name).is_file():
            missing.append(name)
    return missing


def local_config(repo: str) -> Path | None:
    """The folder of ``repo``'s configuration on this computer, or None: the local Hugging Face cache first (what
    the person downloaded), else the configuration shipped with Darkroom (:mod:`engine.shipped_configs`). Reads
    the disk only: a single file must never make Darkroom go online."""
    from huggingface_hub import try_to_load_from_cache

    from .shipped_configs import shipped_config

    found = try_to_load_from_cache(repo, "model_index.json")
    if isinstance(found, str):
        return Path(found).parent
    return shipped_config(repo)


def _load_single_file(entry: ModelEntry, device: DeviceChoice, config_dir: Path | None) -> Family:
    keys = check_safetensors(entry.path)
    family, repo = checkpoint_family(keys)
    config = config_dir or local_config(repo)
    if config is None:
        raise ModelNotFoundError(
            f"{entry.name} is a {family.title} checkpoint; it needs the configuration of {repo} (no weights, a few "
            f"megabytes), which is not on this computer. While online, run once: "
            f"darkroom models download {repo} --config-only",
            f"{repo} is not in the Hugging Face cache",
        )
    missing = missing_config_files(config)
    if missing:
        fix = (f"While online, run once: darkroom models download {repo} --config-only" if config_dir is None
               else f"Use the configuration folder of a {family.title} model.")
        raise ModelNotFoundError(
            f"{entry.name} is a {family.title} checkpoint; its configuration in {config} is incomplete (missing "
            f"{', '.join(missing[:4])}{' and more' if len(missing) > 4 else ''}). {fix}",
            f"configuration {repo} at {config}; missing {missing}",
        )
    return family.load_single_file(entry.path, config, device)


def prepare_libraries() -> None:
    """Set diffusers and transformers up the way Darkroom loads models; every loader calls this first.

    - Quiet: they print progress bars and advice while loading; Darkroom reports its own.
    - No Hub kernels: transformers swaps some layers for compiled "Hub kernels" by default, fetching their code
      from the Hub when a model is loaded. Darkroom loads local files only and never runs downloaded code, and
      its bundle leaves the ``kernels`` package out (transformers reads the switch at each ``from_pretrained``).
    """
    os.environ["USE_HUB_KERNELS"] = "NO"
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_model(entry: ModelEntry, device: DeviceChoice, config_dir: Path | None = None) -> LoadedModel:
    """Load ``entry`` onto ``device`` in its dtype. ``config_dir`` supplies a single file's family config."""
    prepare_libraries()
    if not entry.path.exists():
        raise ModelNotFoundError(f"The model {entry.name!r} is no longer at {entry.path}.", str(entry.path))
    try:
        if entry.path.is_dir():
            family = _load_folder(entry, device)
        else:
            family = _load_single_file(entry, device, config_dir)
    except DarkroomError:
        raise
    except Exception as exc:
        raise ModelCorruptError(
            f"The model {entry.name!r} could not be loaded; its files may be damaged or from an unsupported version.",
            f"{type(exc).__name__}: {exc}",
        ) from exc
    log.info("%s is a %s model (%s prediction)", entry.name, family.title, family.prediction)
    return LoadedModel(
        family=family,
        entry=entry,
        model_hash=model_hash(entry),
        preview=preview_for(entry.path if entry.path.is_dir() else None, family.latent_format,
                            decoder=lambda latents: family.decode(latents)[0]),
        device=device,
    )
