#!/usr/bin/env python3
"""Set up Darkroom in ./.venv and start it — the one command a fresh clone needs.

    python3 packaging/bootstrap.py          # set up (first time only) and open the app
    python3 packaging/bootstrap.py test     # set up with the test tools and run the whole test suite
    python3 packaging/bootstrap.py test -k engine   # extra arguments go to pytest
    python3 packaging/bootstrap.py shortcut # Linux: add Darkroom to the desktop's application menu

Needs Python 3.11 or newer and the package index. PyTorch is installed only when the virtual environment has
none, so a GPU build installed there beforehand is kept.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
TORCH = "torch==2.13.0"
EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
# Libraries Qt's xcb platform plugin needs on Linux that minimal desktops and servers often lack.
QT_LINUX_LIBS = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
}


def say(text: str) -> None:
    print(f"[darkroom setup] {text}", flush=True)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def pip(*args: str) -> None:
    subprocess.run([str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", *args], check=True)


def ensure_environment(extras: str) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"Darkroom needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if not venv_python().exists():
        say(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    has_torch = subprocess.run([str(venv_python()), "-c", "import torch"], capture_output=True).returncode == 0
    if not has_torch:
        say(f"installing {TORCH} (a few minutes the first time)")
        pip(TORCH)
    stamp = VENV / f".darkroom-installed-{extras or 'app'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        say("installing Darkroom and its libraries")
        pip("-e", f"{ROOT}[{extras}]" if extras else str(ROOT))
        stamp.write_text(digest)


def missing_qt_libraries() -> list[str]:
    if not sys.platform.startswith("linux") or not shutil.which("ldconfig"):
        return []
    listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    return [pkg for lib, pkg in QT_LINUX_LIBS.items() if lib not in listing]


def apt_install(packages: list[str], why: str) -> None:
    """Install Debian packages when running as root with apt (containers, CI); otherwise say what to run."""
    if not packages:
        return
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        say(f"installing {' '.join(packages)} ({why})")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        if subprocess.run(["apt-get", "install", "-y", "-qq", *packages], env=env, capture_output=True).returncode == 0:
            return
    say(f"{why}; install with:  sudo apt-get install {' '.join(packages)}")


def run_app(args: list[str]) -> int:
    ensure_environment("")
    if not os.environ.get("QT_QPA_PLATFORM"):
        apt_install(missing_qt_libraries(), "Qt needs these system libraries to open a window on Linux")
    return subprocess.call([str(venv_python()), "-m", "gui.launcher", *args], cwd=ROOT)


def run_tests(args: list[str]) -> int:
    ensure_environment("test")
    if sys.platform.startswith("linux") and not Path(EMOJI_FONT).is_file():
        apt_install(["fonts-noto-color-emoji"], "the emoji dataset tests render the Noto Color Emoji font")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1")
    return subprocess.call([str(venv_python()), "-m", "pytest", *args], cwd=ROOT, env=env)


def install_shortcut() -> int:
    """Write a freedesktop.org launcher for this checkout into the user's application menu (Linux)."""
    if not sys.platform.startswith("linux"):
        say("the shortcut command is for Linux desktops; on other systems run darkroom-app from .venv")
        return 1
    ensure_environment("")
    apps = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "applications"
    apps.mkdir(parents=True, exist_ok=True)
    launcher = VENV / "bin" / "darkroom-app"
    icon = ROOT / "resources" / "icons" / "darkroom.svg"
    entry = apps / "darkroom.desktop"
    entry.write_text(
        "[Desktop Entry]\nType=Application\nName=Darkroom\nGenericName=Image generator\n"
        "Comment=Watch pictures develop out of noise\n"
        f"Exec={launcher}\nIcon={icon}\nTerminal=false\nCategories=Graphics;\n",
        encoding="utf-8",
    )
    say(f"added {entry}")
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv and argv[0] == "test":
        return run_tests(argv[1:])
    if argv and argv[0] == "shortcut":
        return install_shortcut()
    if argv and argv[0] == "run":
        argv = argv[1:]
    return run_app(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
