"""The Gallery tab's frame: it shows the :class:`GalleryView` of the gallery controller's current gallery, swaps it
when the folder changes, and says so plainly when there is no gallery. GUI thread only."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QStackedWidget, QWidget

from engine.gallery import Gallery, SavedImage

from .gallery_controller import GalleryController
from .gallery_view import GalleryView

NO_GALLERY_TEXT = ("The gallery is not available. Pictures you make are still shown in this session's strip, and "
                   "Save as… keeps them.")


class GalleryTab(QStackedWidget):
    """Forwards the view's requests; :attr:`view` is None while there is no gallery."""

    use_parameters = Signal(object)  # engine.request.GenerationRequest
    use_seed = Signal(int)
    send_to = Signal(str, object, object)  # target, image file, its recipe or None
    forward_process = Signal(object)  # an image file
    status_message = Signal(str)

    def __init__(self, controller: GalleryController, parent: QWidget | None = None):
        super().__init__(parent)
        self._controller = controller
        self.view: GalleryView | None = None
        self._placeholder = QLabel(NO_GALLERY_TEXT)
        self._placeholder.setWordWrap(True)
        self._placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._placeholder.setObjectName("PreviewExplain")
        self.addWidget(self._placeholder)
        self._show(controller.gallery)
        controller.gallery_changed.connect(self._show)
        controller.saved.connect(lambda _ready, saved: self.image_saved(saved))

    def image_saved(self, saved: SavedImage) -> None:
        if self.view is not None:
            self.view.image_saved(saved)

    def shutdown(self) -> None:
        if self.view is not None:
            self.view.shutdown()

    def _show(self, gallery: Gallery | None) -> None:
        old = self.view
        self.view = None
        if gallery is not None:
            view = GalleryView(gallery, self)
            view.use_parameters.connect(self.use_parameters)
            view.use_seed.connect(self.use_seed)
            view.send_to.connect(self.send_to)
            view.forward_process.connect(self.forward_process)
            view.status_message.connect(self.status_message)
            view.autosave_changed.connect(self._controller.set_autosave)
            self.addWidget(view)
            self.view = view
        self.setCurrentWidget(self.view or self._placeholder)
        if old is not None:
            old.shutdown()
            self.removeWidget(old)
            old.deleteLater()
