"""The picture-editing state of the window, without widgets: the source picture, what to do with it
(img2img, inpaint, outpaint), the painted mask, the hires fix and a control input.

:class:`EditModel` turns that state into request parts (:func:`engine.edit.edit_parts`, which stores every
picture content-addressed under the folder it is given) and restores it from a recipe, so "Use all parameters"
brings a whole edit back. GUI thread only (it owns :class:`gui.mask_editor.MaskLayer` objects).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PySide6.QtCore import QObject, Signal

from engine.edit import ControlInput, edit_parts
from engine.images import ImageInputError, InputImage, read_ref, resolve_ref
from engine.masks import mask_from_image
from engine.request import GenerationRequest, HiresPart, ImageRef, ValidationError

from .mask_editor import SCRIBBLE_WHITE, MaskLayer

Mode = Literal["img2img", "inpaint", "outpaint"]
MODES: dict[str, str] = {"img2img": "Image to image", "inpaint": "Inpaint", "outpaint": "Outpaint"}
#: What a control picture becomes before the control model sees it ("scribble": drawn here, used as it is).
CONTROL_SOURCES: dict[str, str] = {"canny": "Canny edges of a picture", "none": "A picture as it is",
                                   "scribble": "A scribble drawn here"}
#: "Send to" targets: what a person picks → its menu text.
SEND_TARGETS: dict[str, str] = {"img2img": "Send to image to image", "inpaint": "Send to inpaint",
                                "outpaint": "Send to outpaint", "hires": "Send to hires fix"}
EMPTY_MASK = "The mask is empty: paint over the part of the picture to repaint (Paint mask)."


@dataclass(frozen=True)
class EditOptions:
    """The edit's numbers and choices (pictures are held by :class:`EditModel`)."""

    mode: Mode = "img2img"
    strength: float = 0.75
    resize: str = "fit"
    mask_blur: int = 4
    only_masked: bool = False
    mask_padding: int = 32
    outpaint: tuple[int, int, int, int] = (0, 0, 0, 0)  # pixels added left, right, up, down
    hires: bool = False
    hires_scale: float = 2.0
    hires_strength: float = 0.5
    hires_upscaler: str = "latent"
    control: bool = False
    control_model: str = ""
    control_source: str = "canny"
    control_weight: float = 1.0
    control_start: float = 0.0
    control_end: float = 1.0


