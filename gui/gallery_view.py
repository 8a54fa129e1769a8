"""The Gallery tab: a virtualised thumbnail grid with search, favourites and a large view with the metadata.

The main window adds a :class:`GalleryView` as a tab and connects:

- ``use_parameters(GenerationRequest)``: "Use all parameters" (fill the generation form);
- ``use_seed(int)``: "Use seed";
- ``status_message(str)``: short messages for the status bar;
- ``autosave_changed(bool)``: the "Save every image" switch, to keep in the settings;

and calls :meth:`GalleryView.image_saved` when its saver thread has saved an image, and :meth:`GalleryView.shutdown`
when the window closes (closing the widget does it too).

Keyboard: arrows/Page Up/Page Down/Home/End move in the grid, Enter opens the large view (←/→ move there, Esc goes
back), F favourite, Delete moves to the trash, U uses all parameters, S uses the seed, Ctrl+C copies the image,
Ctrl+Shift+C the parameters, Ctrl+E exports the selection, Ctrl+R reveals the file, Ctrl+F searches.
"""

from __future__ import annotations

import html
import logging
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QItemSelectionModel, QObject, QPoint, QRect, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication, QImage, QImageReader, QKeySequence, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.errors import DarkroomError
from engine.gallery import Gallery, GridEntry, ImageRecord, MetadataError, SavedImage
from engine.gallery.infotext import format_infotext
from engine.gallery.metadata import PARAMETERS_KEY, read_png_text

from .gallery_model import GalleryModel, ThumbnailDelegate, ThumbnailLoader

log = logging.getLogger(__name__)

SEARCH_DELAY_MS = 150
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


class _TaskThread(QObject):
    """One worker thread running submitted callables in order; each result comes back on the UI thread
    through its callback. :meth:`shutdown` sets ``cancel`` and joins the thread."""

    _done = Signal(object, object, object)  # callback, result, error

    def __init__(self, name: str, parent=None):
        super().__init__(parent)
        self._name = name
        self._queue: "queue.Queue[tuple[Callable, Callable] | None]" = queue.Queue()
        self._thread: threading.Thread | None = None
        self.cancel = threading.Event()
        self._done.connect(self._deliver)
        self._busy = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], object], callback: Callable[[object, BaseException | None], None]) -> None:
        if self.cancel.is_set():
            return
        with self._lock:
            self._busy += 1
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._queue.put((fn, callback))

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy > 0

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, callback = item
            result, error = None, None
            if not self.cancel.is_set():
                try:
                    result = fn()
                except BaseException as exc:  # noqa: BLE001 - handed to the callback on the UI thread
                    error = exc
            with self._lock:
                self._busy -= 1
            if not self.cancel.is_set():
                self._done.emit(callback, result, error)

    def _deliver(self, callback, result, error) -> None:
        if not self.cancel.is_set():
            callback(result, error)

    def shutdown(self) -> None:
        self.cancel.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None


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


def _load_full_image(path: Path) -> QImage:
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
        from engine.gallery.metadata import SOURCE_LABELS

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


