"""GPU memory modes: choosing one, applying low VRAM to each family, the out-of-memory retry and the window's menu.

CUDA is not needed: low-VRAM mode's offload hooks run the same way with the CPU as their device, and the retry is
driven by a planted out-of-memory error with the CPU allowed to offload (``memory.OFFLOAD_DEVICES``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import memory
from engine.devices import DeviceChoice
from engine.engine import Engine, EngineOptions, PreviewOptions
from engine.events import Failed, ImageReady, Progress, StatusChanged
from engine.loader import load_model
from engine.models import resolve
from engine.settings import Settings
from tests.engine_helpers import Recorder, request_for

GIB = 2**30
CPU = DeviceChoice("cpu", "float32")


@pytest.mark.parametrize(
    ("mode", "device", "weights", "total", "expected"),
    [
        ("low", "cpu", 10 * GIB, None, "normal"),  # only devices with memory of their own offload
        ("auto", "mps", 10 * GIB, None, "normal"),
        ("normal", "cuda", 20 * GIB, 8 * GIB, "normal"),  # an explicit choice stands
        ("low", "cuda", 1 * GIB, 80 * GIB, "low"),
        ("auto", "cuda", 7 * GIB, 8 * GIB, "low"),  # most of the GPU: low
        ("auto", "cuda", 2 * GIB, 8 * GIB, "normal"),
        ("auto", "cuda", 2 * GIB, None, "normal"),  # unknown size: normal, and an error lowers it
    ],
)
def test_effective_mode(mode, device, weights, total, expected):
    assert memory.effective(mode, device, weights, total) == expected


def test_modes_are_checked_and_lowered_once():
    with pytest.raises(ValueError, match="memory mode"):
        memory.check_mode("tiny")
    with pytest.raises(ValueError):
        Engine(lambda e: None, EngineOptions(memory_mode="huge"))
    assert memory.lower("normal") == "low" and memory.lower("low") is None
    assert memory.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not memory.is_out_of_memory(ValueError("bad value"))


def test_settings_keep_a_valid_mode_and_replace_a_wrong_one():
    assert Settings.from_dict({"memory_mode": "low"})[0].memory_mode == "low"
    settings, bad = Settings.from_dict({"memory_mode": "everything"})
    assert settings.memory_mode == "auto" and "memory_mode" in bad


def _pixels(family, seed=7):
    """A 2-step Euler picture straight from the family's parts (no engine), as uint8."""
    from engine import samplers

    cond = family.encode("a red apple", "", True, 64, 64)
    x = family.initial_noise(seed, 64, 64)
    scheduler = family.schedule(samplers.get("Euler"), 2, 64, 64)
    x = x * scheduler.init_noise_sigma
    with torch.inference_mode():
        for t in scheduler.timesteps:
            inp = scheduler.scale_model_input(torch.cat([x] * 2), t)
            uncond, text = family.predict(inp, t.float(), cond).chunk(2)
            x = scheduler.step(uncond + 5.0 * (text - uncond), t, x).prev_sample
    return family.decode(x)[0]


def test_low_vram_keeps_the_pictures_of_normal_mode(tiny_model_dir):
    family = load_model(resolve(str(tiny_model_dir)), CPU).family
    before = _pixels(family)
    memory.apply(family, "low", "cpu")
    assert family.pipeline._all_hooks, "each part should have an offload hook"
    assert family.vae.use_tiling and family.vae.use_slicing
    assert np.array_equal(_pixels(family), before)


@pytest.mark.parametrize("fixture", ["tiny_sd3_dir", "tiny_flux_dir"])
def test_low_vram_runs_t5_on_the_cpu_without_a_hook(fixture, request):
    family = load_model(resolve(str(request.getfixturevalue(fixture))), CPU).family
    t5 = getattr(family.pipeline, family.cpu_text_encoder)
    memory.apply(family, "low", "cpu")
    assert not hasattr(t5, "_hf_hook") and t5.device.type == "cpu"
    assert family.transformer._hf_hook is not None  # the rest moves to the GPU when it runs
    cond = family.encode("a red apple", "", False, 64, 64)
    assert all(torch.isfinite(v).all() for v in cond.tensors.values() if isinstance(v, torch.Tensor))


@pytest.fixture
def cpu_offloads(monkeypatch):
    """Let the CPU stand in for a GPU: modes resolve and the out-of-memory retry runs as they would on CUDA."""
    monkeypatch.setattr(memory, "OFFLOAD_DEVICES", ("cpu",))


