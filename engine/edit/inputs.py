"""A request's pictures, made ready for the model before any model runs, and the finished picture pasted back.

:func:`prepare` reads the source, mask and control images a live request names (absolute, hash-checked
references), and lays out the work:

- the **canvas** is the picture the result is pasted into: the source resized to the request's size (fit, fill
  or stretch), or, when outpainting or inpainting "only masked", the source at its own size (outpainting adds
  the new border around it);
- the **mask** (1 = repaint) is fitted to the source (a mask of another size is resized, with a notice),
  inverted if asked, moved with the source onto the canvas, joined with the outpainted border, then blurred;
- the **box** is the part of the canvas the model works on: all of it, or for "only masked" the mask's
  bounding box grown by the padding and to the request's aspect ratio;
- the **work** picture is the box scaled to the request's size: what the VAE encodes.

:meth:`EditInputs.finish` scales the generated picture back to the box, puts it in place and composites it
over the canvas with the mask, so that with blur 0 every pixel outside the mask is the source's, exactly.

Pure pixel code (numpy, Pillow): safe on any thread; raises ImageInputError with messages for people.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..images import InputImage, read_ref, resize_to
from ..masks import composite, expand_to_aspect, mask_from_image, masked_box, outpaint_canvas, prepare_mask
from ..request import GenerationRequest

Box = tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class EditInputs:
    """Everything a request's pictures contribute, at pixel level. ``canvas`` is None for text-to-image."""

    width: int  # the size the model works at (the request's)
    height: int
    canvas: np.ndarray | None = None  # uint8 H×W×3: what the result is pasted into
    mask: np.ndarray | None = None  # float32 H×W at the canvas size, 1 = repaint
    box: Box | None = None  # (left, top, right, bottom) of the canvas the model works on
    work: np.ndarray | None = None  # uint8 height×width×3: the box at the model's size
    work_mask: np.ndarray | None = None  # float32 height×width
    strength: float = 1.0
    controls: tuple[np.ndarray, ...] = ()  # uint8 control pictures, at their own size
    notes: tuple[str, ...] = ()

    @property
    def edits(self) -> bool:
        return self.canvas is not None

    @property
    def skips_model(self) -> bool:
        """Strength 0: the picture is the source, the model does not run."""
        return self.edits and self.strength == 0.0

    def finish(self, generated: np.ndarray) -> np.ndarray:
        """The saved picture: ``generated`` (the model's output at the work size) put back into the canvas.
        Read-only uint8."""
        if self.canvas is None:
            return generated
        left, top, right, bottom = self.box
        if (right - left, bottom - top) != (generated.shape[1], generated.shape[0]):
            generated = resize_to(generated, right - left, bottom - top, "stretch")
        if (left, top, right, bottom) == (0, 0, self.canvas.shape[1], self.canvas.shape[0]):
            full = generated
        else:
            full = self.canvas.copy()
            full[top:bottom, left:right] = generated
        out = full if self.mask is None else composite(self.canvas, full, self.mask)
        out = np.ascontiguousarray(out)
        out.setflags(write=False)
        return out

    def control(self, index: int, width: int, height: int) -> np.ndarray:
        """Control picture ``index`` at ``width`` × ``height``, over the same part of the picture as the work:
        scaled to cover ("fill"), and for "only masked" cut to the box first."""
        picture = self.controls[index]
        if self.canvas is None or self.box == (0, 0, self.canvas.shape[1], self.canvas.shape[0]):
            return resize_to(picture, width, height, "fill")
        left, top, right, bottom = self.box
        covering = resize_to(picture, self.canvas.shape[1], self.canvas.shape[0], "fill")
        return resize_to(np.ascontiguousarray(covering[top:bottom, left:right]), width, height, "stretch")


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _as_mask_image(mask: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(mask, 0.0, 1.0) * 255).astype(np.uint8)


def prepare(request: GenerationRequest) -> EditInputs:
    """Read and lay out the pictures of ``request`` (see the module's description). Raises ImageInputError
    (missing or changed file, empty mask…)."""
    width, height = request.width, request.height
    controls = tuple(read_ref(c.image, "control image").rgb for c in request.controls)
    if request.source is None:
        return EditInputs(width, height, controls=controls)
    source = read_ref(request.source.image, "source image")
    notes: list[str] = []
    user_mask = None
    if request.mask is not None:
        painted: InputImage = read_ref(request.mask.image, "mask")
        fitted = prepare_mask(mask_from_image(painted.rgb), source.size, invert=request.mask.invert)
        notes.extend(fitted.notices)
        user_mask = fitted.mask
    only_masked = request.mask is not None and request.mask.only_masked

    if request.outpaint is not None:
        canvas, mask = outpaint_canvas(source.rgb, *request.outpaint.sides)
        if user_mask is not None:
            left, _, up, _ = request.outpaint.sides
            h, w = user_mask.shape
            mask[up:up + h, left:left + w] = user_mask
    elif only_masked:
        canvas, mask = source.rgb, user_mask
    else:
        canvas = resize_to(source.rgb, width, height, request.source.resize)
        mask = None
        if user_mask is not None:
            mask = resize_to(_as_mask_image(user_mask), width, height, request.source.resize).astype(np.float32) / 255
    if mask is not None:
        blur = request.mask.blur if request.mask is not None else 0
        mask = prepare_mask(mask, (canvas.shape[1], canvas.shape[0]), blur=blur).mask

    box: Box = (0, 0, canvas.shape[1], canvas.shape[0])
    if only_masked:
        box = expand_to_aspect(masked_box(mask, request.mask.padding), width, height, (canvas.shape[1], canvas.shape[0]))
    left, top, right, bottom = box
    work = resize_to(np.ascontiguousarray(canvas[top:bottom, left:right]), width, height, "stretch")
    work_mask = None
    if mask is not None:
        crop = np.ascontiguousarray(mask[top:bottom, left:right])
        work_mask = crop if crop.shape == (height, width) else _resized_mask(crop, width, height)
    return EditInputs(
        width, height, _frozen(canvas), None if mask is None else _frozen(mask), box, _frozen(work),
        None if work_mask is None else _frozen(work_mask), request.source.strength, controls, tuple(notes),
    )


def _resized_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.clip(np.asarray(Image.fromarray(mask.astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.BILINEAR)), 0.0, 1.0).astype(np.float32)
