"""The window driving the real engine with a tiny random-weight model: generate, live previews, cancel, close
mid-run, errors in the banner, and a probe that the GUI thread is never blocked for long."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from PySide6.QtCore import Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QFileDialog, QToolButton  # noqa: E402

from engine.engine import EngineOptions, PreviewOptions  # noqa: E402
from engine.events import ImageReady, Progress  # noqa: E402
from gui.main_window import MainWindow  # noqa: E402
from gui.testing import spin, wait_until  # noqa: E402




@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Keep a core free for the GUI thread: on a small shared machine, torch's worker threads spinning on
    every core make tiny-model steps 100× slower and the probe below meaningless."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_window(qtbot, tiny_model_dir):
    windows: list[MainWindow] = []

    def make(*, model: bool = True, preview_interval: float = 0.0, gallery="default", start: bool = True):
        options = EngineOptions(device="cpu", preview=PreviewOptions(mode="x0", interval_s=preview_interval))
        window = MainWindow(engine_options=options, gallery=gallery, start_engine=False)
        qtbot.addWidget(window)
        windows.append(window)
        window.resize(1200, 800)
        window.show()
        qtbot.waitExposed(window)
        if model:
            assert window.add_model_path(tiny_model_dir)
        if start:
            window.start_engine()
            wait_until(lambda: window.device_label.text() != "")
        return window

    yield make
    for window in windows:
        window.close()
        assert not window.bridge.threads_alive(), "the window left engine threads running"


def _fill(window: MainWindow, prompt: str = "a red fox in the snow", steps: int = 6, seed: int = 1234) -> None:
    window.form.prompt.setPlainText(prompt)
    window.form.steps.setValue(steps)
    window.form.width_box.setValue(64)
    window.form.height_box.setValue(64)
    window.form.seed.setText(str(seed))
    window.form.batch.setValue(1)


def _slow_steps(window: MainWindow, seconds: float) -> None:
    """Make every denoising step take at least ``seconds`` by delaying the engine thread after each Progress."""
    original = window.bridge._on_engine_event

    def slow(event):
        original(event)
        if isinstance(event, Progress):
            time.sleep(seconds)

    window.bridge._on_engine_event = slow


def _results(window: MainWindow) -> list:
    got: list = []
    window.result_added.connect(got.append)
    return got


def test_type_prompt_generate_preview_painted_and_final_image_stays(make_window, qtbot):
    window = make_window()
    _fill(window, prompt="", steps=8)
    window.form.prompt.setFocus()
    qtbot.keyClicks(window.form.prompt, "a lighthouse at dusk")
    assert window.form.values()["prompt"] == "a lighthouse at dusk"
    _slow_steps(window, 0.02)  # slow enough that previews get painted before the final image replaces them
    previews, ready = [], []
    window.bridge.preview.connect(lambda e, img: previews.append(e))
    window.bridge.image_ready.connect(lambda e, img: ready.append(e))
    results = _results(window)

    qtbot.keyClick(window.form.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)  # Ctrl+Enter
    assert window.bridge.jobs(), "Ctrl+Enter did not queue a job"
    assert window.queue_list.job_ids() == [j.job_id for j in window.bridge.jobs()]
    wait_until(lambda: window.canvas.painted_kinds["preview"] >= 1)
    wait_until(lambda: len(results) == 1)

    assert previews and previews[0].kind == "x0"
    assert ready[0].request.prompt == "a lighthouse at dusk"
    final = ready[0].image
    assert final.shape == (64, 64, 3)
    # The finished image stays on the canvas, pixel for pixel, after the job has ended.
    wait_until(lambda: not window.bridge.busy)
    spin(100)
    assert window.canvas.frame().kind == "final"
    wait_until(lambda: window.canvas.painted_kinds["final"] >= 1)
    shown = window.canvas.image()
    pixels = np.frombuffer(shown.constBits(), np.uint8).reshape(shown.height(), shown.bytesPerLine())
    assert np.array_equal(pixels[:, : 64 * 3].reshape(64, 64, 3), final)
    assert window.current_result() is results[0]
    assert [r.ready.request.seed for r in window.strip.results()] == [1234]
    assert window.progress_bar.text().startswith("Done") and window.windowTitle() == "Darkroom"
    assert window.device_label.text().startswith("CPU")
    assert window.form.last_seed() == 1234
    assert window.banner.message() is None or window.banner.message().level != "error"


def test_every_step_preview_reaches_the_canvas_when_steps_are_slower_than_the_interval(make_window, qtbot):
    window = make_window(preview_interval=0.01)
    _fill(window, steps=10)
    _slow_steps(window, 0.03)  # steps of ≥ 30 ms, previews allowed every 10 ms
    shown: list[tuple[str, int]] = []
    original = window.canvas.show_image

    def record(image, frame):
        shown.append((frame.kind, frame.step))
        original(image, frame)

    window.canvas.show_image = record
    results = _results(window)
    window.generate()
    wait_until(lambda: len(results) == 1)
    assert shown[:-1] == [("preview", step) for step in range(1, 11)]
    assert shown[-1] == ("final", 10)
    assert window.bridge.previews_dropped == 0


def test_cancel_with_escape_then_generate_again(make_window, qtbot):
    window = make_window()
    _fill(window, steps=150)
    _slow_steps(window, 0.01)
    results = _results(window)
    job = window.generate()
    wait_until(lambda: window.canvas.frame() is not None and window.canvas.frame().kind == "preview")
    assert window.cancel_button.isEnabled()

    window.activateWindow()
    qtbot.keyClick(window.form.prompt, Qt.Key.Key_Escape)
    assert not window.bridge.busy, "Esc did not cancel the job"
    assert window.queue_list.job_ids() == []
    wait_until(lambda: job not in window.bridge.engine.pending())
    assert window.progress_bar.text() == "Cancelled"
    assert window.canvas.frame().kind == "preview" and window.canvas.frame().step < 150
    spin(100)
    assert results == [], "a cancelled job delivered an image"

    # The engine is still usable: a second job runs to the end.
    del window.bridge._on_engine_event  # back to normal speed
    _fill(window, steps=3, seed=7)
    window.generate()
    wait_until(lambda: len(results) == 1)
    assert results[0].ready.request.seed == 7


def test_cancel_a_queued_job_from_the_queue_list(make_window, qtbot):
    window = make_window()
    _fill(window, steps=40)
    _slow_steps(window, 0.01)
    results = _results(window)
    first = window.generate()
    _fill(window, steps=3, seed=99)
    second = window.generate()
    assert window.queue_list.job_ids() == [first, second]
    row = window.queue_list.job_row(second)
    qtbot.mouseClick(row.cancel_button, Qt.MouseButton.LeftButton)
    assert window.queue_list.job_ids() == [first]
    wait_until(lambda: not window.bridge.busy)
    spin(50)
    assert [r.ready.job_id for r in results] == [first]


def test_closing_mid_run_stops_and_joins_the_engine_within_two_seconds(make_window, qtbot):
    window = make_window()
    _fill(window, steps=150)
    _slow_steps(window, 0.01)
    window.generate()
    wait_until(lambda: window.canvas.frame() is not None)
    assert window.bridge.engine.running

    started = time.monotonic()
    window.close()
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"closing took {elapsed:.2f} s"
    assert window.shutdown_clean is True
    assert not window.bridge.engine.running
    assert not [t for t in threading.enumerate() if t.name.startswith("darkroom")]


def test_validation_error_and_size_notice_show_in_the_banner(make_window, qtbot):
    window = make_window(start=False)
    _fill(window)
    window.form.seed.setText("twelve")
    assert window.generate() is None
    message = window.banner.message()
    assert message is not None and message.level == "error"
    assert "Seed" in message.text and "twelve" in message.text
    assert window.banner.isVisible()
    assert window.form.error_fields() == ["seed"]
    assert window.bridge.jobs() == []

    window.form.seed.setText("5")
    assert window.generate() is not None
    assert window.banner.message() is None, "the fixed form's error stayed on screen"
    window.form.width_box.setValue(100)
    job = window.generate()
    assert job is not None
    notice = window.banner.message()
    assert notice.level == "info" and "Width 100 is not a multiple of 8" in notice.text
    assert window.form.width_box.value() == 96 or window.form.width_box.value() == 104
    assert window.form.error_fields() == []
    window.banner.dismiss()
    assert not window.banner.isVisible()


def test_engine_failure_shows_plain_message_with_details_and_app_keeps_running(make_window, qtbot, tmp_path):
    window = make_window()
    _fill(window, steps=2)
    missing = tmp_path / "no-such-model.safetensors"
    window.form.select_model(str(missing))
    failed = []
    window.bridge.job_failed.connect(failed.append)
    window.generate()
    wait_until(lambda: bool(failed))
    message = window.banner.message()
    assert message.level == "error"
    assert message.text == failed[0].message and "not found" in message.text.lower()
    window.banner.set_details_visible(True)
    assert window.banner.details_visible() == bool(message.details)
    assert not window.bridge.busy and window.progress_bar.text() == "Failed"

    results = _results(window)
    window.add_model_path(window.settings.user_models[0])
    window.generate()
    wait_until(lambda: len(results) == 1)


def test_ui_thread_is_never_blocked_for_long_while_generating(make_window, qtbot):
    window = make_window()
    _fill(window, steps=2)
    results = _results(window)
    window.generate()  # loads the model first, so the probe measures generation, not loading
    wait_until(lambda: len(results) == 1)

    _fill(window, steps=40, seed=3)
    window.form.batch.setValue(2)
    ticks: list[float] = []
    probe = QTimer()
    probe.setTimerType(Qt.TimerType.PreciseTimer)
    probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
    probe.start(10)
    started = time.perf_counter()
    window.generate()
    wait_until(lambda: len(results) == 3)
    probe.stop()
    took = time.perf_counter() - started
    gaps = np.diff([started, *ticks])
    assert len(ticks) >= took / 0.010 * 0.5, "the probe timer barely ran"
    assert window.bridge.previews_delivered > 0
    assert gaps.max() < 0.050, f"GUI thread blocked for {gaps.max() * 1000:.0f} ms (p99 {np.percentile(gaps, 99) * 1000:.0f} ms)"


def test_preview_mode_switch_reaches_the_engine_and_explains_itself(make_window, qtbot):
    window = make_window()
    assert window.bridge.engine.preview.mode == "x0"
    assert "guess" in window.preview_explain.text()
    button = next(b for b in window.findChildren(QToolButton) if b.defaultAction() is window.preview_actions["xt"])
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert window.bridge.engine.preview.mode == "xt"
    assert "noisy latent" in window.preview_explain.text()
    kinds = []
    window.bridge.preview.connect(lambda e, img: kinds.append(e.kind))
    results = _results(window)
    _fill(window, steps=4)
    window.generate()
    wait_until(lambda: len(results) == 1)
    assert kinds and set(kinds) == {"xt"}
    assert window.settings.preview_mode == "xt"


def test_clicking_an_earlier_result_shows_it(make_window, qtbot):
    window = make_window()
    results = _results(window)
    _fill(window, steps=2, seed=11)
    window.form.batch.setValue(2)
    window.generate()
    wait_until(lambda: len(results) == 2)
    assert [r.ready.request.seed for r in window.strip.results()] == [12, 11]
    older = window.strip.item(1)
    rect = window.strip.visualItemRect(older)
    qtbot.mouseClick(window.strip.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.current_result() is results[0]
    assert window.canvas.frame().kind == "result" and window.canvas.image() is results[0].image


@pytest.fixture
def no_bundled_models(monkeypatch, tmp_path):
    from engine import paths

    empty = tmp_path / "no-bundled-models"
    empty.mkdir()
    monkeypatch.setattr(paths, "BUNDLED_MODELS", empty)


def test_empty_state_when_there_is_no_model(no_bundled_models, make_window):
    window = make_window(model=False, start=False)
    assert not window.form.has_models()
    title, text = window.canvas.empty_message()
    assert title == "No model yet" and text.startswith("Add a model folder or .safetensors file")
    assert not window.generate_button.isEnabled()
    assert window.generate() is None
    assert "No model yet" in window.banner.message().text


def test_failed_save_keeps_the_image_and_offers_save_as(make_window, qtbot, tmp_path, monkeypatch):
    from engine.gallery import Gallery

    class FullDiskGallery(Gallery):
        def save(self, ready: ImageReady):
            raise OSError(28, "No space left on device")

    window = make_window(gallery=FullDiskGallery(tmp_path / "gallery"))
    results = _results(window)
    _fill(window, steps=2)
    window.generate()
    wait_until(lambda: window.banner.message() is not None and window.banner.message().action_text != "")
    message = window.banner.message()
    assert message.level == "error" and "No space left on device" in message.text
    assert window.canvas.frame().kind == "final" and window.current_result() is results[0]
    assert results[0].save_error

    target = tmp_path / "kept.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    action = window.banner.findChild(type(window.generate_button), "BannerAction")
    qtbot.mouseClick(action, Qt.MouseButton.LeftButton)
    assert target.is_file() and target.stat().st_size > 0
    from engine.gallery import read_parameters

    assert read_parameters(target).fields["seed"] == 1234  # saved with its parameters
    assert window.banner.message() is None


def _png_with_parameters(path, request):
    from engine.gallery import Gallery

    ready = ImageReady(1, np.zeros((64, 64, 3), np.uint8), request, 0, 1, model_name="tiny-sd")
    path.write_bytes(Gallery.encode(ready))
    return path


def test_open_parameters_and_drop_a_png_fill_the_form(make_window, qtbot, tmp_path):
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    from engine.request import GenerationRequest

    window = make_window(start=False)
    model = window.form.model_value()
    made = GenerationRequest(prompt="a paper boat", negative_prompt="rain", seed=4242, steps=17, cfg=5.5,
                             width=320, height=192, scheduler="Euler a", model=model)
    png = _png_with_parameters(tmp_path / "boat.png", made)
    window.tabs.setCurrentIndex(1)
    assert window.open_parameters(png)
    v = window.form.values()
    assert (v["prompt"], v["negative_prompt"], v["seed"], v["steps"], v["cfg"]) == ("a paper boat", "rain", "4242", 17, 5.5)
    assert (v["width"], v["height"], v["scheduler"], v["model"]) == (320, 192, "Euler a", model)
    assert window.tabs.currentIndex() == 0
    assert window.banner.message().level in ("info", "warning") and "boat.png" in window.banner.text()

    other = _png_with_parameters(tmp_path / "other.png", GenerationRequest(prompt="a kite", seed=8, steps=9))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(other))])
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    assert window.form.values()["prompt"] == "a kite" and window.form.values()["seed"] == "8"

    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a picture")
    assert not window.open_parameters(junk)
    assert window.banner.message().level == "error" and "junk.png" in window.banner.text()
    assert window.form.values()["prompt"] == "a kite", "a bad file changed the form"


def test_gallery_tab_signals_fill_the_form(make_window):
    from PySide6.QtGui import QKeySequence

    from engine.request import GenerationRequest

    window = make_window(start=False)
    view = window.gallery_view
    assert hasattr(view, "use_parameters"), "the Gallery tab is a placeholder"
    window.tabs.setCurrentIndex(1)
    assert window.cancel_action.shortcuts() == [], "Esc would clash with the Gallery tab's own Esc"
    view.use_parameters.emit(GenerationRequest(prompt="from the gallery", seed=31, steps=12))
    assert window.tabs.currentIndex() == 0
    assert window.cancel_action.shortcuts() == [QKeySequence("Esc")]
    assert window.form.values()["prompt"] == "from the gallery" and window.form.values()["steps"] == 12
    view.use_seed.emit(99)
    assert window.form.values()["seed"] == "99" and window.form.values()["prompt"] == "from the gallery"


def test_first_run_picks_a_model_and_its_native_size(no_bundled_models, qtbot, darkroom_home, tiny_model_dir):
    models = darkroom_home / "data" / "models"
    models.mkdir(parents=True)
    (models / "tiny-sd").symlink_to(tiny_model_dir, target_is_directory=True)
    window = MainWindow(start_engine=False, gallery=None)
    qtbot.addWidget(window)
    assert window.form.has_models() and window.generate_button.isEnabled()
    assert window.form.model_value() == "tiny-sd"
    assert (window.form.width_box.value(), window.form.height_box.value()) == (64, 64)
    window.form.set_size(512, 512)
    window.close()

    again = MainWindow(start_engine=False, gallery=None)  # settings exist now: the person's size is kept
    qtbot.addWidget(again)
    assert (again.form.width_box.value(), again.form.height_box.value()) == (512, 512)
    again.close()


def test_finished_images_are_saved_into_the_chosen_gallery_folder(make_window, tmp_path):
    window = make_window()
    old_view = window.gallery_view
    folder = tmp_path / "my pictures"
    assert window.set_gallery_folder(folder)
    assert window.gallery_view is not old_view and window.tabs.widget(1) is window.gallery_view
    assert window.settings.gallery_dir == str(folder)
    saved = []
    window.bridge.image_saved.connect(lambda ready, result: saved.append(result))
    _fill(window, steps=2, seed=5)
    window.generate()
    wait_until(lambda: len(saved) == 1)
    path = saved[0].path
    assert folder in path.parents and path.is_file()
    wait_until(lambda: window.current_result() is not None and window.current_result().saved_path == str(path))
    assert path.name in window.preview_explain.text()


def test_first_run_offers_the_bundled_model_at_its_native_size(qtbot):
    from engine import models, paths

    assert (paths.BUNDLED_MODELS / models.DEFAULT_BUNDLED / "model_index.json").is_file()
    window = MainWindow(start_engine=False, gallery=None)
    qtbot.addWidget(window)
    assert window.form.model_value() == models.DEFAULT_BUNDLED
    from engine.models import native_size

    assert (window.form.width_box.value(), window.form.height_box.value()) == native_size(models.DEFAULT_BUNDLED)
    assert native_size(models.DEFAULT_BUNDLED) != (512, 512), "the bundled model's size was not read"
    assert window.generate_button.isEnabled()
    window.close()


def test_a_bug_in_a_slot_shows_in_the_banner_and_the_app_keeps_running(make_window, monkeypatch):
    import sys

    from gui.app import _report_unexpected_errors

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    window = make_window(start=False)
    _report_unexpected_errors(window)

    def broken_slot():
        raise RuntimeError("kaboom")

    QTimer.singleShot(0, broken_slot)
    wait_until(lambda: window.banner.message() is not None and window.banner.message().level == "error")
    message = window.banner.message()
    assert "kaboom" in message.text and "broken_slot" in message.details
    assert window.generate_button.isEnabled()


def test_fast_path_toggle_is_saved_and_used_by_the_next_engine(qtbot, darkroom_home):
    from engine import settings as settings_mod

    window = MainWindow(start_engine=False, gallery=None)
    qtbot.addWidget(window)
    assert window.fast_path_action.isChecked() and window.bridge.engine.options.fast_path
    window.fast_path_action.trigger()
    assert "next launch" in window.banner.text()
    window.close()
    assert settings_mod.load()[0].fast_path is False
    again = MainWindow(start_engine=False, gallery=None)
    qtbot.addWidget(again)
    assert not again.fast_path_action.isChecked() and again.bridge.engine.options.fast_path is False
    again.close()
