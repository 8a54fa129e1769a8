"""The GPU fast path's policy, driven on a CPU: settings, shape keys, the background compile, fallbacks, the disk
cache and the preview hand-over. The compile function is injected (a recorder, or torch.compile with a
counting backend), so no GPU and no inductor run here."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engine import compile_cache, compile_keys, fastpath, preview as previews
from engine.engine import EngineOptions, PreviewOptions
from engine.events import Finished, ImageReady, Preview, Progress
from engine.families import sd, sdxl
from engine.compile_cache import Manifest
from engine.compile_keys import shape_key
from engine.fastpath import FastPath
from engine.preview import LatentPreview
from tests.engine_helpers import Recorder, request_for


# ------------------------------------------------------------------------------------------------ helpers
class FakeUNet(torch.nn.Module):
    """A U-Net's call signature over one 1×1 convolution."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 1)

    def forward(self, sample, timestep, encoder_hidden_states=None, added_cond_kwargs=None, return_dict=False):
        return (self.conv(sample) + timestep * 1e-3 + encoder_hidden_states.mean(),)


class FakeCompile:
    """Stands in for torch.compile: records what it compiles and every call; can fail or block."""

    def __init__(self, fail: str | None = None, block: threading.Event | None = None):
        self.fail = fail
        self.block = block
        self.modules: list = []
        self.calls: list[dict] = []

    def __call__(self, denoiser):
        self.modules.append(denoiser)
        if self.fail == "compile":
            raise RuntimeError("inductor exploded")

        def compiled(sample, t, **kwargs):
            thread = threading.current_thread().name
            self.calls.append(dict(thread=thread, shape=tuple(sample.shape), t_dtype=t.dtype, t_dim=t.dim(),
                                   inference=torch.is_inference_mode_enabled(), sample_inference=sample.is_inference()))
            if self.block is not None and thread == "darkroom-compile":
                assert self.block.wait(10)
            if self.fail == "run" and thread != "darkroom-compile":
                raise RuntimeError("graph replay failed")
            return denoiser(sample, t, **kwargs)

        return compiled


def example_for(batch=2, tokens=77, width=32, h=8, w=8, added=None):
    """The denoiser's arguments as a family's ``example_inputs`` gives them: latents and timestep on the meta
    device, the conditioning as encoded."""
    with torch.inference_mode():
        embeds = torch.randn(batch, tokens, width)
    sample = torch.empty(batch, 4, h, w, device="meta")
    t = torch.empty((), dtype=torch.float32, device="meta")
    return (sample, t), {"encoder_hidden_states": embeds, "added_cond_kwargs": added, "return_dict": False}


def key_for(example, identity="model-a|hash|conf"):
    return shape_key(identity, example)


def make_fast(compile_fn, tmp_path, **kwargs) -> FastPath:
    kwargs.setdefault("env", "torch test")
    return FastPath(FakeUNet().eval(), "cpu", "model-a|hash|conf", compile_fn=compile_fn,
                    manifest=Manifest(tmp_path / "manifest.json"), **kwargs)


def loop_inputs(example):
    """Inputs made the way the denoising loop makes them (inside inference mode)."""
    (sample, _), kwargs = example
    with torch.inference_mode():
        sample = torch.randn(sample.shape)
        t = torch.tensor([999.0, 500.0])[0].clone()
    return sample, t, kwargs


