#!/usr/bin/env python3
"""Build the double-click Darkroom: ``dist/Darkroom/`` (PyInstaller, one folder) and an archive of it.

    python3 packaging/build.py            # set up .venv with PyInstaller if needed, build, self-test, archive
    python3 packaging/build.py --no-archive --dist /tmp/out

Steps: (1) run Darkroom's self-test in this Python and record every module it imports (diffusers and
transformers import most of their code by name, which PyInstaller cannot see); (2) PyInstaller with
``packaging/darkroom.spec``; (3) strip torch's big libraries, the interpreter's own and others of their symbol
tables, and trim Qt's ICU data to root and English (Linux, :mod:`icu_data`); (4) copy the Linux desktop files into the bundle; (5) run ``Darkroom --self-test`` from the bundle with
no Python on PATH; (6) pack ``dist/Darkroom-<version>-<system>-<machine>.tar.gz`` (``.zip`` on Windows and
macOS). It prints the bundle's size and writes everything it measured to ``dist/build-report.json``.

Run with a Python that has Darkroom's libraries and PyInstaller (``pip install -e '.[bundle]'``); run with any
other Python it sets up ``.venv`` with the ``bundle`` extra first, like ``packaging/bootstrap.py``, and runs
itself there. The bundle is for the CPU: with a CUDA build of torch installed it stops, unless ``--cuda`` asks
for a (much larger) CUDA bundle. An AppImage is not made: appimagetool is in neither PyPI nor Debian.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "packaging"))
import icu_data  # noqa: E402  (next to this file; needs nothing but the standard library)

SPEC = ROOT / "packaging" / "darkroom.spec"
LINUX_FILES = ("install.sh", "uninstall.sh", "darkroom.desktop")
#: Libraries that ship with their full symbol tables: torch's (about 90 MB of libtorch_cpu.so alone) and the
#: interpreter's own (a Python built from source, e.g. by pyenv, keeps its debug information: 18 MB of
#: libpython). Besides these, every library with a symbol table and no run-time search path is stripped
#: (tokenizers', regex's and PyYAML's carry 8 MB of debug information): a search path means a repair tool
#: (auditwheel, patchelf) rewrote the file, and stripping such a file can break it (numpy's, Pillow's).
STRIP = ("torch/lib/libtorch_cpu.so", "torch/lib/libtorch_python.so", "torch/lib/libtorch_cuda.so",
         "torch/lib/libtorch.so", "torch/lib/libc10.so", "libpython3*.so*", "python3*/lib-dynload/*.so")
#: Run in the building Python: the self-test, the window's modules and the command line's parser, then the list
#: of every module that was imported (one per line) and the torch build.
TRACE = """
import json, os, sys
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from engine import selftest
report = selftest.run()
import engine.cli, engine.hub
engine.cli.build_parser()
from huggingface_hub import hf_hub_download, snapshot_download  # darkroom models download
from gui.app import create_application
app = create_application()
from gui.main_window import MainWindow
window = MainWindow(start_engine=False, gallery=None)
import gui.welcome, gui.help_menu, gui.timing_probe
window.close()
import torch
with open(sys.argv[1], "w", encoding="utf-8") as out:
    out.write("\\n".join(sorted(sys.modules)))
