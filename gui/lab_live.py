"""Live mode: while it is on, editing the prompt, negative prompt, seed, CFG, sampler (or the edit's strength)
makes a new picture shortly after the last change, with few steps, and the canvas always follows the newest input.

Each change restarts a short timer (:data:`DEBOUNCE_MS`); when it fires, the form's request is built with the
steps capped at the live step count and a batch of one, every older live job still queued or running is
cancelled (the engine stops a running one within a step) unless it is running and more than half done (it
finishes and shows, so pictures keep coming while someone types), and the new one is queued as a "live" job. Live
pictures are neither listed in the session nor saved to the gallery until the person presses Keep; then they
are both, like a picture made with Generate.

:class:`LiveModel` is the view-model, :class:`LiveController` does the work, :class:`LiveBar` binds to the
model. GUI thread only.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QToolButton,
    QWidget,
)

from engine.errors import DarkroomError
from engine.fields import FIELD, random_seed
from engine.request import ValidationError

from .edit_controller import EditController
from .gallery_controller import GalleryController
from .results import Result
from .viewmodel import FormModel, JobsModel, Shown

#: Form fields whose edits make a new live picture.
LIVE_FIELDS = ("prompt", "negative_prompt", "seed", "cfg", "sampler")
#: Quiet time after the last edit before a live picture is started.
DEBOUNCE_MS = 150
#: Default cap on a live picture's steps.
LIVE_STEPS = 4
#: A running live picture this far along is finished rather than cancelled when the input changes: while someone
#: types, pictures keep arriving (each a little behind), instead of none until they pause.
FINISH_FRACTION = 0.5


class LiveModel(QObject):
    """Live mode's state: on or off, the step cap, the newest problem, and whether the canvas shows a live
    picture that can be kept."""

    enabled_changed = Signal(bool)
    steps_changed = Signal(int)
    #: True while the canvas shows a live picture not kept yet
    keepable_changed = Signal(bool)
    #: a short line about live mode ("" when all is well): why no picture was started
    status_changed = Signal(str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._enabled = False
        self._steps = LIVE_STEPS
        self._keepable = False
        self._status = ""

    @property
    def enabled(self) -> bool:
        return self._enabled

    def set_enabled(self, on: bool) -> None:
        if bool(on) != self._enabled:
            self._enabled = bool(on)
            self.enabled_changed.emit(self._enabled)

    @property
    def steps(self) -> int:
        return self._steps

    def set_steps(self, steps: int) -> None:
        steps = max(1, min(int(steps), FIELD["steps"].range[1]))
        if steps != self._steps:
            self._steps = steps
            self.steps_changed.emit(steps)

    @property
    def keepable(self) -> bool:
        return self._keepable

    def set_keepable(self, on: bool) -> None:
        if bool(on) != self._keepable:
            self._keepable = bool(on)
            self.keepable_changed.emit(self._keepable)

    @property
    def status(self) -> str:
        return self._status

    def set_status(self, text: str) -> None:
        if text != self._status:
            self._status = text
            self.status_changed.emit(text)


class LiveController(QObject):
    """Turns edits into live jobs (see the module docstring)."""

    #: a live picture was kept: it is in the session now and queued for the gallery (Result)
    kept = Signal(object)

    def __init__(self, jobs: JobsModel, form: FormModel, edit: EditController, gallery: GalleryController,
                 can_generate: Callable[[], bool], parent: QObject | None = None):
        super().__init__(parent)
        self.model = LiveModel(self)
        self._jobs = jobs
        self._form = form
        self._edit = edit
        self._gallery = gallery
        self._can_generate = can_generate
        self._pending: list[int] = []  # live jobs queued or running, oldest first
        self._seed = 0  # the seed live pictures use while the form's seed is "random"
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.update_now)
        form.value_changed.connect(lambda name, _value: name in LIVE_FIELDS and self.schedule())
        edit.model.changed.connect(lambda: edit.model.active and self.schedule())
        jobs.shown_changed.connect(self._on_shown)
        jobs.jobs_changed.connect(self._prune)
        self.model.enabled_changed.connect(self._on_enabled)
        self.model.steps_changed.connect(lambda _steps: self.schedule())

    @property
    def pending(self) -> list[int]:
        """Live jobs still queued or running, oldest first: the newest, and at most one older one running that was
        nearly done when the input changed."""
        return list(self._pending)

    def schedule(self) -> None:
        """Start a live picture :data:`DEBOUNCE_MS` after the last call (live mode on only)."""
        if self.model.enabled:
            self._timer.start()

    def update_now(self) -> int | None:
        """Cancel older live jobs (but one nearly done) and start one for the form as it is now. Returns its job id, or None (live mode
        off, no model, or the form cannot be built: :attr:`LiveModel.status` says why)."""
        self._timer.stop()
        if not self.model.enabled or not self._can_generate():
            return None
        try:
            request = self._form.build(self._edit.parts()).request
        except ValidationError as exc:
            self.model.set_status("Live paused: " + next(iter(exc.errors.values()), str(exc)))
            return None
        except DarkroomError as exc:
            self.model.set_status("Live paused: " + exc.message)
            return None
        try:
            random = FIELD["seed"].parse(self._form.value("seed")) is None
        except ValueError:
            random = False
        seed = self._seed if random else request.seed
        request = dataclasses.replace(request, seed=seed, steps=min(request.steps, self.model.steps), batch_count=1)
        kept = []
        for job_id in self._pending:
            if job_id == self._jobs.current_job and self._jobs.progress.fraction >= FINISH_FRACTION:
                kept.append(job_id)  # nearly done: it shows in a moment, and the newest follows it
            else:
                self._jobs.cancel(job_id)
        try:
            job_id = self._jobs.submit(request, kind="live")
        except RuntimeError:  # the window is closing
            self._pending = []
            return None
        self._pending = kept + [job_id]
        self.model.set_status("")
        return job_id

    def keep(self) -> Result | None:
        """Keep the live picture on the canvas: list it in the session and save it to the gallery."""
        shown = self._jobs.shown
        result = shown.result if shown is not None else None
        if result is None or result.kind != "live":
            return None
        result.kind = ""
        self._jobs.results.add(result)
        self._gallery.save(result, force=True)
        self.model.set_keepable(False)
        self.kept.emit(result)
        return result

    def stop(self) -> None:
        self._timer.stop()

    def _on_enabled(self, on: bool) -> None:
        if on:
            last = self._form.last_seed
            self._seed = last if last is not None else random_seed()
            self.update_now()
        else:
            self._timer.stop()
            self.model.set_status("")

    def _on_shown(self, shown: Shown) -> None:
        self.model.set_keepable(shown.result is not None and shown.result.kind == "live")

    def _prune(self) -> None:
        alive = {job.job_id for job in self._jobs.jobs()}
        self._pending = [j for j in self._pending if j in alive]


class LiveBar(QWidget):
    """The Live switch, the live step count and Keep, bound to a :class:`LiveModel`."""

    def __init__(self, model: LiveModel, keep: Callable[[], object], parent: QWidget | None = None):
        super().__init__(parent)
        self.switch = QToolButton()
        self.switch.setObjectName("ModeButton")
        self.switch.setText("Live")
        self.switch.setCheckable(True)
        self.switch.setToolTip("Live mode: a new picture with few steps shortly after every change of the prompt, "
                               "seed, CFG or sampler. Live pictures are not saved unless you press Keep.")
        self.steps_box = QSpinBox()
        self.steps_box.setRange(1, FIELD["steps"].range[1])
        self.steps_box.setSuffix(" steps")
        self.steps_box.setToolTip("Most steps a live picture takes (fewer: faster updates, rougher pictures)")
        self.keep_button = QPushButton("Keep")
        self.keep_button.setToolTip("Keep this live picture: add it to the session and save it to the gallery")
        self.status_label = QLabel()
        self.status_label.setObjectName("LiveStatus")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 0, 0, 0)
        for widget in (self.switch, self.steps_box, self.keep_button, self.status_label):
            layout.addWidget(widget)
        self._model = model
        self.switch.toggled.connect(model.set_enabled)
        self.steps_box.valueChanged.connect(model.set_steps)
        self.keep_button.clicked.connect(keep)
        model.enabled_changed.connect(self._sync)
        model.steps_changed.connect(self._sync)
        model.keepable_changed.connect(self._sync)
        model.status_changed.connect(self._sync)
        self._sync()

    def _sync(self, *_args) -> None:
        m = self._model
        self.switch.setChecked(m.enabled)
        self.steps_box.setValue(m.steps)
        self.steps_box.setVisible(m.enabled)
        self.keep_button.setVisible(m.enabled or m.keepable)
        self.keep_button.setEnabled(m.keepable)
        self.status_label.setText(m.status)
        self.status_label.setToolTip(m.status)
        self.status_label.setVisible(bool(m.status))
