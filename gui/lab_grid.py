"""The compare grid (AUTOMATIC1111's X/Y/Z plot) in the window: up to three axes over recipe settings, one picture
per combination with the form's recipe as the base, the labelled grid filling in as cells finish.

:class:`GridRun` is the view-model of one grid: it parses and expands the axes (:mod:`engine.grid`), queues every
cell as a "grid" job through :class:`gui.viewmodel.JobsModel` (so they show in the queue and the session),
saves each cell to the gallery with its full recipe as it arrives, and when all are in, composes the labelled grid
and saves it too (carrying the first cell's recipe, as A1111 does). :class:`GridDialog` binds to it.
GUI thread only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from engine.errors import DarkroomError
from engine.events import ImageReady
from engine.gallery import Gallery, SavedImage
from engine.gallery.store import disk_error, write_file_replacing
from engine.grid import MAX_AXES, Axis, Cell, GridError, compose, expand, parse_axis
from engine.request import GenerationRequest, ValidationError

from .bridge import to_qimage
from .gallery_controller import GalleryController
from .results import Result
from .viewmodel import JobsModel

AXIS_NAMES = ("cfg", "seed", "steps", "sampler", "prompt", "strength", "model")
AXIS_HINT = ("Values are separated by commas (quote a value holding one). prompt: the first value is searched for in "
             "the prompt and each value replaces it in turn. lora:NAME sets that LoRA's weight.")
#: Longest side of a cell in the grid shown while it fills in (the saved grid uses the pictures' own size).
PREVIEW_CELL = 128


class GridRun(QObject):
    """One grid being made (see the module docstring)."""

    #: cells arrived or ended, or the grid finished
    changed = Signal()
    #: the grid so far, small cells, labelled (QImage)
    preview_changed = Signal(QImage)
    #: the grid's file in the gallery (path)
    saved = Signal(str)
    #: a message for people: (level, text)
    message = Signal(str, str)

    def __init__(self, jobs: JobsModel, gallery: GalleryController, parent: QObject | None = None):
        super().__init__(parent)
        self._jobs = jobs
        self._gallery = gallery
        self.axes: list[Axis] = []
        self.cells: list[Cell] = []
        self._by_job: dict[int, Cell] = {}
        self.ready: dict[tuple[int, ...], ImageReady] = {}  # cell coords → its finished picture
        self.missing: set[tuple[int, ...]] = set()  # cells that ended without a picture
        self.cell_paths: dict[tuple[int, ...], str] = {}
        self.grid: np.ndarray | None = None
        self.grid_ready: ImageReady | None = None
        self.grid_path = ""
        self.running = False
        jobs.result_added.connect(self._on_result)
        jobs.jobs_changed.connect(self._on_jobs_changed)
        gallery.saved.connect(self._on_saved)

    # -- intents ----------------------------------------------------------------------------------------------
    def start(self, base: GenerationRequest, specs: list[str]) -> list[int]:
        """Queue every cell of the grid over ``specs`` (``name=v1,v2,…``; empty ones skipped; a Z axis needs a
        Y axis). Raises GridError with a message for people. Returns the job ids, x varying fastest."""
        if self.running:
            raise GridError("A grid is being made; cancel it first.")
        specs = [s.strip() for s in specs]
        if len(specs) > MAX_AXES:
            raise GridError(f"A grid has at most {MAX_AXES} axes.")
        if any(specs[i] and not all(specs[:i]) for i in range(len(specs))):
            raise GridError("Fill the axes in order: X first, then Y, then Z.")
        axes = [parse_axis(s) for s in specs if s]
        cells = expand(base, axes)
        self.axes, self.cells = axes, cells
        self._by_job, self.ready, self.missing, self.cell_paths = {}, {}, set(), {}
        self.grid, self.grid_ready, self.grid_path = None, None, ""
        self.running = True
        ids = []
        for cell in cells:
            job_id = self._jobs.submit(cell.request, kind="grid")
            self._by_job[job_id] = cell
            ids.append(job_id)
        self._preview()
        self.changed.emit()
        return ids

    def cancel(self) -> None:
        for job_id, cell in list(self._by_job.items()):
            if cell.coords not in self.ready:
                self._jobs.cancel(job_id)

    @property
    def done(self) -> int:
        return len(self.ready)

    def headers(self) -> list[str]:
        """One line per axis: its place, title and values."""
        return [f"{place}: {axis.title} = {', '.join(axis.labels)}" for place, axis in zip("XYZ", self.axes)]

    def progress_text(self) -> str:
        if not self.cells:
            return ""
        text = f"{self.done} of {len(self.cells)} pictures"
        if self.missing:
            text += f", {len(self.missing)} not made"
        if self.grid_path:
            text += f" · grid saved as {Path(self.grid_path).name}"
        return text

    def save_as(self, path: str | Path) -> Path:
        """Write the finished grid (with the first cell's recipe) to ``path``. Raises DarkroomError."""
        if self.grid_ready is None:
            raise DarkroomError("The grid is not finished yet.")
        path = Path(path)
        try:
            write_file_replacing(path, Gallery.encode(self.grid_ready))
        except OSError as exc:
            raise disk_error(exc, path.parent, "save the grid") from None
        return path

    # -- events -----------------------------------------------------------------------------------------------
    def _on_result(self, result: Result) -> None:
        cell = self._by_job.get(result.key[0])
        if cell is None or result.ready is None:
            return
        self.ready[cell.coords] = result.ready
        if not self._gallery.save(result, force=True) and self._gallery.gallery is None:
            self.message.emit("warning", "There is no gallery, so the grid's pictures are not saved.")
        self._preview()
        self.changed.emit()
        self._maybe_finish()

    def _on_jobs_changed(self) -> None:
        if not self.running:
            return
        alive = {job.job_id for job in self._jobs.jobs()}
        for job_id, cell in self._by_job.items():
            if job_id not in alive and cell.coords not in self.ready and cell.coords not in self.missing:
                self.missing.add(cell.coords)
                self.changed.emit()
        self._maybe_finish()

    def _on_saved(self, ready: ImageReady, saved: SavedImage) -> None:
        if ready is self.grid_ready:
            self.grid_path = str(saved.path)
            self.saved.emit(self.grid_path)
            self.changed.emit()
            return
        cell = self._by_job.get(ready.job_id)
        if cell is not None and self.ready.get(cell.coords) is ready:
            self.cell_paths[cell.coords] = str(saved.path)

    # -- internals --------------------------------------------------------------------------------------------
    def _cell_size(self, limit: int = 0) -> tuple[int, int]:
        first = next(iter(self.ready.values()), None)
        w, h = (first.image.shape[1], first.image.shape[0]) if first is not None else (
            self.cells[0].request.width, self.cells[0].request.height)
        if limit and max(w, h) > limit:
            scale = limit / max(w, h)
            w, h = max(1, round(w * scale)), max(1, round(h * scale))
        return w, h

    def _preview(self) -> None:
        images = {coords: ready.image for coords, ready in self.ready.items()}
        self.preview_changed.emit(to_qimage(compose(images, self.axes, self._cell_size(PREVIEW_CELL))))

    def _maybe_finish(self) -> None:
        if not self.running or len(self.ready) + len(self.missing) < len(self.cells):
            return
        self.running = False
        if self.missing:
            self.message.emit("warning", f"The grid was not finished: {len(self.missing)} of {len(self.cells)} "
                                         "pictures were cancelled or failed, so it was not saved.")
            self.changed.emit()
            return
        self.grid = compose({c: r.image for c, r in self.ready.items()}, self.axes, self._cell_size())
        first = self.ready[self.cells[0].coords]
        # The grid carries the first cell's recipe; its own key keeps it apart from that cell in the session.
        self.grid_ready = dataclasses.replace(first, job_id=-first.job_id, image=self.grid, replay=(), guidance=None)
        grid_result = Result.from_ready(self.grid_ready, to_qimage(self.grid), kind="grid")
        if not self._gallery.save(grid_result, force=True):
            self.message.emit("info", "The grid is done; it was not saved to a gallery (use Save grid as…).")
        self.changed.emit()


class GridPicture(QLabel):
    """The grid, enlarged by the largest whole factor that fits the view, its pixels kept sharp (a small model's
    grid is a few hundred pixels across); a grid larger than the view is shown as it is, with scroll bars."""

    def __init__(self, scroll: QScrollArea):
        super().__init__()
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._image: QImage | None = None
        self._scroll = scroll
        self.factor = 1
        scroll.viewport().installEventFilter(self)

    def show_image(self, image: QImage) -> None:
        self._image = image
        self._fit()

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Resize:
            self._fit()
        return False

    def _fit(self) -> None:
        image = self._image
        if image is None or image.isNull():
            self.clear()
            return
        room = self._scroll.viewport().size()
        self.factor = max(1, min(room.width() // image.width(), room.height() // image.height()))
        self.setPixmap(QPixmap.fromImage(image.scaled(image.width() * self.factor, image.height() * self.factor,
                                                      Qt.AspectRatioMode.IgnoreAspectRatio,
                                                      Qt.TransformationMode.FastTransformation)))


class GridDialog(QDialog):
    """Axes, Make grid / Cancel / Save grid as…, and the grid filling in. ``build_base()`` gives the form's
    request (raises ValidationError or DarkroomError); ``dialog_dir()`` where file dialogs start."""

    def __init__(self, run: GridRun, build_base: Callable[[], GenerationRequest], dialog_dir: Callable[[], str],
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Compare grid")
        self.run = run
        self._build_base = build_base
        self._dialog_dir = dialog_dir
        self.names: list[QComboBox] = []
        self.values: list[QLineEdit] = []
        axes = QGridLayout()
        defaults = (("cfg", "3, 5, 7"), ("seed", ""), ("steps", ""))
        for row, (place, (name, values)) in enumerate(zip("XYZ", defaults)):
            combo = QComboBox()
            combo.setEditable(True)  # lora:NAME is typed
            combo.addItems(AXIS_NAMES)
            combo.setCurrentText(name)
            edit = QLineEdit(values)
            edit.setPlaceholderText("values, e.g. 1, 2, 3" if row else "values, e.g. 3, 5, 7")
            axes.addWidget(QLabel(place), row, 0)
            axes.addWidget(combo, row, 1)
            axes.addWidget(edit, row, 2)
            self.names.append(combo)
            self.values.append(edit)
        axes.setColumnStretch(2, 1)
        hint = QLabel(AXIS_HINT)
        hint.setWordWrap(True)
        self.make_button = QPushButton("Make grid")
        self.cancel_button = QPushButton("Cancel")
        self.save_button = QPushButton("Save grid as…")
        self.progress = QLabel()
        self.error = QLabel()
        self.error.setObjectName("GridError")
        self.error.setWordWrap(True)
        self.header = QLabel()
        scroll = QScrollArea()
        self.view = GridPicture(scroll)
        scroll.setWidget(self.view)
        scroll.setWidgetResizable(True)
        buttons = QHBoxLayout()
        for w in (self.make_button, self.cancel_button, self.save_button):
            buttons.addWidget(w)
        buttons.addWidget(self.progress, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(axes)
        layout.addWidget(hint)
        layout.addLayout(buttons)
        layout.addWidget(self.error)
        layout.addWidget(self.header)
        layout.addWidget(scroll, 1)
        self.resize(720, 640)

        self.make_button.clicked.connect(self.make)
        self.cancel_button.clicked.connect(run.cancel)
        self.save_button.clicked.connect(self.save_as_dialog)
        run.changed.connect(self._sync)
        run.preview_changed.connect(self.view.show_image)
        run.message.connect(lambda _level, text: self.error.setText(text))
        self._sync()

    def specs(self) -> list[str]:
        """``name=values`` per axis, "" where no values are given."""
        return [f"{n.currentText().strip()}={v.text()}" if v.text().strip() else ""
                for n, v in zip(self.names, self.values)]

    def make(self) -> bool:
        self.error.setText("")
        try:
            self.run.start(self._build_base(), self.specs())
        except (GridError, ValidationError) as exc:
            self.error.setText(str(exc) if isinstance(exc, GridError) else " ".join(exc.errors.values()) or str(exc))
            return False
        except DarkroomError as exc:
            self.error.setText(exc.message)
            return False
        except RuntimeError as exc:  # the engine has stopped
            self.error.setText(f"The engine has stopped: {exc}")
            return False
        return True

    def save_as_dialog(self) -> None:
        suggestion = str(Path(self._dialog_dir()) / "darkroom-grid.png")
        path, _ = QFileDialog.getSaveFileName(self, "Save grid as", suggestion, "PNG image (*.png)")
        if path:
            try:
                self.run.save_as(path if path.lower().endswith(".png") else path + ".png")
            except DarkroomError as exc:
                self.error.setText(exc.message)

    def _sync(self) -> None:
        run = self.run
        self.make_button.setEnabled(not run.running)
        self.cancel_button.setEnabled(run.running)
        self.save_button.setEnabled(run.grid_ready is not None)
        self.progress.setText(run.progress_text())
        self.header.setText("   ·   ".join(run.headers()))
