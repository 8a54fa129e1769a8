"""Timing marks for benchmarks that time a build from outside, frozen bundles included (they ignore PYTHONPATH,
so ``benchmarks/app_timing.py``'s import hook cannot reach into them).

With ``DARKROOM_TIMING_LOG=FILE`` in the environment the window appends one JSON line per mark to FILE, each with
``time.monotonic()`` (shared by every process of the machine): ``shown`` (the first paint), ``engine_ready``,
``first_preview``, ``first_image``, ``finished``, ``failed``. ``DARKROOM_TIMING_SCENARIO`` says what to do:
``launch`` closes the window once it is painted; ``generate`` submits the bundled model's default picture ("red
apple", seed 1, 25 steps) as soon as it is painted and closes the window when it is done. Nothing happens
without the variable. GUI thread only.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .main_window import MainWindow

LOG_ENV = "DARKROOM_TIMING_LOG"
SCENARIO_ENV = "DARKROOM_TIMING_SCENARIO"
GENERATE = {"prompt": "red apple", "seed": 1, "steps": 25}


class _Marks:
    def __init__(self, window: MainWindow, path: str, scenario: str) -> None:
        from PySide6.QtCore import QTimer

        self.window, self.path, self.scenario = window, path, scenario
        self.seen: set[str] = set()
        bridge = window.bridge
        bridge.preview.connect(lambda *a: self.once("first_preview"))
        bridge.image_ready.connect(lambda *a: self.once("first_image"))
        bridge.job_finished.connect(lambda *a: self.once("finished", self._close_soon))
        bridge.job_failed.connect(lambda *a: self.once("failed", self._close_soon))
        bridge.status_changed.connect(lambda event: getattr(event, "device", "") and self.once("engine_ready"))
        self._poll = QTimer(window, interval=2, timeout=self._check_painted)
        self._poll.start()

    def mark(self, event: str, t: float | None = None) -> None:
        with open(self.path, "a", encoding="utf-8") as out:  # closed at once: the app ends with os._exit
            out.write(json.dumps({"event": event, "t": time.monotonic() if t is None else t}) + "\n")

    def once(self, event: str, then=None) -> None:
        if event not in self.seen:
            self.seen.add(event)
            self.mark(event)
            if then is not None:
                then()

    def _check_painted(self) -> None:
        painted = self.window.first_paint_at
        if painted is None:
            return
        self._poll.stop()
        # first_paint_at is time.perf_counter(); on Linux both clocks are CLOCK_MONOTONIC, the offset is noise
        self.mark("shown", painted + (time.monotonic() - time.perf_counter()))
        if self.scenario == "generate":
            self.window.form_model.set_values(GENERATE)
            if self.window.generate() is None:
                self.once("failed", self._close_soon)
            else:
                self.mark("submitted")
        elif self.scenario == "launch":
            self._close_soon()

    def _close_soon(self) -> None:
        from PySide6.QtCore import QTimer

        self.mark("close_requested")
        QTimer.singleShot(0, self.window.close)


def attach(window: MainWindow) -> None:
    """Start marking for ``window`` when the environment asks for it."""
    path = os.environ.get(LOG_ENV)
    if path:
        window._timing_marks = _Marks(window, path, os.environ.get(SCENARIO_ENV, ""))
