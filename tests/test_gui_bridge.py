"""The bridge on its own: engine events from another thread become Qt signals on the GUI thread, latest preview
wins, events of jobs no longer shown are dropped, QImages own their pixels."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from PySide6.QtCore import QThread  # noqa: E402

from engine.events import Cancelled, Finished, ImageReady, Preview, Progress, Started, StatusChanged  # noqa: E402
from engine.request import GenerationRequest  # noqa: E402
from gui.bridge import Bridge, JobInfo, to_qimage  # noqa: E402
from gui.testing import spin, wait_until  # noqa: E402


REQUEST = GenerationRequest(prompt="x", steps=50, width=64, height=64, seed=5)


def _image(value: int) -> np.ndarray:
    a = np.full((4, 6, 3), value, np.uint8)
    a[0, 0] = (value, 0, 255 - value)
    a.flags.writeable = False
    return a


@pytest.fixture
def bridge(qtbot):
    b = Bridge()  # engine never started: events are fed by hand from a plain thread
    yield b
    assert b.shutdown(1.0)


def _show(bridge: Bridge, job_id: int) -> None:
    bridge._jobs[job_id] = JobInfo(job_id, REQUEST, "queued")


def _from_thread(fn) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join()


def test_events_from_a_worker_thread_arrive_on_the_gui_thread_in_order(bridge, qtbot):
    _show(bridge, 1)
    seen = []
    threads = []
    for name in ("job_started", "progress", "preview", "image_ready", "job_finished", "status_changed"):
        getattr(bridge, name).connect(lambda *a, n=name: (seen.append(n), threads.append(QThread.currentThread())))

    def work():
        bridge._on_engine_event(StatusChanged("Ready", device="CPU", dtype="float32"))
        bridge._on_engine_event(Started(1, REQUEST))
        bridge._on_engine_event(Progress(1, 1, 50, 0, 1, 10.0, 4.9))
        bridge._on_engine_event(Preview(1, _image(10), 1, 50, 0))
        bridge._on_engine_event(ImageReady(1, _image(20), REQUEST, 0, 1))
        bridge._on_engine_event(Finished(1, 1))

    _from_thread(work)
    assert seen == [], "events were delivered synchronously on the worker thread"
    wait_until(lambda: len(seen) == 6)
    assert seen == ["status_changed", "job_started", "progress", "preview", "image_ready", "job_finished"]
    assert all(t is QThread.currentThread() for t in threads)
    assert bridge.jobs() == [] and not bridge.busy
    assert bridge.last_status.device == "CPU"


def test_only_the_newest_preview_of_a_burst_is_delivered(bridge, qtbot):
    _show(bridge, 1)
    got = []
    bridge.preview.connect(lambda e, img: got.append((e.step, img.pixelColor(1, 1).red())))
    ready = []
    bridge.image_ready.connect(lambda e, img: ready.append(e.image_index))

    def burst():  # the GUI thread is busy in join() below, so all of these pile up
        for step in range(1, 31):
            bridge._on_engine_event(Preview(1, _image(step), step, 30, 0))
        bridge._on_engine_event(ImageReady(1, _image(200), REQUEST, 0, 2))
        for step in range(1, 4):
            bridge._on_engine_event(Preview(1, _image(100 + step), step, 30, 1))

    _from_thread(burst)
    wait_until(lambda: len(ready) == 1 and len(got) >= 1)
    spin(20)
    assert got == [(3, 103)], "stale previews were painted"
    assert bridge.previews_dropped == 32 and bridge.previews_delivered == 1


def test_events_of_jobs_no_longer_shown_are_dropped(bridge, qtbot):
    _show(bridge, 1)
    _show(bridge, 2)
    cancelled, previews, finished = [], [], []
    bridge.job_cancelled.connect(cancelled.append)
    bridge.preview.connect(lambda e, img: previews.append(e.job_id))
    bridge.job_finished.connect(finished.append)
    assert bridge.cancel(1)  # the engine knows nothing of job 1 here; the bridge forgets it at once
    assert [c.job_id for c in cancelled] == [1]
    assert [j.job_id for j in bridge.jobs()] == [2]

    def late():
        bridge._on_engine_event(Preview(1, _image(1), 5, 50, 0))
        bridge._on_engine_event(Cancelled(1, 0))
        bridge._on_engine_event(Preview(7, _image(1), 5, 50, 0))  # never submitted here
        bridge._on_engine_event(Finished(2, 1))

    _from_thread(late)
    wait_until(lambda: len(finished) == 1)
    assert previews == [] and len(cancelled) == 1
    assert not bridge.cancel(1)


def test_qimage_owns_a_copy_of_the_pixels():
    a = np.zeros((3, 5, 3), np.uint8)
    a[1, 2] = (10, 20, 30)
    img = to_qimage(a)
    a[1, 2] = (99, 99, 99)
    del a
    c = img.pixelColor(2, 1)
    assert (img.width(), img.height()) == (5, 3)
    assert (c.red(), c.green(), c.blue()) == (10, 20, 30)
    strided = np.zeros((4, 8, 3), np.uint8)[:, ::2]
    strided[0, 1] = (1, 2, 3)
    assert to_qimage(strided).pixelColor(1, 0).blue() == 3
    with pytest.raises(ValueError):
        to_qimage(np.zeros((3, 5), np.uint8))
