"""The engine on a real CUDA GPU: half precision, the fast path's compile and CUDA graphs, side-stream previews.

Marked ``cuda``: they run where a GPU is (``pytest -m cuda``) and are reported as skipped elsewhere; the logic
they exercise is covered on the CPU by test_fastpath.py and test_engine.py."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

from engine import fastpath  # noqa: E402
from engine.engine import Engine, EngineOptions, PreviewOptions  # noqa: E402
from engine.events import ImageReady, Preview, Progress  # noqa: E402
from engine.samplers import SAMPLER_NAMES  # noqa: E402
from tests.engine_helpers import Recorder, request_for  # noqa: E402


def _cuda_engine(recorder: Recorder, fast_path: bool) -> Engine:
    engine = Engine(recorder, EngineOptions(device="cuda", fast_path=fast_path,
                                            preview=PreviewOptions(mode="x0", interval_s=0.0)))
    engine.start()
    return engine


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_makes_finite_pictures_in_half_precision(tiny_model_dir, sampler):
    recorder = Recorder()
    engine = _cuda_engine(recorder, fast_path=False)
    try:
        job = engine.submit(request_for(tiny_model_dir, sampler=sampler, steps=6))
        recorder.wait_for(job, timeout=120)
    finally:
        engine.shutdown(timeout=30)
    ready = recorder.of(job, ImageReady)
    assert len(ready) == 1, recorder.events
    assert ready[0].dtype == "float16"
    image = ready[0].image
    assert image.shape == (64, 64, 3) and image.max() >= 8
    previews = recorder.of(job, Preview)
    assert [p.step for p in previews] == list(range(1, 7))


def test_fast_path_compiles_captures_and_matches_the_eager_picture(tiny_model_dir):
    recorder = Recorder()
    engine = _cuda_engine(recorder, fast_path=True)
    try:
        first = engine.submit(request_for(tiny_model_dir, steps=8))
        recorder.wait_for(first, timeout=300)
        fasts = [f for f in fastpath.instances() if f.disabled is None]
        assert fasts, "the fast path was not set up on CUDA"
        assert fasts[0].wait(600)
        second = engine.submit(request_for(tiny_model_dir, steps=8))  # captures the graph
        recorder.wait_for(second, timeout=300)
        third = engine.submit(request_for(tiny_model_dir, steps=8))  # replays it
        recorder.wait_for(third, timeout=300)
        states = {s["state"] for s in fasts[0].stats().values()}
    finally:
        engine.shutdown(timeout=30)
    assert "compiled" in states or "ready" in states, states
    eager, graphed = (recorder.of(j, ImageReady)[0].image for j in (first, third))
    diff = np.abs(eager.astype(np.int16) - graphed.astype(np.int16))
    assert diff.mean() < 2.0, f"compiled picture differs from the eager one: mean {diff.mean():.2f}, max {diff.max()}"
    for job in (first, second, third):
        assert [p.step for p in recorder.of(job, Preview)] == list(range(1, 9))
        assert [p.step for p in recorder.of(job, Progress)][-1] == 8


def test_low_vram_mode_offloads_and_keeps_the_picture(tiny_model_dir):
    """Low VRAM on a real GPU: the parts wait in CPU memory between jobs, VRAM is reported, and the picture is
    the normal mode's (the same fp16 kernels run, only where the weights wait changes)."""
    recorder = Recorder()
    engine = Engine(recorder, EngineOptions(device="cuda", fast_path=False, memory_mode="normal",
                                            preview=PreviewOptions(mode="x0", interval_s=0.0)))
    engine.start()
    try:
        normal = engine.submit(request_for(tiny_model_dir, steps=4))
        recorder.wait_for(normal, timeout=120)
        held_normal = torch.cuda.memory_allocated()
        engine.set_memory_mode("low")
        low = engine.submit(request_for(tiny_model_dir, steps=4))
        recorder.wait_for(low, timeout=120)
        held_low = torch.cuda.memory_allocated()
    finally:
        engine.shutdown(timeout=30)
    a, b = recorder.of(normal, ImageReady)[0].image, recorder.of(low, ImageReady)[0].image
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2
    assert held_low < held_normal
    assert all(p.vram_bytes and p.vram_bytes > 0 for p in recorder.of(low, Progress))
