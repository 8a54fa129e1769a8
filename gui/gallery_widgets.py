"""The gallery tab's parts: the thumbnail grid, the large view with its metadata panel, and helpers.

All of it runs on the GUI thread; :class:`gui.gallery_view.GalleryView` puts the parts together.
"""

from __future__ import annotations

import html
import sys
import time
from pathlib import Path

from PySide6.QtCore import QRect, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QImage, QImageReader, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.errors import DarkroomError
from engine.gallery import Gallery, ImageRecord, MetadataError
from engine.gallery.infotext import format_infotext
from engine.gallery.metadata import PARAMETERS_KEY, SOURCE_LABELS, read_png_text
from engine.request import GenerationRequest

from .tasks import TaskThread

SCROLL_SETTLE_MS = 40

def reveal_in_file_manager(path: Path) -> None:
    """Show ``path`` in the system's file manager (selected, where the platform allows)."""
    import subprocess

    if sys.platform == "win32":
        subprocess.Popen(["explorer", "/select,", str(path)])
    elif sys.platform == "darwin":
        subprocess.Popen(["open", "-R", str(path)])
    else:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path.parent)))


class GalleryToolbar(QWidget):
    """Search, the favourites filter, the order, the image count and the "Save every image" switch."""

    def __init__(self, gallery: Gallery, parent: QWidget | None = None):
        super().__init__(parent)
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Search prompts…")
        self.search.setClearButtonEnabled(True)
        self.search.setAccessibleName("Search prompts")
        self.favourites_only = QToolButton(self, text="★ Favourites", checkable=True)
        self.favourites_only.setToolTip("Show favourites only")
        self.sort = QComboBox(self)
        self.sort.addItems(["Newest first", "Oldest first"])
        self.sort.setAccessibleName("Sort order")
        self.count_label = QLabel(self)
        self.autosave = QCheckBox("Save every image", self)
        self.autosave.setChecked(gallery.autosave)
        self.autosave.setToolTip(f"Save each finished image into {gallery.root}")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget, stretch in ((self.search, 1), (self.favourites_only, 0), (self.sort, 0), (self.count_label, 0),
                                (self.autosave, 0)):
            layout.addWidget(widget, stretch)


class GalleryGrid(QListView):
    """The thumbnail grid: one model/view list laid out left to right and wrapped (no widget per image)."""

    visible_rows_changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.ListMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(600)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.setAccessibleName("Gallery")
        self._settle = QTimer(self, singleShot=True, interval=SCROLL_SETTLE_MS)
        self._settle.timeout.connect(self.visible_rows_changed)
        self.verticalScrollBar().valueChanged.connect(lambda _v: self._settle.start())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._settle.start()

    def _geometry(self) -> tuple[int, QRect, int]:
        """(columns, rect of row 0 in viewport coordinates, line pitch) of the uniform grid.

        Worked out from a few cells' rectangles: QListView.indexAt() is slow where there is no cell."""
        model = self.model()
        n = model.rowCount()
        first = self.visualRect(model.index(0, 0))
        columns = n
        for i in range(1, min(n, 512)):
            if self.visualRect(model.index(i, 0)).top() != first.top():
                columns = i
                break
        columns = max(1, columns)
        if n > columns:
            pitch = self.visualRect(model.index(columns, 0)).top() - first.top()
        else:
            pitch = first.height() + 2 * self.spacing()
        return columns, first, max(1, pitch)

    def visible_row_range(self) -> tuple[int, int]:
        """First and last row with a cell (even partly) on screen; (0, -1) when there is none."""
        model = self.model()
        n = model.rowCount() if model is not None else 0
        if n == 0:
            return 0, -1
        columns, first, pitch = self._geometry()
        height = self.viewport().height()
        top_line = max(0, -first.top() // pitch)
        bottom_line = max(top_line, (height - first.top()) // pitch)
        lo = min(n - 1, top_line * columns)
        hi = min(n - 1, (bottom_line + 1) * columns - 1)
        return lo, hi

    def columns(self) -> int:
        model = self.model()
        if model is None or model.rowCount() == 0:
            return 1
        return self._geometry()[0]


class ImageCanvas(QWidget):
    """Shows one image fitted to the widget, keeping its proportions."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._image = QImage()
        self._message = ""
        self.setMinimumSize(200, 200)

    def set_image(self, image: QImage, message: str = "") -> None:
        self._image = image
        self._message = message
        self.update()

    def image(self) -> QImage:
        return self._image

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        if not self._image.isNull():
            size = self._image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(self.rect().center())
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawImage(target, self._image)
        elif self._message:
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._message)
        painter.end()


def load_full_image(path: Path) -> QImage:
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    image = reader.read()
    return image


def record_html(record: ImageRecord, extra_lines: list[str] | None = None) -> str:
    """The metadata panel's text for one image."""
    esc = html.escape

    def row(label: str, value: object) -> str:
        return f"<tr><td style='color:gray;padding-right:8px'>{esc(label)}</td><td>{esc(str(value))}</td></tr>"

    parts = []
    parts.append(f"<p><b>Prompt</b><br>{esc(record.prompt) or '<i>none</i>'}</p>".replace("\n", "<br>"))
    if record.negative_prompt:
        parts.append(f"<p><b>Negative prompt</b><br>{esc(record.negative_prompt)}</p>".replace("\n", "<br>"))
    rows = []
    if record.seed is not None:
        rows.append(row("Seed", record.seed))
    if record.steps is not None:
        rows.append(row("Steps", record.steps))
    if record.cfg is not None:
        rows.append(row("CFG scale", f"{record.cfg:g}"))
    if record.scheduler:
        rows.append(row("Sampler", record.scheduler))
    params = record.params
    if "width" in params and "height" in params:
        rows.append(row("Size", f"{params['width']}×{params['height']}"))
    if record.model:
        rows.append(row("Model", record.model))
    if record.model_hash:
        rows.append(row("Model hash", record.model_hash))
    rows.append(row("Image", f"{record.width}×{record.height}, {record.file_size / 1024:.0f} KB"))
    rows.append(row("Created", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))))
    if record.source:
        rows.append(row("Made with", SOURCE_LABELS.get(record.source, record.source)))
    if record.favourite:
        rows.append(row("Favourite", "★ yes"))
    rows.append(row("File", record.path))
    parts.append("<table>" + "".join(rows) + "</table>")
    for line in extra_lines or []:
        parts.append(f"<p style='color:gray'>{esc(line)}</p>")
    return "".join(parts)


