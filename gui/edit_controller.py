"""Picture editing in the window: "Send to" a picture from the canvas, the session strip, the gallery or a drop;
paint its mask on the canvas; hand the edit's parts to Generate; bring an edit back from a recipe.

:class:`EditController` owns the :class:`gui.edit_model.EditModel` and connects it to the form (the size the
model works at follows the picture), the gallery (where the edit's pictures are stored) and the live panel
(where masks and scribbles are painted). GUI thread only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor, QImage

from engine import paths
from engine.edit.parts import default_size
from engine.fields import FIELD, SIZE_MULTIPLE
from engine.images import ImageInputError, InputImage, read_image
from engine.request import GenerationRequest

from .edit_model import SEND_TARGETS, EditModel
from .edit_panel import qimage_of
from .gallery_controller import GalleryController
from .live_panel import LivePanel
from .results import Result
from .viewmodel import FormModel

__all__ = ["SEND_TARGETS", "EditController"]


class EditController(QObject):
    #: a message for the banner: (level, text)
    message = Signal(str, str)

    def __init__(self, form: FormModel, gallery: GalleryController, live: LivePanel, parent: QObject | None = None):
        super().__init__(parent)
        self.model = EditModel(self)
        self._form = form
        self._gallery = gallery
        self._live = live
        self._restoring = False  # a recipe's own size is kept while it is restored
        self.model.source_changed.connect(self.fit_size)
        live.canvas.image_dropped.connect(lambda path: self.send_file("img2img", path))

    # -- sending pictures -------------------------------------------------------------------------------------
    def send(self, target: str, image: InputImage, label: str, request: GenerationRequest | None = None) -> None:
        """Edit ``image`` as ``target`` (a :data:`SEND_TARGETS` key); a recipe's prompt, seed and settings go to
        the form too. Inpainting opens the mask editor."""
        if target not in SEND_TARGETS:
            raise ValueError(f"unknown target {target!r}")
        if request is not None:
            self._form.set_request(request)
        options: dict[str, Any] = {"hires": target == "hires"}
        if target == "hires":
            options["strength"] = 0.0  # keep the picture as it is; only the hires pass refines it
        elif self.model.options.strength == 0.0:
            options["strength"] = EditModel().options.strength
        if target == "outpaint" and not any(self.model.options.outpaint):
            side = SIZE_MULTIPLE * max(1, round(image.size[0] / 4 / SIZE_MULTIPLE))
            options["outpaint"] = (side, side, 0, 0)
        self.model.set_source(image, label, "img2img" if target == "hires" else target, **options)
        if target == "inpaint":
            self.paint("mask")
        else:
            self._live.show_canvas()

    def send_result(self, target: str, result: Result) -> None:
        """Send a picture of this session (its pixels in memory, else its saved file)."""
        if result.ready is not None:
            image = InputImage(result.ready.image)
        elif result.saved_path:
            try:
                image = read_image(result.saved_path)[0]
            except ImageInputError as exc:
                self.message.emit("error", exc.message)
                return
        else:
            self.message.emit("error", "This older picture was not saved, so only its thumbnail is left to edit.")
            return
        self.send(target, image, f"Seed {result.request.seed}", result.request)

    def send_file(self, target: str, path: str | Path, request: GenerationRequest | None = None) -> bool:
        """Send a picture file (read safely; any format Pillow reads)."""
        try:
            image = read_image(path)[0]
        except ImageInputError as exc:
            self.message.emit("error", exc.message)
            return False
        self.send(target, image, Path(path).name, request)
        return True

    # -- painting ---------------------------------------------------------------------------------------------
    def paint(self, kind: str) -> None:
        """Show the editor of the mask ("mask") or of the control scribble ("scribble") on the canvas."""
        editor = self._live.mask_editor
        if kind == "mask":
            if self.model.source is None or self.model.mask is None:
                self.message.emit("info", "Choose a picture to edit first: drop one on the canvas, use Open…, or "
                                          "Send to inpaint on a result.")
                return
            if self.model.options.mode != "inpaint":
                self.model.set_options(mode="inpaint")
            editor.edit("Paint over what to repaint. White in the saved mask is repainted.",
                        qimage_of(self.model.source.rgb), self.model.mask)
        else:
            size = (self._form.value("width"), self._form.value("height"))
            black = QImage(size[0], size[1], QImage.Format.Format_RGB32)
            black.fill(QColor(0, 0, 0))
            editor.edit("Draw the lines the picture should follow (a scribble for the ControlNet).", black,
                        self.model.scribble_layer(size), overlay_opacity=1.0)
        self._live.show_mask_editor()

    # -- the form's size and the request --------------------------------------------------------------------
    def fit_size(self) -> None:
        """Make the form's size the picture's shape at about the model's native size (the source's own size
        for the hires fix, which upscales it)."""
        work = self.model.work_size()
        if work is None or self._restoring:
            return
        if self.model.options.hires and self.model.options.strength == 0.0:
            lo, hi = FIELD["width"].range
            size = tuple(int(min(hi, max(lo, SIZE_MULTIPLE * round(v / SIZE_MULTIPLE)))) for v in work)
        else:
            from engine.models import native_size

            size = default_size(work, native_size(self._form.value("model")))
        self._form.set_values({"width": size[0], "height": size[1]})

    def parts(self) -> dict[str, Any]:
        """The request parts of the current edit (none when there is nothing to edit), its pictures stored in the
        gallery folder (or the cache, without a gallery). Raises ValidationError, ImageInputError, DiskError."""
        if not self.model.active:
            return {}
        root = self._gallery.folder() if self._gallery.gallery is not None else paths.cache_dir() / "edits"
        return self.model.parts(root)

    def restore(self, request: GenerationRequest) -> None:
        """Bring back the edit a recipe records (or none, for a plain text-to-image recipe)."""
        self._restoring = True
        try:
            problems = self.model.restore(request, self._gallery.folder())
        finally:
            self._restoring = False
        if problems:
            self.message.emit("warning", "The edit could not be restored in full: " + " ".join(problems))