class EditModel(QObject):
    """See the module docstring. ``changed`` fires on every change of options or pictures; ``source_changed``
    when the source picture (or the work size, which outpainting changes) is another."""

    changed = Signal()
    source_changed = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._options = EditOptions()
        self.source: InputImage | None = None
        self.source_label = ""
        self.mask: MaskLayer | None = None
        self.control_image: InputImage | None = None
        self.control_label = ""
        self.scribble: MaskLayer | None = None

    # -- state ------------------------------------------------------------------------------------------------
    @property
    def options(self) -> EditOptions:
        return self._options

    def set_options(self, **changes: Any) -> None:
        new = dataclasses.replace(self._options, **changes)
        if new != self._options:
            outpaint_changed = new.outpaint != self._options.outpaint or new.mode != self._options.mode
            self._options = new
            self.changed.emit()
            if outpaint_changed and self.source is not None:
                self.source_changed.emit()

    @property
    def active(self) -> bool:
        """Whether Generate makes more than a plain text-to-image picture."""
        return self.source is not None or self._options.hires or self._options.control

    def work_size(self) -> tuple[int, int] | None:
        """The size of the picture the result will have before any hires fix: the source's, grown by the
        outpainting; None without a source."""
        if self.source is None:
            return None
        w, h = self.source.size
        if self._options.mode == "outpaint":
            left, right, up, down = self._options.outpaint
            return w + left + right, h + up + down
        return w, h

    def set_source(self, image: InputImage, label: str, mode: Mode | None = None, **options: Any) -> None:
        """Edit ``image`` from now on, with a fresh mask (from its transparency, when it has some)."""
        self.source = image
        self.source_label = label
        w, h = image.size
        self.mask = MaskLayer(w, h)
        if image.alpha is not None and (image.alpha < 255).any():
            self.mask.set_array(np.rint(mask_from_image(image.rgb, image.alpha, use_alpha=True) * 255).astype(np.uint8),
                                remember=False)
        self._options = dataclasses.replace(self._options, **({"mode": mode} if mode else {}), **options)
        self.source_changed.emit()
        self.changed.emit()

    def clear_source(self) -> None:
        if self.source is not None:
            self.source, self.source_label, self.mask = None, "", None
            self.source_changed.emit()
            self.changed.emit()

    def load_mask(self, image: InputImage, use_alpha: bool = False) -> str:
        """Take the mask from a picture (white, or with ``use_alpha`` transparent, = repaint). Returns a notice
        when it had to be resized. ImageInputError without a source or transparency."""
        if self.source is None or self.mask is None:
            raise ImageInputError("Choose the picture to edit first, then its mask.")
        from engine.images import resize_to

        grey = np.rint(mask_from_image(image.rgb, image.alpha, use_alpha=use_alpha) * 255).astype(np.uint8)
        notice = ""
        if grey.shape[::-1] != self.source.size:
            w, h = self.source.size
            notice = f"The mask was {grey.shape[1]}×{grey.shape[0]}; it was resized to the picture's {w}×{h}."
            grey = resize_to(np.repeat(grey[..., None], 3, axis=2), w, h, "stretch")[..., 0]
        self.mask.set_array(grey)
        self.set_options(mode="inpaint")
        self.changed.emit()
        return notice

    def set_control_image(self, image: InputImage | None, label: str = "") -> None:
        self.control_image, self.control_label = image, label
        self.changed.emit()

    def scribble_layer(self, size: tuple[int, int]) -> MaskLayer:
        """The scribble drawn for the control model, made (white lines on black) at ``size`` when needed."""
        if self.scribble is None or self.scribble.size != tuple(size):
            self.scribble = MaskLayer(*size, color=SCRIBBLE_WHITE)
        return self.scribble

    # -- request parts ----------------------------------------------------------------------------------------
    def parts(self, root: Path) -> dict[str, Any]:
        """The request parts for this edit, its pictures stored under ``root`` (the gallery folder). Raises
        ValidationError (values, an empty mask, missing pictures), ImageInputError and DiskError."""
        o = self._options
        kwargs: dict[str, Any] = {}
        errors: dict[str, str] = {}
        if self.source is not None:
            kwargs.update(source=self.source, strength=o.strength, resize=o.resize)
            if o.mode == "inpaint":
                mask = self.mask.to_array()
                if not (mask >= 128).any():
                    errors["mask"] = EMPTY_MASK
                kwargs.update(mask=mask, mask_blur=o.mask_blur, only_masked=o.only_masked,
                              mask_padding=o.mask_padding)
            elif o.mode == "outpaint":
                if not any(o.outpaint):
                    errors["outpaint"] = "Choose how many pixels to add on at least one side to outpaint."
                kwargs["outpaint"] = o.outpaint
        if o.hires:
            try:
                kwargs["hires"] = HiresPart(o.hires_scale, o.hires_strength, o.hires_upscaler)
            except ValueError as exc:
                errors["hires"] = str(exc)
        if o.control:
            picture = self._control_picture()
            if not o.control_model.strip():
                errors["controls"] = "Choose a ControlNet model (a folder or .safetensors file) to steer with."
            elif picture is None:
                errors["controls"] = ("Open a control picture or draw a scribble for the ControlNet."
                                      if o.control_source != "scribble" else "The scribble is empty: draw on it first.")
            else:
                kwargs["controls"] = (ControlInput(picture, o.control_model.strip(), o.control_weight, o.control_start,
                                                   o.control_end, "canny" if o.control_source == "canny" else "none"),)
        if errors:
            raise ValidationError(errors)
        return edit_parts(root, **kwargs)

    def _control_picture(self):
        if self._options.control_source == "scribble":
            return self.scribble.to_array() if self.scribble is not None and not self.scribble.is_empty() else None
        return self.control_image

    # -- restoring a recipe -----------------------------------------------------------------------------------
    def restore(self, request: GenerationRequest, root: Path | None) -> list[str]:
        """Take the edit a recipe records (its pictures read from ``root``, the gallery it came from, when its
        references are relative). Returns messages for pictures that could not be read: the rest is restored."""
        problems: list[str] = []
        changes: dict[str, Any] = {"hires": request.hires is not None, "control": bool(request.controls)}
        if request.hires is not None:
            h = request.hires
            changes.update(hires_scale=h.scale, hires_strength=h.strength, hires_upscaler=h.upscaler)
        source = self._read(request.source.image, root, "source image", problems) if request.source else None
        if source is None:
            self.clear_source()
        else:
            s = request.source
            mode: Mode = "inpaint" if request.mask else "outpaint" if request.outpaint else "img2img"
            changes.update(strength=s.strength, resize=s.resize)
            if request.outpaint is not None:
                changes["outpaint"] = request.outpaint.sides
            if request.mask is not None:
                m = request.mask
                changes.update(mask_blur=m.blur, only_masked=m.only_masked, mask_padding=m.padding)
            self.set_source(source, "the recipe's source picture", mode, **changes)
            if request.mask is not None:
                painted = self._read(request.mask.image, root, "mask", problems)
                if painted is not None:
                    notice = self.load_mask(painted)
                    if request.mask.invert:
                        self.mask.invert()
                    if notice:
                        problems.append(notice)
        if request.controls:
            c = request.controls[0]
            picture = self._read(c.image, root, "control image", problems)
            changes.update(control_model=c.model, control_weight=c.weight, control_start=c.start, control_end=c.end,
                           control_source="none")
            self.set_control_image(picture, "the recipe's control picture" if picture is not None else "")
        self.set_options(**changes)
        return problems

    @staticmethod
    def _read(ref: ImageRef, root: Path | None, what: str, problems: list[str]) -> InputImage | None:
        try:
            if not Path(ref.path).is_absolute():
                if root is None:
                    raise ImageInputError(f"The {what} of this recipe is stored in a gallery that is not open.")
                ref = ImageRef(ref.sha256, str(resolve_ref(root, ref, what).resolve()))
            return read_ref(ref, what)
        except ImageInputError as exc:
            problems.append(exc.message)
            return None
