"""The model families Darkroom runs, and how a model on disk finds its family.

A diffusers folder names its pipeline class in ``model_index.json``; a single ``.safetensors`` checkpoint is
recognised by its tensor names, each family checking for its own. Adding a family is adding a module with a
:class:`~engine.families.base.Family` subclass and listing it in :data:`FAMILIES`. Importing this package is
cheap (no torch, diffusers or transformers): family modules import those only when a model loads.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from .base import Conditioning, Family, LatentFormat, Prediction
from .flux import Flux
from .sd import StableDiffusion
from .sd3 import StableDiffusion3
from .sdxl import StableDiffusionXL

__all__ = ["Conditioning", "Family", "LatentFormat", "Prediction", "FAMILIES", "SUPPORTED", "by_name",
           "for_pipeline", "for_checkpoint"]

#: Every family, in menu order.
FAMILIES: tuple[type[Family], ...] = (StableDiffusion, StableDiffusionXL, StableDiffusion3, Flux)

#: For messages: what Darkroom runs.
SUPPORTED = "Stable Diffusion 1.x, 2.x, SDXL, SD3/3.5 and Flux.1"


def by_name(name: str) -> type[Family]:
    """The family called ``name`` ("sd", "sdxl"). KeyError for unknown names."""
    for family in FAMILIES:
        if family.name == name:
            return family
    raise KeyError(name)


def for_pipeline(class_name: str) -> type[Family] | None:
    """The family of a diffusers folder whose ``model_index.json`` names ``class_name``, or None."""
    for family in FAMILIES:
        if class_name in family.pipelines:
            return family
    return None


def for_checkpoint(keys: Collection[str]) -> tuple[type[Family], str] | None:
    """The family of a single-file checkpoint with these tensor names (or a mapping of name → shape) and the
    Hugging Face repository holding the configuration it needs, or None when no family claims it."""
    keys = keys if isinstance(keys, Mapping) else list(keys)
    for family in FAMILIES:  # each family checks for its own layout; no two claim the same file (tested)
        repo = family.checkpoint_config(keys)
        if repo is not None:
            return family, repo
    return None
