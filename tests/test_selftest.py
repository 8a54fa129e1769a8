"""`darkroom --self-test`: one real picture with the bundled model, checked, and a one-line verdict; every way it
can fail says why in that line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import paths, selftest
from engine.events import Finished, ImageReady, Preview

ROOT = Path(__file__).resolve().parent.parent


def test_darkroom_self_test_makes_a_picture_and_says_ok(darkroom_home):
    proc = subprocess.run([sys.executable, "-m", "gui.launcher", "--self-test"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [line] = proc.stdout.strip().splitlines()
    assert line.startswith("Darkroom self-test: OK (Darkroom ")
    for part in ("torch ", "diffusers ", "Python ", "device CPU float32", "64x64 picture"):
        assert part in line
    total, first_preview = map(float, re.search(r"picture in ([\d.]+) s, first preview after ([\d.]+) s", line).groups())
    assert 0 < first_preview <= total
    assert not darkroom_home.exists()  # a temporary home: the person's files are never touched


def test_a_missing_bundled_model_fails_with_a_reason(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(paths, "BUNDLED_MODELS", tmp_path / "no-models")
    assert selftest.main([]) == 1
    out = capsys.readouterr().out.strip()
    assert out.startswith("Darkroom self-test: FAILED: the bundled model is missing")


class _FlatEngine:
    """An engine that 'generates' one flat grey picture, as a NaN in the network would decode to."""

    def __init__(self, on_event, options=None):
        self.on_event = on_event

    def submit(self, request, *args):
        image = np.full((request.height, request.width, 3), 128, np.uint8)
        self.on_event(Preview(1, image, 1, request.steps, 0))
        self.on_event(ImageReady(1, image, request, 0, 1, device="CPU", dtype="float32"))
        self.on_event(Finished(1, 1))
        return 1

    def shutdown(self, timeout=2.0):
        return True


def test_a_blank_picture_fails(monkeypatch):
    import engine.engine

    monkeypatch.setattr(engine.engine, "Engine", _FlatEngine)
    report = selftest.run(timeout_s=30)
    assert not report.ok
    assert report.line().startswith("Darkroom self-test: FAILED: the picture is blank")


def test_the_verdict_line_names_versions_and_device():
    report = selftest.SelfTestReport(True, device="CPU", dtype="float32", seconds=1.25, first_preview_s=0.84,
                                     image_size=(64, 64),
                                     versions={"Darkroom": "0.1.0", "torch": "2.13.0", "diffusers": "0.42.1",
                                               "Python": "3.11.7"})
    assert report.line() == ("Darkroom self-test: OK (Darkroom 0.1.0, torch 2.13.0, diffusers 0.42.1, Python 3.11.7; "
                             "device CPU float32; 64x64 picture in 1.2 s, first preview after 0.8 s)")


def test_versions_come_from_metadata_without_importing_torch():
    code = "import sys; from engine.selftest import versions; v = versions(); print('torch' in sys.modules, v['torch'])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    imported, version = out.stdout.split()
    assert imported == "False" and version[0].isdigit()


@pytest.mark.parametrize("argv", [["--device", "tpu"], ["--timeout", "soon"]])
def test_bad_options_are_usage_errors(argv):
    with pytest.raises(SystemExit) as exc:
        selftest.main(argv)
    assert exc.value.code == 2
