"""Masks for inpainting and outpainting: prepared from what people paint or bring, and pasted back exactly.

A mask is a float array in [0, 1], H×W, where 1 means "repaint". Preparing one resizes a mask of another size
(with a notice), applies invert and a Gaussian blur of the edge, and refuses an empty mask. Compositing puts the
generated pixels in the masked area over the source, so that with blur 0 every pixel outside the mask is the
source's, exactly. Outpainting extends the canvas and masks the new border; "only masked" works on a padded crop
around the mask. Pure pixel code (numpy, Pillow): safe on any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .images import ImageInputError
from .request import MAX_OUTPAINT


@dataclass(frozen=True, eq=False)
class PreparedMask:
    mask: np.ndarray  # float32 H×W in [0, 1], 1 = repaint
    notices: tuple[str, ...] = ()


def mask_from_image(pixels: np.ndarray, alpha: np.ndarray | None = None, *, use_alpha: bool = False) -> np.ndarray:
    """A painted mask (white = repaint) as float32 H×W. ``use_alpha``: transparent pixels are the area to repaint
    (how editors export "erase this")."""
    if use_alpha:
        if alpha is None:
            raise ImageInputError("This image has no transparency to use as a mask.")
        return 1.0 - alpha.astype(np.float32) / 255.0
    grey = pixels.astype(np.float32)
    if grey.ndim == 3:
        grey = grey[..., :3].mean(axis=2)
    return grey / 255.0


def prepare_mask(mask: np.ndarray, size: tuple[int, int], *, blur: int = 0, invert: bool = False) -> PreparedMask:
    """The mask at ``size`` (width, height), inverted and blurred as asked. Raises ImageInputError when nothing is
    masked."""
    from PIL import Image, ImageFilter

    notices: list[str] = []
    width, height = size
    m = np.clip(mask.astype(np.float32), 0.0, 1.0)
    if m.shape != (height, width):
        notices.append(f"The mask was {m.shape[1]}×{m.shape[0]}; it was resized to the image's {width}×{height}.")
        m = np.asarray(Image.fromarray(m, mode="F").resize((width, height), Image.Resampling.BILINEAR))
    if invert:
        m = 1.0 - m
    m = np.where(m >= 0.5, 1.0, 0.0).astype(np.float32) if blur == 0 else m
    if not (m > 0.5).any():
        raise ImageInputError("The mask is empty: paint over the part of the picture to repaint.")
    if blur > 0:
        # Blurred in 8 bits, as A1111 does (Pillow blurs only 8-bit images).
        grey = Image.fromarray(np.rint(m * 255).astype(np.uint8), mode="L")
        m = np.asarray(grey.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32) / 255.0
    return PreparedMask(np.clip(m, 0.0, 1.0), tuple(notices))


def composite(source: np.ndarray, generated: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``generated`` where the mask is 1, ``source`` where it is 0, blended in between (uint8 H×W×3). Pixels with
    mask 0 are copied from the source, not computed, so they stay exact."""
    m = mask[..., None]
    blended = np.rint(source.astype(np.float32) * (1.0 - m) + generated.astype(np.float32) * m).astype(np.uint8)
    out = np.where(m == 0.0, source, blended)
    out = np.where(m == 1.0, generated, out)
    return np.ascontiguousarray(out)


def outpaint_canvas(image: np.ndarray, left: int, right: int, up: int, down: int) -> tuple[np.ndarray, np.ndarray]:
    """The image on a larger canvas (new border filled with its edge pixels, a neutral start for the model) and
    the mask of the new area. Raises ImageInputError for negative or oversized extensions."""
    sides = (left, right, up, down)
    if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in sides):
        raise ImageInputError("Outpainting extends each side by zero or more whole pixels.")
    if not any(sides):
        raise ImageInputError("Outpainting needs at least one side to extend.")
    if max(sides) > MAX_OUTPAINT:
        raise ImageInputError(f"Outpainting extends a side by at most {MAX_OUTPAINT} pixels.")
    canvas = np.pad(image, ((up, down), (left, right), (0, 0)), mode="edge")
    mask = np.ones(canvas.shape[:2], np.float32)
    h, w = image.shape[:2]
    mask[up:up + h, left:left + w] = 0.0
    return np.ascontiguousarray(canvas), mask


def masked_box(mask: np.ndarray, padding: int, multiple: int = 8) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the masked area grown by ``padding`` on each side, clipped to the image, and
    widened to a multiple of ``multiple`` where the image allows ("only masked" inpainting works on this crop)."""
    ys, xs = np.nonzero(mask > 0.0)
    if len(xs) == 0:
        raise ImageInputError("The mask is empty: paint over the part of the picture to repaint.")
    h, w = mask.shape
    box = [max(0, xs.min() - padding), max(0, ys.min() - padding), min(w, xs.max() + 1 + padding),
           min(h, ys.max() + 1 + padding)]
    for lo, hi, limit in ((0, 2, w), (1, 3, h)):
        extra = -(box[hi] - box[lo]) % multiple
        grow_hi = min(extra, limit - box[hi])
        box[hi] += grow_hi
        box[lo] = max(0, box[lo] - (extra - grow_hi))
    return tuple(int(v) for v in box)


def expand_to_aspect(box: tuple[int, int, int, int], width: int, height: int, limit: tuple[int, int],
                     ) -> tuple[int, int, int, int]:
    """``box`` (left, top, right, bottom) grown around its centre to the aspect ratio ``width``:``height``, as
    far as the picture (``limit`` = its width, height) allows, so the crop is not distorted when it is scaled to
    the size the model works at."""
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    lw, lh = limit
    if w * height < h * width:  # too narrow: widen
        target = min(lw, round(h * width / height))
        extra = target - w
        left = max(0, min(left - extra // 2, lw - target))
        right = left + target
    elif w * height > h * width:  # too flat: heighten
        target = min(lh, round(w * height / width))
        extra = target - h
        top = max(0, min(top - extra // 2, lh - target))
        bottom = top + target
    return left, top, right, bottom