class LargeView(QWidget):
    """One image large, with its metadata beside it."""

    back_requested = Signal()
    step_requested = Signal(int)  # -1 previous, +1 next

    def __init__(self, parent=None):
        super().__init__(parent)
        self.canvas = ImageCanvas(self)
        self.info = QTextBrowser(self)
        self.info.setOpenLinks(False)
        self.info.setMinimumWidth(240)
        self.info.setAccessibleName("Image details")
        back = QPushButton("← Back to the grid", self)
        back.setToolTip("Back to the grid (Esc)")
        back.clicked.connect(self.back_requested)
        prev_button = QToolButton(self, text="◀")
        prev_button.setToolTip("Previous image (←)")
        prev_button.clicked.connect(lambda: self.step_requested.emit(-1))
        next_button = QToolButton(self, text="▶")
        next_button.setToolTip("Next image (→)")
        next_button.clicked.connect(lambda: self.step_requested.emit(1))
        top = QHBoxLayout()
        top.addWidget(back)
        top.addStretch(1)
        top.addWidget(prev_button)
        top.addWidget(next_button)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.canvas)
        splitter.addWidget(self.info)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.canvas.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._record_id: int | None = None
        self._decoder = TaskThread("darkroom-gallery-image", self)

    def show_record(self, record: ImageRecord, placeholder: QImage | None) -> None:
        """Show ``record``: its metadata and ``placeholder`` (its thumbnail) at once, the full image once decoded
        in the background."""
        self._record_id = record.id
        self.info.setHtml(record_html(record))
        self.canvas.set_image(placeholder if placeholder is not None else QImage(), "Loading…")
        path = record.path
        self._decoder.submit(lambda: load_full_image(path), lambda image, _error: self._decoded(record.id, image))

    def refresh_info(self, record: ImageRecord) -> None:
        if record.id == self._record_id:
            self.info.setHtml(record_html(record))

    def clear(self) -> None:
        self._record_id = None

    def _decoded(self, image_id: int, image: object) -> None:
        if image_id != self._record_id:
            return  # the person has moved on
        if isinstance(image, QImage) and not image.isNull():
            self.canvas.set_image(image)
        elif self.canvas.image().isNull():
            self.canvas.set_image(QImage(), "This image cannot be read.")

    def shutdown(self) -> None:
        self._decoder.shutdown()

    def keyPressEvent(self, event) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Escape, Qt.Key.Key_Backspace):
            self.back_requested.emit()
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Up, Qt.Key.Key_PageUp):
            self.step_requested.emit(-1)
        elif key in (Qt.Key.Key_Right, Qt.Key.Key_Down, Qt.Key.Key_PageDown, Qt.Key.Key_Space):
            self.step_requested.emit(1)
        else:
            super().keyPressEvent(event)


def parameters_text(gallery: Gallery, record: ImageRecord) -> str:
    """The image's A1111 ``parameters`` text (as written in the file, or made from what the index knows)."""
    try:
        text = read_png_text(record.path).text.get(PARAMETERS_KEY)
    except MetadataError:
        text = None
    if text:
        return text
    try:
        built = gallery.parameters(record).build()
        return format_infotext(built.request, record.model, record.model_hash)
    except (MetadataError, DarkroomError, ValueError):
        return record.prompt


def request_from_record(gallery: Gallery, record: ImageRecord) -> tuple[GenerationRequest | None, str]:
    """The request an image records (None when it cannot be used) and a message for people either way."""
    try:
        params = gallery.parameters(record)
        built = params.build()
    except (MetadataError, DarkroomError) as exc:
        return None, exc.message
    except ValueError as exc:
        return None, f"The parameters of this image cannot be used: {exc}"
    notes = list(params.warnings) + list(built.notices)
    if "seed" not in params.fields:
        notes.append("The image holds no seed; a random one will be used.")
    return built.request, "Parameters loaded into the form." + (" " + " ".join(notes[:3]) if notes else "")
