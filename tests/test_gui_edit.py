"""Picture editing in the window (and the gallery's ways into it and into the forward-process view): the mask editor
on the canvas, and remaking an edit from the gallery pixel for pixel (real engine, tiny random-weight model)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from engine.gallery.metadata import read_parameters
from engine.images import InputImage
from engine.request import ValidationError
from gui.edit_model import EMPTY_MASK, EditModel
from gui.mask_editor import MaskEditor, MaskLayer
from gui.testing import wait_until
from tests.window_fixtures import fill_form, generate

RNG = np.random.default_rng(3)
SOURCE = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)


# -- the mask editor ------------------------------------------------------------------------------------------------
@pytest.fixture
def editor(qtbot):
    editor = MaskEditor()
    qtbot.addWidget(editor)
    editor.resize(400, 400)
    layer = MaskLayer(64, 64)
    from gui.edit_panel import qimage_of

    editor.edit("paint", qimage_of(SOURCE), layer)
    editor.show()
    qtbot.waitExposed(editor)
    return editor


def _at(editor: MaskEditor, x: float, y: float) -> QPoint:
    """The widget position of picture pixel (x, y)."""
    rect = editor.canvas.image_rect()
    return QPoint(round(rect.left() + (x + 0.5) * rect.width() / 64), round(rect.top() + (y + 0.5) * rect.height() / 64))


def _stroke(qtbot, editor: MaskEditor, points: list[tuple[float, float]]) -> None:
    canvas = editor.canvas
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=_at(editor, *points[0]))
    for p in points[1:]:
        qtbot.mouseMove(canvas, _at(editor, *p))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=_at(editor, *points[-1]))


def test_paint_erase_undo_invert_and_clear_with_the_mouse(qtbot, editor):
    editor.size_box.setValue(4)
    editor.softness_box.setValue(0)
    layer = editor.canvas.layer
    assert layer.is_empty() and not editor.undo_button.isEnabled()

    _stroke(qtbot, editor, [(10, 32), (30, 32), (50, 32)])
    mask = layer.to_array()
    assert mask[32, 10] == 255 and mask[32, 30] == 255 and mask[32, 50] == 255  # the stroke joins its points
    assert mask[10, 30] == 0 and mask[55, 30] == 0  # and stays a 4-pixel line
    assert editor.undo_button.isEnabled()

    editor.eraser.click()
    _stroke(qtbot, editor, [(30, 32)])
    erased = layer.to_array()
    assert erased[32, 30] == 0 and erased[32, 10] == 255

    editor.undo_button.click()
    assert np.array_equal(layer.to_array(), mask)

    editor.invert_button.click()
    assert np.array_equal(layer.to_array(), 255 - mask)
    editor.clear_button.click()
    assert layer.is_empty()
    editor.undo_button.click()
    assert np.array_equal(layer.to_array(), 255 - mask)


def test_a_soft_brush_fades_out_and_keyboard_changes_the_size(qtbot, editor):
    editor.size_box.setValue(12)
    editor.softness_box.setValue(100)
    _stroke(qtbot, editor, [(32, 32)])
    mask = editor.canvas.layer.to_array()
    assert mask[32, 32] > 200 and 0 < mask[32, 40] < mask[32, 32] and mask[32, 46] == 0
    editor.canvas.setFocus()
    qtbot.keyClick(editor.canvas, Qt.Key.Key_BracketRight)
    assert editor.size_box.value() == 14


def test_mask_layer_round_trips_an_array_and_refuses_another_size():
    layer = MaskLayer(20, 10)
    mask = np.zeros((10, 20), np.uint8)
    mask[2:5, 3:9] = 255
    mask[7, 15] = 100
    layer.set_array(mask)
    assert np.array_equal(layer.to_array(), mask)
    with pytest.raises(ValueError, match="20×10"):
        layer.set_array(np.zeros((20, 10), np.uint8))


# -- the edit's parts -------------------------------------------------------------------------------------------------
def test_parts_need_paint_for_inpainting_and_pixels_for_outpainting(qapp, tmp_path):
    model = EditModel()
    assert not model.active and model.work_size() is None
    model.set_source(InputImage(SOURCE), "test", "inpaint")
    with pytest.raises(ValidationError) as info:
        model.parts(tmp_path)
    assert info.value.errors == {"mask": EMPTY_MASK}
    mask = np.zeros((64, 64), np.uint8)
    mask[8:24, 8:24] = 255
    model.mask.set_array(mask)
    parts = model.parts(tmp_path)
    assert set(parts) == {"source", "mask"} and parts["mask"].image.sha256 != parts["source"].image.sha256
    assert (tmp_path / "sources" / f"{parts['mask'].image.sha256}.png").is_file()

    model.set_options(mode="outpaint", outpaint=(0, 0, 0, 0))
    with pytest.raises(ValidationError, match="pixels"):
        model.parts(tmp_path)
    model.set_options(outpaint=(16, 0, 8, 0))
    assert model.work_size() == (80, 72) and set(model.parts(tmp_path)) == {"source", "outpaint"}

    model.clear_source()
    model.set_options(control=True)
    with pytest.raises(ValidationError, match="ControlNet model"):
        model.parts(tmp_path)


def test_a_picture_with_transparency_starts_with_its_mask(qapp):
    alpha = np.full((64, 64), 255, np.uint8)
    alpha[:10, :] = 0
    model = EditModel()
    model.set_source(InputImage(SOURCE, alpha), "cut-out", "inpaint")
    mask = model.mask.to_array()
    assert (mask[:10] == 255).all() and (mask[10:] == 0).all()


# -- the window --------------------------------------------------------------------------------------------------------
def test_send_to_inpaint_paint_generate_and_remake_from_the_gallery(make_window, qtbot):
    window = make_window()
    fill_form(window, steps=4)
    first = generate(window, saved=True)

    window.edit.send_result("inpaint", first)
    assert window.live.editing_mask and window.edit.model.options.mode == "inpaint"
    editor = window.live.mask_editor
    assert window.edit_panel.source_box.isVisible()
    # Generate with nothing painted: a message, and nothing runs.
    assert window.generate() is None and "mask is empty" in window.banner.message().text
    assert not window.jobs.busy
    mask = np.zeros((64, 64), np.uint8)
    mask[16:40, 20:52] = 255
    editor.canvas.layer.set_array(mask)
    window.edit.model.set_options(mask_blur=0, strength=0.8)
    window.form_model.set_value("seed", 99)
    edited = generate(window, saved=True)
    assert not window.live.editing_mask  # the canvas follows the job again

    source = first.ready.image
    out = edited.ready.image
    outside = mask == 0
    assert np.array_equal(out[outside], source[outside]) and not np.array_equal(out[~outside], source[~outside])
    with Image.open(edited.saved_path) as png:
        assert "Denoising strength: 0.8, Mask blur: 0" in png.text["parameters"]
    recipe = read_parameters(edited.saved_path).build().request
    assert recipe.source.strength == 0.8 and recipe.mask.blur == 0 and not recipe.source.image.path.startswith("/")

    # "Use all parameters" from the gallery brings the whole edit back, and remaking it gives the same pixels.
    window.edit.model.clear_source()
    window.form_model.set_value("seed", 5)
    window.use_parameters(recipe)
    assert window.edit.model.source is not None and np.array_equal(window.edit.model.source.rgb, source)
    assert np.array_equal(window.edit.model.mask.to_array(), mask)
    assert window.form_model.value("seed") == "99"
    again = generate(window, saved=True)
    assert np.array_equal(again.ready.image, out)


def test_restoring_an_edit_whose_source_is_gone_says_so(make_window, tmp_path):
    window = make_window()
    fill_form(window, steps=2)
    window.edit.send_file("img2img", _png(tmp_path / "photo.png"))
    edited = generate(window, saved=True)
    recipe = read_parameters(edited.saved_path).build().request
    (window.gallery.folder() / recipe.source.image.path).unlink()
    window.edit.model.clear_source()
    window.use_parameters(recipe)
    message = window.banner.message()
    assert message.level == "warning" and "source image" in message.text and "no longer in the gallery" in message.text
    assert window.edit.model.source is None and window.form_model.value("seed") == str(recipe.seed)


def _png(path, size=(96, 64)) -> str:
    Image.fromarray(RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return str(path)


def test_dropping_a_picture_on_the_canvas_starts_an_img2img_at_its_shape(make_window, tmp_path):
    window = make_window()
    path = _png(tmp_path / "wide.png", (96, 64))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(path)])
    canvas = window.live.canvas
    drop = QDropEvent(QPointF(canvas.rect().center()), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                      Qt.KeyboardModifier.NoModifier)
    canvas.dropEvent(drop)  # Qt delivers a drop only during a real drag; the handler is what is under test
    assert drop.isAccepted()
    model = window.edit.model
    assert model.source is not None and model.source.size == (96, 64) and model.options.mode == "img2img"
    w, h = window.form_model.value("width"), window.form_model.value("height")
    assert w > h and w % 8 == 0 and h % 8 == 0  # the picture's shape at about the model's native size

    (tmp_path / "broken.png").write_bytes(b"not a picture")
    assert not window.edit.send_file("img2img", tmp_path / "broken.png")
    assert window.banner.message().level == "error" and model.source.size == (96, 64)  # nothing lost


def test_send_to_hires_and_outpaint_set_their_sizes(make_window):
    window = make_window()
    fill_form(window, steps=2)
    first = generate(window, saved=True)
    window.edit.send_result("hires", first)
    model = window.edit.model
    assert model.options.hires and model.options.strength == 0.0
    window.edit.model.set_options(hires_scale=2.0, hires_strength=0.5)
    big = generate(window, saved=True)
    assert big.ready.image.shape == (128, 128, 3)
    assert read_parameters(big.saved_path).build().request.hires.scale == 2.0

    window.edit.send_result("outpaint", first)
    assert model.options.mode == "outpaint" and not model.options.hires and model.options.strength > 0
    left, right, up, down = model.options.outpaint
    assert left == right == 16 and up == down == 0
    window.form_model.set_value("steps", 2)
    wide = generate(window, saved=True)
    assert wide.ready.image.shape[1] > wide.ready.image.shape[0]
    # The original picture is kept, exactly, in the middle of the wider one.
    assert wide.ready.image.shape[:2] == (64, 96) and np.array_equal(wide.ready.image[:, 16:80], first.ready.image)


def test_session_strip_and_canvas_menus_offer_send_to(make_window):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    window = make_window()
    fill_form(window, steps=2)
    generate(window, saved=True)
    seen: list[set[str]] = []

    def read_and_close_menu():
        menu = QApplication.activePopupWidget()
        if menu is None:
            QTimer.singleShot(10, read_and_close_menu)
            return
        seen.append({a.text() for a in menu.actions()})
        menu.close()

    QTimer.singleShot(10, read_and_close_menu)
    window._canvas_menu(window.live.canvas.rect().center())
    strip = window.session.strip
    QTimer.singleShot(10, read_and_close_menu)
    strip._menu(strip.visualItemRect(strip.item(0)).center())
    assert len(seen) == 2
    for texts in seen:
        assert {"Send to image to image", "Send to inpaint", "Send to outpaint", "Send to hires fix"} <= texts


def test_gallery_send_to_inpaint_opens_the_picture_in_the_mask_editor(make_window):
    window = make_window()
    fill_form(window, steps=2, prompt="a kite")
    first = generate(window, saved=True)
    view = window.gallery_view
    wait_until(lambda: view.model.rowCount() == 1)
    window.tabs.setCurrentIndex(1)
    view.select_row(0)
    assert view.action_send_inpaint.isEnabled()
    window.form_model.set_value("prompt", "something else")
    view.action_send_inpaint.trigger()
    model = window.edit.model
    assert window.tabs.currentIndex() == 0 and window.live.editing_mask
    assert model.options.mode == "inpaint" and np.array_equal(model.source.rgb, first.ready.image)
    assert window.form_model.value("prompt") == "a kite"  # the picture's recipe came with it


def test_a_drawn_scribble_steers_through_a_controlnet_and_is_kept_in_the_recipe(make_window, tiny_controlnet_dir):
    window = make_window()
    fill_form(window, steps=2)
    plain = generate(window, saved=True)
    model = window.edit.model
    window.edit_panel.control_box.setChecked(True)
    window.edit_panel.control_source.setCurrentIndex(window.edit_panel.control_source.findData("scribble"))
    # No model chosen, then an empty scribble: each a message, and nothing runs.
    assert window.generate() is None and "ControlNet model" in window.banner.message().text
    window.edit_panel.control_model.setText(str(tiny_controlnet_dir))
    assert window.generate() is None and "scribble is empty" in window.banner.message().text
    window.edit_panel.control_draw.click()
    assert window.live.editing_mask and window.live.mask_editor.canvas.layer is model.scribble
    lines = np.zeros((64, 64), np.uint8)
    lines[30:34, 4:60] = 255
    model.scribble.set_array(lines)
    steered = generate(window, saved=True)
    assert not np.array_equal(steered.ready.image, plain.ready.image)
    recipe = read_parameters(steered.saved_path).build().request
    (control,) = recipe.controls
    assert control.model == tiny_controlnet_dir.name and control.weight == 1.0  # named, never located
    with Image.open(window.gallery.folder() / control.image.path) as stored:
        assert np.array_equal(np.asarray(stored.convert("L")), lines)


def test_gallery_opens_an_image_in_the_forward_process_view(make_window):
    window = make_window()
    fill_form(window, steps=2)
    first = generate(window, saved=True)
    view = window.gallery_view
    wait_until(lambda: view.model.rowCount() == 1)
    view.select_row(0)
    view.action_forward.trigger()
    dialog = window.lab.forward_dialog
    assert dialog is not None and dialog.isVisible()
    assert np.array_equal(window.lab.forward.picture, first.ready.image)
    dialog.close()


def test_a_picture_sent_to_edit_brings_its_whole_section_into_view(make_window, qtbot, tmp_path):
    window = make_window()
    window.resize(1100, 600)  # short enough that the form scrolls
    window.show()
    qtbot.waitExposed(window)
    scroll = window.form_panel._scroll
    assert scroll.verticalScrollBar().maximum() > 0
    window.tabs.setCurrentIndex(1)  # sent from the gallery, whose tab hides the form until the picture arrives
    Image.fromarray(SOURCE).save(tmp_path / "source.png")
    window.send_to_edit("img2img", tmp_path / "source.png", None)
    box = window.edit_panel.source_box

    def in_view() -> bool:
        top = box.mapTo(scroll.viewport(), box.rect().topLeft()).y()
        return top >= 0 and top + box.height() <= scroll.viewport().height()

    qtbot.waitUntil(in_view, timeout=3000)
