"""packaging/bootstrap.py decides what to install from files alone, and launches by replacing itself."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def boot(tmp_path, monkeypatch):
    """The bootstrap module, pointed at a fake checkout whose venv has a python and torch's metadata."""
    spec = importlib.util.spec_from_file_location("darkroom_bootstrap", ROOT / "packaging" / "bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = tmp_path / "checkout"
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "python").write_text("")
    (root / ".venv" / "lib" / "python3.11" / "site-packages" / "torch-2.13.0.dist-info").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'darkroom'\n")
    monkeypatch.setattr(module, "ROOT", root)
    monkeypatch.setattr(module, "VENV", root / ".venv")
    monkeypatch.setattr(module.subprocess, "run", lambda *a, **k: pytest.fail(f"ran a subprocess: {a}"))
    monkeypatch.setattr(module.subprocess, "call", lambda *a, **k: pytest.fail(f"ran a subprocess: {a}"))
    module.launched = []
    monkeypatch.setattr(module.os, "execv", lambda path, argv: module.launched.append((path, argv, None)))
    monkeypatch.setattr(module.os, "execve", lambda path, argv, env: module.launched.append((path, argv, env)))
    module.installed = []
    monkeypatch.setattr(module, "pip", lambda *args: module.installed.append(args))
    return module


@pytest.mark.parametrize("venv_exists, torch_installed, stamp, expected", [
    (False, False, "", ["create venv", "install torch", "install darkroom"]),
    (True, False, "", ["install torch", "install darkroom"]),
    (True, True, "", ["install darkroom"]),
    (True, True, "old digest", ["install darkroom"]),
    (True, True, "digest", []),
    (True, False, "digest", []),  # a current stamp means torch was installed with it: no need to look
])
def test_plan(boot, venv_exists, torch_installed, stamp, expected):
    assert boot.plan_setup(venv_exists=venv_exists, torch_installed=torch_installed, stamp=stamp,
                           digest="digest") == expected


def test_torch_is_found_from_its_metadata(boot, tmp_path):
    assert boot.has_torch()
    assert not boot.has_torch(tmp_path / "empty-venv")


def test_a_ready_venv_launches_the_app_in_place_without_subprocesses(boot):
    boot.stamp_path(()).write_text(boot.project_digest())
    boot.main(["--steps", "2"])
    python = str(boot.VENV / "bin" / "python")
    assert boot.launched == [(python, [python, "-m", "gui.launcher", "--steps", "2"], None)]
    assert boot.installed == []


def test_a_changed_pyproject_reinstalls_once(boot, monkeypatch):
    monkeypatch.setattr(boot, "missing_qt_libraries", lambda: [])
    boot.stamp_path(()).write_text("an older pyproject")
    boot.main([])
    assert boot.installed == [("-e", str(boot.ROOT))]
    assert boot.stamp_path(()).read_text() == boot.project_digest()
    boot.main(["run"])
    assert len(boot.installed) == 1 and len(boot.launched) == 2


def test_the_test_command_installs_the_test_train_and_bundle_extras(boot, monkeypatch):
    monkeypatch.setattr(boot, "EMOJI_FONT", __file__)  # present: nothing to apt-get
    monkeypatch.setattr(boot, "missing_qt_libraries", lambda: [])
    monkeypatch.chdir(boot.ROOT)
    boot.main(["test", "-q"])
    assert boot.installed == [("-e", f"{boot.ROOT}[test,train,bundle]")]
    python = str(boot.VENV / "bin" / "python")
    (path, argv, env), = boot.launched
    assert argv == [python, "-m", "pytest", "-q"] and env["QT_QPA_PLATFORM"] == "offscreen"
    assert env["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize("xvfb", [True, False])
def test_the_test_command_installs_qt_libraries_only_for_a_window_test_under_xvfb(boot, monkeypatch, xvfb):
    monkeypatch.setattr(boot, "EMOJI_FONT", __file__)
    monkeypatch.setattr(boot.sys, "platform", "linux")
    monkeypatch.setattr(boot.shutil, "which", lambda name: "/usr/bin/Xvfb" if xvfb and name == "Xvfb" else None)
    monkeypatch.setattr(boot, "missing_qt_libraries", lambda: ["libxcb-icccm4", "libxcb-keysyms1"])
    asked = []
    monkeypatch.setattr(boot, "apt_install", lambda packages, why: asked.append(packages))
    monkeypatch.chdir(boot.ROOT)
    boot.main(["test", "-q"])
    assert asked == ([["libxcb-icccm4", "libxcb-keysyms1"]] if xvfb else [])
    assert len(boot.launched) == 1


def test_ci_runs_the_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    assert "python3 packaging/bootstrap.py test" in script
    assert "-m slow tests/test_bundle.py" in script  # the bundle's end-to-end check


def test_pyproject_keeps_training_out_of_the_core_dependencies():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(dep.startswith("emoji") for dep in project["dependencies"])
    assert any(dep.startswith("emoji") for dep in project["optional-dependencies"]["train"])


def test_help_runs_without_a_venv():
    proc = subprocess.run([sys.executable, str(ROOT / "packaging" / "bootstrap.py"), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "packaging/bootstrap.py test" in proc.stdout
