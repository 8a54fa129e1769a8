"""Timing marks for the benchmarks that time the app from outside (``benchmarks/app_timing.py`` from a checkout,
``benchmarks/bundle_timing.py`` for a frozen bundle, which ignores ``PYTHONPATH`` and so cannot be instrumented
from outside the app). Nothing here runs unless the environment asks for it.

With ``DARKROOM_TIMING_LOG=FILE`` the window appends one JSON line per mark to FILE, each with
``time.monotonic()`` (shared by every process of the machine) as ``t`` and any figures beside it: ``shown`` (the
first paint), ``submitted``, ``engine_ready`` (torch and diffusers imported), ``model_loaded`` (the job started:
its model loaded), ``first_preview``, ``first_image``, ``finished``, ``failed``,
``ui_gaps`` (how late a 5 ms timer fired on the UI thread while a generation ran: the whole of it, and from its
first preview on) and ``close_requested``. ``DARKROOM_TIMING_SCENARIO`` says what to do:

- ``launch``: close the window (as Ctrl+Q does) once it is painted;
- ``generate``: submit the bundled model's default picture as soon as the window is painted, close when done;
- ``close-mid``: submit a long generation and close half a second after its first preview;
- anything else (``watch``): only mark.

GUI thread only. The marks file is opened for each line: the app ends with ``os._exit``.
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
#: The generation the scenarios submit: the bundled model at its native size.
GENERATE = {"prompt": "red apple", "seed": 1, "steps": 25}
#: A long one, to close in the middle of it.
LONG_GENERATE = {"prompt": "blue whale", "seed": 2, "steps": 150, "batch_count": 20}
TICK_S = 0.005


class _Marks:
    def __init__(self, window: MainWindow, path: str, scenario: str) -> None:
        from PySide6.QtCore import QTimer

        self.window, self.path, self.scenario = window, path, scenario
        self.seen: set[str] = set()
        self.gaps: list[tuple[float, float]] = []  # (when, how late)
        self.first_preview_at: float | None = None
        self._ticker = None
        bridge = window.bridge
        bridge.preview.connect(lambda *a: self.once("first_preview", self._after_preview))
        bridge.image_ready.connect(lambda *a: self.once("first_image"))
        bridge.job_started.connect(lambda *a: self.once("model_loaded"))
        bridge.job_finished.connect(lambda *a: self.once("finished", self._after_finished))
        bridge.job_failed.connect(lambda event: self.once("failed", self.close, message=getattr(event, "message", "")))
        bridge.status_changed.connect(lambda event: getattr(event, "device", "") and self.once("engine_ready"))
        self._poll = QTimer(window, interval=2, timeout=self._check_painted)
        self._poll.start()

    def mark(self, event: str, t: float | None = None, **figures) -> None:
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"event": event, "t": time.monotonic() if t is None else t, **figures}) + "\n")

    def once(self, event: str, then=None, **figures) -> None:
        if event not in self.seen:
            self.seen.add(event)
            self.mark(event, **figures)
            if then is not None:
                then()

    def _check_painted(self) -> None:
        painted = self.window.first_paint_at
        if painted is None:
            return
        self._poll.stop()
        # first_paint_at is time.perf_counter(); on Linux both clocks are CLOCK_MONOTONIC, the offset is noise
        self.mark("shown", painted + (time.monotonic() - time.perf_counter()))
        if self.scenario == "launch":
            self.close()
        elif self.scenario in ("generate", "close-mid"):
            self._submit(LONG_GENERATE if self.scenario == "close-mid" else GENERATE)

    def _submit(self, values: dict) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.window.form_model.set_values(values)
        if self.window.generate() is None:
            self.once("failed", self.close, message="the form was refused")
            return
        self.mark("submitted")
        self._last_tick = time.monotonic()
        self._ticker = QTimer(self.window, interval=int(TICK_S * 1000), timeout=self._tick)
        self._ticker.setTimerType(Qt.TimerType.PreciseTimer)
        self._ticker.start()

    def _tick(self) -> None:
        now = time.monotonic()
        self.gaps.append((now, max(0.0, now - self._last_tick - TICK_S)))
        self._last_tick = now

    def _stop_ticks(self) -> None:
        if self._ticker is None:
            return
        self._ticker.stop()

        def stats(gaps: list[float]) -> tuple[float, float]:
            ordered = sorted(gaps) or [0.0]
            return ordered[-1] * 1000, ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000

        all_max, all_p95 = stats([g for _, g in self.gaps])
        loop_max, loop_p95 = stats([g for t, g in self.gaps if self.first_preview_at and t > self.first_preview_at])
        self.mark("ui_gaps", max_ms=all_max, p95_ms=all_p95, loop_max_ms=loop_max, loop_p95_ms=loop_p95,
                  ticks=len(self.gaps))

    def _after_preview(self) -> None:
        from PySide6.QtCore import QTimer

        self.first_preview_at = time.monotonic()
        if self.scenario == "close-mid":
            QTimer.singleShot(500, self.close)

    def _after_finished(self) -> None:
        from PySide6.QtCore import QTimer

        if self.scenario == "generate":
            QTimer.singleShot(300, self.close)

    def close(self) -> None:
        """Quit as Ctrl+Q does (the window's Quit action)."""
        from PySide6.QtCore import QTimer

        self._stop_ticks()
        self.mark("close_requested")
        QTimer.singleShot(0, self.window.commands.quit.trigger)


def attach(window: MainWindow) -> None:
    """Start marking for ``window`` when the environment asks for it."""
    path = os.environ.get(LOG_ENV)
    if path:
        window._timing_marks = _Marks(window, path, os.environ.get(SCENARIO_ENV, ""))
