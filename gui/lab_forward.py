"""The forward process view: a picture noised to training step t of the current model's schedule and decoded
(``x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε``, a fixed ε seed), beside plots of β_t, ᾱ_t and the signal-to-noise ratio with
a marker at t and another where img2img at the edit panel's strength starts.

:class:`ForwardModel` is the view-model: it sends forward-process jobs (:mod:`engine.forward_job`) through the
bridge, newest position wins (an older job still queued or running is cancelled), and holds the newest frame and
the schedule the engine reported. :class:`ForwardDialog` binds to it. GUI thread only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.events import Cancelled, Failed, ForwardFrame
from engine.fields import SEED_MAX
from engine.forward import ForwardSchedule, img2img_start_t, schedule_from_config
from engine.forward_job import ForwardRequest
from engine.images import ImageInputError, read_image

from .bridge import Bridge
from .lab_plots import CurvePlot

#: Quiet time after the slider moves before the frame is asked for (dragging sends only the newest position).
SETTLE_MS = 40
EXPLAIN = ("Training adds noise to a picture step by step; the model learns to undo it. At t the picture keeps "
           "√ᾱ_t of its signal and gains √(1−ᾱ_t) of noise ε (same ε at every t).")


class ForwardModel(QObject):
    picture_changed = Signal()
    t_changed = Signal(int)
    #: the schedule (from the engine's first frame) or the img2img start changed: the plots redraw
    schedule_changed = Signal()
    #: a new frame arrived (ForwardFrame, QImage)
    frame_changed = Signal(object, QImage)
    status_changed = Signal(str)

    def __init__(self, bridge: Bridge, parent: QObject | None = None):
        super().__init__(parent)
        self._bridge = bridge
        self.picture: np.ndarray | None = None
        self.picture_label = ""
        self.model = ""
        self.seed = 0
        self.t = 500
        self.strength = 0.75
        self.steps = 25
        self.schedule: ForwardSchedule | None = None
        self.config: dict = {}
        self.frame: ForwardFrame | None = None
        self.image: QImage | None = None
        self.status = ""
        self._job: int | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SETTLE_MS)
        self._timer.timeout.connect(self.request_frame)
        bridge.forward_frame.connect(self._on_frame)
        bridge.job_failed.connect(self._on_failed)
        bridge.job_cancelled.connect(self._on_cancelled)

    # -- intents ----------------------------------------------------------------------------------------------
    def set_picture(self, rgb: np.ndarray, label: str) -> None:
        self.picture, self.picture_label = rgb, label
        self.picture_changed.emit()
        self.request_frame()

    def set_model(self, model: str) -> None:
        if model != self.model:
            self.model = model
            self.schedule = None
            self.request_frame()

    def set_seed(self, seed: int) -> None:
        if seed != self.seed:
            self.seed = int(seed)
            self._timer.start()

    def set_t(self, t: int) -> None:
        t = max(0, min(int(t), self.last_t))
        if t != self.t:
            self.t = t
            self.t_changed.emit(t)
            self._timer.start()

    def set_img2img(self, strength: float, steps: int) -> None:
        if (strength, steps) != (self.strength, self.steps):
            self.strength, self.steps = float(strength), int(steps)
            self.schedule_changed.emit()

    @property
    def last_t(self) -> int:
        return self.schedule.steps - 1 if self.schedule is not None else 999

    @property
    def start_t(self) -> int | None:
        """Where img2img at the edit's strength starts (None before the schedule is known, or at strength 0)."""
        if self.schedule is None or not self.config:
            return None
        return img2img_start_t(self.config, self.strength, max(1, self.steps))

    @property
    def pending(self) -> int | None:
        return self._job

    def request_frame(self) -> int | None:
        """Ask the engine for the picture at the current t (cancelling an older request still on its way)."""
        self._timer.stop()
        if self.picture is None or self._bridge.closed:
            return None
        if self._job is not None:
            self._bridge.cancel(self._job)
        request = ForwardRequest(self.model, (self.t,), image=self.picture, seed=self.seed)
        self._job = self._bridge.submit(request)
        self._set_status("Noising…")
        return self._job

    def cancel(self) -> None:
        self._timer.stop()
        if self._job is not None:
            self._bridge.cancel(self._job)
            self._job = None

    # -- engine events ----------------------------------------------------------------------------------------
    def _on_frame(self, frame: ForwardFrame, image: QImage) -> None:
        if frame.job_id != self._job:
            return
        self._job = None
        if frame.schedule != self.config or self.schedule is None:
            self.config = dict(frame.schedule)
            self.schedule = schedule_from_config(self.config)
            self.schedule_changed.emit()
        self.frame, self.image = frame, image
        self._set_status("")
        self.frame_changed.emit(frame, image)

    def _on_failed(self, event: Failed) -> None:
        if event.job_id is not None and event.job_id == self._job:
            self._job = None
            self._set_status(event.message)

    def _on_cancelled(self, event: Cancelled) -> None:
        if event.job_id == self._job:
            self._job = None

    def _set_status(self, text: str) -> None:
        if text != self.status:
            self.status = text
            self.status_changed.emit(text)

    def describe(self) -> str:
        """One line of numbers at the frame shown."""
        frame, schedule = self.frame, self.schedule
        if frame is None or schedule is None:
            return ""
        a, snr = schedule.alphas_cumprod[frame.t], schedule.snr[frame.t]
        text = f"t = {frame.t}:  x_t = {frame.signal:.3f}·x0 + {frame.noise:.3f}·ε   ·   ᾱ_t = {a:.4f}   ·   SNR = {snr:.3g}"
        if schedule.betas is not None:
            text += f"   ·   β_t = {schedule.betas[frame.t]:.5f}"
        return text


