"""The Gallery tab, driven as a person would: typing, clicking keys, and what comes out of it."""

from __future__ import annotations

import dataclasses
import json

import pytest


from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from tests.gallery_fixtures import comfy_graph, make_ready, make_request, png_with_text

from engine.gallery import Gallery, gallery as gallery_module
from engine.gallery.metadata import read_png_text

PROMPTS = ["a red fox in the snow", "neon city at night", "an owl in a dark forest", "a red car", "blue mountains"]


@pytest.fixture
def filled(darkroom_home):
    g = Gallery()
    # size is H×W: 32 wide, 48 tall
    saved = [g.save(make_ready(prompt=p, seed=100 + i, size=(48, 32))) for i, p in enumerate(PROMPTS)]
    yield g, saved
    g.close()


@pytest.fixture
def view(qtbot, filled):
    from gui.gallery_view import GalleryView

    g, _ = filled
    v = GalleryView(g)
    qtbot.addWidget(v)
    v.resize(900, 600)
    with qtbot.waitSignal(v.rescan_finished, timeout=5000):  # the scan every opening starts
        v.show()
    v.activateWindow()
    qtbot.waitExposed(v)
    yield v
    v.shutdown()


def rows(v) -> list[int]:
    return [e.id for e in v.model.entries()]


def focus_grid(qtbot, v, row: int = 0):
    v.select_row(row)
    v.grid.setFocus()
    qtbot.waitUntil(lambda: v.grid.hasFocus())


def test_opens_with_every_image_newest_first_and_thumbnails_load(qtbot, view, filled):
    _, saved = filled
    assert rows(view) == [s.record.id for s in reversed(saved)]
    assert view.count_label.text() == "5 images"
    qtbot.waitUntil(view.visible_thumbnails_ready, timeout=5000)
    image = view.model.data(view.model.index(0), Qt.ItemDataRole.DecorationRole)
    assert image is not None and image.width() == 32 and image.height() == 48
    assert 0 < view.model.cache_bytes() <= 5 * 32 * 48 * 3 + 5 * 1024


def test_new_image_appears_at_once(qtbot, view, filled):
    g, _ = filled
    saved = g.save(make_ready(prompt="brand new"))
    view.image_saved(saved)
    assert rows(view)[0] == saved.record.id
    assert view.count_label.text() == "6 images"


def test_search_box_filters_with_full_text(qtbot, view, filled):
    _, saved = filled
    qtbot.keyClicks(view.search, "red")
    qtbot.waitUntil(lambda: len(rows(view)) == 2, timeout=3000)
    assert set(rows(view)) == {saved[0].record.id, saved[3].record.id}
    view.search.clear()
    qtbot.waitUntil(lambda: len(rows(view)) == 5, timeout=3000)


def test_favourite_key_and_favourites_filter(qtbot, view, filled):
    g, saved = filled
    focus_grid(qtbot, view, 1)
    target = view.current_entry().id
    qtbot.keyClick(view.grid, Qt.Key.Key_F)
    assert g.get(target).favourite
    assert view.model.entry(1).favourite
    view.favourites_only.click()
    assert rows(view) == [target]
    view.favourites_only.click()
    assert len(rows(view)) == 5
    focus_grid(qtbot, view, view.model.row_of_id(target))
    qtbot.keyClick(view.grid, Qt.Key.Key_F)
    assert not g.get(target).favourite


def test_sort_oldest_first(view, filled):
    _, saved = filled
    view.sort.setCurrentIndex(1)
    assert rows(view) == [s.record.id for s in saved]


def test_use_all_parameters_gives_back_the_identical_request(qtbot, view, filled):
    _, saved = filled
    focus_grid(qtbot, view, 2)
    expected = make_request(prompt=PROMPTS[2], seed=102, model="tiny-sd")  # the file names the model it used
    with qtbot.waitSignal(view.use_parameters, timeout=2000) as blocker:
        qtbot.keyClick(view.grid, Qt.Key.Key_U)
    assert blocker.args[0] == expected
    with qtbot.waitSignal(view.use_seed, timeout=2000) as blocker:
        qtbot.keyClick(view.grid, Qt.Key.Key_S)
    assert blocker.args == [102]


