"""Shared fixtures: portable mode per test, tiny random-weight models, and a check for leaked threads."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tests.gallery_fixtures import gallery  # noqa: F401 - the gallery fixture, shared by the gallery tests

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


SLOW_ENV = "DARKROOM_SLOW_TESTS"


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` (building and running the double-click bundle, minutes each) run only when asked:
    ``pytest -m slow`` or ``DARKROOM_SLOW_TESTS=1``. The default test command skips them."""
    expression = config.getoption("markexpr") or ""
    if os.environ.get(SLOW_ENV) == "1" or ("slow" in expression and "not slow" not in expression):
        return
    skip = pytest.mark.skip(reason=f"slow: run with -m slow or {SLOW_ENV}=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def darkroom_home(tmp_path, monkeypatch) -> Path:
    """Every test writes only under its own DARKROOM_HOME."""
    home = tmp_path / "darkroom-home"
    monkeypatch.setenv("DARKROOM_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail any test that leaves a thread running (engine workers, savers, thumbnail loaders)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 3.0
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.name.startswith(("pydevd", "Dummy-"))]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny SD1.x-style diffusers folder (64×64 images), built once per test session."""
    from tests.tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory) -> Path:
    from tests.tiny_models import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("models") / "tiny-sdxl")


@pytest.fixture(scope="session")
def tiny_sd3_dir(tmp_path_factory) -> Path:
    """A tiny SD3-style folder (MMDiT, 16-channel latents, CLIP-L/G and T5), built once per test session."""
    from tests.tiny_models import build_tiny_sd3

    return build_tiny_sd3(tmp_path_factory.mktemp("models") / "tiny-sd3")


@pytest.fixture(scope="session")
def tiny_flux_dir(tmp_path_factory) -> Path:
    """A tiny Flux.1 dev-style folder (guidance input, size-dependent shift), built once per test session."""
    from tests.tiny_models import build_tiny_flux

    return build_tiny_flux(tmp_path_factory.mktemp("models") / "tiny-flux")


@pytest.fixture(scope="session")
def tiny_schnell_dir(tmp_path_factory) -> Path:
    from tests.tiny_models import build_tiny_flux

    return build_tiny_flux(tmp_path_factory.mktemp("models") / "tiny-flux-schnell", schnell=True)


@pytest.fixture(scope="session")
def tiny_inpaint_dir(tmp_path_factory) -> Path:
    """A tiny SD1.x inpainting folder: its U-Net takes 9 channels (latents, mask, masked picture)."""
    from tests.tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-inpaint", inpainting=True)


@pytest.fixture(scope="session")
def tiny_controlnet_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A tiny ControlNet folder for the tiny SD model; the same weights as one file beside it
    (``tiny-control.safetensors``)."""
    from tests.tiny_models import build_tiny_controlnet

    root = tmp_path_factory.mktemp("controls")
    return build_tiny_controlnet(tiny_model_dir, root / "tiny-control", single_file=root / "tiny-control.safetensors")


@pytest.fixture(scope="session")
def tiny_sdxl_controlnet_dir(tmp_path_factory, tiny_sdxl_dir) -> Path:
    from tests.tiny_models import build_tiny_controlnet

    return build_tiny_controlnet(tiny_sdxl_dir, tmp_path_factory.mktemp("controls") / "tiny-sdxl-control")


@pytest.fixture
def rec():
    """Records an engine's events (tests.engine_helpers.Recorder)."""
    from tests.engine_helpers import Recorder

    return Recorder()


@pytest.fixture
def engine(rec):
    """An engine whose events go to ``rec``; shut down (and checked to stop) after the test."""
    from tests.engine_helpers import make_engine

    eng = make_engine(rec)
    yield eng
    assert eng.shutdown(timeout=10)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Keep a core free for the GUI thread on a small shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_window(qtbot, tiny_model_dir, one_torch_thread):
    """A factory of windows on the real engine with the tiny model; each is closed, and its engine and saver
    threads checked to have ended, after the test."""
    from engine.engine import EngineOptions, PreviewOptions
    from gui.main_window import MainWindow
    from gui.testing import wait_until

    windows: list[MainWindow] = []
    holds: list = []

    def make(*, model: bool = True, preview_interval: float = 0.0, gallery="default", start: bool = True,
             hold=None):
        options = EngineOptions(device="cpu", preview=PreviewOptions(mode="x0", interval_s=preview_interval))
        window = MainWindow(engine_options=options, gallery=gallery, start_engine=False)
        qtbot.addWidget(window)
        windows.append(window)
        if hold is not None:
            holds.append(hold)
            window.bridge.engine_tap = hold
        window.resize(1200, 800)
        window.show()
        qtbot.waitExposed(window)
        if model:
            assert window.models.add_path(tiny_model_dir)
        if start:
            window.start_engine()
            wait_until(lambda: window.status.device_label.text() != "")
        return window

    yield make
    for hold in holds:
        hold.release()
    for window in windows:
        window.close()
        assert window.bridge.wait_stopped(30), "the engine thread did not end"
        assert not window.gallery.saving, "the saver thread outlived the window"
