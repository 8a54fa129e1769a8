"""The model library window: every model with its family, precision, size and source; adding by path, removing,
and downloading from the Hugging Face Hub with a progress bar (size, speed, time left) and Cancel.

The download runs on its own thread (:func:`engine.hub.download`) and reports through a queued signal; closing
the window cancels it and waits for the thread. Everything else runs on the GUI thread.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine import library
from engine.errors import DarkroomError

from .models_controller import ModelsController
from .viewmodel import format_seconds

COLUMNS = ("Name", "Family", "Precision", "Size", "Source")
PRECISIONS = {"": "Full precision", "fp16": "fp16 (half the download)", "bf16": "bf16"}


def choose_model_folder(parent: QWidget, models: ModelsController, start: str) -> None:
    folder = QFileDialog.getExistingDirectory(parent, "Choose a diffusers model folder", start)
    if folder:
        models.add_path(folder)


def choose_model_file(parent: QWidget, models: ModelsController, start: str) -> None:
    path, _ = QFileDialog.getOpenFileName(parent, "Choose a model file", start, "Safetensors checkpoints (*.safetensors)")
    if path:
        models.add_path(path)


class ModelsDialog(QDialog):
    #: (bytes done, total, file, bytes per second) from the download thread
    _progress = Signal(int, int, str, float)
    #: (snapshot folder or None, message) when the download thread ends
    _finished = Signal(object, str)

    def __init__(self, models: ModelsController, start_dir: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(760, 460)
        self._models = models
        self._start_dir = start_dir
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.add_folder = QPushButton("Add folder…")
        self.add_file = QPushButton("Add file…")
        self.remove = QPushButton("Remove")
        self.remove.setToolTip("Take a model added by path or downloaded out of the library (no file is deleted)")

        self.repo = QLineEdit(placeholderText="owner/name on huggingface.co, e.g. stable-diffusion-v1-5/stable-diffusion-v1-5")
        self.precision = QComboBox()
        for value, label in PRECISIONS.items():
            self.precision.addItem(label, value)
        self.download = QPushButton("Download")
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.bar.setFormat("")
        self.status = QLabel("Downloads go to the Hugging Face cache and fetch only what Darkroom needs. Nothing is "
                             "downloaded unless you press Download.")
        self.status.setWordWrap(True)

        buttons = QHBoxLayout()
        for b in (self.add_folder, self.add_file, self.remove):
            buttons.addWidget(b)
        buttons.addStretch(1)
        box = QGroupBox("Download from the Hugging Face Hub")
        row = QHBoxLayout()
        row.addWidget(self.repo, 1)
        row.addWidget(self.precision)
        row.addWidget(self.download)
        row.addWidget(self.cancel)
        box_layout = QVBoxLayout(box)
        box_layout.addLayout(row)
        box_layout.addWidget(self.bar)
        box_layout.addWidget(self.status)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addWidget(box)

        self.add_folder.clicked.connect(lambda: choose_model_folder(self, models, self._start_dir))
        self.add_file.clicked.connect(lambda: choose_model_file(self, models, self._start_dir))
        self.remove.clicked.connect(self.remove_selected)
        self.download.clicked.connect(self.start_download)
        self.repo.returnPressed.connect(self.start_download)
        self.cancel.clicked.connect(self._cancel.set)
        self._progress.connect(self._show_progress, Qt.ConnectionType.QueuedConnection)
        self._finished.connect(self._download_ended, Qt.ConnectionType.QueuedConnection)
        models.choices_changed.connect(lambda _choices: self.refresh())
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.refresh()

    # -- the list ---------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        self._entries = library.library(tuple(self._models.user_models()))
        self.table.setRowCount(len(self._entries))
        for row, e in enumerate(self._entries):
            values = (e.name, e.family, e.precision, library.format_size(e.size_bytes),
                      library.SOURCE_WORDS.get(e.source, e.source))
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setToolTip(str(e.model.path))
                if col == 3:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self._update_buttons()

    def names(self) -> list[str]:
        return [e.name for e in self._entries]

    def _selected(self) -> library.LibraryEntry | None:
        rows = self.table.selectionModel().selectedRows()
        return self._entries[rows[0].row()] if rows else None

    def _update_buttons(self) -> None:
        entry = self._selected()
        self.remove.setEnabled(entry is not None and entry.source in ("path", "hub"))

    def remove_selected(self) -> None:
        entry = self._selected()
        if entry is None:
            return
        try:
            self._models.remove(entry.name)
        except DarkroomError as exc:
            self.status.setText(exc.message)

    # -- downloading ------------------------------------------------------------------------------------------
    @property
    def downloading(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start_download(self) -> None:
        repo_id = self.repo.text().strip()
        if self.downloading or not repo_id:
            return
        from engine.hub import check_repo_id, download

        try:
            check_repo_id(repo_id)
        except DarkroomError as exc:
            self.status.setText(exc.message)
            return
        variant = self.precision.currentData() or None
        self._cancel.clear()

        def work() -> None:  # download thread
            try:
                folder = download(repo_id, variant=variant, cancel=self._cancel,
                                  on_progress=lambda p: self._progress.emit(p.done, p.total, p.file, p.bytes_per_s))
            except DarkroomError as exc:
                self._finished.emit(None, exc.message)
            except Exception as exc:  # noqa: BLE001 - a message in the window, never a dead thread
                self._finished.emit(None, f"The download failed: {type(exc).__name__}: {exc}")
            else:
                self._finished.emit(folder, f"Downloaded {repo_id}.")

        self.download.setEnabled(False)
        self.cancel.setEnabled(True)
        self.bar.setRange(0, 0)
        self.bar.setFormat("")
        self.status.setText(f"Asking the Hub for {repo_id}…")
        self._thread = threading.Thread(target=work, name="darkroom-download", daemon=True)
        self._thread.start()

    def _show_progress(self, done: int, total: int, file: str, rate: float) -> None:
        self.bar.setRange(0, 1000)
        self.bar.setValue(int(1000 * done / total) if total else 0)
        left = format_seconds((total - done) / rate) if rate > 0 else "…"
        self.bar.setFormat(f"{library.format_size(done)} of {library.format_size(total)} · "
                           f"{library.format_size(int(rate))}/s · {left} left")
        self.status.setText(f"Downloading {Path(file).name}…")

    def _download_ended(self, folder, message: str) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.download.setEnabled(True)
        self.cancel.setEnabled(False)
        self.bar.setRange(0, 1000)
        self.bar.setValue(1000 if folder is not None else 0)
        self.status.setText(message)
        if folder is not None:
            self._models.refresh()

    def done(self, result: int) -> None:  # noqa: A003 - closing by any means cancels the download
        if self._thread is not None:
            self._cancel.set()
            self._thread.join()
            self._thread = None
        super().done(result)
