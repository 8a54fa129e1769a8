"""The model library window: the list, adding and removing, and a download with progress and Cancel from a fake
Hub on localhost."""

from __future__ import annotations

import threading

import pytest

from engine.settings import Settings
from gui.models_controller import ModelsController
from gui.models_dialog import ModelsDialog
from gui.testing import wait_until
from gui.viewmodel import FormModel
from tests.fake_hub import repo_of, serving


@pytest.fixture
def dialog(qtbot, tmp_path):
    form = FormModel()
    models = ModelsController(Settings(), form)
    models.refresh()
    dialog = ModelsDialog(models, str(tmp_path))
    qtbot.addWidget(dialog)
    dialog.show()
    yield dialog
    dialog.close()
    assert not dialog.downloading


def test_the_list_shows_family_precision_size_and_source(dialog, tiny_model_dir):
    row = dialog.names().index("darkroom-emoji")
    assert [dialog.table.item(row, c).text() for c in (2, 4)] == ["fp16", "bundled with Darkroom"]
    assert not dialog.remove.isEnabled()
    assert dialog._models.add_path(tiny_model_dir)
    row = dialog.names().index(tiny_model_dir.name)
    assert dialog.table.item(row, 1).text() == "Stable Diffusion 1.x/2.x"
    dialog.table.selectRow(row)
    assert dialog.remove.isEnabled()
    dialog.remove.click()
    assert tiny_model_dir.name not in dialog.names()


def test_a_bad_id_is_explained_and_nothing_starts(dialog):
    dialog.repo.setText("../../etc")
    dialog.download.click()
    assert not dialog.downloading and "not a Hugging Face model id" in dialog.status.text()


def test_download_with_progress_then_the_model_is_in_the_menu(dialog, monkeypatch, tmp_path, tiny_model_dir):
    with serving(monkeypatch, tmp_path / "hf-cache", {"someone/tiny-sd": repo_of(tiny_model_dir)}):
        formats: list[str] = []
        dialog._progress.connect(lambda *a: formats.append(dialog.bar.format()))

        # Cancelled before the first byte (as if Cancel were pressed at once): a message, nothing listed.
        dialog.repo.setText("someone/tiny-sd")
        cancelled = threading.Event()
        cancelled.set()
        cancelled.clear = lambda: None
        dialog._cancel = cancelled
        dialog.download.click()
        wait_until(lambda: not dialog.downloading and dialog.download.isEnabled())
        assert "cancelled" in dialog.status.text() and "tiny-sd" not in dialog.names()

        dialog._cancel = threading.Event()
        dialog.download.click()
        assert dialog.downloading and not dialog.download.isEnabled() and dialog.cancel.isEnabled()
        wait_until(lambda: not dialog.downloading and dialog.download.isEnabled(), 60)
    assert dialog.status.text() == "Downloaded someone/tiny-sd.", dialog.status.text()
    assert dialog.bar.value() == 1000 and any(" of " in f and "/s" in f for f in formats)
    assert "tiny-sd" in dialog.names()
    assert any(c.label == "tiny-sd" for c in dialog._models.choices())


def test_the_window_opens_the_library_from_the_add_model_menu(make_window, tiny_model_dir):
    window = make_window(start=False)
    action = next(a for a in window._add_model_menu.actions() if a.text().startswith("Model library"))
    action.trigger()
    dialog = window.findChild(ModelsDialog)
    assert dialog is not None and dialog.isVisible() and tiny_model_dir.name in dialog.names()
    dialog.close()