# ------------------------------------------------------------------------------------------------ settings
def test_off_when_the_setting_is_off_or_the_device_is_not_cuda(tmp_path, monkeypatch):
    model = SimpleNamespace(device=SimpleNamespace(device="cpu"), family=SimpleNamespace(denoiser=FakeUNet()),
                            entry=SimpleNamespace(path=tmp_path), model_hash="abc", name="m")
    assert FastPath.for_model(model, EngineOptions(fast_path=False)) is None
    assert FastPath.for_model(model, EngineOptions(fast_path=True)) is None  # CPU: never compiled
    cuda_model = SimpleNamespace(**{**vars(model), "device": SimpleNamespace(device="cuda")})
    assert FastPath.for_model(cuda_model, EngineOptions(fast_path=False)) is None

    monkeypatch.setattr(fastpath, "COMPILE_DEVICES", ("cpu",))
    model.family.denoiser.config = {"in_channels": 4}
    fast = FastPath.for_model(model, EngineOptions(fast_path=True))
    assert fast is not None and fast.active and fast.denoiser is model.family.denoiser
    assert model.family.denoiser.conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_engine_on_cpu_never_compiles(tiny_model_dir, monkeypatch):
    def no_compile(unet):
        raise AssertionError("compiled on a CPU")

    monkeypatch.setattr(fastpath, "default_compile", no_compile)
    from engine.engine import Engine

    rec = Recorder()
    engine = Engine(rec, EngineOptions(device="cpu", fast_path=True))
    try:
        job = engine.submit(request_for(tiny_model_dir, steps=2))
        rec.wait_for(job)
        assert isinstance(rec.of(job)[-1], Finished)
        assert engine._runtime._fast is None
    finally:
        assert engine.shutdown(10)


# ------------------------------------------------------------------------------------------------ keys
def test_shape_keys_change_with_model_size_batch_and_conditioning():
    example = example_for()
    base = key_for(example)
    assert base == key_for(example_for())
    assert base.latent == (2, 4, 8, 8) and base.dtype == "float32"
    assert base.inputs == (("0.0", (2, 4, 8, 8), "float32"), ("0.1", (), "float32"),
                           ("1.encoder_hidden_states", (2, 77, 32), "float32"))
    assert key_for(example_for(h=16)) != base
    assert key_for(example_for(batch=1)) != base  # CFG off: batch 1
    assert key_for(example_for(tokens=32)) != base
    assert key_for(example, identity="model-b|hash|conf") != base
    xl = example_for(added={"text_embeds": torch.zeros(2, 32), "time_ids": torch.zeros(2, 6)})
    assert key_for(xl).inputs[-2:] == (("1.added_cond_kwargs.text_embeds", (2, 32), "float32"),
                                      ("1.added_cond_kwargs.time_ids", (2, 6), "float32"))
    assert base.digest("torch 2.13") != base.digest("torch 2.14")
    assert "8x8" in base.label


def test_model_identity_follows_weights_and_config(tmp_path):
    def model(hash_, channels=4):
        denoiser = SimpleNamespace(config={"in_channels": channels})
        return SimpleNamespace(family=SimpleNamespace(denoiser=denoiser), entry=SimpleNamespace(path=tmp_path),
                               model_hash=hash_)

    a = compile_keys.model_identity(model("aaaa"))
    assert a == compile_keys.model_identity(model("aaaa"))
    assert a != compile_keys.model_identity(model("bbbb"))  # new weights
    assert a != compile_keys.model_identity(model("aaaa", channels=9))  # another architecture


# ------------------------------------------------------------------------------------------------ compile policy
def test_first_generation_is_eager_while_the_compile_runs_in_the_background(tmp_path):
    compile_fn = FakeCompile()
    fast = make_fast(compile_fn, tmp_path)
    example = example_for()
    key = key_for(example)
    assert fast.forward_for(example) is None  # eager now; the compile has started
    assert fast.wait(10)
    assert fast.state(key) == "compiled"
    warm = compile_fn.calls[0]
    assert warm == dict(thread="darkroom-compile", shape=(2, 4, 8, 8), t_dtype=torch.float32, t_dim=0,
                        inference=True, sample_inference=True)

    forward = fast.forward_for(example)
    assert forward is not None and fast.state(key) == "ready"
    sample, t, kwargs = loop_inputs(example)
    with torch.inference_mode():
        out = forward(sample, t, **kwargs)[0]
        expected = fast.denoiser(sample, t, **kwargs)[0]
    assert torch.equal(out, expected)
    assert fast.forward_for(example) is forward  # same shape: no new compile
    assert len(compile_fn.modules) == 1 and compile_fn.modules[0] is fast.denoiser
    stats = fast.stats()[key.label]
    assert stats["state"] == "ready" and stats["compile_s"] >= 0 and stats["expected"] == "cold"


