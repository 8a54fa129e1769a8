"""The entry points: `darkroom` opens the window, other subcommands run headless without Qt; the window shows
before torch is imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str, timeout: float = 60, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def test_importing_gui_imports_neither_qt_nor_torch():
    out = _run("""
        import sys
        import gui, gui.launcher, engine.settings
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "shiboken6", "torch", "diffusers"))
        print("HEAVY", heavy)
    """)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


def test_subcommands_go_to_the_cli_without_qt():
    out = _run("""
        import sys
        import engine.cli
        seen = []
        engine.cli.main = lambda argv: seen.append(list(argv)) or 3
        from gui.launcher import main
        rc = main(["generate", "a fox", "--steps", "2"])
        print("RC", rc, "ARGV", seen, "QT", any(m.startswith("PySide6") for m in sys.modules))
    """)
    assert out.returncode == 0, out.stderr
    assert "RC 3 ARGV [['generate', 'a fox', '--steps', '2']] QT False" in out.stdout


@pytest.mark.parametrize("argv, expected", [([], []), (["app"], []), (["app", "--x"], ["--x"])])
def test_no_arguments_or_app_open_the_window(monkeypatch, argv, expected):
    import gui.app
    import gui.launcher

    calls = []
    monkeypatch.setattr(gui.app, "run_app", lambda args, launch_t0=None: calls.append(list(args)) or 0)
    assert gui.launcher.main(argv) == 0
    assert calls == [expected]


def test_window_is_shown_before_torch_is_imported(darkroom_home):
    out = _run("""
        import sys
        from gui.app import create_application
        app = create_application()
        from gui.main_window import MainWindow
        w = MainWindow()  # starts the engine once the window has been painted
        w.show()
        from gui.testing import wait_until
        wait_until(lambda: w.first_paint_at is not None, 20)
        wait_until(lambda: w.status.device_label.text() != "", 40)
        print("SHOWN", w.first_paint_at is not None, "TORCH", w.torch_loaded_at_first_paint,
              "READY", "torch" in sys.modules and w.status.device_label.text() != "")
        w.close()
    """)
    assert out.returncode == 0, out.stderr
    assert "SHOWN True TORCH False" in out.stdout, out.stdout + out.stderr
    assert "READY True" in out.stdout, out.stdout + out.stderr  # and then the engine did warm up


def test_missing_xcb_libraries_are_only_checked_for_x11(monkeypatch):
    from gui.app import missing_xcb_packages

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert missing_xcb_packages() == []
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    import ctypes

    monkeypatch.setattr(ctypes, "CDLL", lambda name: (_ for _ in ()).throw(OSError(name)))
    if sys.platform.startswith("linux"):
        assert "libxcb-cursor0" in missing_xcb_packages()


def test_qt_binding_keeps_references_to_none():
    """PySide6 6.12.0 on Python 3.11 frees None bit by bit and the app crashes (see gui.app.qt_binding_problem).
    This fails on such an install so that it is fixed (pin PySide6-Essentials<6.12 or use Python 3.12+)."""
    from gui.app import qt_binding_problem

    assert qt_binding_problem() == ""


def test_leaving_flushes_output_and_log_and_skips_the_interpreter_teardown(tmp_path):
    log = tmp_path / "darkroom.log"
    out = _run(f"""
        import atexit, logging
        logging.basicConfig(filename={str(log)!r}, level=logging.INFO)
        atexit.register(lambda: print("TEARDOWN"))
        print("BEFORE")  # stdout is a pipe here, so this waits in a buffer
        from gui.app import leave
        leave(3)
    """)
    assert out.returncode == 3
    assert "BEFORE" in out.stdout and "TEARDOWN" not in out.stdout
    assert "leaving" in log.read_text()
