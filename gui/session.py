"""This session's results (a strip of thumbnails) and the queue of pending jobs (each cancellable).

Both follow a model: the strip a :class:`gui.results.ResultStore`, the queue :meth:`gui.viewmodel.JobsModel.jobs`.
GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QSize, Qt, Signal
from PySide6.QtGui import QAction, QIcon, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .edit_model import SEND_TARGETS
from .results import THUMB, Result, ResultKey, ResultStore
from .viewmodel import JobInfo, JobsModel


def _untinted_icon(pixmap: QPixmap) -> QIcon:
    """The picture as it is in every state: by default the style tints a selected icon with the highlight
    colour, which turned the selected picture (the newest, always) red."""
    icon = QIcon()
    for mode in (QIcon.Mode.Normal, QIcon.Mode.Selected, QIcon.Mode.Active):
        icon.addPixmap(pixmap, mode)
    return icon


class SessionStrip(QListWidget):
    """Thumbnails of this session's results (a :class:`ResultStore`), newest first. Clicking one shows it."""

    result_chosen = Signal(object)  # Result
    save_as_requested = Signal(object)
    use_parameters_requested = Signal(object)
    use_seed_requested = Signal(object)
    #: (target, Result): "Send to image to image / inpaint / outpaint / hires fix"
    send_requested = Signal(str, object)

    def __init__(self, store: ResultStore, parent: QWidget | None = None):
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
        self._store = store
        store.added.connect(self._add)
        store.changed.connect(self._refresh)
        store.removed.connect(self._remove)

    def _add(self, result: Result) -> None:
        item = QListWidgetItem(_untinted_icon(QPixmap.fromImage(result.thumbnail)), "")
        item.setData(Qt.ItemDataRole.UserRole, result.key)
        item.setToolTip(result.describe())
        item.setSizeHint(QSize(THUMB + 8, THUMB + 8))
        self.insertItem(0, item)
        with _Blocked(self):
            self.setCurrentItem(item)

    def _item(self, key: ResultKey) -> QListWidgetItem | None:
        return next((self.item(i) for i in range(self.count()) if self.item(i).data(Qt.ItemDataRole.UserRole) == key),
                    None)

    def _refresh(self, result: Result) -> None:
        item = self._item(result.key)
        if item is not None:
            item.setToolTip(result.describe())

    def _remove(self, results: list[Result]) -> None:
        gone = {r.key for r in results}
        for i in reversed(range(self.count())):
            if self.item(i).data(Qt.ItemDataRole.UserRole) in gone:
                self.takeItem(i)

    def keys(self) -> list[ResultKey]:
        """The results listed, newest first."""
        return [self.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.count())]

    def select_result(self, key: ResultKey | None) -> None:
        with _Blocked(self):
            item = self._item(key) if key is not None else None
            if item is None:
                self.clearSelection()
            else:
                self.setCurrentItem(item)

    def _result_at(self, item: QListWidgetItem | None) -> Result | None:
        return self._store.get(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def _clicked(self, item: QListWidgetItem) -> None:
        result = self._result_at(item)
        if result is not None:
            self.result_chosen.emit(result)

    def _menu(self, pos: QPoint) -> None:
        result = self._result_at(self.itemAt(pos))
        if result is None:
            return
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
        menu.addSeparator()
        for target, text in SEND_TARGETS.items():
            menu.addAction(text, lambda t=target: self.send_requested.emit(t, result))
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
            f"{r.prompt}\nSeed {r.seed} · {r.steps} steps · {r.sampler} · {r.width}×{r.height}{count}"
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


class SessionPanel(QWidget):
    """The right side of the Create tab: this session's strip above the queue, bound to a :class:`JobsModel`."""

    def __init__(self, jobs: JobsModel, parent: QWidget | None = None):
        super().__init__(parent)
        self._jobs = jobs
        self.strip = SessionStrip(jobs.results)
        self.queue_list = QueueList()
        self.queue_list.setMaximumHeight(180)
        self.queue_empty = QLabel("Nothing waiting.")
        self.queue_empty.setObjectName("PreviewExplain")
        strip_heading = QLabel("This session")
        strip_heading.setObjectName("PanelHeading")
        self.queue_heading = QLabel("Queue")
        self.queue_heading.setObjectName("PanelHeading")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 10, 12, 10)
        layout.setSpacing(6)
        layout.addWidget(strip_heading)
        layout.addWidget(self.strip, 1)
        layout.addWidget(self.queue_heading)
        layout.addWidget(self.queue_empty)
        layout.addWidget(self.queue_list)
        self.setMinimumWidth(160)
        self.queue_list.cancel_requested.connect(jobs.cancel)
        self.strip.result_chosen.connect(jobs.show_result)
        jobs.jobs_changed.connect(self._jobs_changed)
        self._jobs_changed()

    def _jobs_changed(self) -> None:
        jobs = self._jobs.jobs()
        self.queue_list.set_jobs(jobs)
        self.queue_list.setVisible(bool(jobs))
        self.queue_empty.setVisible(not jobs)
        running = sum(1 for j in jobs if j.state == "running")
        self.queue_heading.setText("Queue" if not jobs else f"Queue · {running} running, {len(jobs) - running} waiting")
