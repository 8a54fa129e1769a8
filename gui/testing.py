"""Waiting helpers for tests and scripts that drive the window while the engine works.

Use these instead of ``qtbot.wait``/``qtbot.waitUntil``: those call ``QTest.qWait``, which in PySide6 keeps the
Python GIL while it sleeps, so the engine's worker thread (and every other Python thread) barely runs while a
test waits on it (importing diffusers on the worker took 150 s instead of 4 s). ``QEventLoop.exec`` releases the
GIL while idle, as the running app's own event loop does.
"""

from __future__ import annotations

import time
from typing import Callable

from PySide6.QtCore import QEventLoop, QTimer


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0, poll_ms: int = 5) -> None:
    """Run the event loop until ``condition()`` is true; AssertionError after ``timeout_s``."""
    if condition():
        return
    deadline = time.monotonic() + timeout_s
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(poll_ms)
    timer.timeout.connect(lambda: (condition() or time.monotonic() > deadline) and loop.quit())
    timer.start()
    loop.exec()
    timer.stop()
    assert condition(), f"timed out after {timeout_s:g} s waiting for {getattr(condition, '__name__', 'a condition')}"


def spin(ms: int) -> None:
    """Run the event loop for ``ms`` milliseconds."""
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()
