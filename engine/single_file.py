"""The parts of a pipeline a single ``.safetensors`` checkpoint does not hold.

SD 1.x/2.x and SDXL checkpoints hold the whole pipeline. SD3 and Flux files often hold only the denoiser (and
perhaps the VAE or some text encoders): diffusers converts what the file holds, and every other part must be
passed in. This module reads which parts a file holds (tensor names only), loads the missing ones from the
configuration folder when it has their weights (a full model downloaded from the Hub), leaves out optional ones
(SD3's T5), and otherwise says in plain words what to download.

Worker thread (loading imports torch, transformers and diffusers).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: How people call the parts in messages.
LABELS = {"vae": "VAE", "text_encoder": "first text encoder (CLIP)", "text_encoder_2": "second text encoder",
          "text_encoder_3": "T5 text encoder"}


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape, from the file's header only."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def repo_of(config: Path) -> str | None:
    """The Hub repository a configuration folder stands for (a Hugging Face cache snapshot or a shipped
    configuration), or None."""
    if config.parent.name == "snapshots" and config.parent.parent.name.startswith("models--"):
        return config.parent.parent.name.removeprefix("models--").replace("--", "/", 1)
    if "--" in config.name:
        return config.name.replace("--", "/", 1)
    return None


def missing_parts(path: Path, config: Path, title: str, keys: Collection[str],
                  prefixes: Mapping[str, tuple[str, ...]], dtype, optional: Mapping[str, tuple[str, ...]] = {}
                  ) -> dict[str, Any]:
    """Keyword arguments for diffusers' ``from_single_file``: each part in ``prefixes`` (component → the key
    prefixes of its weights in a single file) that the file lacks, loaded from ``config`` in ``dtype``; a part
    named in ``optional`` (component → the components to leave out with it) that neither has is left out.
    Raises ModelNotFoundError naming what to download when a required part is nowhere."""
    from .errors import ModelNotFoundError

    index = json.loads((config / "model_index.json").read_text(encoding="utf-8"))
    parts: dict[str, Any] = {}
    for component, key_prefixes in prefixes.items():
        if any(k.startswith(key_prefixes) for k in keys):
            continue  # diffusers converts it from the file
        spec = index.get(component)
        if not isinstance(spec, list) or len(spec) != 2 or spec[0] is None:
            continue
        folder = config / component
        if any(folder.glob("*.safetensors")):
            log.info("%s holds no %s; loading it from %s", path.name, component, folder)
            parts[component] = _load_component(spec, folder, dtype)
        elif component in optional:
            log.info("%s holds no %s and none is on this computer; running without it", path.name, component)
            parts.update(dict.fromkeys(optional[component]))
        else:
            repo = repo_of(config)
            fix = (f"While online, download the full model once: darkroom models download {repo}" if repo
                   else f"Use a configuration folder of a full {title} model.")
            raise ModelNotFoundError(
                f"{path.name} holds only part of a {title} model: its {LABELS.get(component, component)} is not in "
                f"the file, and the configuration in {config} has no weights for it. {fix}",
                f"missing {component}; configuration {config}",
            )
    return parts


def _load_component(spec: list, folder: Path, dtype):
    """One part from its folder, by the class ``model_index.json`` names, which must be a model class of
    transformers or diffusers (a configuration file never chooses arbitrary code)."""
    import diffusers
    import transformers

    from .errors import ModelUnsupportedError

    library, class_name = spec
    module = {"transformers": transformers, "diffusers": diffusers}.get(library)
    cls = getattr(module, str(class_name), None) if module is not None else None
    bases = (transformers.PreTrainedModel, diffusers.ModelMixin)
    if not (isinstance(cls, type) and issubclass(cls, bases)):
        raise ModelUnsupportedError(f"The configuration names {library}.{class_name} for {folder.name}, which is "
                                    "not a model class Darkroom loads.")
    return cls.from_pretrained(str(folder), dtype=dtype, local_files_only=True, use_safetensors=True)