def test_a_new_shape_runs_eagerly_and_compiles_for_itself(tmp_path):
    compile_fn = FakeCompile()
    fast = make_fast(compile_fn, tmp_path)
    small, large = example_for(), example_for(h=16, w=16)
    fast.forward_for(small)
    fast.wait(10)
    assert fast.forward_for(small) is not None
    assert fast.forward_for(large) is None  # new shape: eager while it compiles
    fast.wait(10)
    assert [c["shape"] for c in compile_fn.calls if c["thread"] == "darkroom-compile"] == [(2, 4, 8, 8), (2, 4, 16, 16)]
    assert fast.forward_for(large) is not None
    assert fast.forward_for(small) is not None
    assert len(compile_fn.modules) == 1  # one compiled module, specialised per shape


def test_one_compile_at_a_time_and_no_compiled_calls_meanwhile(tmp_path):
    gate = threading.Event()
    compile_fn = FakeCompile(block=gate)
    fast = make_fast(compile_fn, tmp_path)
    a, b = example_for(), example_for(h=16)
    try:
        assert fast.forward_for(a) is None
        assert fast.compiling()
        assert fast.forward_for(b) is None and fast.state(key_for(b)) is None  # waits its turn, not queued
        assert fast.forward_for(a) is None
    finally:
        gate.set()
    assert fast.wait(10)
    assert fast.forward_for(a) is not None
    second = threading.Event()
    compile_fn.block = second  # hold b's compile so its state can be seen mid-way
    try:
        assert fast.forward_for(b) is None and fast.state(key_for(b)) == "compiling"
    finally:
        second.set()
    fast.wait(10)


def test_shape_budget_leaves_further_sizes_eager(tmp_path, caplog):
    compile_fn = FakeCompile()
    fast = make_fast(compile_fn, tmp_path, max_shapes=1)
    fast.forward_for(example_for())
    fast.wait(10)
    with caplog.at_level(logging.INFO, logger="engine.fastpath"):
        assert fast.forward_for(example_for(h=16)) is None
    assert fast.state(key_for(example_for(h=16))) == "skipped" and not fast.compiling()
    assert "standard path" in caplog.text


def test_compile_failure_falls_back_to_eager_and_is_remembered(tmp_path, caplog):
    example = example_for()
    key = key_for(example)
    with caplog.at_level(logging.WARNING, logger="engine.fastpath"):
        fast = make_fast(FakeCompile(fail="compile"), tmp_path)
        assert fast.forward_for(example) is None
        fast.wait(10)
    assert fast.state(key) == "broken" and "inductor exploded" in fast.stats()[key.label]["error"]
    assert "could not compile" in caplog.text and "standard path" in caplog.text
    assert fast.forward_for(example) is None and not fast.compiling()

    # A relaunch (same torch, GPU and model) does not try that shape again...
    again = FakeCompile()
    relaunched = make_fast(again, tmp_path)
    assert relaunched.forward_for(example) is None and not relaunched.compiling()
    assert again.modules == [] and relaunched.state(key) == "broken"
    # ...but another torch (or GPU) does.
    upgraded = make_fast(again, tmp_path, env="torch next")
    upgraded.forward_for(example)
    upgraded.wait(10)
    assert upgraded.state(key) == "compiled"


def test_failure_in_a_compiled_call_finishes_the_step_eagerly(tmp_path, caplog):
    fast = make_fast(FakeCompile(fail="run"), tmp_path)
    example = example_for()
    key = key_for(example)
    fast.forward_for(example)
    fast.wait(10)
    forward = fast.forward_for(example)
    sample, t, kwargs = loop_inputs(example)
    with caplog.at_level(logging.WARNING, logger="engine.fastpath"), torch.inference_mode():
        out = forward(sample, t, **kwargs)[0]
        expected = fast.denoiser(sample, t, **kwargs)[0]
    assert torch.equal(out, expected)
    assert fast.state(key) == "broken" and "could not run" in caplog.text
    assert fast.forward_for(example) is None
    assert Manifest(tmp_path / "manifest.json").get(key.digest("torch test"))["status"] == "failed"


