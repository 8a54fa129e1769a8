"""The double-click bundle, end to end (slow: four to seven minutes on two cores; run with ``pytest -m slow
tests/test_bundle.py`` or ``DARKROOM_SLOW_TESTS=1``).

From a clean ``git clone`` of this repository (its committed state) into a temporary folder:
``packaging/build.py`` builds ``dist/Darkroom`` and its archive with this Python's libraries; then the bundle
runs as a person without Python would run it (``PATH=/usr/bin:/bin``, no virtual environment, and a ``python3``
on PATH that records being called): ``Darkroom --self-test``, headless pictures from the other model families,
the window under Xvfb with a screenshot and a clean close on SIGTERM, and the desktop installer.

Timings and the screenshot go to ``$DARKROOM_BUNDLE_ARTIFACTS`` when set (else the temporary folder); the figures
are printed (``-s`` shows them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bundle check runs on Linux"),
    pytest.mark.skipif(importlib.util.find_spec("PyInstaller") is None,
                       reason="needs PyInstaller: pip install -e '.[bundle]'"),
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git to clone the repository"),
]


class Bundle:
    def __init__(self, work: Path, artifacts: Path):
        self.work, self.artifacts = work, artifacts
        self.folder = work / "dist" / "Darkroom"
        self.exe = self.folder / "Darkroom"
        self.figures: dict = {}

    def record(self, **figures) -> None:
        self.figures.update(figures)
        (self.artifacts / "bundle-check.json").write_text(json.dumps(self.figures, indent=2) + "\n")
        print(f"\nbundle check: {json.dumps(figures)}", flush=True)

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """A person without Python: the system's PATH (after a decoy python3 that reports being run), no venv."""
        decoys = self.work / "decoys"
        if not decoys.exists():
            decoys.mkdir()
            for name in ("python3", "python"):
                decoy = decoys / name
                decoy.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {self.work / 'python-was-run'}\nexit 99\n")
                decoy.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if k not in (
            "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "QT_QPA_PLATFORM", "CONDA_PREFIX")}
        env.update(PATH=f"{decoys}:/usr/bin:/bin", DARKROOM_HOME=str(home), HF_HUB_OFFLINE="1", **extra)
        return env

    def python_was_run(self) -> str:
        marker = self.work / "python-was-run"
        return marker.read_text() if marker.exists() else ""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Bundle:
    work = tmp_path_factory.mktemp("bundle")
    artifacts = Path(os.environ.get("DARKROOM_BUNDLE_ARTIFACTS") or work)
    artifacts.mkdir(parents=True, exist_ok=True)
    built = Bundle(work, artifacts)
    t0 = time.monotonic()
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(work / "src")], check=True,
                   timeout=600)
    cloned = time.monotonic()
    proc = subprocess.run([sys.executable, str(work / "src" / "packaging" / "build.py"), "--dist",
                           str(work / "dist"), "--work", str(work / "build")], cwd=work / "src",
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    report = json.loads((work / "dist" / "build-report.json").read_text())
    built.record(clone_s=round(cloned - t0, 1), build_s=round(time.monotonic() - cloned, 1),
                 pyinstaller_s=report["pyinstaller_s"], size_mb=report["size_mb"],
                 archive_mb=report.get("archive_mb"), biggest_mb=report["biggest_mb"],
                 build_self_test=report.get("self_test"))
    return built


def test_the_build_makes_a_cpu_bundle_and_its_archive(bundle):
    report = json.loads((bundle.work / "dist" / "build-report.json").read_text())
    assert report["self_test_ok"], report.get("self_test")
    assert Path(report["archive"]).is_file() and report["archive"].endswith(".tar.gz")
    internal = bundle.folder / "_internal"
    assert (internal / "resources" / "models" / "darkroom-emoji" / "model_index.json").is_file()
    assert (internal / "resources" / "icons" / "darkroom-256.png").is_file()
    for name in ("install.sh", "uninstall.sh", "darkroom.desktop"):
        assert (bundle.folder / name).is_file()
    names = {p.name for p in internal.rglob("*")}
    assert not any(n.startswith(("libcudnn", "libcublas", "libnccl", "libtorch_cuda")) for n in names)
    assert not any(n.startswith("libQt6Qml") or n.startswith("libQt6Quick") for n in names)
    # a regression guard, not the goal (600 MB, reported): CUDA or a second copy of torch would blow it
    assert report["size_mb"] < 900


def test_the_self_test_runs_without_python(bundle, tmp_path):
    t0 = time.monotonic()
    proc = subprocess.run([str(bundle.exe), "--self-test"], env=bundle.env(tmp_path / "home"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("Darkroom self-test: OK") and "; bundle)" in line, line
    assert bundle.python_was_run() == "", "the bundle ran the python3 found on PATH"
    bundle.record(self_test_s=round(seconds, 1), self_test=line)


@pytest.fixture(scope="module")
def tiny_models(tiny_model_dir, tiny_sdxl_dir, tiny_sd3_dir, tiny_flux_dir) -> dict[str, Path]:
    """Built before the tests that use them (module scope), so the thread tqdm starts while writing them is not
    taken for one a test leaked."""
    return {"sd": tiny_model_dir, "sdxl": tiny_sdxl_dir, "sd3": tiny_sd3_dir, "flux": tiny_flux_dir}


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3", "flux"])
def test_every_model_family_generates_from_the_bundle(bundle, family, tiny_models, tmp_path):
    """diffusers and transformers import their model code by name: each family's loading path, from the bundle."""
    model = tiny_models[family]
    out = tmp_path / "out"
    proc = subprocess.run([str(bundle.exe), "generate", "a red fox", "--model", str(model), "--steps", "2",
                           "--size", "64x64", "--seed", "7", "--out", str(out), "--quiet"],
                          env=bundle.env(tmp_path / "home"), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list(out.glob("*.png"))) == 1
    assert bundle.python_was_run() == ""


def _start_xvfb() -> tuple[subprocess.Popen, str]:
    if shutil.which("Xvfb") is None:
        pytest.skip("needs Xvfb (apt-get install xvfb)")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from app_timing import start_xvfb
    finally:
        sys.path.pop(0)
    return start_xvfb(first=140)


def _marks(path: Path) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        mark = json.loads(line)
        found.setdefault(mark["event"], mark["t"])
    return found


def test_the_window_opens_under_xvfb_and_closes_cleanly(bundle, tmp_path):
    """A first launch (the welcome dialog over the window), with a picture's parameters as "Open parameters"
    passes them; screenshot once the engine is ready; SIGTERM closes it as Quit does."""
    if shutil.which("import") is None:
        pytest.skip("needs ImageMagick's import for the screenshot (apt-get install imagemagick)")
    from PIL import Image, ImageStat
    from PIL.PngImagePlugin import PngInfo

    picture = tmp_path / "recipe.png"
    info = PngInfo()
    info.add_text("parameters", "a lighthouse at dusk\nSteps: 12, Sampler: Euler, CFG scale: 6, Seed: 4242, Size: 64x64")
    Image.new("RGB", (64, 64), "navy").save(picture, pnginfo=info)
    xvfb, display = _start_xvfb()
    home, marks = tmp_path / "home", tmp_path / "marks.jsonl"
    try:
        env = bundle.env(home, DISPLAY=display, DARKROOM_TIMING_LOG=str(marks), DARKROOM_TIMING_SCENARIO="watch")
        t0 = time.monotonic()
        app = subprocess.Popen([str(bundle.exe), "--open-parameters", str(picture)], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(1800):  # a bound against hanging (3 minutes of polls), not a speed limit
            if "engine_ready" in _marks(marks):
                break
            assert app.poll() is None, f"the window ended early ({app.returncode}): {app.stderr.read()[-3000:]}"
            time.sleep(0.1)
        else:
            pytest.fail("the engine never reported ready")
        time.sleep(1.0)  # let the welcome dialog show the device it was just told
        shot = bundle.artifacts / "bundle-window.png"
        subprocess.run(["import", "-display", display, "-window", "root", str(shot)], check=True, timeout=60)
        app.send_signal(signal.SIGTERM)
        _, err = app.communicate(timeout=60)
        assert app.returncode == 0, err
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    seen = _marks(marks)
    with Image.open(shot) as img:
        spread = ImageStat.Stat(img.convert("L")).stddev[0]
    assert spread > 5, "the screenshot is one flat colour: nothing was drawn"
    settings = json.loads((home / "config" / "settings.json").read_text())  # saved on the way out
    assert settings["generation"]["prompt"] == "a lighthouse at dusk" and str(settings["generation"]["seed"]) == "4242"
    log = (home / "logs" / "darkroom.log").read_text()
    assert "closing on signal" in log and "leaving" in log
    assert bundle.python_was_run() == ""
    bundle.record(window_shown_ms=round((seen["shown"] - t0) * 1000),
                  window_engine_ready_ms=round((seen["engine_ready"] - t0) * 1000), screenshot=str(shot))


def test_the_desktop_installer_points_at_the_bundle(bundle, tmp_path):
    data = tmp_path / "data"
    env = {**os.environ, "XDG_DATA_HOME": str(data)}
    proc = subprocess.run(["sh", str(bundle.folder / "install.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    entry = (data / "applications" / "darkroom.desktop").read_text()
    assert f'Exec="{bundle.exe}" %f' in entry and f'Exec="{bundle.exe}" --open-parameters %f' in entry
    assert (data / "icons" / "hicolor" / "128x128" / "apps" / "darkroom.png").is_file()
    if shutil.which("desktop-file-validate"):
        checked = subprocess.run(["desktop-file-validate", str(data / "applications" / "darkroom.desktop")],
                                 capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    assert subprocess.run(["sh", str(bundle.folder / "uninstall.sh")], env=env).returncode == 0
    assert not (data / "applications" / "darkroom.desktop").exists()
