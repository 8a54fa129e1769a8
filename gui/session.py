"""This session's results (a strip of thumbnails) and the queue of pending jobs (each cancellable)."""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QPoint, QSize, Qt, Signal
from PySide6.QtGui import QAction, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QSizePolicy,
    QToolButton,
    QWidget,
)

from engine.events import ImageReady

from .bridge import JobInfo

THUMB = 96


@dataclass
class Result:
    """A finished image of this session."""

    ready: ImageReady
    image: QImage
    saved_path: str | None = None
    save_error: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int]:
        return (self.ready.job_id, self.ready.image_index)

    def describe(self) -> str:
        r = self.ready.request
        prompt = r.prompt if len(r.prompt) <= 80 else r.prompt[:77] + "…"
        lines = [
            prompt or "(no prompt)",
            f"Seed {r.seed} · {r.steps} steps · {r.scheduler} · CFG {r.cfg:g} · {r.width}×{r.height}",
        ]
        if self.ready.model_name:
            lines.append(f"Model {self.ready.model_name}")
        if self.ready.seconds:
            lines.append(f"Made in {self.ready.seconds:.1f} s on {self.ready.device or 'unknown device'}")
        if self.saved_path:
            lines.append(f"Saved as {self.saved_path}")
        elif self.save_error:
            lines.append(f"Not saved: {self.save_error}")
        return "\n".join(lines)


class SessionStrip(QListWidget):
    """Thumbnails of the images made since the window opened, newest first. Clicking one shows it."""

    result_chosen = Signal(object)  # Result
    save_as_requested = Signal(object)
    use_parameters_requested = Signal(object)
    use_seed_requested = Signal(object)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("SessionStrip")
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setGridSize(QSize(THUMB + 12, THUMB + 12))
        self.setUniformItemSizes(True)
        self.setSelectionMode(QListWidget.SelectionMode.SingleSelection)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.itemClicked.connect(self._clicked)
        self.itemActivated.connect(self._clicked)
        self._results: dict[tuple[int, int], Result] = {}

    def add_result(self, result: Result) -> QListWidgetItem:
        thumb = result.image.scaled(
            THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
        item = QListWidgetItem(QIcon(QPixmap.fromImage(thumb)), "")
        item.setData(Qt.ItemDataRole.UserRole, result.key)
        item.setToolTip(result.describe())
        item.setSizeHint(QSize(THUMB + 8, THUMB + 8))
        self._results[result.key] = result
        self.insertItem(0, item)
        with _Blocked(self):
            self.setCurrentItem(item)
        return item

    def results(self) -> list[Result]:
        """Newest first, as shown."""
        return [self._results[self.item(i).data(Qt.ItemDataRole.UserRole)] for i in range(self.count())]

    def result(self, key: tuple[int, int]) -> Result | None:
        return self._results.get(key)

    def refresh(self, result: Result) -> None:
        for i in range(self.count()):
            if self.item(i).data(Qt.ItemDataRole.UserRole) == result.key:
                self.item(i).setToolTip(result.describe())

    def select_result(self, key: tuple[int, int] | None) -> None:
        with _Blocked(self):
            if key is None:
                self.clearSelection()
                return
            for i in range(self.count()):
                if self.item(i).data(Qt.ItemDataRole.UserRole) == key:
                    self.setCurrentRow(i)

    def _clicked(self, item: QListWidgetItem) -> None:
        result = self._results.get(item.data(Qt.ItemDataRole.UserRole))
        if result is not None:
            self.result_chosen.emit(result)

    def _menu(self, pos: QPoint) -> None:
        item = self.itemAt(pos)
        if item is None:
            return
        result = self._results[item.data(Qt.ItemDataRole.UserRole)]
        menu = QMenu(self)
        for text, signal in (
            ("Show", self.result_chosen),
            ("Save as…", self.save_as_requested),
            ("Use these parameters", self.use_parameters_requested),
            ("Use this seed", self.use_seed_requested),
        ):
            action = QAction(text, menu)
            action.triggered.connect(lambda _=False, s=signal: s.emit(result))
            menu.addAction(action)
        menu.exec(self.viewport().mapToGlobal(pos))


class _Blocked:
    def __init__(self, widget: QWidget):
        self._w = widget

    def __enter__(self):
        self._old = self._w.blockSignals(True)

    def __exit__(self, *exc):
        self._w.blockSignals(self._old)


class _JobRow(QWidget):
    def __init__(self, info: JobInfo, on_cancel, parent: QWidget | None = None):
        super().__init__(parent)
        self.job_id = info.job_id
        r = info.request
        prompt = r.prompt.replace("\n", " ")
        prompt = prompt if len(prompt) <= 60 else prompt[:57] + "…"
        count = f" × {r.batch_count}" if r.batch_count > 1 else ""
        self.state = QLabel()
        self.state.setObjectName("JobState")
        self.label = _ElidedLabel(f"{prompt or '(no prompt)'}{count}")
        self.label.setToolTip(
            f"{r.prompt}\nSeed {r.seed} · {r.steps} steps · {r.scheduler} · {r.width}×{r.height}{count}"
        )
        self.cancel_button = QToolButton()
        self.cancel_button.setText("✕")
        self.cancel_button.setAutoRaise(True)
        self.cancel_button.setToolTip("Cancel this job")
        self.cancel_button.clicked.connect(lambda: on_cancel(self.job_id))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 2, 2)
        layout.addWidget(self.state)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.cancel_button)
        self.set_state(info.state)

    def set_state(self, state: str) -> None:
        self.state.setText("▶" if state == "running" else "⏸")
        self.state.setToolTip("Running" if state == "running" else "Waiting")
        self.setProperty("running", state == "running")


class _ElidedLabel(QLabel):
    """A one-line label that shortens its text with "…" instead of growing the list sideways."""

    def __init__(self, text: str):
        super().__init__()
        self._full = text
        self.setMinimumWidth(40)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        elided = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, self.width())
        if elided != self.text():
            self.setText(elided)


class QueueList(QListWidget):
    """The pending jobs, running one first; each row has its own cancel button."""

    cancel_requested = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("QueueList")
        self.setSelectionMode(QListWidget.SelectionMode.NoSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)

    def set_jobs(self, jobs: list[JobInfo]) -> None:
        self.clear()
        for info in jobs:
            item = QListWidgetItem()
            row = _JobRow(info, self.cancel_requested.emit)
            item.setSizeHint(row.sizeHint())
            item.setData(Qt.ItemDataRole.UserRole, info.job_id)
            self.addItem(item)
            self.setItemWidget(item, row)

    def job_ids(self) -> list[int]:
        return [self.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.count())]

    def job_row(self, job_id: int) -> _JobRow | None:
        for i in range(self.count()):
            if self.item(i).data(Qt.ItemDataRole.UserRole) == job_id:
                return self.itemWidget(self.item(i))
        return None