def _engine(rec, mode):
    return Engine(rec, EngineOptions(device="cpu", preview=PreviewOptions(mode="off"), memory_mode=mode))


def test_out_of_memory_redoes_the_picture_in_low_vram_mode(tiny_model_dir, cpu_offloads, monkeypatch):
    from engine.families.sd import StableDiffusion

    rec = Recorder()
    eng = _engine(rec, "normal")
    try:
        first = eng.submit(request_for(tiny_model_dir))
        rec.wait_for(first)
        reference = rec.of(first, ImageReady)[0]
        assert memory.OOM_NOTE not in reference.notes

        real_predict = StableDiffusion.predict
        calls = {"n": 0}

        def predict_once_out_of_memory(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:  # in the middle of the picture
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
            return real_predict(self, *args, **kwargs)

        monkeypatch.setattr(StableDiffusion, "predict", predict_once_out_of_memory)
        job = eng.submit(request_for(tiny_model_dir))
        rec.wait_for(job)
        ready = rec.of(job, ImageReady)
        assert len(ready) == 1 and not rec.of(job, Failed)
        assert memory.OOM_NOTE in ready[0].notes
        assert np.array_equal(ready[0].image, reference.image)  # same settings, same picture
        assert any("low-VRAM" in e.message for e in rec.events if isinstance(e, StatusChanged))

        # The model stays in low VRAM for the next job: no reload, no second out-of-memory error to wait for.
        monkeypatch.setattr(StableDiffusion, "predict", real_predict)
        after = eng.submit(request_for(tiny_model_dir))
        rec.wait_for(after)
        assert np.array_equal(rec.of(after, ImageReady)[0].image, reference.image)
        assert eng._runtime._model_mode == "low"
        assert len([e for e in rec.events if isinstance(e, StatusChanged) and e.message.startswith("Loading")]) == 1

        # Already in low VRAM: another out-of-memory error fails the job with the plain-words message.
        monkeypatch.setattr(StableDiffusion, "predict",
                            lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA out of memory")))
        again = eng.submit(request_for(tiny_model_dir))
        rec.wait_for(again)
        failed = rec.of(again, Failed)
        assert failed and failed[0].kind == "out_of_memory" and "Low VRAM" in failed[0].message
    finally:
        assert eng.shutdown(timeout=10)


def test_choosing_low_vram_applies_to_the_loaded_model_from_the_next_job(tiny_model_dir, cpu_offloads):
    rec = Recorder()
    eng = _engine(rec, "normal")
    try:
        first = eng.submit(request_for(tiny_model_dir))
        rec.wait_for(first)
        eng.set_memory_mode("low")
        job = eng.submit(request_for(tiny_model_dir))
        rec.wait_for(job)
        assert rec.of(job, ImageReady)
        assert eng._runtime._model_mode == "low"
        assert eng._runtime._model.family.pipeline._all_hooks
        loads = [e for e in rec.events if isinstance(e, StatusChanged) and e.message.startswith("Loading")]
        assert len(loads) == 1  # switched in place, not loaded again
    finally:
        assert eng.shutdown(timeout=10)


def test_progress_carries_no_vram_figure_off_cuda(engine, rec, tiny_model_dir):
    job = engine.submit(request_for(tiny_model_dir))
    rec.wait_for(job)
    assert all(p.vram_bytes is None for p in rec.of(job, Progress))


def test_window_menu_and_status_bar(qtbot):
    from gui.memory_menu import MemoryModeMenu
    from gui.status_bar import EngineStatusBar

    class FakeBridge:
        mode = None

        def set_memory_mode(self, mode):
            self.mode = mode

    settings, bridge = Settings(), FakeBridge()
    menu = MemoryModeMenu(settings, bridge)
    qtbot.addWidget(menu)
    assert menu.actions_by_mode["auto"].isChecked()
    menu.actions_by_mode["low"].trigger()
    assert settings.memory_mode == "low" and bridge.mode == "low"
    assert menu.actions_by_mode["low"].isChecked() and not menu.actions_by_mode["auto"].isChecked()

    bar = EngineStatusBar()
    qtbot.addWidget(bar)
    bar.show_vram(Progress(1, 1, 4, 0, 1, 1.0, 3.0))
    assert bar.vram_label.isHidden()
    bar.show_vram(Progress(1, 2, 4, 0, 1, 1.0, 2.0, vram_bytes=3 * GIB // 2))
    assert not bar.vram_label.isHidden() and bar.vram_label.text() == "VRAM 1.5 GiB"