def test_use_all_parameters_of_a_comfyui_image(qtbot, view, filled):
    g, _ = filled
    (g.root / "comfy.png").write_bytes(png_with_text({"prompt": json.dumps(comfy_graph())}))
    g.rescan()
    view.refresh()
    row = next(i for i in range(view.model.rowCount()) if view.model.record(i).source == "comfyui")
    view.select_row(row)
    with qtbot.waitSignal(view.use_parameters, timeout=2000) as blocker:
        view.action_use_all.trigger()
    request = blocker.args[0]
    assert request.prompt == "beautiful scenery nature glass bottle" and request.steps == 20
    assert "seed" in view.status.text()  # the graph's seed is out of range: the user is told


def test_keyboard_navigation_and_large_view(qtbot, view, filled):
    focus_grid(qtbot, view, 0)
    qtbot.keyClick(view.grid, Qt.Key.Key_Right)
    assert view.grid.currentIndex().row() == 1
    qtbot.keyClick(view.grid, Qt.Key.Key_End)
    assert view.grid.currentIndex().row() == 4
    qtbot.keyClick(view.grid, Qt.Key.Key_Home)
    assert view.grid.currentIndex().row() == 0
    qtbot.keyClick(view.grid, Qt.Key.Key_Return)
    assert view.stack.currentWidget() is view.large
    first = view.current_record()
    assert first.prompt in view.large.info.toPlainText()
    qtbot.waitUntil(lambda: view.large.canvas.image().width() == 32, timeout=3000)
    qtbot.keyClick(view.large, Qt.Key.Key_Right)
    assert view.current_record().id == view.model.entry(1).id
    assert view.current_record().prompt in view.large.info.toPlainText()
    qtbot.keyClick(view.large, Qt.Key.Key_Escape)
    assert view.stack.currentWidget() is view.grid
    assert view.grid.currentIndex().row() == 1


def test_delete_goes_to_the_trash(qtbot, view, filled, monkeypatch):
    g, saved = filled
    trashed = []
    monkeypatch.setattr(gallery_module, "move_to_trash", lambda p: (trashed.append(p), p.unlink()))
    focus_grid(qtbot, view, 0)
    victim = view.current_record()
    qtbot.keyClick(view.grid, Qt.Key.Key_Delete)
    assert trashed == [victim.path] and not victim.path.exists()
    assert victim.id not in rows(view) and g.get(victim.id) is None
    assert view.count_label.text() == "4 images"
    assert view.grid.currentIndex().row() == 0  # the next image is selected
    assert "trash" in view.status.text()


def test_copy_image_and_parameters(qtbot, view, filled):
    focus_grid(qtbot, view, 0)
    record = view.current_record()
    view.action_copy_parameters.trigger()
    assert QGuiApplication.clipboard().text() == read_png_text(record.path).text["parameters"]
    view.action_copy_image.trigger()
    image = QGuiApplication.clipboard().image()
    assert (image.width(), image.height()) == (32, 48)


def test_export_selection_and_reveal(qtbot, view, filled, tmp_path, monkeypatch):
    import gui.gallery_view as gv

    focus_grid(qtbot, view, 0)
    view.grid.selectAll()
    dest = tmp_path / "picked"
    view.choose_export_folder = lambda: str(dest)
    view.action_export.trigger()
    assert len(list(dest.glob("*.png"))) == 5
    revealed = []
    monkeypatch.setattr(gv, "reveal_in_file_manager", revealed.append)
    view.select_row(3)
    view.action_reveal.trigger()
    assert revealed == [view.model.record(3).path]


def test_background_rescan_finds_outside_changes(qtbot, view, filled):
    g, saved = filled
    saved[0].path.unlink()
    (g.root / "new.png").write_bytes(png_with_text({"parameters": "a castle\nSteps: 5, Seed: 9, CFG scale: 3"}))
    with qtbot.waitSignal(view.rescan_finished, timeout=5000) as blocker:
        view.rescan()
    assert blocker.args[0].added == 1 and blocker.args[0].removed == 1
    assert len(rows(view)) == 5 and saved[0].record.id not in rows(view)


def test_unreadable_image_gets_a_placeholder(qtbot, view, filled):
    g, saved = filled
    saved[4].path.write_bytes(png_with_text({})[:40])  # cut short after the header
    g.rescan()
    view.refresh()
    row = view.model.row_of_id(saved[4].record.id)
    assert row == -1 or view.model.data(view.model.index(row), Qt.ItemDataRole.DecorationRole) is None


