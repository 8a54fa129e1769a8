"""The one QObject that knows the engine.

:class:`Bridge` owns an :class:`engine.engine.Engine` and with it the engine's worker thread. Engine events arrive
on the worker thread; the bridge puts them in an inbox and wakes the GUI thread with one queued signal per batch.
On the GUI thread it drains the inbox in order, keeps only the newest preview of each job in a drain (latest wins:
a preview the window could not paint in time is dropped, never queued up), builds ``QImage`` s from the numpy
buffers and re-emits every event as a typed Qt signal. It keeps no job state: which jobs are shown, and which
events matter, is the view-model's business (:class:`gui.viewmodel.JobsModel`).

Threading rules: create and call it on the GUI thread. Its signals are emitted on the GUI thread. The engine calls
:meth:`Bridge._on_engine_event` on its worker thread; :attr:`Bridge.engine_tap` runs there too.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QImage

from engine.engine import Engine, EngineOptions, JobOptions, PreviewMode, PreviewOptions
from engine.events import (
    Cancelled,
    Event,
    Failed,
    Finished,
    ForwardFrame,
    ImageReady,
    Preview,
    Progress,
    ReplayDecoded,
    Started,
    StatusChanged,
)
from engine.forward_job import ForwardRequest
from engine.request import GenerationRequest

log = logging.getLogger(__name__)


def to_qimage(array: np.ndarray) -> QImage:
    """A QImage that owns a copy of an H×W×3 (RGB) or H×W×4 (RGBA) uint8 array."""
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an H×W×3 or H×W×4 uint8 array, got {array.dtype} {array.shape}")
    array = np.ascontiguousarray(array)
    h, w, c = array.shape
    fmt = QImage.Format.Format_RGB888 if c == 3 else QImage.Format.Format_RGBA8888
    # The QImage borrows the buffer only until .copy() returns; the copy owns its pixels.
    return QImage(array.data, w, h, array.strides[0], fmt).copy()


def newest_previews(events: list[Event]) -> list[Event]:
    """``events`` without the previews that a later preview of the same job makes stale."""
    last: dict[int, int] = {}
    for i, event in enumerate(events):
        if isinstance(event, Preview):
            last[event.job_id] = i
    return [e for i, e in enumerate(events) if not isinstance(e, Preview) or last[e.job_id] == i]


class Bridge(QObject):
    """Engine events as Qt signals, delivered on the GUI thread."""

    #: engine-wide status (``StatusChanged``): warming up, loading, ready on device/dtype
    status_changed = Signal(object)
    #: a job began running (``Started``)
    job_started = Signal(object)
    #: step i of n, it/s, ETA (``Progress``)
    progress = Signal(object)
    #: the newest live preview of a job (``Preview``) and its pixels
    preview = Signal(object, QImage)
    #: a finished image (``ImageReady``) and its pixels
    image_ready = Signal(object, QImage)
    #: a picture's replay with every frame decoded by the VAE (``ReplayDecoded``), after its job ended
    replay_decoded = Signal(object)
    #: a picture noised to one training step by a forward-process job (``ForwardFrame``) and its pixels
    forward_frame = Signal(object, QImage)
    #: a job ended: ``Finished``, ``Failed`` (``job_id`` None for engine-wide failures) or ``Cancelled``
    job_finished = Signal(object)
    job_failed = Signal(object)
    job_cancelled = Signal(object)

    _wake = Signal()  # worker thread → GUI thread: the inbox has events

    def __init__(self, options: EngineOptions = EngineOptions(), parent: QObject | None = None):
        super().__init__(parent)
        self._engine = Engine(self._on_engine_event, options)
        self._lock = threading.Lock()
        self._inbox: list[Event] = []
        self._wake_pending = False
        self._closed = False
        #: Called on the engine's worker thread with every event once it is queued for the GUI thread, or None.
        #: Tests use it to hold the worker at a chosen step; it must not touch widgets.
        self.engine_tap: Callable[[Event], None] | None = None
        #: previews handed to the window and previews dropped because a newer one of the same job had arrived
        self.previews_delivered = 0
        self.previews_dropped = 0
        self.last_status: StatusChanged | None = None
        self._wake.connect(self._drain, Qt.ConnectionType.QueuedConnection)

    # -- GUI thread API ---------------------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        """Start the engine thread; it imports torch and warms up in the background."""
        if not self._closed:
            self._engine.start()

    def submit(self, request: GenerationRequest | ForwardRequest, options: JobOptions = JobOptions()) -> int:
        """Queue a generation (``options``: what it records beside its images, see :class:`JobOptions`) or a
        forward-process job; returns its job id. RuntimeError after :meth:`shutdown`."""
        if self._closed:
            raise RuntimeError("the engine has been shut down")
        return self._engine.submit(request, options)

    def cancel(self, job_id: int) -> bool:
        """Ask the engine to cancel a job (it stops within one step). Its ``Cancelled`` event follows."""
        return self._engine.cancel(job_id)

    def set_preview_mode(self, mode: PreviewMode) -> None:
        """``"x0"`` (the model's current guess of the final image), ``"xt"`` (the noisy latent) or ``"off"``."""
        current = self._engine.preview
        self._engine.set_preview(PreviewOptions(mode=mode, interval_s=current.interval_s))

    def preload(self, model: str) -> None:
        """Have the engine load ``model`` while it has nothing else to do (see :class:`gui.preloader.ModelPreloader`)."""
        self._engine.preload(model)

    def set_memory_mode(self, mode: str) -> None:
        """The GPU memory mode (``engine.memory.MODES``) of the jobs that start from now on."""
        self._engine.set_memory_mode(mode)

    def shutdown(self) -> None:
        """Cancel every job and tell the engine thread to stop, without waiting for it. Safe to call twice.

        Nothing is lost by not waiting: a cancelled job saves nothing, and what the worker does on its way out
        (letting go of the model) matters only to a process that goes on running. It is a daemon thread, so it
        never holds the process open; :meth:`wait_stopped` waits for it where that matters (tests).
        """
        self._closed = True
        self._engine.shutdown(timeout=0)

    def wait_stopped(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the engine thread to end; True when it has (or never started)."""
        return self._engine.shutdown(timeout=timeout)

    @property
    def running(self) -> bool:
        """True while the engine thread is alive."""
        return self._engine.running

    # -- worker thread ----------------------------------------------------------------------------------------
    def _on_engine_event(self, event: Event) -> None:
        """Called on the engine's thread: queue the event and wake the GUI thread once per batch."""
        if not self._closed:
            with self._lock:
                self._inbox.append(event)
                wake, self._wake_pending = not self._wake_pending, True
            if wake:
                self._wake.emit()
        tap = self.engine_tap
        if tap is not None:
            tap(event)

    # -- GUI thread -------------------------------------------------------------------------------------------
    @Slot()
    def _drain(self) -> None:
        with self._lock:
            events, self._inbox = self._inbox, []
            self._wake_pending = False
        if self._closed:
            return
        kept = newest_previews(events)
        self.previews_dropped += len(events) - len(kept)
        for event in kept:
            try:
                self._dispatch(event)
            except Exception:  # noqa: BLE001 - one bad handler must not lose the other events
                log.exception("handling %r failed", type(event).__name__)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, StatusChanged):
            self.last_status = event
            self.status_changed.emit(event)
        elif isinstance(event, Started):
            self.job_started.emit(event)
        elif isinstance(event, Progress):
            self.progress.emit(event)
        elif isinstance(event, Preview):
            self.previews_delivered += 1
            self.preview.emit(event, to_qimage(event.image))
        elif isinstance(event, ImageReady):
            self.image_ready.emit(event, to_qimage(event.image))
        elif isinstance(event, ReplayDecoded):
            self.replay_decoded.emit(event)
        elif isinstance(event, ForwardFrame):
            self.forward_frame.emit(event, to_qimage(event.image))
        elif isinstance(event, Finished):
            self.job_finished.emit(event)
        elif isinstance(event, Failed):
            self.job_failed.emit(event)
        elif isinstance(event, Cancelled):
            self.job_cancelled.emit(event)