print(json.dumps({"verdict": report.line(), "ok": report.ok, "cuda": torch.version.cuda}))
"""


def say(text: str) -> None:
    print(f"[darkroom build] {text}", flush=True)


def has_build_tools() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("PyInstaller", "torch", "diffusers", "PySide6"))


def ensure_build_python() -> None:
    """Run again in .venv (made or updated with the bundle extra) when this Python lacks what a build needs."""
    if has_build_tools():
        return
    spec = importlib.util.spec_from_file_location("darkroom_bootstrap", ROOT / "packaging" / "bootstrap.py")
    bootstrap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bootstrap)
    bootstrap.ensure_environment(("bundle",))
    python = str(bootstrap.venv_python())
    if Path(python).resolve() == Path(sys.executable).resolve():
        sys.exit("darkroom build: .venv lacks PyInstaller or Darkroom's libraries; pip install -e '.[bundle]'")
    sys.exit(bootstrap.launch([python, str(Path(__file__).resolve()), *sys.argv[1:]]))


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a person who has no Python set up: no venv, no PYTHONPATH, the system's PATH only."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CONDA_PREFIX", "LD_LIBRARY_PATH")}
    env.update(PATH="/usr/bin:/bin" if os.name != "nt" else os.environ.get("SystemRoot", r"C:\Windows"),
               DARKROOM_HOME=str(home), HF_HUB_OFFLINE="1")
    return env


def trace(work: Path) -> tuple[Path, dict]:
    modules = work / "traced-modules.txt"
    say("tracing the modules a self-test imports (one picture with the bundled model)")
    proc = subprocess.run([sys.executable, "-c", TRACE, str(modules)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "DARKROOM_HOME": str(work / "trace-home"), "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        sys.exit(f"darkroom build: the self-test could not run in this Python:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    say(f"in this Python: {result['verdict']}")
    if not result["ok"]:
        sys.exit("darkroom build: fix the self-test in the checkout before bundling")
    return modules, result


def _untouched_with_symbols(lib: Path, readelf: str) -> bool:
    """Whether ``lib`` has a symbol table and no run-time search path (see ``STRIP``)."""
    # one call lists both the section headers and the dynamic section
    listing = subprocess.run([readelf, "-SdW", str(lib)], capture_output=True, text=True, check=False).stdout
    return ".symtab" in listing and "(RPATH)" not in listing and "(RUNPATH)" not in listing


def strip_libraries(bundle: Path) -> int:
    """Strip the symbol tables of the libraries ``STRIP`` names and of the ones no repair tool rewrote; returns
    the bytes saved."""
    strip, readelf = shutil.which("strip"), shutil.which("readelf")
    if strip is None or readelf is None or not sys.platform.startswith("linux"):
        return 0
    internal = bundle / "_internal"
    named = {p for pattern in STRIP for p in internal.glob(pattern)}
    others = {p for p in internal.rglob("*.so*") if p.is_file() and not p.is_symlink() and p not in named
              and _untouched_with_symbols(p, readelf)}
    saved = 0
    for lib in sorted(named | others):
        if lib.is_file() and not lib.is_symlink():
            before = lib.stat().st_size
            subprocess.run([strip, "--strip-unneeded", str(lib)], check=True)
            saved += before - lib.stat().st_size
    return saved


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def biggest(folder: Path, depth: int = 3, count: int = 15) -> list[tuple[str, int]]:
    """The largest files and folders ``depth`` levels down, for the size report."""
    sizes: dict[str, int] = {}
    for p in folder.rglob("*"):
        if p.is_file() and not p.is_symlink():
            rel = p.relative_to(folder).parts
            key = "/".join(rel[:depth])
            sizes[key] = sizes.get(key, 0) + p.stat().st_size
    return sorted(sizes.items(), key=lambda kv: -kv[1])[:count]


def executable(bundle: Path) -> Path:
    if sys.platform == "win32":
        return bundle / "Darkroom.exe"
    return bundle / "Darkroom"


def self_test(exe: Path, timeout: float = 600) -> tuple[bool, str, float]:
    with tempfile.TemporaryDirectory(prefix="darkroom-bundle-test-") as home:
        t0 = time.monotonic()
        proc = subprocess.run([str(exe), "--self-test"], env=clean_env(Path(home)), capture_output=True, text=True,
                              timeout=timeout, cwd=home)
        seconds = time.monotonic() - t0
    lines = [line for line in proc.stdout.splitlines() if line.startswith("Darkroom self-test:")]
    verdict = lines[-1] if lines else f"no verdict (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return proc.returncode == 0 and "OK" in verdict, verdict, seconds


def archive(bundle: Path, dist: Path, version: str) -> Path:
    system = {"linux": "linux", "win32": "windows", "darwin": "macos"}.get(sys.platform, sys.platform)
    stem = f"Darkroom-{version}-{system}-{platform.machine().lower()}"
    if sys.platform.startswith("linux"):
        out = dist / f"{stem}.tar.gz"
        with tarfile.open(out, "w:gz", compresslevel=6) as tar:
            tar.add(bundle, arcname="Darkroom")
        return out
    source = dist / "Darkroom.app" if sys.platform == "darwin" and (dist / "Darkroom.app").exists() else bundle
    return Path(shutil.make_archive(str(dist / stem), "zip", root_dir=source.parent, base_dir=source.name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller", help="PyInstaller's work folder")
    parser.add_argument("--cuda", action="store_true", help="allow a CUDA build of torch (a much larger bundle)")
    parser.add_argument("--no-archive", action="store_true", help="leave out the .tar.gz/.zip")
    parser.add_argument("--no-self-test", action="store_true", help="do not run the bundle's self-test")
    args = parser.parse_args(argv)
    ensure_build_python()
    sys.path.insert(0, str(ROOT))
    from engine import __version__

    dist, work = args.dist.resolve(), args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"version": __version__, "python": platform.python_version(), "platform": platform.platform()}
    t0 = time.monotonic()
    modules, traced = trace(work)
    report["trace_s"] = round(time.monotonic() - t0, 1)
    if traced["cuda"] and not args.cuda:
        sys.exit(f"darkroom build: this Python has a CUDA build of torch (CUDA {traced['cuda']}); the default "
                 "bundle is for the CPU. Install the CPU build (pip install torch --index-url "
                 "https://download.pytorch.org/whl/cpu) or pass --cuda for a CUDA bundle.")
    say(f"running PyInstaller (a few minutes) into {dist}")
    t1 = time.monotonic()
    env = {**os.environ, "DARKROOM_BUNDLE_TRACE": str(modules), "DARKROOM_BUNDLE_CUDA": "1" if args.cuda else "0"}
    proc = subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
                           "--distpath", str(dist), "--workpath", str(work), str(SPEC)], cwd=ROOT, env=env)
    if proc.returncode != 0:
        return proc.returncode
    report["pyinstaller_s"] = round(time.monotonic() - t1, 1)
    bundle = dist / "Darkroom"
    report["stripped_bytes"] = strip_libraries(bundle)
    report["icu_trimmed_bytes"] = icu_data.trim(bundle, say)
    if sys.platform.startswith("linux"):
        for name in LINUX_FILES:
            shutil.copy2(ROOT / "packaging" / "linux" / name, bundle / name)
    size = folder_size(bundle)
    report.update(size_bytes=size, size_mb=round(size / 2**20, 1),
                  biggest_mb={k: round(v / 2**20, 1) for k, v in biggest(bundle)})
    say(f"bundle: {bundle} ({size / 2**20:.0f} MiB on disk)")
    for name, mb in report["biggest_mb"].items():
        say(f"  {mb:8.1f} MiB  {name}")
    if not args.no_self_test:
        ok, verdict, seconds = self_test(executable(bundle))
        report.update(self_test=verdict, self_test_ok=ok, self_test_s=round(seconds, 1))
        say(f"bundle self-test ({seconds:.1f} s, no Python on PATH): {verdict}")
        if not ok:
            (dist / "build-report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            return 1
    if not args.no_archive:
        t2 = time.monotonic()
        out = archive(bundle, dist, __version__)
        report.update(archive=str(out), archive_mb=round(out.stat().st_size / 2**20, 1),
                      archive_s=round(time.monotonic() - t2, 1))
        say(f"archive: {out} ({out.stat().st_size / 2**20:.0f} MiB)")
    say("AppImage: not made (appimagetool is in neither PyPI nor Debian's archive)")
    report["total_s"] = round(time.monotonic() - t0, 1)
    (dist / "build-report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    say(f"done in {report['total_s']:.0f} s; figures in {dist / 'build-report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
