"""The one QObject that knows the engine.

:class:`Bridge` owns an :class:`engine.engine.Engine` (and with it the engine's worker thread) and a saver
thread that writes finished images to the gallery. Engine events arrive on the worker thread; the bridge puts
them in an inbox and wakes the GUI thread with a queued signal. On the GUI thread it drains the inbox in order,
keeps only the newest preview of each drain (latest wins: a preview the window could not paint in time is
dropped, never queued up), drops events of jobs it no longer shows, builds ``QImage`` s from the numpy buffers
and re-emits everything as typed Qt signals. Widgets connect to those signals and never see the engine.

On quit, :meth:`Bridge.shutdown` cancels every job, stops the engine and joins both threads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QImage

from engine.engine import Engine, EngineOptions, PreviewOptions
from engine.events import (
    Cancelled,
    Event,
    Failed,
    Finished,
    ImageReady,
    Preview,
    Progress,
    Started,
    StatusChanged,
)
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


@dataclass
class JobInfo:
    """What the window shows about a job it submitted."""

    job_id: int
    request: GenerationRequest
    state: str = "queued"  # "queued" | "running"
    submitted_at: float = 0.0


class _Saver:
    """A plain thread that saves finished images one at a time, so disk writes never block the window."""

    def __init__(self, save: Callable[[ImageReady], Any], on_done: Callable[[ImageReady, Any, BaseException | None], None]):
        self._save = save
        self._on_done = on_done
        self._queue: "queue.Queue[ImageReady | None]" = queue.Queue()
        self._thread: threading.Thread | None = None

    def put(self, ready: ImageReady) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="darkroom-saver", daemon=True)
            self._thread.start()
        self._queue.put(ready)

    def _run(self) -> None:
        while True:
            ready = self._queue.get()
            if ready is None:
                return
            try:
                result = self._save(ready)
            except BaseException as exc:  # noqa: BLE001 - reported to the window, which keeps the image
                log.warning("saving image %s of job %s failed: %s", ready.image_index, ready.job_id, exc)
                self._on_done(ready, None, exc)
            else:
                self._on_done(ready, result, None)

    def close(self, timeout: float) -> bool:
        """Finish the saves already queued (up to ``timeout``), then stop. True when the thread has ended."""
        if self._thread is None:
            return True
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class Bridge(QObject):
    """Engine events as Qt signals, delivered on the GUI thread. Create it on the GUI thread."""

    #: engine-wide status (``StatusChanged``): warming up, loading, ready on device/dtype
    status_changed = Signal(object)
    #: a job began running (``Started``)
    job_started = Signal(object)
    #: step i of n, it/s, ETA (``Progress``)
    progress = Signal(object)
    #: the newest live preview (``Preview``) and its pixels
    preview = Signal(object, QImage)
    #: a finished image (``ImageReady``) and its pixels
    image_ready = Signal(object, QImage)
    #: a job ended: ``Finished``, ``Failed`` (``job_id`` may be None for engine-wide failures) or ``Cancelled``
    job_finished = Signal(object)
    job_failed = Signal(object)
    job_cancelled = Signal(object)
    #: the jobs shown in the queue changed (submitted, started, ended, cancelled)
    queue_changed = Signal()
    #: the gallery saved an image: (``ImageReady``, whatever ``Gallery.save`` returned, usually a path)
    image_saved = Signal(object, object)
    #: saving an image failed: (``ImageReady``, message for people, details)
    save_failed = Signal(object, str, str)

    _wake = Signal()  # worker thread → GUI thread: the inbox has events
    _saved = Signal(object, object, object)  # saver thread → GUI thread

    def __init__(
        self,
        options: EngineOptions = EngineOptions(),
        gallery: Any = None,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        # The lambda (not the bound method) lets tests wrap ``_on_engine_event`` on an instance.
        self._engine = Engine(lambda event: self._on_engine_event(event), options)
        self._gallery = gallery
        self._saver = _Saver(self._save_one, lambda r, res, exc: self._saved.emit(r, res, exc)) if gallery else None
        self._lock = threading.Lock()
        self._inbox: list[Event] = []
        self._wake_pending = False
        self._jobs: dict[int, JobInfo] = {}  # shown jobs, in submission order
        self._closed = False
        self.previews_delivered = 0
        self.previews_dropped = 0
        self.last_status: StatusChanged | None = None
        self._wake.connect(self._drain, Qt.ConnectionType.QueuedConnection)
        self._saved.connect(self._on_saved, Qt.ConnectionType.QueuedConnection)

    # -- GUI thread API ---------------------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def gallery(self) -> Any:
        return self._gallery

    def set_gallery(self, gallery: Any) -> None:
        """Save the next images into another gallery (images already queued go to the new one too)."""
        self._gallery = gallery
        if self._saver is None and gallery is not None:
            self._saver = _Saver(self._save_one, lambda r, res, exc: self._saved.emit(r, res, exc))

    def start(self) -> None:
        """Start the engine thread; it imports torch and warms up in the background."""
        if not self._closed:
            self._engine.start()

    def submit(self, request: GenerationRequest) -> int:
        if self._closed:
            raise RuntimeError("the bridge has been shut down")
        job_id = self._engine.submit(request)
        self._jobs[job_id] = JobInfo(job_id, request, "queued", time.monotonic())
        self.queue_changed.emit()
        return job_id

    def cancel(self, job_id: int) -> bool:
        """Cancel a job. It leaves the queue at once; its remaining previews and images are ignored."""
        info = self._jobs.pop(job_id, None)
        if info is None:
            return False
        self._engine.cancel(job_id)
        self.queue_changed.emit()
        self.job_cancelled.emit(Cancelled(job_id))
        return True

    def cancel_running(self) -> bool:
        running = [j for j in self._jobs.values() if j.state == "running"]
        target = running[0] if running else next(iter(self._jobs.values()), None)
        return self.cancel(target.job_id) if target else False

    def cancel_all(self) -> None:
        for job_id in list(self._jobs):
            self.cancel(job_id)

    def jobs(self) -> list[JobInfo]:
        return list(self._jobs.values())

    def is_shown(self, job_id: int | None) -> bool:
        return job_id in self._jobs

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def set_preview_mode(self, mode: str) -> None:
        """``"x0"`` (the model's current guess of the final image), ``"xt"`` (the noisy latent) or ``"off"``."""
        current = self._engine.preview
        self._engine.set_preview(PreviewOptions(mode=mode, interval_s=current.interval_s))

    def set_preview_interval(self, seconds: float) -> None:
        current = self._engine.preview
        self._engine.set_preview(PreviewOptions(mode=current.mode, interval_s=seconds))

    def save_to_gallery(self, ready: ImageReady, *, force: bool = False) -> bool:
        """Queue one image for the gallery. Done for every finished image while the gallery's ``autosave`` is on;
        ``force`` saves regardless (e.g. "Save to gallery" on one image)."""
        if self._saver is None or self._closed:
            return False
        if not force and not getattr(self._gallery, "autosave", True):
            return False
        self._saver.put(ready)
        return True

    def threads_alive(self) -> bool:
        return self._engine.running or bool(self._saver and self._saver.alive)

    def shutdown(self, timeout: float = 2.0) -> bool:
        """Cancel everything, stop the engine and the saver, join their threads. Safe to call twice.

        Returns True when every thread ended within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        if not self._closed:
            self._closed = True
            self._jobs.clear()
        engine_ok = self._engine.shutdown(max(0.0, deadline - time.monotonic()))
        saver_ok = self._saver.close(max(0.1, deadline - time.monotonic())) if self._saver else True
        if not engine_ok:
            log.info("the engine thread did not stop within %.1f s", timeout)
        return engine_ok and saver_ok

    # -- worker thread ----------------------------------------------------------------------------------------
    def _on_engine_event(self, event: Event) -> None:
        """Called on the engine's thread: queue the event and wake the GUI thread once per batch."""
        with self._lock:
            self._inbox.append(event)
            if self._wake_pending:
                return
            self._wake_pending = True
        self._wake.emit()

    def _save_one(self, ready: ImageReady) -> Any:
        return self._gallery.save(ready)

    # -- GUI thread -------------------------------------------------------------------------------------------
    @Slot()
    def _drain(self) -> None:
        with self._lock:
            events, self._inbox = self._inbox, []
            self._wake_pending = False
        if self._closed:
            return
        last_preview = max((i for i, e in enumerate(events) if isinstance(e, Preview)), default=-1)
        for i, event in enumerate(events):
            if isinstance(event, Preview) and i != last_preview:
                self.previews_dropped += 1
                continue
            try:
                self._dispatch(event)
            except Exception:  # noqa: BLE001 - one bad handler must not lose the other events
                log.exception("handling %r failed", type(event).__name__)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, StatusChanged):
            self.last_status = event
            self.status_changed.emit(event)
            return
        if isinstance(event, Failed) and event.job_id is None:
            self.job_failed.emit(event)
            return
        info = self._jobs.get(event.job_id)
        if info is None:
            return  # a job no longer shown (cancelled here, or from an earlier window)
        if isinstance(event, Started):
            info.state = "running"
            self.queue_changed.emit()
            self.job_started.emit(event)
        elif isinstance(event, Progress):
            self.progress.emit(event)
        elif isinstance(event, Preview):
            self.previews_delivered += 1
            self.preview.emit(event, to_qimage(event.image))
        elif isinstance(event, ImageReady):
            self.image_ready.emit(event, to_qimage(event.image))
            self.save_to_gallery(event)
        elif isinstance(event, (Finished, Failed, Cancelled)):
            del self._jobs[event.job_id]
            self.queue_changed.emit()
            signal = {Finished: self.job_finished, Failed: self.job_failed, Cancelled: self.job_cancelled}[type(event)]
            signal.emit(event)

    @Slot(object, object, object)
    def _on_saved(self, ready: ImageReady, result: Any, exc: BaseException | None) -> None:
        if exc is None:
            self.image_saved.emit(ready, result)
            return
        message = getattr(exc, "message", None) or (
            f"{exc.strerror}." if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        )
        details = getattr(exc, "details", "") or "".join(traceback.format_exception(exc))
        self.save_failed.emit(ready, message, details)