def test_thumbnail_memory_is_bounded(qtbot, darkroom_home):
    from gui.gallery_view import GalleryView

    g = Gallery()
    for i in range(60):
        g.save(make_ready(seed=i, size=(64, 64)))
    v = GalleryView(g)
    qtbot.addWidget(v)
    limit = 64 * 64 * 3 * 12  # room for twelve thumbnails; a screen shows four
    v.model._max_cache_bytes = limit
    v.resize(420, 480)
    v.show()
    qtbot.waitExposed(v)
    first_key = v.model.key(0)
    for row in range(0, 60, 2):
        v.grid.scrollTo(v.model.index(row))
        v._request_visible()
        qtbot.waitUntil(v.visible_thumbnails_ready, timeout=3000)
    assert v.model.cache_bytes() <= limit and v.model.cached_count() <= 12
    assert first_key not in v.model._cache  # the first screen's thumbnails were let go
    assert v.model.has_thumbnail(59)
    v.shutdown()
    g.close()


def test_closing_stops_every_thread(qtbot, darkroom_home):
    import threading

    from gui.gallery_view import GalleryView

    g = Gallery()
    g.save(make_ready())
    v = GalleryView(g)
    qtbot.addWidget(v)
    v.show()
    qtbot.waitUntil(lambda: v.visible_thumbnails_ready(), timeout=3000)
    assert any(t.name.startswith("darkroom-thumbnails") for t in threading.enumerate())
    v.close()
    assert not any(t.name.startswith("darkroom-") for t in threading.enumerate())
    g.close()


# -- File → Open parameters / drop --------------------------------------------------------------------------------
def test_open_parameters_from_a_darkroom_png(tmp_path):
    from gui.open_parameters import open_parameters

    ready = make_ready(prompt="exact", seed=4242, cfg=3.25, sampler="UniPC")
    path = tmp_path / "x.png"
    path.write_bytes(Gallery.encode(ready))
    result = open_parameters(path)
    assert result.ok and result.request == dataclasses.replace(ready.request, model="tiny-sd")
    assert "Darkroom" in result.message


def test_open_parameters_from_an_a1111_png_without_seed(tmp_path):
    from gui.open_parameters import open_parameters

    path = tmp_path / "a.png"
    path.write_bytes(png_with_text({"parameters": "a castle\nSteps: 12, Sampler: Euler a, CFG scale: 4, Size: 640x512"}))
    result = open_parameters(path)
    assert result.ok and result.request.prompt == "a castle" and result.request.steps == 12
    assert result.fields.keys() == {"prompt", "negative_prompt", "steps", "cfg", "width", "height", "sampler"}
    assert "AUTOMATIC1111" in result.message and "random" in result.message


@pytest.mark.parametrize("content, words", [
    (png_with_text({"Software": "x"}), "holds no generation parameters"),
    (b"\xff\xd8\xff\xe0 jpeg", "not a PNG image"),
    (png_with_text({"invokeai_metadata": "[]"}), "damaged"),
])
def test_open_parameters_says_clearly_when_there_are_none(tmp_path, content, words):
    from gui.open_parameters import open_parameters

    path = tmp_path / "img.png"
    path.write_bytes(content)
    result = open_parameters(path)
    assert not result.ok and result.request is None
    assert words in result.message and "img.png" in result.message


def test_image_paths_from_a_drop(qapp, tmp_path):
    from PySide6.QtCore import QMimeData, QUrl

    from gui.open_parameters import image_paths_from_mime

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "a.png")), QUrl("https://example.com/b.png")])
    assert image_paths_from_mime(mime) == [tmp_path / "a.png"]
    assert image_paths_from_mime(QMimeData()) == []


def test_first_index_build_message_clears_when_done(qtbot, darkroom_home):
    from gui.gallery_view import GalleryView

    g = Gallery()  # a new index: the view's first scan builds it, though the image below is indexed already
    assert g.needs_full_scan
    g.save(make_ready(prompt="snowman", seed=1))
    v = GalleryView(g)
    qtbot.addWidget(v)
    messages = []
    v.status_message.connect(messages.append)
    with qtbot.waitSignal(v.rescan_finished, timeout=5000):
        v.show()
    assert "Building the gallery index…" in messages, messages
    assert v.status.text() != "Building the gallery index…"
    v.shutdown()
    g.close()
