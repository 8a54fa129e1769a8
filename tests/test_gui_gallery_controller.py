"""The gallery controller without a window: autosave, Save as (also for older pictures kept only as thumbnails),
switching folders, and finishing queued saves on shutdown."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QImage

from engine.errors import DarkroomError
from engine.events import ImageReady
from engine.gallery import Gallery, read_parameters
from engine.settings import Settings
from gui.gallery_controller import GalleryController, error_text, open_gallery
from gui.results import Result
from gui.testing import wait_until
from tests.gallery_fixtures import make_ready


def _result(ready: ImageReady) -> Result:
    h, w, _ = ready.image.shape
    image = QImage(np.ascontiguousarray(ready.image).data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return Result.from_ready(ready, image)


@pytest.fixture
def controller(qapp, tmp_path):
    settings = Settings()
    c = GalleryController(settings, Gallery(tmp_path / "gallery"))
    yield c
    c.shutdown()


def test_saves_while_autosave_is_on_and_reports_each_save(controller, tmp_path):
    saved = []
    controller.saved.connect(lambda ready, s: saved.append(s))
    assert controller.save(_result(make_ready(seed=1)))
    wait_until(lambda: len(saved) == 1)
    assert saved[0].path.is_file() and saved[0].record is not None
    controller.set_autosave(False)
    assert controller.gallery.autosave is False and controller.autosave is False
    assert not controller.save(_result(make_ready(seed=2)))
    assert controller.save(_result(make_ready(seed=3)), force=True)
    wait_until(lambda: len(saved) == 2)
    assert [read_parameters(s.path).fields["seed"] for s in saved] == [1, 3]


def test_a_failed_save_says_why_in_plain_words(qapp, tmp_path):
    class FullDisk(Gallery):
        def save(self, ready):
            raise OSError(28, "No space left on device")

    c = GalleryController(Settings(), FullDisk(tmp_path / "gallery"))
    failed = []
    c.save_failed.connect(lambda ready, message, details: failed.append((ready.request.seed, message, details)))
    c.save(_result(make_ready(seed=5)))
    wait_until(lambda: bool(failed))
    c.shutdown()
    assert failed[0][:2] == (5, "No space left on device.") and "OSError" in failed[0][2]
    assert error_text(DarkroomError("Plain words.", "tech")) == ("Plain words.", "tech")
    assert error_text(ValueError())[0] == "ValueError"


def test_save_as_writes_the_parameters_also_for_an_older_picture(controller, tmp_path):
    result = _result(make_ready(seed=42))
    first = tmp_path / "out" / "a.png"
    first.parent.mkdir()
    controller.save_as(result, first)
    assert read_parameters(first).fields["seed"] == 42
    result.ready, result.image, result.saved_path = None, None, str(first)  # trimmed, but saved
    second = tmp_path / "out" / "b.png"
    controller.save_as(result, second)
    assert second.read_bytes() == first.read_bytes()
    result.saved_path = None  # trimmed and never saved: nothing to write
    with pytest.raises(DarkroomError, match="Only a thumbnail"):
        controller.save_as(result, tmp_path / "out" / "c.png")
    with pytest.raises(DarkroomError):
        controller.save_as(_result(make_ready()), tmp_path / "no such folder" / "d.png")


def test_save_as_without_a_gallery_still_keeps_the_parameters(qapp, tmp_path):
    c = GalleryController(Settings(), None)
    assert c.gallery is None and not c.save(_result(make_ready()))
    target = tmp_path / "x.png"
    c.save_as(_result(make_ready(seed=9)), target)
    assert read_parameters(target).fields["seed"] == 9
    c.shutdown()


def test_switching_folders_saves_into_the_new_one(controller, tmp_path, monkeypatch):
    changed = []
    controller.gallery_changed.connect(changed.append)
    old = controller.gallery
    ok, error = controller.set_folder(tmp_path / "elsewhere")
    assert ok and error == "" and changed == [controller.gallery] and controller.gallery is not old
    assert controller.folder() == tmp_path / "elsewhere"
    saved = []
    controller.saved.connect(lambda ready, s: saved.append(s.path))
    controller.save(_result(make_ready()))
    wait_until(lambda: bool(saved))
    assert (tmp_path / "elsewhere") in saved[0].parents

    def broken(root):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr("gui.gallery_controller.Gallery", broken)
    ok, error = controller.set_folder(tmp_path / "locked")
    assert not ok and "Permission denied" in error and controller.folder() == tmp_path / "elsewhere"


def test_shutdown_finishes_queued_saves(qapp, tmp_path):
    c = GalleryController(Settings(), Gallery(tmp_path / "gallery"))
    for seed in range(3):
        c.save(_result(make_ready(seed=seed)))
    c.shutdown()
    c.shutdown()
    assert len(list((tmp_path / "gallery").rglob("*.png"))) == 3 and not c.saving
    assert not c.save(_result(make_ready(seed=9)))


def test_open_gallery_opens_the_folder_given(qapp, tmp_path):
    gallery, error = open_gallery(tmp_path / "g")
    assert gallery is not None and error == "" and gallery.root == tmp_path / "g"
    gallery.close()