def test_compiled_code_never_recompiles_on_the_worker_thread(tmp_path):
    """With real Dynamo: the background warm-up's inputs match the loop's (no recompile on the caller's thread),
    and a call that would need a recompile raises inside the guard and runs eagerly instead of compiling."""
    torch._dynamo.reset()
    compiles: list[str] = []

    def backend(gm, example_inputs):
        compiles.append(threading.current_thread().name)
        return gm.forward

    fast = make_fast(lambda unet: torch.compile(unet, backend=backend, dynamic=False), tmp_path)
    example = example_for()
    key = key_for(example)
    try:
        fast.forward_for(example)
        assert fast.wait(60)
        forward = fast.forward_for(example)
        sample, t, kwargs = loop_inputs(example)
        with torch.inference_mode():
            for _ in range(3):
                forward(sample, t, **kwargs)
        assert compiles == ["darkroom-compile"] and fast.state(key) == "ready"

        with torch.inference_mode():  # a caller bypassing the key (another shape): refused, eager, broken
            wrong = torch.randn(2, 4, 16, 16)
            out = forward(wrong, t, **kwargs)[0]
        assert out.shape == (2, 4, 16, 16) and compiles == ["darkroom-compile"]
        assert fast.state(key) == "broken"
    finally:
        fast.close()
        torch._dynamo.reset()


# ------------------------------------------------------------------------------------------------ disk cache
def test_compile_cache_goes_under_the_app_cache(monkeypatch, darkroom_home):
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(compile_cache, "_cache_root", None)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv(compile_cache.CACHE_ENV, raising=False)
    monkeypatch.setattr(inductor_config, "fx_graph_cache", False)
    monkeypatch.setattr(functorch_config, "enable_autograd_cache", False)
    root = compile_cache.configure_compile_cache()
    assert root == darkroom_home / "cache" / "inductor" and root.is_dir()
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(root)
    assert inductor_config.fx_graph_cache and functorch_config.enable_autograd_cache
    assert compile_cache.configure_compile_cache(Path("/elsewhere")) == root  # process-wide: the first call wins


def test_compile_cache_respects_a_folder_the_user_chose(monkeypatch, tmp_path):
    monkeypatch.setattr(compile_cache, "_cache_root", None)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv(compile_cache.CACHE_ENV, str(tmp_path / "darkroom"))
    assert compile_cache.compile_cache_dir() == tmp_path / "darkroom"
    assert compile_cache.configure_compile_cache() == tmp_path / "mine"


