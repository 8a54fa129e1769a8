#!/usr/bin/env python3
"""Set up Darkroom in ./.venv and start it — the one command a fresh clone needs.

    python3 packaging/bootstrap.py          # set up (first time only) and open the app
    python3 packaging/bootstrap.py test     # set up with the test, training and bundling tools, run the test suite
    python3 packaging/bootstrap.py test -k engine   # extra arguments go to pytest
    python3 packaging/bootstrap.py shortcut # Linux: add Darkroom to the desktop's application menu

Needs Python 3.11 or newer and the package index. PyTorch is installed only when the virtual environment has
none, so a GPU build installed there beforehand is kept.

Once set up, a launch costs only file checks: an install stamp records the pyproject.toml it installed, and
this process is replaced by the app's (``os.execv``) rather than waiting for it as a child.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
TORCH = "torch==2.13.0"
EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
#: Extras each command installs: the app needs none; the tests also cover the optional training part and the
#: bundle build (PyInstaller), which the slow end-to-end check uses.
APP_EXTRAS: tuple[str, ...] = ()
TEST_EXTRAS = ("test", "train", "bundle")
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


def venv_python(venv: Path | None = None) -> Path:
    return (venv or VENV) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def site_packages(venv: Path | None = None) -> list[Path]:
    venv = venv or VENV
    if os.name == "nt":
        return [venv / "Lib" / "site-packages"]
    return sorted((venv / "lib").glob("python3*/site-packages"))


def has_torch(venv: Path | None = None) -> bool:
    """Whether PyTorch is installed in the venv, from its package metadata (importing it takes seconds)."""
    return any(any(sp.glob("torch-*.dist-info")) for sp in site_packages(venv))


def stamp_path(extras: tuple[str, ...]) -> Path:
    return VENV / f".darkroom-installed-{'-'.join(extras) or 'app'}"


def project_digest() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def read_stamp(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def plan_setup(*, venv_exists: bool, torch_installed: bool, stamp: str, digest: str) -> list[str]:
    """The setup steps still to do, in order ([] when the venv is ready): pure, so it is tested without a network.

    A current stamp means this pyproject.toml was installed with these extras, torch included (torch is checked
    only when something must be installed anyway)."""
    if venv_exists and stamp == digest:
        return []
    steps = [] if venv_exists else ["create venv"]
    if not (venv_exists and torch_installed):
        steps.append("install torch")
    steps.append("install darkroom")
    return steps


def pip(*args: str) -> None:
    subprocess.run([str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", *args], check=True)


def ensure_environment(extras: tuple[str, ...]) -> bool:
    """Make the venv ready for ``extras``. Returns True when something was installed."""
    if sys.version_info < (3, 11):
        sys.exit(f"Darkroom needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    stamp = stamp_path(extras)
    digest = project_digest()
    venv_exists = venv_python().exists()
    steps = plan_setup(venv_exists=venv_exists, torch_installed=venv_exists and has_torch(),
                       stamp=read_stamp(stamp), digest=digest)
    for step in steps:
        if step == "create venv":
            import venv

            say(f"creating {VENV}")
            venv.EnvBuilder(with_pip=True).create(VENV)
        elif step == "install torch":
            say(f"installing {TORCH} (a few minutes the first time)")
            pip(TORCH)
        elif step == "install darkroom":
            say("installing Darkroom and its libraries")
            pip("-e", f"{ROOT}[{','.join(extras)}]" if extras else str(ROOT))
            stamp.write_text(digest, encoding="utf-8")
    return bool(steps)


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


def launch(argv: list[str], env: dict[str, str] | None = None) -> int:
    """Run ``argv`` in place of this process where the system allows (POSIX), else as a child (Windows, whose
    exec starts a new process and returns at once, which a console would take for the app's end)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name != "posix":
        return subprocess.call(argv, env=env)
    if env is None:
        os.execv(argv[0], argv)
    else:
        os.execve(argv[0], argv, env)
    return 0  # not reached: exec replaced this process


def run_app(args: list[str]) -> int:
    installed = ensure_environment(APP_EXTRAS)
    if installed and not os.environ.get("QT_QPA_PLATFORM"):
        # At setup only: a later launch that lacks them is told by the app itself (gui.app checks at start).
        apt_install(missing_qt_libraries(), "Qt needs these system libraries to open a window on Linux")
    return launch([str(venv_python()), "-m", "gui.launcher", *args])


def run_tests(args: list[str]) -> int:
    ensure_environment(TEST_EXTRAS)
    if sys.platform.startswith("linux") and not Path(EMOJI_FONT).is_file():
        apt_install(["fonts-noto-color-emoji"], "the emoji dataset tests render the Noto Color Emoji font")
    if sys.platform.startswith("linux") and shutil.which("Xvfb"):
        # the bundle check opens the real window under Xvfb, which needs what the app needs to open one
        apt_install(missing_qt_libraries(), "the window test under Xvfb needs Qt's system libraries")
    os.chdir(ROOT)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1")
    return launch([str(venv_python()), "-m", "pytest", *args], env)


def install_shortcut() -> int:
    """Add this checkout's Darkroom to the user's application menu (Linux), with the same desktop entry and icons
    as the bundle's installer: packaging/linux/install.sh, pointed at the venv's launcher."""
    if not sys.platform.startswith("linux"):
        say("the shortcut command is for Linux desktops; on other systems run darkroom-app from .venv")
        return 1
    ensure_environment(APP_EXTRAS)
    return subprocess.run(["sh", str(ROOT / "packaging" / "linux" / "install.sh"), "--exec",
                           str(VENV / "bin" / "darkroom-app"), "--icons", str(ROOT / "resources" / "icons")]).returncode


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