class GalleryView(QWidget):
    """The gallery tab. See the module docstring for what the main window connects."""

    use_parameters = Signal(object)  # engine.request.GenerationRequest
    use_seed = Signal(int)
    status_message = Signal(str)
    autosave_changed = Signal(bool)
    #: Emitted after the model was refreshed from the index (tests and benchmarks wait on it).
    refreshed = Signal()
    #: Emitted when a background rescan has finished (its engine.gallery.RescanResult, or None after an error).
    rescan_finished = Signal(object)

    def __init__(self, gallery: Gallery, parent=None, *, thumbnail_threads: int = 2):
        super().__init__(parent)
        self.gallery = gallery
        self._closed = False
        self._rescan_started = False
        self._rescan_again = False
        self._large_row = -1
        #: Asked for a folder by "Export selection…"; returns "" when cancelled. Replaceable (tests, main window).
        self.choose_export_folder: Callable[[], str] = self._ask_export_folder

        self.loader = ThumbnailLoader(gallery.thumbnail_root, threads=thumbnail_threads, parent=self)
        self.model = GalleryModel(gallery, self.loader, parent=self)
        self._scanner = _TaskThread("darkroom-gallery-scan", self)
        self._images = _TaskThread("darkroom-gallery-image", self)

        # toolbar
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Search prompts…")
        self.search.setClearButtonEnabled(True)
        self.search.setAccessibleName("Search prompts")
        self.favourites_only = QToolButton(self, text="★ Favourites", checkable=True)
        self.favourites_only.setToolTip("Show favourites only")
        self.sort = QComboBox(self)
        self.sort.addItems(["Newest first", "Oldest first"])
        self.sort.setAccessibleName("Sort order")
        self.autosave = QCheckBox("Save every image", self)
        self.autosave.setChecked(gallery.autosave)
        self.autosave.setToolTip(f"Save each finished image into {gallery.root}")
        self.count_label = QLabel(self)
        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.favourites_only)
        top.addWidget(self.sort)
        top.addWidget(self.count_label)
        top.addWidget(self.autosave)

        self.grid = GalleryGrid(self)
        self.delegate = ThumbnailDelegate(parent=self.grid)
        self.grid.setItemDelegate(self.delegate)
        self.grid.setModel(self.model)
        self.grid.setSpacing(2)
        self.large = LargeView(self)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.grid)
        self.stack.addWidget(self.large)
        self.status = QLabel(self)
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.status)

        self._make_actions()

        self._search_timer = QTimer(self, singleShot=True, interval=SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.refresh)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.search.returnPressed.connect(self._search_now)
        self.favourites_only.toggled.connect(lambda _c: self.refresh())
        self.sort.currentIndexChanged.connect(lambda _i: self.refresh())
        self.autosave.toggled.connect(self._set_autosave)
        self.grid.activated.connect(lambda ix: self.open_large(ix.row()))
        self.grid.customContextMenuRequested.connect(self._context_menu)
        self.grid.visible_rows_changed.connect(self._request_visible)
        self.model.modelReset.connect(lambda: QTimer.singleShot(0, self._request_visible))
        self.grid.selectionModel().currentChanged.connect(lambda *_: self._update_actions())
        self.grid.selectionModel().selectionChanged.connect(lambda *_: self._update_actions())
        self.large.back_requested.connect(self.close_large)
        self.large.step_requested.connect(self._step_large)
        app = QGuiApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

        self.refresh()

    # -- actions ----------------------------------------------------------------------------------------------
    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcuts(shortcut if isinstance(shortcut, list) else [QKeySequence(shortcut)])
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        if tip:
            action.setToolTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)
        return action

    def _make_actions(self) -> None:
        K = QKeySequence
        self.action_open = self._action("Open large", self._open_current, None)
        self.action_use_all = self._action("Use all parameters", self.use_all_parameters, "U",
                                           "Fill the generation form with this image's parameters (U)")
        self.action_use_seed = self._action("Use seed", self.use_seed_of_current, "S",
                                            "Put this image's seed into the generation form (S)")
        self.action_favourite = self._action("Favourite", self.toggle_favourite, "F", "Mark or unmark as favourite (F)")
        self.action_delete = self._action("Move to trash", self.delete_selected, [K(K.StandardKey.Delete)],
                                          "Move the selected images to the trash (Delete)")
        self.action_reveal = self._action("Show in folder", self.reveal_current, "Ctrl+R",
                                          "Show the file in the file manager (Ctrl+R)")
        self.action_copy_image = self._action("Copy image", self.copy_image, [K(K.StandardKey.Copy)],
                                              "Copy the image to the clipboard (Ctrl+C)")
        self.action_copy_parameters = self._action("Copy parameters", self.copy_parameters, "Ctrl+Shift+C",
                                                   "Copy the parameters as text (Ctrl+Shift+C)")
        self.action_export = self._action("Export selection…", self.export_selection, "Ctrl+E",
                                          "Copy the selected images into a folder (Ctrl+E)")
        self.action_search = self._action("Search", self._focus_search, [K(K.StandardKey.Find)])
        self.action_rescan = self._action("Rescan folder", self.rescan, [K(K.StandardKey.Refresh)],
                                          "Look for images added or deleted outside Darkroom (F5)")
        bar = QHBoxLayout()
        for action in (self.action_use_all, self.action_use_seed, self.action_favourite, self.action_copy_image,
                       self.action_copy_parameters, self.action_reveal, self.action_export, self.action_delete):
            button = QToolButton(self)
            button.setDefaultAction(action)
            button.setFocusPolicy(Qt.FocusPolicy.TabFocus)  # reachable with Tab; a click leaves focus on the grid
            bar.addWidget(button)
        bar.addStretch(1)
        self.layout().insertLayout(1, bar)
        self._update_actions()

    def _update_actions(self) -> None:
        has_current = self.current_entry() is not None
        has_selection = bool(self.grid.selectionModel().hasSelection())
        for action in (self.action_use_all, self.action_use_seed, self.action_reveal, self.action_copy_image,
                       self.action_copy_parameters, self.action_open):
            action.setEnabled(has_current)
        for action in (self.action_favourite, self.action_delete, self.action_export):
            action.setEnabled(has_selection or has_current)

    def _context_menu(self, pos: QPoint) -> None:
        index = self.grid.indexAt(pos)
        if not index.isValid():  # the menu key: show the menu at the current image
            index = self.grid.currentIndex()
            if not index.isValid():
                return
            pos = self.grid.visualRect(index).center()
        menu = QMenu(self)
        for action in (self.action_open, None, self.action_use_all, self.action_use_seed, None, self.action_favourite,
                       self.action_copy_image, self.action_copy_parameters, self.action_reveal, self.action_export,
                       None, self.action_delete):
            if action is None:
                menu.addSeparator()
            else:
                menu.addAction(action)
        menu.exec(self.grid.viewport().mapToGlobal(pos))

    # -- loading ------------------------------------------------------------------------------------------------
    def _query(self) -> list[GridEntry]:
        return self.gallery.entries(
            self.search.text().strip(),
            favourites_only=self.favourites_only.isChecked(),
            newest_first=self.sort.currentIndex() == 0,
        )

    def refresh(self) -> None:
        """Reload the rows from the index with the current search, filter and order; keeps the selection."""
        if self._closed:
            return
        self._search_timer.stop()
        current = self.current_entry()
        selected = {e.id for e in self.selected_entries()}
        try:
            entries = self._query()
        except Exception as exc:  # noqa: BLE001 - a broken index must not take the window down
            log.exception("gallery query failed")
            self._say(f"The gallery index could not be read: {exc}")
            entries = []
        self.model.set_entries(entries)
        self._update_count()
        if current is not None:
            row = self.model.row_of_id(current.id)
            if row >= 0:
                sm = self.grid.selectionModel()
                sm.setCurrentIndex(self.model.index(row), QItemSelectionModel.SelectionFlag.NoUpdate)
                for image_id in selected:
                    r = self.model.row_of_id(image_id)
                    if r >= 0:
                        sm.select(self.model.index(r), QItemSelectionModel.SelectionFlag.Select)
                self.grid.scrollTo(self.model.index(row))
        self._update_actions()
        self.refreshed.emit()

    def _search_now(self) -> None:
        self.refresh()

    def _update_count(self) -> None:
        n = self.model.rowCount()
        self.count_label.setText(f"{n:,} image{'s' if n != 1 else ''}")

    def _request_visible(self) -> None:
        if self._closed or self.stack.currentWidget() is not self.grid:
            return
        first, last = self.grid.visible_row_range()
        if last < first:
            return
        cols = self.grid.columns()
        self.model.request_rows(first, last + cols)  # the next row too, so a small scroll finds it ready

    def visible_thumbnails_ready(self) -> bool:
        """True when every cell on screen has its thumbnail (or is known to be unreadable)."""
        first, last = self.grid.visible_row_range()
        return all(self.model.has_thumbnail(r) for r in range(first, last + 1))

    def image_saved(self, saved: SavedImage) -> None:
        """A new image landed in the gallery: show it at once."""
        if self._closed:
            return
        record = getattr(saved, "record", None)
        if record is None:  # not indexed (or only a path): a quick background scan finds it
            self.rescan()
            return
        if self.search.text().strip() or self.favourites_only.isChecked():
            self.refresh()
            return
        entry = GridEntry(record.id, record.relpath, record.file_size, record.mtime_ns, record.favourite)
        if self.model.row_of_id(record.id) >= 0:
            self.model.forget_record(record.id)
            return
        newest_first = self.sort.currentIndex() == 0
        self.model.insert_entry(0 if newest_first else self.model.rowCount(), entry)
        self._update_count()
        self._request_visible()

    def rescan(self) -> None:
        """Look for images added or deleted outside Darkroom, in the background; the grid updates after.
        Asked while a scan runs, one more scan follows it."""
        if self._closed:
            return
        if self._scanner.busy:
            self._rescan_again = True
            return
        if self.gallery.needs_full_scan:
            self._say("Building the gallery index…")
        cancel = self._scanner.cancel
        self._scanner.submit(lambda: self.gallery.rescan(cancel=cancel), self._rescan_done)

    def _rescan_done(self, result, error) -> None:
        if self._rescan_again:
            self._rescan_again = False
            QTimer.singleShot(0, self.rescan)
        if error is not None:
            message = error.message if isinstance(error, DarkroomError) else f"The gallery folder could not be scanned: {error}"
            self._say(message)
            self.rescan_finished.emit(None)
            return
        if result is not None and result.changed:
            self.refresh()
            self._say(f"Gallery updated: {result.added} new, {result.removed} gone.")
        elif self.status.text() == "Building the gallery index…":
            self._say("")
        self.rescan_finished.emit(result)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._rescan_started:
            self._rescan_started = True
            QTimer.singleShot(0, self.rescan)
        QTimer.singleShot(0, self._request_visible)

    # -- selection ----------------------------------------------------------------------------------------------
    def current_row(self) -> int:
        if self.stack.currentWidget() is self.large:
            return self._large_row
        index = self.grid.currentIndex()
        return index.row() if index.isValid() else -1

    def current_entry(self) -> GridEntry | None:
        return self.model.entry(self.current_row())

    def current_record(self) -> ImageRecord | None:
        """The full record of the current image (the one the large view shows, or the grid's current cell)."""
        row = self.current_row()
        return self.model.record(row) if row >= 0 else None

    def selected_entries(self) -> list[GridEntry]:
        if self.stack.currentWidget() is self.large:
            entry = self.current_entry()
            return [entry] if entry is not None else []
        rows = sorted(ix.row() for ix in self.grid.selectionModel().selectedIndexes())
        entries = [self.model.entry(r) for r in rows]
        return [e for e in entries if e is not None]

    def selected_records(self) -> list[ImageRecord]:
        records = [self.gallery.get(e.id) for e in self.selected_entries()]
        return [r for r in records if r is not None]

    def _targets(self) -> list[GridEntry]:
        selected = self.selected_entries()
        if selected:
            return selected
        current = self.current_entry()
        return [current] if current is not None else []

    def select_row(self, row: int) -> None:
        if 0 <= row < self.model.rowCount():
            ix = self.model.index(row)
            self.grid.selectionModel().setCurrentIndex(ix, QItemSelectionModel.SelectionFlag.ClearAndSelect)
            self.grid.scrollTo(ix)

    # -- large view -------------------------------------------------------------------------------------------
    def _open_current(self) -> None:
        ix = self.grid.currentIndex()
        if ix.isValid():
            self.open_large(ix.row())

    def open_large(self, row: int) -> None:
        record = self.model.record(row)
        if record is None:
            return
        self._large_row = row
        self.select_row(row)
        self.stack.setCurrentWidget(self.large)
        self.large.setFocus()
        self.large.info.setHtml(record_html(record))
        thumb = self.model.thumbnail(row)
        self.large.canvas.set_image(thumb if thumb is not None else QImage(), "Loading…")
        path = record.path
        self._images.submit(lambda: _load_full_image(path), lambda image, error: self._full_image_ready(row, record.id, image))
        self._update_actions()

    def _full_image_ready(self, row: int, image_id: int, image) -> None:
        if self._large_row != row or self.stack.currentWidget() is not self.large:
            return
        record = self.model.record(row)
        if record is None or record.id != image_id:
            return
        if isinstance(image, QImage) and not image.isNull():
            self.large.canvas.set_image(image)
        elif self.large.canvas.image().isNull():
            self.large.canvas.set_image(QImage(), "This image cannot be read.")

    def _step_large(self, step: int) -> None:
        row = self._large_row + step
        if 0 <= row < self.model.rowCount():
            self.open_large(row)

    def close_large(self) -> None:
        if self.stack.currentWidget() is self.large:
            row = self._large_row
            self._large_row = -1
            self.stack.setCurrentWidget(self.grid)
            self.select_row(row)
            self.grid.setFocus()
            self._update_actions()
            QTimer.singleShot(0, self._request_visible)

    # -- commands ---------------------------------------------------------------------------------------------
    def _say(self, message: str) -> None:
        self.status.setText(message)
        self.status_message.emit(message)

    def _focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def _set_autosave(self, on: bool) -> None:
        self.gallery.autosave = bool(on)
        self.autosave_changed.emit(bool(on))

    def toggle_favourite(self) -> None:
        targets = self._targets()
        if not targets:
            return
        value = not all(r.favourite for r in targets)
        ids = [r.id for r in targets]
        try:
            self.gallery.set_favourite(ids, value)
        except Exception as exc:  # noqa: BLE001 - shown, never raised into Qt
            self._say(f"Could not change the favourites: {exc}")
            return
        self.model.set_favourite_flags(ids, value)
        if self.stack.currentWidget() is self.large:
            record = self.current_record()
            if record is not None:
                self.large.info.setHtml(record_html(record))
        elif self.favourites_only.isChecked() and not value:
            self.refresh()
        self._say(("Marked" if value else "Unmarked") + (f" {len(ids)} images" if len(ids) > 1 else "") + " as favourite.")

    def delete_selected(self) -> None:
        targets = self._targets()
        if not targets:
            return
        in_large = self.stack.currentWidget() is self.large
        first_row = min(self.model.row_of_id(r.id) for r in targets)
        result = self.gallery.delete([r.id for r in targets])
        self.model.remove_ids(result.deleted)
        self._update_count()
        if result.failed:
            self._say(result.failed[0][1] + (f" ({len(result.failed)} images not moved.)" if len(result.failed) > 1 else ""))
        else:
            n = len(result.deleted)
            self._say(f"Moved {n} image{'s' if n != 1 else ''} to the trash.")
        row = min(first_row, self.model.rowCount() - 1)
        if self.model.rowCount() == 0:
            self.close_large()
        elif in_large:
            self.open_large(row)
        else:
            self.select_row(row)
        self._update_actions()

    def reveal_current(self) -> None:
        record = self.current_record()
        if record is not None:
            reveal_in_file_manager(record.path)

    def copy_image(self) -> None:
        record = self.current_record()
        if record is None:
            return
        image = QImage(str(record.path))
        if image.isNull():
            self._say(f"{record.path.name} cannot be read.")
            return
        QGuiApplication.clipboard().setImage(image)
        self._say("Image copied.")

    def parameters_text(self, record: ImageRecord) -> str:
        """The image's A1111 ``parameters`` text (as written in the file, or made from what the index knows)."""
        try:
            text = read_png_text(record.path).text.get(PARAMETERS_KEY)
        except MetadataError:
            text = None
        if text:
            return text
        try:
            built = self.gallery.parameters(record).build()
            return format_infotext(built.request, record.model, record.model_hash)
        except (MetadataError, DarkroomError, ValueError):
            return record.prompt

    def copy_parameters(self) -> None:
        record = self.current_record()
        if record is None:
            return
        QGuiApplication.clipboard().setText(self.parameters_text(record))
        self._say("Parameters copied.")

    def use_all_parameters(self) -> None:
        record = self.current_record()
        if record is None:
            return
        try:
            params = self.gallery.parameters(record)
            built = params.build()
        except MetadataError as exc:
            self._say(exc.message)
            return
        except DarkroomError as exc:
            self._say(exc.message)
            return
        except ValueError as exc:
            self._say(f"The parameters of this image cannot be used: {exc}")
            return
        notes = list(params.warnings) + list(built.notices)
        if "seed" not in params.fields:
            notes.append("The image holds no seed; a random one will be used.")
        self.use_parameters.emit(built.request)
        self._say("Parameters loaded into the form." + (" " + " ".join(notes[:3]) if notes else ""))

    def use_seed_of_current(self) -> None:
        record = self.current_record()
        if record is None:
            return
        if record.seed is None:
            self._say("This image holds no seed.")
            return
        self.use_seed.emit(int(record.seed))
        self._say(f"Seed {record.seed} loaded into the form.")

    def _ask_export_folder(self) -> str:
        return QFileDialog.getExistingDirectory(self, "Export the selected images to")

    def export_selection(self) -> None:
        targets = self._targets()
        if not targets:
            return
        folder = self.choose_export_folder()
        if not folder:
            return
        try:
            written = self.gallery.export([r.id for r in targets], Path(folder))
        except DarkroomError as exc:
            self._say(exc.message)
            return
        self._say(f"Exported {len(written)} image{'s' if len(written) != 1 else ''} to {folder}.")

    # -- closing ----------------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop and join every worker thread. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._search_timer.stop()
        self._scanner.shutdown()
        self._images.shutdown()
        self.loader.shutdown()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    def sizeHint(self) -> QSize:
        return QSize(1000, 700)
