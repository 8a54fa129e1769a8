"""Turning pictures people bring (files, or arrays from the window's mask editor) into request parts.

:func:`edit_parts` stores every picture content-addressed under the gallery folder (``sources/``) and returns
the parts to pass to :func:`engine.request.build_request`, with absolute references as live requests need.
A mask is stored as the grey picture the engine reads (white = repaint), whatever it came from (a painted file,
or a picture's transparency), so the recipe remakes the same mask. Pure file and pixel code: any thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..fields import FIELD, SIZE_MULTIPLE
from ..images import ImageInputError, InputImage, read_image, store_image
from ..masks import mask_from_image
from ..request import ControlPart, HiresPart, MaskPart, OutpaintPart, SourceImage, ValidationError
from .canny import canny

#: A picture given to :func:`edit_parts`: a file, a decoded picture, or a uint8 array (H×W grey, H×W×3 RGB or
#: H×W×4 RGBA).
Picture = Union[str, Path, InputImage, np.ndarray]
PREPROCESSORS = ("none", "canny")


@dataclass(frozen=True)
class ControlInput:
    """One control input as people choose it: a picture, a control model (name or path), how strongly and over
    which fraction of the steps it steers, and the preprocessor run on the picture first ("canny" or "none")."""

    image: Picture
    model: str
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preprocess: str = "none"


def load_picture(value: Picture, what: str = "picture") -> InputImage:
    """A picture as :class:`InputImage`. Files are read safely (engine.images); arrays are checked."""
    if isinstance(value, InputImage):
        return value
    if isinstance(value, (str, Path)):
        return read_image(value)[0]
    if isinstance(value, np.ndarray) and value.dtype == np.uint8:
        if value.ndim == 2:
            return InputImage(np.repeat(value[..., None], 3, axis=2))
        if value.ndim == 3 and value.shape[2] == 3:
            return InputImage(value)
        if value.ndim == 3 and value.shape[2] == 4:
            return InputImage(np.ascontiguousarray(value[..., :3]), np.ascontiguousarray(value[..., 3]))
    raise ImageInputError(f"The {what} must be an image file or an 8-bit grey, RGB or RGBA picture.")


def _grey_picture(mask: np.ndarray) -> InputImage:
    grey = np.rint(np.clip(mask, 0.0, 1.0) * 255).astype(np.uint8)
    return InputImage(np.repeat(grey[..., None], 3, axis=2))


def _part(errors: dict[str, str], name: str, make):
    try:
        return make()
    except (ValueError, TypeError) as exc:
        errors[name] = str(exc)
        return None


def edit_parts(
    root: Path,
    *,
    source: Picture | None = None,
    strength: float = 0.75,
    resize: str = "fit",
    mask: Picture | None = None,
    mask_from_alpha: bool = False,
    mask_blur: int = 4,
    mask_invert: bool = False,
    only_masked: bool = False,
    mask_padding: int = 32,
    outpaint: tuple[int, int, int, int] | None = None,
    hires: HiresPart | None = None,
    controls: tuple[ControlInput, ...] = (),
) -> dict[str, Any]:
    """Store the pictures under ``root`` and return the request parts (keyword arguments for ``build_request``;
    only the parts used). ``mask_from_alpha``: the transparent pixels of ``mask`` (or, without a mask, of the
    source) are the area to repaint. ``outpaint``: pixels added (left, right, up, down).

    Raises ImageInputError (unreadable picture, no transparency to use), ValidationError (part values out of
    range, a mask without a source) and DiskError (the folder cannot be written)."""
    errors: dict[str, str] = {}
    parts: dict[str, Any] = {}
    source_image = load_picture(source, "source image") if source is not None else None
    if source_image is not None:
        ref = store_image(root, source_image)
        parts["source"] = _part(errors, "source", lambda: SourceImage(ref, strength, resize))
    if mask is not None or mask_from_alpha:
        painted = load_picture(mask, "mask") if mask is not None else source_image
        if painted is None:
            errors["mask"] = "A mask from transparency needs a mask or a source image."
        else:
            ref = store_image(root, _grey_picture(mask_from_image(painted.rgb, painted.alpha, use_alpha=mask_from_alpha)))
            parts["mask"] = _part(errors, "mask", lambda: MaskPart(ref, mask_blur, mask_invert, only_masked, mask_padding))
    if outpaint is not None:
        parts["outpaint"] = _part(errors, "outpaint", lambda: OutpaintPart(*outpaint))
    if hires is not None:
        parts["hires"] = hires
    made = []
    for i, control in enumerate(controls):
        if control.preprocess not in PREPROCESSORS:
            errors[f"controls.{i}"] = f"Unknown preprocessor {control.preprocess!r}; choose {' or '.join(PREPROCESSORS)}."
            continue
        picture = load_picture(control.image, "control image")
        if control.preprocess == "canny":
            picture = InputImage(canny(picture.rgb))
        ref = store_image(root, picture)
        made.append(_part(errors, "controls", lambda: ControlPart(control.model, ref, control.weight, control.start,
                                                                  control.end)))
    if made:
        parts["controls"] = tuple(made)
    if errors:
        raise ValidationError(errors)
    return parts


def default_size(size: tuple[int, int], native: tuple[int, int]) -> tuple[int, int]:
    """The size to work at for a picture of ``size`` (width, height): its aspect ratio at about the model's
    native pixel count, in multiples of 8 within the size fields' range."""
    w, h = size
    scale = (native[0] * native[1] / max(1, w * h)) ** 0.5
    lo, hi = FIELD["width"].range

    def side(v: float) -> int:
        return int(min(hi, max(lo, SIZE_MULTIPLE * max(1, round(v * scale / SIZE_MULTIPLE)))))

    return side(w), side(h)
