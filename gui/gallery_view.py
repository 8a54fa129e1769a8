"""The Gallery tab: a virtualised thumbnail grid with search, favourites and a large view with the metadata.

The Gallery tab (:class:`gui.gallery_tab.GalleryTab`) holds a :class:`GalleryView` and connects:

- ``use_parameters(GenerationRequest)``: "Use all parameters" (fill the generation form);
- ``use_seed(int)``: "Use seed";
- ``status_message(str)``: short messages for the status bar;
- ``autosave_changed(bool)``: the "Save every image" switch (the gallery controller applies and remembers it);

and calls :meth:`GalleryView.image_saved` when an image has been saved, and :meth:`GalleryView.shutdown` when the
window closes or the gallery folder changes (closing the widget does it too).

Keyboard: arrows/Page Up/Page Down/Home/End move in the grid, Enter opens the large view (←/→ move there, Esc goes
back), F favourite, Delete moves to the trash, U uses all parameters, S uses the seed, Ctrl+C copies the image,
Ctrl+Shift+C the parameters, Ctrl+E exports the selection, Ctrl+R reveals the file, Ctrl+F searches.

Threading: everything here runs on the GUI thread; scanning, thumbnails and full-size decodes run on the worker
threads of :class:`gui.tasks.TaskThread` and :class:`gui.gallery_model.ThumbnailLoader`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QItemSelectionModel, QSize, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from engine.errors import DarkroomError
from engine.gallery import Gallery, GridEntry, ImageRecord, SavedImage

from .gallery_actions import make_actions, show_context_menu, update_actions
from .gallery_model import GalleryModel, ThumbnailDelegate, ThumbnailLoader
from .gallery_widgets import (
    GalleryGrid,
    GalleryToolbar,
    LargeView,
    parameters_text,
    request_from_record,
    reveal_in_file_manager,
)
from .tasks import TaskThread

log = logging.getLogger(__name__)

SEARCH_DELAY_MS = 150


class GalleryView(QWidget):
    """The gallery tab. See the module docstring for what the main window connects."""

    use_parameters = Signal(object)  # engine.request.GenerationRequest
    use_seed = Signal(int)
    #: "Send to …": (target, the image's file, its recipe or None)
    send_to = Signal(str, object, object)
    #: "Forward process…": the image's file
    forward_process = Signal(object)
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
        self._scanner = TaskThread("darkroom-gallery-scan", self)

        top = GalleryToolbar(gallery, self)
        self.search, self.favourites_only, self.sort = top.search, top.favourites_only, top.sort
        self.count_label, self.autosave = top.count_label, top.autosave

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
        layout.addWidget(top)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.status)

        layout.insertLayout(1, make_actions(self))
        self._update_actions()

        self._search_timer = QTimer(self, singleShot=True, interval=SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.refresh)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.search.returnPressed.connect(self.refresh)
        self.favourites_only.toggled.connect(lambda _c: self.refresh())
        self.sort.currentIndexChanged.connect(lambda _i: self.refresh())
        self.autosave.toggled.connect(self.autosave_changed)
        self.grid.activated.connect(lambda ix: self.open_large(ix.row()))
        self.grid.customContextMenuRequested.connect(lambda pos: show_context_menu(self, pos))
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

    # -- actions (gui/gallery_actions.py) -------------------------------------------------------------------------
    def _update_actions(self) -> None:
        has_current = self.current_entry() is not None
        update_actions(self, has_current, bool(self.grid.selectionModel().hasSelection()))

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
        record = saved.record
        if record is None:  # saved but not indexed: a quick background scan finds it
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
        self.large.show_record(record, self.model.thumbnail(row))
        self._update_actions()

    def _step_large(self, step: int) -> None:
        row = self._large_row + step
        if 0 <= row < self.model.rowCount():
            self.open_large(row)

    def close_large(self) -> None:
        if self.stack.currentWidget() is self.large:
            row = self._large_row
            self._large_row = -1
            self.large.clear()
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
                self.large.refresh_info(record)
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

    def copy_parameters(self) -> None:
        record = self.current_record()
        if record is None:
            return
        QGuiApplication.clipboard().setText(parameters_text(self.gallery, record))
        self._say("Parameters copied.")

    def use_all_parameters(self) -> None:
        record = self.current_record()
        if record is None:
            return
        request, message = request_from_record(self.gallery, record)
        if request is not None:
            self.use_parameters.emit(request)
        self._say(message)

    def send_current(self, target: str) -> None:
        """Edit the current image in the Create tab (its recipe fills the form where it has one)."""
        record = self.current_record()
        if record is not None:
            request, _message = request_from_record(self.gallery, record)
            self.send_to.emit(target, record.path, request)

    def forward_current(self) -> None:
        record = self.current_record()
        if record is not None:
            self.forward_process.emit(record.path)

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
        self.large.shutdown()
        self.loader.shutdown()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    def sizeHint(self) -> QSize:
        return QSize(1000, 700)
