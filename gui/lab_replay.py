"""Replay in the window: a scrubber under the canvas that steps through the model's guess (x0) at every step of the
picture shown, and "Export animation…" (noise → image as an animated WebP or GIF, :mod:`engine.animation`).

:class:`ReplayModel` is the view-model (which result, which frame); :class:`ReplayBar` binds to it;
:class:`AnimationExporter` writes the file on a short-lived thread, so a long export never blocks the window.
GUI thread only, except the exporter's thread, which touches no Qt object.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QWidget,
)

from engine.animation import export_animation
from engine.errors import DarkroomError

from .bridge import to_qimage
from .results import Result

ANIMATION_FILTER = "Animated WebP (*.webp);;Animated GIF (*.gif)"


class ReplayModel(QObject):
    """The replay of one result: its x0 frames in step order, then the finished picture (position ``count − 1``).
    ``position`` is what the canvas should show; at the last position the canvas shows the picture itself."""

    #: the result (or its frames) changed: a new range, the bar shows or hides
    changed = Signal()
    #: the person moved to another frame (0-based position)
    position_changed = Signal(int)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._result: Result | None = None
        self._frames: tuple = ()
        self._images: dict[int, QImage] = {}
        self._position = 0

    @property
    def result(self) -> Result | None:
        return self._result

    @property
    def count(self) -> int:
        """Frames to scrub through: one per step, then the finished picture (0 when there is no replay)."""
        return len(self._frames) + 1 if self._frames else 0

    @property
    def position(self) -> int:
        return self._position

    @property
    def at_end(self) -> bool:
        return self._position >= self.count - 1

    def set_result(self, result: Result | None) -> None:
        """Replay ``result`` (None, or a result without frames: nothing to replay); starts at the finished picture."""
        frames = result.replay if result is not None else ()
        if not frames and self._result is None:
            return
        self._result = result if frames else None
        self._frames = frames
        self._images = {}
        self._position = max(0, self.count - 1)
        self.changed.emit()

    def refresh_frames(self, result: Result) -> None:
        """``result``'s frames changed (decoded by the VAE after its job): show the new ones where the person is.
        Nothing happens for another result than the one replayed."""
        if result is not self._result or len(result.replay) != len(self._frames):
            return
        self._frames = result.replay
        self._images = {}
        self.position_changed.emit(self._position)

    @property
    def decoded(self) -> bool:
        """The frames are the VAE's decodes, not the quick linear map's."""
        ready = self._result.ready if self._result is not None else None
        return ready is not None and ready.replay_decoded

    def set_position(self, position: int) -> None:
        position = max(0, min(int(position), self.count - 1))
        if position != self._position:
            self._position = position
            self.position_changed.emit(position)

    def image(self, position: int) -> QImage:
        """The x0 frame at ``position`` (0-based step) as a QImage, made once per frame."""
        if position not in self._images:
            self._images[position] = to_qimage(self._frames[position])
        return self._images[position]

    def label(self) -> str:
        steps = len(self._frames)
        if not steps:
            return ""
        if self.at_end:
            return f"Finished picture (after {steps} steps)"
        return f"Step {self._position + 1}/{steps} · model's guess (x0)"

    def animation_frames(self) -> list:
        """Every x0 frame, then the finished picture: what an animation shows. Empty without a replay."""
        result = self._result
        if result is None or result.ready is None:
            return []
        return [*self._frames, result.ready.image]


class ReplayBar(QWidget):
    """Slider, step label, caption switch and Export animation…, bound to a :class:`ReplayModel`; hidden when the
    picture shown has no replay."""

    export_requested = Signal()

    def __init__(self, model: ReplayModel, parent: QWidget | None = None):
        super().__init__(parent)
        self._model = model
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("ReplaySlider")
        self.slider.setToolTip("Replay: the model's guess of the finished picture (x0) at every step. Drag to see "
                               "how the picture came out of the noise.")
        self.step_label = QLabel()
        self.step_label.setMinimumWidth(self.step_label.fontMetrics().horizontalAdvance("Step 150/150 · model's guess (x0)"))
        self.caption_box = QCheckBox("Caption")
        self.caption_box.setToolTip("Write the prompt under the animation")
        self.export_button = QPushButton("Export animation…")
        self.export_button.setToolTip("Save noise → image as an animated WebP or GIF")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Replay"))
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.step_label)
        layout.addWidget(self.caption_box)
        layout.addWidget(self.export_button)
        self.slider.valueChanged.connect(model.set_position)
        self.export_button.clicked.connect(self.export_requested)
        model.changed.connect(self._sync)
        model.position_changed.connect(self._show_position)
        self._sync()

    def _sync(self) -> None:
        count = self._model.count
        self.setVisible(count > 0)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, count - 1))
        self.slider.setValue(self._model.position)
        self.slider.blockSignals(False)
        self.step_label.setText(self._model.label())

    def _show_position(self, position: int) -> None:
        if self.slider.value() != position:
            self.slider.setValue(position)
        self.step_label.setText(self._model.label())


class AnimationExporter(QObject):
    """Writes animations on a worker thread, one at a time; says how it went with :attr:`done`."""

    #: (path written or "", message for people, details)
    done = Signal(str, str, str)
    _finished = Signal(str, str, str)  # worker thread → GUI thread

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._thread: threading.Thread | None = None
        self._finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def export(self, frames: list, path: str | Path, caption: str = "") -> bool:
        """Start writing ``frames`` (x0 frames, then the picture) to ``path``; False while another export runs."""
        if self.busy or not frames:
            return False
        self._thread = threading.Thread(target=self._run, args=(list(frames), Path(path), caption),
                                        name="darkroom-animation", daemon=True)
        self._thread.start()
        return True

    def wait(self, timeout: float) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.busy

    def _run(self, frames: list, path: Path, caption: str) -> None:
        try:
            written = export_animation(frames, path, caption=caption)
        except DarkroomError as exc:
            self._finished.emit("", exc.message, exc.details or "")
        except Exception as exc:  # noqa: BLE001 - reported to the window
            self._finished.emit("", f"The animation could not be written: {exc}", repr(exc))
        else:
            self._finished.emit(str(written), "", "")

    def _on_finished(self, path: str, message: str, details: str) -> None:
        # The worker's last act was emitting this signal; joining it here means that whoever hears ``done``
        # may start the next export at once instead of finding this one still "busy".
        if self._thread is not None:
            self._thread.join()
        self.done.emit(path, message, details)
