"""The Diffusion Lab in the window, part one (real engine, tiny random-weight model): the replay scrubber, exporting
noise → image as an animation, and live mode (newest input wins, stale jobs cancelled, nothing saved until kept).
Where a job must still be running, the engine's worker is held at a step (EngineHold); nothing here is timed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtWidgets import QFileDialog

from engine.gallery.metadata import read_parameters
from gui.testing import spin, wait_until
from tests.window_fixtures import EngineHold, fill_form, generate, pixels


def _pngs(window) -> list:
    return sorted(window.gallery.folder().rglob("*.png"))


# -- replay ---------------------------------------------------------------------------------------------------------
def test_the_scrubber_shows_the_x0_frame_of_each_step_then_the_picture(make_window):
    window = make_window()
    fill_form(window, steps=5)
    result = generate(window)
    lab, canvas = window.lab, window.live.canvas
    assert len(result.replay) == 5 and result.replay[0].shape == (8, 8, 3)  # latent-sized x0 frames
    bar = lab.replay_bar
    assert bar.isVisible() and bar.slider.maximum() == 5 and bar.slider.value() == 5
    assert bar.step_label.text() == "Finished picture (after 5 steps)"

    for k in (1, 3, 5):
        bar.slider.setValue(k - 1)
        assert canvas.frame().kind == "replay" and canvas.frame().step == k
        assert np.array_equal(pixels(canvas.image()), result.replay[k - 1])
        assert bar.step_label.text() == f"Step {k}/5 · model's guess (x0)"
        assert f"after step {k} of 5" in window.live.explanation.text()
    assert window.current_result() is result  # scrubbing changes what is painted, not which picture it is

    bar.slider.setValue(5)
    assert canvas.frame().kind == "final" and np.array_equal(pixels(canvas.image()), result.ready.image)
    assert window.live.explanation.text().startswith("The finished picture")

    # Another job's live preview hides the scrubber; an earlier result brings it back for that result.
    hold = EngineHold(at_step=2)  # step 1's preview is shown, then the worker waits
    window.bridge.engine_tap = hold
    fill_form(window, steps=3, seed=9)
    window.generate()
    wait_until(lambda: window.jobs.shown.frame.kind == "preview")
    assert not bar.isVisible() and lab.replay.count == 0
    window.jobs.show_result(result)
    assert bar.isVisible() and lab.replay.result is result and bar.slider.value() == 5
    hold.release()
    wait_until(lambda: not window.jobs.busy)


def test_a_decoding_models_replay_turns_into_vae_decodes_after_the_job(make_window, tiny_model_dir, tmp_path):
    import json
    import shutil

    decoding = tmp_path / "decoding"  # previews by decoding, as the bundled model does
    shutil.copytree(tiny_model_dir, decoding)
    (decoding / "preview.json").write_text(json.dumps({"factors": [[0.3, 0.2, 0.2]] * 4, "bias": [0, 0, 0],
                                                       "decode": True}))
    window = make_window()
    assert window.models.add_path(decoding)
    fill_form(window, steps=4)
    result = generate(window)
    lab, canvas = window.lab, window.live.canvas
    lab.replay_bar.slider.setValue(1)  # scrubbing at once shows the quick frames; the decoded ones replace them
    wait_until(lambda: result.ready.replay_decoded)
    assert lab.replay.decoded and len(result.replay) == 4
    assert all(f.shape == (64, 64, 3) for f in result.replay)
    assert canvas.frame().kind == "replay" and canvas.frame().step == 2
    assert np.array_equal(pixels(canvas.image()), result.replay[1])  # repainted where the person was
    assert "decoded by the VAE" in window.live.explanation.text()
    lab.replay_bar.slider.setValue(4)
    assert np.array_equal(pixels(canvas.image()), result.ready.image)


def test_export_animation_writes_every_step_then_the_picture_looping(make_window, tmp_path, monkeypatch):
    window = make_window()
    fill_form(window, steps=4, prompt="a lighthouse at dusk")
    generate(window)
    lab = window.lab
    done: list = []
    lab.exporter.done.connect(lambda *args: done.append(args))

    assert lab.export_animation(tmp_path / "plain.webp", caption=False)
    wait_until(lambda: len(done) == 1)
    assert done[0] == (str(tmp_path / "plain.webp"), "", "")
    with Image.open(tmp_path / "plain.webp") as anim:
        assert anim.format == "WEBP" and anim.is_animated
        assert anim.n_frames == 5 and anim.size == (64, 64) and anim.info["loop"] == 0

    # The button near the scrubber: the file dialog's GIF choice, captioned with the prompt.
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "captioned"), "Animated GIF (*.gif)"))
    lab.replay_bar.caption_box.setChecked(True)
    lab.replay_bar.export_button.click()
    wait_until(lambda: len(done) == 2)
    assert done[1][0] == str(tmp_path / "captioned.gif")
    with Image.open(tmp_path / "captioned.gif") as anim:
        assert anim.format == "GIF" and anim.n_frames == 5 and anim.info["loop"] == 0
        assert anim.size[0] == 64 and anim.size[1] > 64  # a caption bar under the picture
        anim.seek(4)
        assert anim.info["duration"] > 120  # the finished picture is held longer

    # A place that cannot be written: a message in the banner, nothing else.
    (tmp_path / "file").write_text("x")
    assert lab.export_animation(tmp_path / "file" / "nested.webp")
    wait_until(lambda: len(done) == 3)
    assert done[2][0] == "" and window.banner.message().level == "error"

    # Kept with the gallery entry: beside the saved picture, where the gallery finds it; not indexed as a picture.
    wait_until(lambda: window.current_result().saved_path is not None)
    kept = lab.keep_replay()
    wait_until(lambda: len(done) == 4)
    saved = Path(window.current_result().saved_path)
    assert kept == saved.with_suffix(".replay.webp") and done[3][0] == str(kept)
    with Image.open(kept) as anim:
        assert anim.n_frames == 5
    rescanned: list = []
    window.gallery_view.rescan_finished.connect(rescanned.append)
    window.gallery_view.rescan()
    wait_until(lambda: rescanned)
    assert window.gallery_view.model.rowCount() == 1


# -- live mode ------------------------------------------------------------------------------------------------------
def test_live_mode_follows_the_newest_input_cancels_stale_jobs_and_saves_only_when_kept(make_window):
    hold = EngineHold(at_step=1)
    window = make_window(hold=hold)
    fill_form(window, steps=20, prompt="a cat")
    live = window.lab.live_mode
    bar = window.lab.live_bar
    seen: set[int] = set()
    window.jobs.jobs_changed.connect(lambda: seen.update(j.job_id for j in window.jobs.jobs()))

    bar.switch.click()  # on: a live picture of the form as it is, at once
    assert live.model.enabled and window.lab.live_action.isChecked()
    assert len(live.pending) == 1
    first = live.pending[0]
    wait_until(lambda: hold.at_step(1))  # the first live picture is running, held inside step 1

    window.form_model.set_value("prompt", "a dog")
    window.form_model.set_value("prompt", "a dog in the rain")  # two edits within the quiet time: one job
    wait_until(lambda: live.pending and live.pending[0] != first)
    second = live.pending[0]
    assert [j.job_id for j in window.jobs.jobs()] == [second], "the stale running job was not cancelled"
    window.form_model.set_value("seed", 77)
    wait_until(lambda: live.pending and live.pending[0] != second)
    newest = live.pending[0]
    assert [j.job_id for j in window.jobs.jobs()] == [newest], "the stale queued job was not cancelled"
    assert seen == {first, second, newest}

    hold.release()
    wait_until(lambda: not window.jobs.busy)
    shown = window.jobs.shown.result
    assert shown is not None and shown.key[0] == newest and shown.kind == "live"
    r = shown.request
    assert (r.prompt, r.seed, r.steps, r.batch_count) == ("a dog in the rain", 77, 4, 1)  # steps capped for live
    assert window.live.canvas.frame().kind == "final"
    assert window.jobs.results.results() == [] and window.session.strip.count() == 0
    spin(100)
    assert _pngs(window) == [], "a live picture was saved without Keep"
    assert live.model.keepable and bar.keep_button.isEnabled() and window.lab.keep_action.isEnabled()

    bar.keep_button.click()
    assert not live.model.keepable and not bar.keep_button.isEnabled()
    assert window.jobs.results.results() == [shown] and shown.kind == ""
    wait_until(lambda: shown.saved_path is not None)
    assert _pngs(window) == [Path(shown.saved_path)]
    recipe = read_parameters(shown.saved_path).build().request
    assert (recipe.prompt, recipe.seed, recipe.steps) == ("a dog in the rain", 77, 4)

    # Off: edits no longer make pictures; Generate works as ever and saves.
    bar.switch.click()
    assert not live.model.enabled
    window.form_model.set_value("prompt", "a horse")
    spin(300)
    assert not window.jobs.busy and live.pending == []


def test_live_mode_uses_one_seed_while_the_form_says_random_and_reports_a_bad_form(make_window):
    window = make_window()
    fill_form(window, steps=3)
    window.form_model.set_value("seed", "random")
    window.form_model.set_last_seed(4242)
    live = window.lab.live_mode
    live.model.set_enabled(True)
    wait_until(lambda: not window.jobs.busy)
    window.form_model.set_value("cfg", 3.0)
    wait_until(lambda: live.pending)
    wait_until(lambda: not window.jobs.busy)
    assert window.jobs.shown.result.request.seed == 4242 and window.jobs.shown.result.request.cfg == 3.0

    window.form_model.set_value("seed", "not a seed")
    assert live.update_now() is None
    assert live.model.status.startswith("Live paused:") and window.lab.live_bar.status_label.isVisibleTo(window)
    window.form_model.set_value("seed", 5)
    wait_until(lambda: live.model.status == "" and not window.jobs.busy)
    assert window.jobs.shown.result.request.seed == 5


def test_a_live_picture_more_than_half_done_finishes_and_the_newest_follows(make_window):
    hold = EngineHold(at_step=3)  # of the 4 live steps
    window = make_window(hold=hold)
    fill_form(window, steps=20, prompt="a cat")
    live = window.lab.live_mode
    shown: list[int] = []
    window.jobs.result_added.connect(lambda r: shown.append(r.key[0]))
    window.lab.live_bar.switch.click()
    first = live.pending[0]
    wait_until(lambda: hold.at_step(3) and window.jobs.progress.value == 3)
    window.form_model.set_value("prompt", "a dog")
    wait_until(lambda: len(live.pending) == 2)
    assert live.pending[0] == first, "a nearly finished live picture was thrown away"
    newest = live.pending[1]
    hold.release()
    wait_until(lambda: not window.jobs.busy)
    assert shown == [first, newest] and window.jobs.shown.result.request.prompt == "a dog"
