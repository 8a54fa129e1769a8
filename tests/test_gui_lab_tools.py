"""The Diffusion Lab in the window, part two (real engine, tiny random-weight model): the forward process view
against its formula, the compare grid (expansion, axis labels, every cell and the grid saved with their recipes)
and the guidance view. Nothing here is timed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from engine.gallery.metadata import read_parameters
from gui.testing import spin, wait_until
from tests.window_fixtures import fill_form, generate, pixels


# -- forward process --------------------------------------------------------------------------------------------------
def test_forward_process_shows_x_t_of_the_formula_with_its_schedule_plots(make_window, tiny_model_dir):
    import torch
    from diffusers import DDIMScheduler

    from engine.devices import choose_device
    from engine.loader import load_model
    from engine.models import resolve

    window = make_window()
    fill_form(window, steps=4)
    result = generate(window)
    window.edit.model.set_options(strength=0.5)
    lab = window.lab
    dialog = lab.show_forward(result)
    model = lab.forward
    wait_until(lambda: model.frame is not None)
    assert model.frame.t == 500 and dialog.slider.maximum() == 999

    dialog.slider.setValue(100)
    dialog.slider.setValue(250)  # dragging: only the newest position is asked for
    wait_until(lambda: model.frame.t == 250 and model.pending is None)

    config = json.loads((tiny_model_dir / "scheduler" / "scheduler_config.json").read_text())
    betas = np.linspace(math.sqrt(config["beta_start"]), math.sqrt(config["beta_end"]), 1000) ** 2  # scaled_linear
    alphas = np.cumprod(1 - betas)
    frame = model.frame
    assert frame.signal == pytest.approx(math.sqrt(alphas[250]), abs=1e-9)
    assert frame.noise == pytest.approx(math.sqrt(1 - alphas[250]), abs=1e-9)
    assert np.allclose(dialog.beta_plot.values, betas) and np.allclose(dialog.alpha_plot.values, alphas)
    assert np.allclose(dialog.snr_plot.values, alphas / (1 - alphas))
    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(4)
    start = int(scheduler.timesteps[4 - 2])  # strength 0.5 of 4 steps: the last 2 run
    for plot in dialog.plots:
        assert (plot.marker, plot.start) == (250, start)
    assert dialog.numbers.text().startswith(f"t = 250:  x_t = {math.sqrt(alphas[250]):.3f}·x0")

    # The picture shown is x_t = √ᾱ·x0 + √(1−ᾱ)·ε (ε from the seed) decoded by the model's VAE.
    loaded = load_model(resolve(str(tiny_model_dir)), choose_device("cpu"))
    x0 = loaded.family.encode_image(result.ready.image).float().numpy()
    eps = np.random.default_rng(0).standard_normal(x0.shape).astype(np.float32)
    xt = (math.sqrt(alphas[250]) * x0 + math.sqrt(1 - alphas[250]) * eps).astype(np.float32)
    expected, _ = loaded.family.decode(torch.from_numpy(xt))
    assert np.abs(pixels(model.image).astype(int) - expected.astype(int)).max() <= 1

    # The edit's strength moves the img2img marker; another ε seed gives another picture.
    window.edit.model.set_options(strength=1.0)
    assert dialog.alpha_plot.start == int(scheduler.timesteps[0])
    before = pixels(model.image).copy()
    dialog.seed_box.setValue(3)
    wait_until(lambda: model.pending is None and not np.array_equal(pixels(model.image), before))
    dialog.close()


def test_forward_process_of_a_file_and_of_an_unreadable_one(make_window, tmp_path):
    window = make_window()
    dialog = window.lab.show_forward()
    assert "Open a picture" in dialog.status.text()
    assert not dialog.use_current_picture()
    (tmp_path / "bad.png").write_bytes(b"not a picture")
    assert not dialog.open_picture(tmp_path / "bad.png") and dialog.status.text()
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(tmp_path / "grey.png")
    assert dialog.open_picture(tmp_path / "grey.png")
    wait_until(lambda: window.lab.forward.frame is not None)
    assert dialog.picture_label.text() == "Picture: grey.png" and window.lab.forward.image.width() == 64


# -- compare grid -----------------------------------------------------------------------------------------------------
def _axes(dialog, *specs: tuple[str, str]) -> None:
    for i, (combo, edit) in enumerate(zip(dialog.names, dialog.values)):
        name, values = specs[i] if i < len(specs) else ("cfg", "")
        combo.setCurrentText(name)
        edit.setText(values)


def test_compare_grid_fills_in_and_saves_every_cell_and_the_grid_with_their_recipes(make_window):
    window = make_window()
    fill_form(window, steps=2, prompt="a red apple", seed=10)
    dialog = window.lab.show_grid()
    run = window.lab.grid
    previews, saved = [], []
    run.preview_changed.connect(previews.append)
    run.saved.connect(saved.append)
    _axes(dialog, ("cfg", "3, 5, 7"), ("prompt", "red, green"))
    assert dialog.make()
    assert len(window.jobs.jobs()) == 6 and not dialog.make_button.isEnabled()
    assert dialog.header.text() == "X: CFG scale = 3, 5, 7   ·   Y: Prompt S/R = red, green"
    wait_until(lambda: saved and len(run.cell_paths) == 6)

    assert len(previews) == 7  # empty, then one more cell at a time
    assert dialog.progress.text() == f"6 of 6 pictures · grid saved as {saved[0].rsplit('/', 1)[-1]}"
    assert dialog.save_button.isEnabled() and dialog.make_button.isEnabled()
    for (x, y), path in run.cell_paths.items():
        recipe = read_parameters(path).build().request
        assert recipe.cfg == (3.0, 5.0, 7.0)[x] and recipe.prompt == ("a red apple", "a green apple")[y]
        assert (recipe.seed, recipe.steps, recipe.batch_count) == (10, 2, 1)
        with Image.open(path) as png:
            assert np.array_equal(np.asarray(png.convert("RGB")), run.ready[(x, y)].image)
    # The grid: labelled (a row of x labels above, a column of y labels left), the first cell's recipe.
    grid = run.grid
    assert grid.shape[1] > 3 * 64 and grid.shape[0] > 2 * 64
    with Image.open(saved[0]) as png:
        assert png.size == (grid.shape[1], grid.shape[0])
    first = read_parameters(saved[0]).build().request
    assert (first.cfg, first.prompt, first.seed) == (3.0, "a red apple", 10)
    assert len(list(window.gallery.folder().rglob("*.png"))) == 7  # each cell once, and the grid
    assert {r.kind for r in window.jobs.results.results()} == {"grid"} and len(window.jobs.results) == 6


def test_compare_grid_refuses_bad_axes_and_can_be_cancelled(make_window):
    from tests.window_fixtures import EngineHold

    hold = EngineHold(at_step=1)
    window = make_window(hold=hold)
    fill_form(window, steps=3)
    dialog = window.lab.show_grid()
    _axes(dialog, ("cfg", "3, lots"))
    assert not dialog.make() and "CFG scale must be a number" in dialog.error.text() and not window.jobs.busy
    _axes(dialog, ("cfg", "3, 5"), ("seed", ""), ("steps", "2, 3"))
    assert not dialog.make() and "in order" in dialog.error.text()
    _axes(dialog, ("colour", "3"))
    assert not dialog.make() and "cannot be an axis" in dialog.error.text()

    _axes(dialog, ("seed", "1, 2, 3"))
    assert dialog.make()
    wait_until(lambda: hold.at_step(1))
    dialog.cancel_button.click()
    assert not window.jobs.busy and not window.lab.grid.running
    assert "not finished" in dialog.error.text() and window.lab.grid.grid is None
    hold.release()
    spin(100)
    assert not list(window.gallery.folder().rglob("*.png"))


# -- guidance ---------------------------------------------------------------------------------------------------------
def test_guidance_view_shows_both_guesses_and_their_scaled_difference_at_a_step(make_window):
    window = make_window()
    fill_form(window, steps=4)
    result = generate(window)
    dialog = window.lab.show_guidance()
    model = window.lab.guidance
    assert model.result is result and dialog.step_box.maximum() == 4
    dialog.step_box.setValue(2)
    dialog.inspect_button.click()
    wait_until(lambda: model.capture is not None)
    g = model.capture
    assert (g.step, g.total, g.cfg) == (2, 4, result.request.cfg) and g.term_rms > 0
    # The guided guess is the x0 the sampler went on with: the replay frame of that step.
    assert np.abs(g.guided.astype(int) - result.replay[1].astype(int)).max() <= 1
    assert not np.array_equal(g.uncond, g.cond)
    for label in dialog.images.values():
        assert not label.pixmap().isNull()
    assert dialog.status.text().startswith("Step 2 of 4, CFG 7")
    assert len(window.jobs.results) == 1 and window.live.canvas.frame().job_id == result.key[0]  # a probe, unseen

    fill_form(window, steps=2, seed=3)
    window.form_model.set_value("cfg", 1.0)
    unguided = generate(window)
    window.lab.show_guidance(unguided)
    assert model.inspect(1) is None and "CFG is 1" in dialog.status.text()
    assert all(label.pixmap().isNull() for label in dialog.images.values())


def test_the_grid_is_enlarged_by_whole_factors_to_fit_its_view_and_a_large_one_scrolls(qtbot):
    from PySide6.QtCore import QSize
    from PySide6.QtGui import QColor, QImage
    from PySide6.QtWidgets import QScrollArea

    from gui.lab_grid import GridPicture

    scroll = QScrollArea()
    qtbot.addWidget(scroll)
    picture = GridPicture(scroll)
    scroll.setWidget(picture)
    scroll.setWidgetResizable(True)
    scroll.resize(700, 500)
    scroll.show()
    qtbot.waitExposed(scroll)
    small = QImage(192, 84, QImage.Format.Format_RGB888)
    small.fill(QColor(200, 30, 30))
    small.setPixelColor(0, 0, QColor(0, 0, 255))
    picture.show_image(small)
    room = scroll.viewport().size()
    expected = min(room.width() // 192, room.height() // 84)
    assert expected >= 2 and picture.factor == expected
    assert picture.pixmap().size() == QSize(192 * expected, 84 * expected)
    image = picture.pixmap().toImage()
    assert image.pixelColor(expected - 1, expected - 1) == QColor(0, 0, 255)  # each pixel a sharp block
    assert image.pixelColor(expected, expected) == QColor(200, 30, 30)

    scroll.resize(scroll.width() + 400, scroll.height() + 200)  # a bigger view: a bigger factor
    qtbot.waitUntil(lambda: picture.factor > expected)

    large = QImage(2000, 1200, QImage.Format.Format_RGB888)
    large.fill(QColor(30, 30, 200))
    picture.show_image(large)
    assert picture.factor == 1 and picture.pixmap().size() == QSize(2000, 1200)
    qtbot.waitUntil(lambda: scroll.horizontalScrollBar().maximum() > 0)  # shown as it is, scrolled
