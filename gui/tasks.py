"""One worker thread that runs submitted callables in order, handing each result back on the GUI thread.

The gallery tab uses two: one scans the folder, one decodes full-size images for the large view. Threading rules:
:meth:`TaskThread.submit` and :meth:`TaskThread.shutdown` are called on the GUI thread; the callables run on the
worker; callbacks run on the GUI thread (a queued signal) and never after :meth:`shutdown`.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

from PySide6.QtCore import QObject, Signal

Callback = Callable[[object, BaseException | None], None]


class TaskThread(QObject):
    """Runs callables one at a time on a daemon thread started on first use. A callable that wants to stop early
    checks :attr:`cancel`, which :meth:`shutdown` sets."""

    _done = Signal(object, object, object)  # callback, result, error

    def __init__(self, name: str, parent: QObject | None = None):
        super().__init__(parent)
        self._name = name
        self._queue: "queue.Queue[tuple[Callable[[], object], Callback] | None]" = queue.Queue()
        self._thread: threading.Thread | None = None
        self.cancel = threading.Event()
        self._done.connect(self._deliver)
        self._busy = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], object], callback: Callback) -> None:
        if self.cancel.is_set():
            return
        with self._lock:
            self._busy += 1
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._queue.put((fn, callback))

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy > 0

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, callback = item
            result, error = None, None
            if not self.cancel.is_set():
                try:
                    result = fn()
                except BaseException as exc:  # noqa: BLE001 - handed to the callback on the GUI thread
                    error = exc
            with self._lock:
                self._busy -= 1
            if not self.cancel.is_set():
                self._done.emit(callback, result, error)

    def _deliver(self, callback: Callback, result: object, error: BaseException | None) -> None:
        if not self.cancel.is_set():
            callback(result, error)

    def shutdown(self) -> None:
        """Set :attr:`cancel` and wait for the task in hand to return. The tasks given to this class check the
        flag (a scan between files, an image decode is short), so the wait is short; the gallery index they use
        is closed right after, so they must not outlive this call."""
        self.cancel.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
