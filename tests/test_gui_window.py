"""The window driving the real engine with a tiny random-weight model: generate, live previews, cancel, close
mid-run, errors in the banner, settings. Where a test needs a job to be "still running", it holds the engine's
worker thread at a chosen step (:class:`EngineHold`) instead of making steps slow: no test here depends on how
fast the machine is. Durations are reported by the benchmarks, never asserted here."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QFileDialog, QLabel, QToolButton

from engine.events import ImageReady, Preview
from engine.request import GenerationRequest
from gui.main_window import MainWindow
from gui.testing import spin, wait_until
from tests.window_fixtures import EngineHold, fill_form


def _results(window: MainWindow) -> list:
    got: list = []
    window.jobs.result_added.connect(got.append)
    return got


def test_type_prompt_generate_preview_painted_and_final_image_stays(make_window, qtbot):
    hold = EngineHold(at_step=3)
    window = make_window(hold=hold)
    fill_form(window, prompt="", steps=8)
    prompt = window.form.widget("prompt")
    prompt.setFocus()
    qtbot.keyClicks(prompt, "a lighthouse at dusk")
    assert window.form_model.value("prompt") == "a lighthouse at dusk"
    previews, ready = [], []
    window.bridge.preview.connect(lambda e, img: previews.append(e))
    window.bridge.image_ready.connect(lambda e, img: ready.append(e))
    results = _results(window)

    qtbot.keyClick(prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)  # Ctrl+Enter
    assert window.jobs.jobs(), "Ctrl+Enter did not queue a job"
    assert window.session.queue_list.job_ids() == [j.job_id for j in window.jobs.jobs()]
    wait_until(lambda: hold.at_step(3))  # steps 1 and 2 are done, their previews sent
    wait_until(lambda: window.live.canvas.painted_kinds["preview"] >= 1)
    assert window.windowTitle().endswith("· Darkroom") and window.live.progress_bar.text().startswith("Step")
    hold.release()
    wait_until(lambda: len(results) == 1 and not window.jobs.busy)

    assert previews and previews[0].kind == "x0"
    assert ready[0].request.prompt == "a lighthouse at dusk"
    final = ready[0].image
    assert final.shape == (64, 64, 3)
    # The finished image stays on the canvas, pixel for pixel, after the job has ended.
    assert window.live.canvas.frame().kind == "final"
    wait_until(lambda: window.live.canvas.painted_kinds["final"] >= 1)
    shown = window.live.canvas.image()
    pixels = np.frombuffer(shown.constBits(), np.uint8).reshape(shown.height(), shown.bytesPerLine())
    assert np.array_equal(pixels[:, : 64 * 3].reshape(64, 64, 3), final)
    assert window.current_result() is results[0]
    assert [r.request.seed for r in window.jobs.results.results()] == [1234]
    assert window.session.strip.keys() == [results[0].key]
    assert window.live.progress_bar.text().startswith("Done") and window.windowTitle() == "Darkroom"
    assert window.status.device_label.text().startswith("CPU")
    assert window.form_model.last_seed == 1234
    assert window.banner.message() is None or window.banner.message().level != "error"


def test_every_step_preview_reaches_the_canvas_while_the_window_keeps_up(make_window, qtbot):
    hold = EngineHold(on=Preview)  # the worker waits for each preview to be shown before the next step
    window = make_window(hold=hold)
    window.jobs.shown_changed.connect(lambda shown: shown.frame.kind == "preview" and hold.let_through())
    fill_form(window, steps=10)
    shown: list[tuple[str, int]] = []
    window.jobs.shown_changed.connect(lambda s: shown.append((s.frame.kind, s.frame.step)))
    results = _results(window)
    window.generate()
    wait_until(lambda: len(results) == 1)
    assert shown == [("preview", step) for step in range(1, 11)] + [("final", 10)]
    assert window.bridge.previews_dropped == 0


def test_cancel_with_escape_then_generate_again(make_window, qtbot):
    hold = EngineHold(at_step=2)
    window = make_window(hold=hold)
    fill_form(window, steps=150)
    results = _results(window)
    job = window.generate()
    wait_until(lambda: hold.at_step(2))
    wait_until(lambda: window.live.canvas.frame() is not None and window.live.canvas.frame().kind == "preview")
    assert window.cancel_button.isEnabled()

    window.activateWindow()
    qtbot.keyClick(window.form.widget("prompt"), Qt.Key.Key_Escape)
    assert not window.jobs.busy, "Esc did not cancel the job"
    assert window.session.queue_list.job_ids() == []
    assert window.live.progress_bar.text() == "Cancelled" and window.windowTitle() == "Darkroom"
    assert window.live.canvas.frame().kind == "preview" and window.live.canvas.frame().step < 150
    assert "Stopped at step" in window.live.explanation.text()
    hold.release()
    wait_until(lambda: job not in window.bridge.engine.pending())
    spin(50)
    assert results == [], "a cancelled job delivered an image"

    # The engine is still usable: a second job runs to the end.
    fill_form(window, steps=3, seed=7)
    window.generate()
    wait_until(lambda: len(results) == 1)
    assert results[0].request.seed == 7


def test_cancel_a_queued_job_from_the_queue_list(make_window, qtbot):
    hold = EngineHold()
    window = make_window(hold=hold)
    fill_form(window, steps=40)
    results = _results(window)
    first = window.generate()
    fill_form(window, steps=3, seed=99)
    second = window.generate()
    assert window.session.queue_list.job_ids() == [first, second]
    assert window.session.queue_heading.text() == "Queue · 0 running, 2 waiting"
    wait_until(lambda: hold.at_step(1))
    row = window.session.queue_list.job_row(second)
    qtbot.mouseClick(row.cancel_button, Qt.MouseButton.LeftButton)
    assert window.session.queue_list.job_ids() == [first]
    hold.release()
    wait_until(lambda: not window.jobs.busy)
    assert [r.key[0] for r in results] == [first]


def test_cancel_all_with_queued_jobs_returns_progress_and_title_to_idle(make_window, qtbot):
    """After "Cancel all" with several queued jobs, the bar and title kept showing "Step 1/6 … 17 %"."""
    hold = EngineHold()
    window = make_window(hold=hold)
    jobs = []
    for seed in (1, 2, 3):
        fill_form(window, steps=6, seed=seed)
        jobs.append(window.generate())
    wait_until(lambda: hold.at_step(1))
    wait_until(lambda: window.live.progress_bar.text().startswith("Step 1/6"))
    assert window.windowTitle() == "17% · Darkroom"
    assert window.commands.cancel_all.isEnabled()
    window.commands.cancel_all.trigger()
    assert window.live.progress_bar.text() == "Cancelled" and window.windowTitle() == "Darkroom"
    assert window.live.progress_bar.value() == 0 and window.session.queue_list.job_ids() == []
    hold.release()
    wait_until(lambda: not window.bridge.engine.pending())
    spin(50)  # the engine's own Cancelled events arrive and change nothing
    assert window.live.progress_bar.text() == "Cancelled" and window.windowTitle() == "Darkroom"


def test_closing_mid_run_stops_the_engine_and_leaves_nothing_behind(make_window, qtbot):
    hold = EngineHold(at_step=2)
    window = make_window(hold=hold)
    fill_form(window, steps=150)
    job = window.generate()
    wait_until(lambda: hold.at_step(2))

    window.close()  # returns while the worker is still held inside step 2
    assert window.bridge.closed and not window.isVisible() and window.bridge.running
    hold.release()
    assert window.bridge.wait_stopped(30)  # the job was cancelled: the worker stopped after its next step
    assert job not in window.bridge.engine.pending()
    assert not [t for t in threading.enumerate() if t.name.startswith("darkroom")]
    assert not [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
    assert window.generate() is None


def test_closing_waits_for_queued_saves_but_not_for_the_engine_thread(make_window, tmp_path, monkeypatch):
    from engine.gallery import Gallery

    allow = threading.Event()

    class SlowDisk(Gallery):
        def save(self, ready: ImageReady):
            allow.wait(30)
            return super().save(ready)

    window = make_window(gallery=SlowDisk(tmp_path / "gallery"))
    results = _results(window)
    fill_form(window, steps=2)
    window.generate()
    wait_until(lambda: len(results) == 1 and not window.jobs.busy)
    assert not list((tmp_path / "gallery").rglob("*.png")), "the save did not wait"
    joined = []
    real_join = threading.Thread.join

    def spy(thread, timeout=None):
        joined.append((thread.name, timeout))
        return real_join(thread, timeout)

    monkeypatch.setattr(threading.Thread, "join", spy)
    threading.Timer(0.05, allow.set).start()  # the disk catches up while the window is closing
    window.close()
    assert len(list((tmp_path / "gallery").rglob("*.png"))) == 1, "a queued save was lost on closing"
    assert not window.gallery.saving
    engine_joins = [t for name, t in joined if name == "darkroom-engine" and (t is None or t > 0)]
    assert engine_joins == [], "closing waited for the engine thread"


def test_validation_error_and_size_notice_show_in_the_banner(make_window, qtbot):
    window = make_window(start=False)
    fill_form(window)
    window.form_model.set_value("seed", "twelve")
    assert window.generate() is None
    message = window.banner.message()
    assert message is not None and message.level == "error"
    assert "Seed" in message.text and "twelve" in message.text
    assert window.banner.isVisible()
    assert window.form.error_fields() == ["seed"]
    assert window.jobs.jobs() == []

    window.form.widget("seed").setText("5")
    assert window.generate() is not None
    assert window.banner.message() is None, "the fixed form's error stayed on screen"
    window.form_model.set_value("width", 100)
    assert window.generate() is not None
    notice = window.banner.message()
    assert notice.level == "info" and "Width 100 is not a multiple of 8" in notice.text
    assert window.form.widget("width").value() == 104
    assert window.form.error_fields() == []
    window.banner.dismiss()
    assert not window.banner.isVisible()


def test_engine_failure_shows_plain_message_with_details_and_app_keeps_running(make_window, qtbot, tmp_path):
    window = make_window()
    fill_form(window, steps=2)
    window.form_model.set_value("model", str(tmp_path / "no-such-model.safetensors"))
    failed = []
    window.bridge.job_failed.connect(failed.append)
    window.generate()
    wait_until(lambda: bool(failed))
    message = window.banner.message()
    assert message.level == "error"
    assert message.text == failed[0].message and "not found" in message.text.lower()
    window.banner.set_details_visible(True)
    assert window.banner.details_visible() == bool(message.details)
    assert not window.jobs.busy and window.live.progress_bar.text() == "Failed"

    results = _results(window)
    window.models.add_path(window.settings.user_models[0])
    window.generate()
    wait_until(lambda: len(results) == 1)


def test_preview_mode_switch_reaches_the_engine_and_explains_itself(make_window, qtbot):
    window = make_window()
    assert window.bridge.engine.preview.mode == "x0"
    assert "guess" in window.live.explanation.text()
    button = next(b for b in window.findChildren(QToolButton) if b.defaultAction() is window.commands.preview["xt"])
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert window.bridge.engine.preview.mode == "xt"
    assert "noisy latent" in window.live.explanation.text()
    kinds = []
    window.bridge.preview.connect(lambda e, img: kinds.append(e.kind))
    results = _results(window)
    fill_form(window, steps=4)
    window.generate()
    wait_until(lambda: len(results) == 1)
    assert kinds and set(kinds) == {"xt"}
    assert window.settings.preview_mode == "xt"


def test_clicking_an_earlier_result_shows_it(make_window, qtbot):
    window = make_window()
    results = _results(window)
    fill_form(window, steps=2, seed=11)
    window.form_model.set_value("batch_count", 2)
    window.generate()
    wait_until(lambda: len(results) == 2)
    strip = window.session.strip
    assert [window.jobs.results.get(k).request.seed for k in strip.keys()] == [12, 11]
    rect = strip.visualItemRect(strip.item(1))
    qtbot.mouseClick(strip.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.current_result() is results[0]
    assert window.live.canvas.frame().kind == "result" and window.live.canvas.image() is results[0].image


@pytest.fixture
def no_bundled_models(monkeypatch, tmp_path):
    from engine import paths

    empty = tmp_path / "no-bundled-models"
    empty.mkdir()
    monkeypatch.setattr(paths, "BUNDLED_MODELS", empty)


def test_empty_state_when_there_is_no_model(no_bundled_models, make_window):
    window = make_window(model=False, start=False)
    assert not window.models.has_models()
    title, text = window.live.canvas.empty_message()
    assert title == "No model yet" and text.startswith("Add a model folder or .safetensors file")
    assert not window.generate_button.isEnabled()
    assert window.generate() is None
    assert "No model yet" in window.banner.message().text


def test_adding_a_path_that_is_not_a_model_says_why(no_bundled_models, make_window, tmp_path):
    window = make_window(model=False, start=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "old.ckpt").write_bytes(b"x")
    for path, words in ((tmp_path / "empty", "no model_index.json"), (tmp_path / "old.ckpt", "pickle"),
                        (tmp_path / "missing", "does not exist")):
        assert not window.models.add_path(path)
        assert window.banner.message().level == "error" and words in window.banner.text()
    assert window.settings.user_models == [] and not window.models.has_models()


def test_failed_save_keeps_the_image_and_offers_save_as(make_window, qtbot, tmp_path, monkeypatch):
    from engine.gallery import Gallery, read_parameters

    class FullDiskGallery(Gallery):
        def save(self, ready: ImageReady):
            raise OSError(28, "No space left on device")

    window = make_window(gallery=FullDiskGallery(tmp_path / "gallery"))
    results = _results(window)
    fill_form(window, steps=2)
    window.generate()
    wait_until(lambda: window.banner.message() is not None and window.banner.message().action_text != "")
    message = window.banner.message()
    assert message.level == "error" and "No space left on device" in message.text
    assert window.live.canvas.frame().kind == "final" and window.current_result() is results[0]
    assert results[0].save_error

    target = tmp_path / "kept.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    action = window.banner.findChild(type(window.generate_button), "BannerAction")
    qtbot.mouseClick(action, Qt.MouseButton.LeftButton)
    assert target.is_file() and target.stat().st_size > 0
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

    window = make_window(start=False)
    model = window.form_model.value("model")
    made = GenerationRequest(prompt="a paper boat", negative_prompt="rain", seed=4242, steps=17, cfg=5.5,
                             width=320, height=192, sampler="Euler a", model=model)
    png = _png_with_parameters(tmp_path / "boat.png", made)
    window.tabs.setCurrentIndex(1)
    assert window.open_parameters(png)
    v = window.form_model.values()
    assert (v["prompt"], v["negative_prompt"], v["seed"], v["steps"], v["cfg"]) == ("a paper boat", "rain", "4242", 17, 5.5)
    assert (v["width"], v["height"], v["sampler"]) == (320, 192, "Euler a")
    assert window.form.widget("prompt").toPlainText() == "a paper boat"
    assert window.tabs.currentIndex() == 0
    assert window.banner.message().level in ("info", "warning") and "boat.png" in window.banner.text()

    other = _png_with_parameters(tmp_path / "other.png", GenerationRequest(prompt="a kite", seed=8, steps=9))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(other))])
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    assert window.form_model.value("prompt") == "a kite" and window.form_model.value("seed") == "8"

    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a picture")
    assert not window.open_parameters(junk)
    assert window.banner.message().level == "error" and "junk.png" in window.banner.text()
    assert window.form_model.value("prompt") == "a kite", "a bad file changed the form"


def test_gallery_tab_signals_fill_the_form(make_window):
    from PySide6.QtGui import QKeySequence

    window = make_window(start=False)
    view = window.gallery_view
    assert view is not None and window.gallery_tab.currentWidget() is view
    window.tabs.setCurrentIndex(1)
    assert window.commands.cancel.shortcuts() == [], "Esc would clash with the Gallery tab's own Esc"
    view.use_parameters.emit(GenerationRequest(prompt="from the gallery", seed=31, steps=12))
    assert window.tabs.currentIndex() == 0
    assert window.commands.cancel.shortcuts() == [QKeySequence("Esc")]
    assert window.form_model.value("prompt") == "from the gallery" and window.form_model.value("steps") == 12
    view.use_seed.emit(99)
    assert window.form_model.value("seed") == "99" and window.form_model.value("prompt") == "from the gallery"
    view.autosave.setChecked(False)
    assert window.settings.autosave is False and window.gallery.gallery.autosave is False


def test_without_a_gallery_the_tab_says_so(make_window):
    window = make_window(start=False, gallery=None)
    assert window.gallery_view is None and window.gallery.gallery is None
    assert "not available" in window.tabs.widget(1).findChild(QLabel).text()


def test_first_run_picks_a_model_and_its_native_size(no_bundled_models, qtbot, darkroom_home, tiny_model_dir):
    models = darkroom_home / "data" / "models"
    models.mkdir(parents=True)
    (models / "tiny-sd").symlink_to(tiny_model_dir, target_is_directory=True)
    window = MainWindow(start_engine=False, gallery=None)
    qtbot.addWidget(window)
    assert window.models.has_models() and window.generate_button.isEnabled()
    assert window.form_model.value("model") == "tiny-sd"
    assert (window.form_model.value("width"), window.form_model.value("height")) == (64, 64)
    window.form_model.set_values({"width": 512, "height": 512, "prompt": "kept", "sampler": "Heun"})
    window.close()

    again = MainWindow(start_engine=False, gallery=None)  # settings exist now: the person's values are kept
    qtbot.addWidget(again)
    assert again.settings.generation["prompt"] == "kept"
    v = again.form_model.values()
    assert (v["width"], v["height"], v["prompt"], v["sampler"]) == (512, 512, "kept", "Heun")
    assert again.form.widget("sampler").currentText() == "Heun"
    again.close()


def test_finished_images_are_saved_into_the_chosen_gallery_folder(make_window, tmp_path):
    window = make_window()
    old_view = window.gallery_view
    folder = tmp_path / "my pictures"
    assert window.set_gallery_folder(folder)
    assert window.gallery_view is not old_view and window.gallery_tab.currentWidget() is window.gallery_view
    assert window.settings.gallery_dir == str(folder)
    saved = []
    window.gallery.saved.connect(lambda ready, result: saved.append(result))
    fill_form(window, steps=2, seed=5)
    window.generate()
    wait_until(lambda: len(saved) == 1)
    path = saved[0].path
    assert folder in path.parents and path.is_file()
    wait_until(lambda: window.current_result() is not None and window.current_result().saved_path == str(path))
    assert path.name in window.live.explanation.text()
    assert window.gallery_view.model.rowCount() == 1, "the new picture is not in the gallery tab"


def test_first_run_offers_the_bundled_model_at_its_native_size(qtbot):
    from engine import models

    assert (models.paths.BUNDLED_MODELS / models.DEFAULT_BUNDLED / "model_index.json").is_file()
    window = MainWindow(start_engine=False, gallery=None)
    qtbot.addWidget(window)
    assert window.form_model.value("model") == models.DEFAULT_BUNDLED
    size = (window.form_model.value("width"), window.form_model.value("height"))
    assert size == models.native_size(models.DEFAULT_BUNDLED) != (512, 512)
    settings = {k: window.form_model.value(k) for k in ("sampler", "steps", "cfg")}
    assert settings == models.recommended(models.DEFAULT_BUNDLED) == {"sampler": "DDIM", "steps": 25, "cfg": 5.0}
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
    assert window.commands.fast_path.isChecked() and window.bridge.engine.options.fast_path
    window.commands.fast_path.trigger()
    assert "next launch" in window.banner.text()
    window.close()
    assert settings_mod.load()[0].fast_path is False
    again = MainWindow(start_engine=False, gallery=None)
    qtbot.addWidget(again)
    assert not again.commands.fast_path.isChecked() and again.bridge.engine.options.fast_path is False
    again.close()
