"""The guidance view: at a chosen step of a picture, the model's guess of the finished picture without the prompt
(unconditional), with it (conditional), their difference scaled by CFG (the guidance term) and the guess the
sampler went on with, side by side, each with one line saying what it is.

The picture's recipe is run again (same seed, so the same steps) asking the engine for the guidance probe of one
step (:class:`engine.engine.JobOptions` ``inspect_step``); the job goes straight through the bridge, so it is
neither shown on the canvas nor saved. :class:`GuidanceModel` is the view-model, :class:`GuidanceDialog` binds to
it. GUI thread only.
"""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.engine import JobOptions
from engine.events import Cancelled, Failed, GuidanceCapture, ImageReady

from .bridge import Bridge, to_qimage
from .results import Result

PANELS = (
    ("uncond", "Without the prompt", "The model's guess of the finished picture with an empty prompt (unconditional)."),
    ("cond", "With the prompt", "Its guess when it reads your prompt (conditional)."),
    ("term", "Difference × CFG", "CFG × (with − without): what the prompt adds; mid grey means no change."),
    ("guided", "Guided guess", "Without + CFG × difference: the guess the sampler went on with at this step."),
)


class GuidanceModel(QObject):
    """The probe of one step of one result: which step, the capture when it arrives, and a status line."""

    capture_changed = Signal(object)  # GuidanceCapture | None
    status_changed = Signal(str)

    def __init__(self, bridge: Bridge, parent: QObject | None = None):
        super().__init__(parent)
        self._bridge = bridge
        self.result: Result | None = None
        self.step = 1
        self.capture: GuidanceCapture | None = None
        self.status = ""
        self._job: int | None = None
        bridge.image_ready.connect(self._on_ready)
        bridge.job_failed.connect(self._on_failed)
        bridge.job_cancelled.connect(self._on_cancelled)

    @property
    def pending(self) -> int | None:
        return self._job

    def set_result(self, result: Result | None) -> None:
        self.result = result
        if result is not None:
            self.step = max(1, min(self.step, result.request.steps))
        self._set_capture(None)
        self._set_status("" if result is not None else "Show a finished picture on the canvas first.")

    def inspect(self, step: int) -> int | None:
        """Run the picture's recipe again, capturing guidance at ``step`` (1-based). Returns the job id."""
        if self.result is None or self._bridge.closed:
            return None
        request = self.result.request
        if request.cfg <= 1.0:
            self._set_capture(None)
            self._set_status(f"CFG is {request.cfg:g}: without guidance there is no unconditional guess to compare.")
            return None
        self.step = max(1, min(int(step), request.steps))
        if self._job is not None:
            self._bridge.cancel(self._job)
        self._job = self._bridge.submit(dataclasses.replace(request, batch_count=1),
                                        JobOptions(replay=False, inspect_step=self.step))
        self._set_status(f"Running the recipe again up to step {self.step}…")
        return self._job

    def cancel(self) -> None:
        if self._job is not None:
            self._bridge.cancel(self._job)
            self._job = None

    def _on_ready(self, ready: ImageReady, _image: QImage) -> None:
        if ready.job_id != self._job:
            return
        self._job = None
        self._set_capture(ready.guidance)
        if ready.guidance is None:
            self._set_status("The engine captured nothing at that step (is guidance off?).")
        else:
            g = ready.guidance
            self._set_status(f"Step {g.step} of {g.total}, CFG {g.cfg:g}: the guidance term's strength (RMS, latent "
                             f"units) is {g.term_rms:.3f}.")

    def _on_failed(self, event: Failed) -> None:
        if event.job_id is not None and event.job_id == self._job:
            self._job = None
            self._set_status(event.message)

    def _on_cancelled(self, event: Cancelled) -> None:
        if event.job_id == self._job:
            self._job = None
            self._set_status("Cancelled.")

    def _set_capture(self, capture: GuidanceCapture | None) -> None:
        self.capture = capture
        self.capture_changed.emit(capture)

    def _set_status(self, text: str) -> None:
        if text != self.status:
            self.status = text
            self.status_changed.emit(text)


class GuidanceDialog(QDialog):
    SIDE = 200

    def __init__(self, model: GuidanceModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Guidance at one step")
        self.model = model
        self.step_box = QSpinBox()
        self.step_box.setPrefix("Step ")
        self.inspect_button = QPushButton("Show")
        self.picture = QLabel()
        self.status = QLabel()
        self.status.setWordWrap(True)
        grid = QGridLayout()
        self.images: dict[str, QLabel] = {}
        for column, (key, title, explanation) in enumerate(PANELS):
            image = QLabel()
            image.setFixedSize(self.SIDE, self.SIDE)
            image.setAlignment(Qt.AlignmentFlag.AlignCenter)
            image.setObjectName("GuidancePanel")
            heading = QLabel(f"<b>{title}</b>")
            line = QLabel(explanation)
            line.setWordWrap(True)
            line.setMaximumWidth(self.SIDE)
            grid.addWidget(heading, 0, column)
            grid.addWidget(image, 1, column)
            grid.addWidget(line, 2, column, Qt.AlignmentFlag.AlignTop)
            self.images[key] = image
        top = QHBoxLayout()
        top.addWidget(self.picture, 1)
        top.addWidget(self.step_box)
        top.addWidget(self.inspect_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(grid)
        layout.addWidget(self.status)
        self.inspect_button.clicked.connect(lambda: model.inspect(self.step_box.value()))
        model.capture_changed.connect(self._show)
        model.status_changed.connect(self.status.setText)
        self.finished.connect(lambda _code: model.cancel())
        self.sync()

    def sync(self) -> None:
        """Follow the model's result (call after :meth:`GuidanceModel.set_result`)."""
        result = self.model.result
        steps = result.request.steps if result is not None else 1
        self.step_box.setRange(1, steps)
        self.step_box.setValue(self.model.step)
        self.inspect_button.setEnabled(result is not None)
        if result is not None:
            r = result.request
            prompt = r.prompt if len(r.prompt) <= 60 else r.prompt[:57] + "…"
            self.picture.setText(f"“{prompt}” · seed {r.seed} · {steps} steps · CFG {r.cfg:g}")
        self.status.setText(self.model.status)
        self._show(self.model.capture)

    def _show(self, capture: GuidanceCapture | None) -> None:
        for key, label in self.images.items():
            if capture is None:
                label.clear()
                continue
            image = to_qimage(getattr(capture, key))
            label.setPixmap(QPixmap.fromImage(image).scaled(self.SIDE, self.SIDE, Qt.AspectRatioMode.KeepAspectRatio,
                                                            Qt.TransformationMode.FastTransformation))