def test_manifest_survives_damage(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("{not json", encoding="utf-8")
    manifest = Manifest(path)
    assert manifest.get("k") is None
    manifest.put("k", status="ok", compile_s=1.5)
    assert Manifest(path).get("k")["status"] == "ok"


# ------------------------------------------------------------------------------------------------ the fast loop
@pytest.fixture(scope="module")
def tiny_loaded(tiny_model_dir):
    from engine.devices import DeviceChoice
    from engine.loader import load_model
    from engine.models import resolve

    return load_model(resolve(str(tiny_model_dir)), DeviceChoice("cpu", "float32"))


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M SDE Karras", "Heun"])
def test_the_loop_runs_a_given_denoiser_for_every_forward_pass(tiny_model_dir, tiny_loaded, sampler):
    """The fast path hands the loop a compiled denoiser and nothing else: the loop calls it for every network
    evaluation (Heun: two per step) with the family's arguments, and the arithmetic is the standard loop's."""
    from engine.sampling import denoise

    model = tiny_loaded
    request = request_for(tiny_model_dir, steps=3, sampler=sampler)
    cond = model.family.encode(request.prompt, request.negative_prompt, True, 64, 64)
    calls = []

    def denoiser(sample, t, **kwargs):
        calls.append((tuple(sample.shape), t.dtype, t.dim(), tuple(sorted(kwargs))))
        return model.family.denoiser(sample, t, **kwargs)

    eager = denoise(model, request, cond, request.seed, lambda s: None, lambda: False)
    given = denoise(model, request, cond, request.seed, lambda s: None, lambda: False, denoiser=denoiser)
    assert torch.equal(eager, given)
    assert len(calls) == (5 if sampler == "Heun" else 3)
    assert set(calls) == {((2, 4, 8, 8), torch.float32, 0, ("encoder_hidden_states", "return_dict"))}


def test_fast_path_keys_on_the_family_example_inputs(tiny_model_dir, tiny_sdxl_dir):
    """SDXL's added conditioning is part of its key; the example's latents match the loop's model input."""
    from engine.devices import DeviceChoice
    from engine.loader import load_model
    from engine.models import resolve

    model = load_model(resolve(str(tiny_sdxl_dir)), DeviceChoice("cpu", "float32"))
    cond = model.family.encode("a red apple", "", True, 64, 96)
    key = shape_key("id", model.family.example_inputs(64, 96, cond))
    assert key.latent == (2, 4, 8, 12) and key.label == "12x8 latents, batch 2, float32"
    assert [name for name, _, _ in key.inputs] == ["0.0", "0.1", "1.encoder_hidden_states",
                                                   "1.added_cond_kwargs.text_embeds", "1.added_cond_kwargs.time_ids"]
    assert key.inputs[-1][1] == (2, 6)
    assert shape_key("id", model.family.example_inputs(64, 96, model.family.encode("x", "", False, 64, 96))) != key


def _fast_engine(monkeypatch, compile_fn):
    from engine.engine import Engine

    monkeypatch.setattr(fastpath, "COMPILE_DEVICES", ("cpu",))
    monkeypatch.setattr(fastpath, "default_compile", compile_fn)
    rec = Recorder()
    return rec, Engine(rec, EngineOptions(device="cpu", fast_path=True, preview=PreviewOptions(interval_s=0.0)))


def test_engine_fast_path_end_to_end_on_cpu(tiny_model_dir, tiny_sdxl_dir, monkeypatch):
    """The runtime drives the fast path: eager first image, compiled afterwards, the same picture; a model switch
    drops the old model's compiled code and compiles the new model's U-Net."""
    compile_fn = FakeCompile()
    rec, engine = _fast_engine(monkeypatch, compile_fn)
    try:
        first = engine.submit(request_for(tiny_model_dir, steps=3))
        rec.wait_for(first)
        fast = engine._runtime._fast
        assert fast is not None and fast.wait(10)
        assert [c["thread"] for c in compile_fn.calls] == ["darkroom-compile"]  # the first job ran eagerly
        second = engine.submit(request_for(tiny_model_dir, steps=3))
        rec.wait_for(second)
        assert [c["thread"] for c in compile_fn.calls[1:]] == ["darkroom-engine"] * 3  # one U-Net call per step
        images = [rec.of(j, ImageReady)[0].image for j in (first, second)]
        assert np.array_equal(*images)
        assert [p.step for p in rec.of(second, Preview)] == [1, 2, 3]
        assert [p.step for p in rec.of(second, Progress)] == [1, 2, 3]

        xl = engine.submit(request_for(tiny_sdxl_dir, steps=2))
        rec.wait_for(xl)
        assert isinstance(rec.of(xl)[-1], Finished)
        assert fast.disabled == "closed" and engine._runtime._fast is not fast
        new_fast = engine._runtime._fast
        assert new_fast.wait(10)
        assert compile_fn.modules[-1] is new_fast.denoiser and compile_fn.modules[0] is not new_fast.denoiser
        (label, stats), = new_fast.stats().items()
        assert stats["state"] == "compiled"
    finally:
        assert engine.shutdown(10)


def test_fast_loop_failure_remakes_the_image_on_the_standard_path(tiny_model_dir, monkeypatch, caplog):
    class BrokenPreviews(previews.HostPreviews):
        def step(self, source, step, total, kind):
            if step == 2:
                raise RuntimeError("side stream lost")
            return super().step(source, step, total, kind)

    monkeypatch.setattr(FastPath, "previews", lambda self, preview: BrokenPreviews(preview))
    rec, engine = _fast_engine(monkeypatch, FakeCompile())
    try:
        with caplog.at_level(logging.WARNING, logger="engine.fastpath"):
            job = engine.submit(request_for(tiny_model_dir, steps=3))
            rec.wait_for(job)
        assert isinstance(rec.of(job)[-1], Finished) and len(rec.of(job, ImageReady)) == 1
        assert "fast path failed" in caplog.text and "side stream lost" in caplog.text
        assert not engine._runtime._fast.active
        again = engine.submit(request_for(tiny_model_dir, steps=3))  # stays on the standard path
        rec.wait_for(again)
        assert isinstance(rec.of(again)[-1], Finished)
        engine._runtime._fast.wait(10)
    finally:
        assert engine.shutdown(10)


# ------------------------------------------------------------------------------------------------ previews
class CpuPreviews(previews.DevicePreviews):
    """DevicePreviews with its three CUDA primitives replaced by CPU stand-ins that record the waits."""

    def __init__(self, preview, lag=1):
        self.waited: list[tuple] = []
        super().__init__(preview, lag)

    def _stream(self):
        return None

    def _marker(self):
        return SimpleNamespace(synchronize=lambda: self.waited.append(("marker",)))

    def _copy(self, rgb):
        slot = rgb.clone()
        return slot, SimpleNamespace(synchronize=lambda: self.waited.append(("copy",)))


def test_device_previews_first_at_once_then_one_step_late():
    preview = LatentPreview(sd.PREVIEW_FACTORS, (0.0, 0.0, 0.0))
    pipe = CpuPreviews(preview)
    latents = [torch.randn(1, 4, 8, 8) for _ in range(4)]
    pipe.start_image()
    got = [pipe.step(latents[0], 1, 4, "x0")]  # the first preview is handed over at its own step
    got.append(pipe.step(latents[1], 2, 4, "x0"))  # later ones one step late
    got.append(pipe.step(None, 3, 4, "x0"))  # throttled step: only a marker, yet step 2 comes out
    got.append(pipe.step(latents[3], 4, 4, "x0"))
    got.append(pipe.flush())
    assert [[m[1] for m in g] for g in got] == [[1], [], [2], [], [4]]
    for (image, step, total, kind) in [g[0] for g in got if g]:
        expected = preview.to_rgb(latents[step - 1])
        assert np.array_equal(image, expected) and not image.flags.writeable and total == 4 and kind == "x0"
    assert pipe.flush() == []
    pipe.step(latents[0], 1, 4, "x0")  # no start_image: a new image's first preview still waits one step...
    assert pipe.step(latents[1], 2, 4, "x0")[0][1] == 1
    pipe.discard()
    assert pipe.flush() == []


def test_host_previews_are_the_standard_paths():
    preview = LatentPreview(sdxl.PREVIEW_FACTORS, sdxl.PREVIEW_BIAS)
    host = previews.HostPreviews(preview)
    latent = torch.randn(1, 4, 8, 8)
    (image, step, total, kind), = host.step(latent, 3, 5, "xt")
    assert np.array_equal(image, preview.to_rgb(latent)) and (step, total, kind) == (3, 5, "xt")
    assert host.step(None, 4, 5, "xt") == [] and host.flush() == []


def test_fast_path_decodes_in_half_precision_first(tiny_loaded):
    """Half precision first even when the VAE's config asks for an upcast (as diffusers' SD pipeline does); the
    standard path upcasts up front. Either way an overflow is redone in float32."""
    import copy

    from engine.families.components import vae_decode

    vae = copy.deepcopy(tiny_loaded.family.vae).to(torch.float16)
    vae.register_to_config(force_upcast=True)
    fmt = tiny_loaded.family.latent_format
    latents = torch.randn(1, 4, 8, 8)
    image, notes = vae_decode(vae, latents, fmt, half_first=True)
    assert vae.dtype == torch.float16 and image.shape == (64, 64, 3) and notes == ()
    vae_decode(vae, latents, fmt)
    assert vae.dtype == torch.float32
