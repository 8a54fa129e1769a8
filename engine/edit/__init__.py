"""Picture editing: img2img, inpainting, outpainting, hires fix and ControlNet, in the one denoising loop.

What front ends call (all cheap to import; no torch):

- :func:`edit_parts` stores the pictures people bring under the gallery folder and returns request parts;
  :func:`default_size` proposes the size to work at for a picture;
- :func:`check_pictures` reads and lays out a request's pictures before it is queued (an empty mask, a missing
  file: an ImageInputError with a message for people) and returns notices (a mask that was resized);
- :func:`resolve_recipe` makes a recipe read back from an image runnable ("use all parameters", remake):
  its picture references, relative to the gallery folder, resolved there and checked by hash;
- :func:`canny` is the in-app preprocessor for canny ControlNets.

The engine side (:mod:`.inputs`, :mod:`.passes`, :mod:`.control`) runs on the engine's worker thread.
"""

from __future__ import annotations

from pathlib import Path

from ..images import resolve_refs
from ..request import GenerationRequest
from .canny import canny
from .inputs import EditInputs, prepare
from .parts import PREPROCESSORS, ControlInput, Picture, default_size, edit_parts, load_picture

__all__ = ["ControlInput", "EditInputs", "PREPROCESSORS", "Picture", "canny", "check_pictures", "default_size",
           "edit_parts", "load_picture", "prepare", "resolve_recipe"]


def check_pictures(request: GenerationRequest) -> tuple[str, ...]:
    """Read and lay out the request's pictures as the engine will; return its notices. Raises ImageInputError."""
    return prepare(request).notes


def resolve_recipe(request: GenerationRequest, gallery_root: Path) -> GenerationRequest:
    """A request built from an image's metadata with its pictures found under ``gallery_root`` (relative paths
    only, checked by hash). Raises ImageInputError naming the picture that is missing or changed."""
    return resolve_refs(request, Path(gallery_root))
