"""The engine is headless: importing any of it pulls in neither Qt nor the gui package."""

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import engine

ROOT = Path(__file__).resolve().parent.parent


def test_no_engine_module_imports_qt_or_gui():
    modules = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.") if not m.name.endswith("__main__")]
    assert "engine.runtime" in modules and "engine.gallery" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'gui'))\n"
        "print(bad)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_import_linter_contract_holds():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--config", "pyproject.toml"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout


def test_importing_engine_and_gui_packages_does_not_import_torch():
    code = "import sys, engine, engine.request, engine.events, engine.engine, gui; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.stdout.strip() == "False", proc.stderr


def test_the_app_and_the_command_line_do_not_import_training_or_benchmarks():
    """Training is an optional part (its dependencies are the train extra) and benchmarks are tools: neither is on
    the import path of the window, the engine or the command line (which loads `darkroom train` only to run it)."""
    code = (
        "import sys\n"
        "import gui.app, gui.launcher, gui.main_window, engine.engine, engine.runtime, engine.cli, engine.gallery\n"
        "print(sorted(m for m in sys.modules if m.startswith(('engine.train', 'engine.bench', 'benchmarks', 'emoji'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