class ForwardDialog(QDialog):
    """Bound to a :class:`ForwardModel`. ``current_picture()`` gives (RGB, label) of the picture on the canvas,
    or None; ``dialog_dir()`` where file dialogs start."""

    def __init__(self, model: ForwardModel, current_picture, dialog_dir, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Forward process")
        self.model = model
        self._current_picture = current_picture
        self._dialog_dir = dialog_dir
        self.picture_label = QLabel()
        self.current_button = QPushButton("Picture on the canvas")
        self.open_button = QPushButton("Open picture…")
        self.image_label = QLabel()
        self.image_label.setFixedSize(320, 320)
        self.image_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image_label.setObjectName("ForwardImage")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, model.last_t)
        self.slider.setValue(model.t)
        self.t_label = QLabel()
        self.seed_box = QSpinBox()
        self.seed_box.setRange(0, min(SEED_MAX, 2**31 - 1))
        self.seed_box.setPrefix("ε seed ")
        self.numbers = QLabel()
        self.numbers.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status = QLabel()
        self.status.setWordWrap(True)
        explain = QLabel(EXPLAIN)
        explain.setWordWrap(True)
        self.beta_plot = CurvePlot("β_t")
        self.alpha_plot = CurvePlot("ᾱ_t")
        self.snr_plot = CurvePlot("SNR", log=True)

        top = QHBoxLayout()
        top.addWidget(self.picture_label, 1)
        top.addWidget(self.current_button)
        top.addWidget(self.open_button)
        plots = QVBoxLayout()
        for plot in self.plots:
            plots.addWidget(plot)
        middle = QHBoxLayout()
        middle.addWidget(self.image_label)
        middle.addLayout(plots, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("t"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.t_label)
        row.addWidget(self.seed_box)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(middle, 1)
        layout.addLayout(row)
        layout.addWidget(self.numbers)
        layout.addWidget(explain)
        layout.addWidget(self.status)

        self.slider.valueChanged.connect(model.set_t)
        self.seed_box.valueChanged.connect(model.set_seed)
        self.current_button.clicked.connect(self.use_current_picture)
        self.open_button.clicked.connect(self.open_picture_dialog)
        model.t_changed.connect(self._sync_t)
        model.schedule_changed.connect(self._sync_schedule)
        model.frame_changed.connect(self._show_frame)
        model.picture_changed.connect(lambda: self.picture_label.setText(f"Picture: {model.picture_label}"))
        model.status_changed.connect(self.status.setText)
        self.finished.connect(lambda _code: model.cancel())
        self._sync_t(model.t)
        self._sync_schedule()

    @property
    def plots(self) -> tuple[CurvePlot, CurvePlot, CurvePlot]:
        return self.beta_plot, self.alpha_plot, self.snr_plot

    def use_current_picture(self) -> bool:
        picture = self._current_picture()
        if picture is None:
            self.status.setText("There is no finished picture on the canvas; open a picture instead.")
            return False
        self.model.set_picture(*picture)
        return True

    def open_picture_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a picture", self._dialog_dir(),
                                              "Pictures (*.png *.jpg *.jpeg *.webp *.bmp)")
        if path:
            self.open_picture(path)

    def open_picture(self, path: str | Path) -> bool:
        try:
            image = read_image(path)[0]
        except ImageInputError as exc:
            self.status.setText(exc.message)
            return False
        self.model.set_picture(image.rgb, Path(path).name)
        return True

    def _sync_t(self, t: int) -> None:
        if self.slider.value() != t:
            self.slider.setValue(t)
        self.t_label.setText(f"{t} / {self.model.last_t}")
        self._sync_markers()

    def _sync_schedule(self) -> None:
        schedule = self.model.schedule
        self.slider.setMaximum(self.model.last_t)
        if schedule is None:
            for plot in self.plots:
                plot.set_values(None)
        else:
            self.beta_plot.title = "β_t" if schedule.betas is not None else "σ_t (flow matching)"
            self.beta_plot.set_values(schedule.betas if schedule.betas is not None else schedule.noise)
            self.alpha_plot.set_values(schedule.alphas_cumprod)
            self.snr_plot.set_values(schedule.snr)
        self.t_label.setText(f"{self.model.t} / {self.model.last_t}")
        self._sync_markers()

    def _sync_markers(self) -> None:
        start = self.model.start_t
        text = f"img2img at strength {self.model.strength:g} starts here"
        for plot in self.plots:
            plot.set_markers(self.model.t, start, text)

    def _show_frame(self, frame: ForwardFrame, image: QImage) -> None:
        pixmap = QPixmap.fromImage(image).scaled(self.image_label.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                                 Qt.TransformationMode.SmoothTransformation)
        self.image_label.setPixmap(pixmap)
        self.numbers.setText(self.model.describe())
