"""The first launch's welcome dialog (device, gallery folder with Change…), the Help menu's log file and About
with versions, and the window started as the bundle starts it (signals close it cleanly)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from engine import paths
from engine import settings as settings_mod
from engine.events import StatusChanged
from gui import help_menu, welcome

ROOT = Path(__file__).resolve().parent.parent


def test_the_welcome_is_for_the_first_launch_only(monkeypatch):
    monkeypatch.delenv(welcome.NO_WELCOME_ENV, raising=False)
    assert welcome.wanted(first_run=True)
    assert not welcome.wanted(first_run=False)
    monkeypatch.setenv(welcome.NO_WELCOME_ENV, "1")
    assert not welcome.wanted(first_run=True)


def test_the_welcome_shows_the_device_and_the_folder_and_changes_the_folder(qtbot, tmp_path):
    chosen = tmp_path / "My pictures"
    dialog = welcome.WelcomeDialog(tmp_path / "gallery", choose_directory=lambda *a: str(chosen))
    qtbot.addWidget(dialog)
    assert dialog.device_label.text() == welcome.DEVICE_PENDING
    assert dialog.folder_label.text() == str(tmp_path / "gallery")
    dialog.show_engine_status(StatusChanged("Starting the engine…", busy=True))  # no device yet: unchanged
    assert dialog.device_label.text() == welcome.DEVICE_PENDING
    dialog.show_engine_status(StatusChanged("Ready", device="CPU", dtype="float32"))
    assert dialog.device_label.text() == "CPU · float32"
    assert dialog.chosen_folder() is None
    dialog.change_button.click()
    assert dialog.folder_label.text() == str(chosen) and dialog.chosen_folder() == chosen


def test_greeting_over_the_window_follows_the_engine_and_saves_the_choice(make_window, tmp_path, qtbot):
    window = make_window(start=False)
    assert not settings_mod.settings_path().exists()
    dialog = welcome.greet(window)
    assert dialog.isVisible() and dialog.parent() is window
    window.bridge.status_changed.emit(StatusChanged("Ready", device="CUDA (Test GPU)", dtype="float16"))
    assert dialog.device_label.text() == "CUDA (Test GPU) · float16"
    dialog._choose_directory = lambda *a: str(tmp_path / "chosen")
    dialog.change_button.click()
    dialog.accept()
    qtbot.waitUntil(lambda: not dialog.isVisible())
    assert window.gallery.folder() == tmp_path / "chosen"
    saved, _ = settings_mod.load()
    assert saved.gallery_dir == str(tmp_path / "chosen")  # and the next launch is not a first one


def test_about_lists_versions_and_the_device(make_window):
    window = make_window(start=False)
    window.status.device_label.setText("CPU · float32")
    html = help_menu.about_html(help_menu.device_in_use(window))
    for part in ("Darkroom", "torch", "diffusers", "Python", "CPU · float32", str(paths.log_file())):
        assert part in html
    assert "not known yet" in help_menu.about_html("")


def test_help_menu_has_open_log_file(make_window, monkeypatch):
    window = make_window(start=False)
    help_entries = [a.text() for m in window.menuBar().actions() if m.text() == "&Help" for a in m.menu().actions()]
    assert "Open &log file" in help_entries and "&About Darkroom" in help_entries
    shown = []
    monkeypatch.setattr(QMessageBox, "information", lambda parent, title, text: shown.append(text))
    assert not help_menu.open_log_file(window, open_url=lambda url: True)  # no log yet: says where it will be
    assert "no log there yet" in shown[-1]
    paths.log_file().parent.mkdir(parents=True)
    paths.log_file().write_text("hello\n")
    opened = []
    assert help_menu.open_log_file(window, open_url=lambda url: opened.append(url.toLocalFile()) or True)
    assert opened == [str(paths.log_file())]


def _start_app(home: Path, *args: str, **env: str) -> subprocess.Popen:
    full = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "DARKROOM_HOME": str(home), "HF_HUB_OFFLINE": "1",
            "DARKROOM_REPORT_STARTUP": "1", **env}
    return subprocess.Popen([sys.executable, "-m", "gui.launcher", *args], cwd=ROOT, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text(encoding="utf-8") if path.exists() else ""
        if text in content:
            return content
        if proc.poll() is not None:
            pytest.fail(f"the app ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{text!r} never appeared in {path}")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_closes_the_window_cleanly_and_open_parameters_fills_the_form(tmp_path):
    """As the desktop entry's "Open parameters" starts it: the window opens with the picture's parameters, and
    SIGTERM closes it the way Quit does (the form, filled from the picture, is saved in the settings)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    picture = tmp_path / "from another tool.png"
    info = PngInfo()
    info.add_text("parameters", "a lighthouse at dusk\nSteps: 7, Sampler: Euler, CFG scale: 6, Seed: 4242, Size: 64x64")
    Image.new("RGB", (64, 64), "navy").save(picture, pnginfo=info)
    home = tmp_path / "home"
    marks = tmp_path / "marks.jsonl"
    proc = _start_app(home, str(picture), DARKROOM_TIMING_LOG=str(marks), DARKROOM_TIMING_SCENARIO="watch")
    _wait_for(marks, '"shown"', proc)
    time.sleep(0.5)  # a first launch: the welcome dialog is open over the window, and must not keep it alive
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    saved, problem = settings_mod.load(home / "config" / "settings.json")  # written on the way out: a clean close
    assert problem == "" and (home / "config" / "settings.json").is_file()
    assert saved.generation["prompt"] == "a lighthouse at dusk" and str(saved.generation["seed"]) == "4242"
    log = (home / "logs" / "darkroom.log").read_text(encoding="utf-8")
    assert "closing on signal" in log and "leaving" in log
