"""LoRAs: named in the prompt or the request, found in the LoRA folder, applied with their weights through the
engine, taken off exactly, refused clearly when made for another model, and recorded by hash."""

from __future__ import annotations

import numpy as np
import pytest

from engine import paths
from engine.events import Failed, Finished, ImageReady
from engine.gallery.infotext import format_infotext
from engine.gallery.metadata import darkroom_text_chunks, parameters_from_text, parse_a1111
from engine.request import GenerationRequest, LoraRef, ValidationError, build_request
from tests.engine_helpers import request_for
from tests.lora_files import model_layers, transformer_layers, write_lora


@pytest.fixture(scope="module")
def sd_layers(tiny_model_dir):
    return model_layers(tiny_model_dir)


@pytest.fixture(scope="module")
def sdxl_layers(tiny_sdxl_dir):
    return model_layers(tiny_sdxl_dir)


def run(engine, rec, request):
    job = engine.submit(request)
    rec.wait_for(job)
    return rec.of(job)


def image_of(events):
    assert isinstance(events[-1], Finished), events[-1]
    (ready,) = [e for e in events if isinstance(e, ImageReady)]
    return ready


# -- the request --------------------------------------------------------------------------------------------------
def test_prompt_tags_become_the_requests_loras():
    request = build_request(prompt="a cat <lora:ink:0.7> <lora:film grain>", negative_prompt="<lora:x:1>").request
    assert request.loras == (LoraRef("ink", 0.7, from_prompt=True), LoraRef("film grain", 1.0, from_prompt=True))
    # rebuilt from its JSON (as a saved picture's recipe is), the same; tags removed, their LoRAs go with them
    again = GenerationRequest.from_dict(request.to_dict()).request
    assert again.loras == request.loras
    edited = build_request(prompt="a cat", loras=[lo.to_dict() for lo in request.loras]).request
    assert edited.loras == ()
    # a LoRA chosen outside the prompt is kept, and wins over a tag of the same name
    chosen = build_request(prompt="<lora:ink:0.2> <lora:film:0.4>", loras=[LoraRef("ink", 0.9)]).request
    assert chosen.loras == (LoraRef("ink", 0.9), LoraRef("film", 0.4, from_prompt=True))
    # a recorded hash stays with the tag's LoRA
    recorded = build_request(prompt="<lora:ink:0.5>", loras=[LoraRef("ink", 0.5, "a" * 64, True)]).request
    assert recorded.loras == (LoraRef("ink", 0.5, "a" * 64, True),)
    with pytest.raises(ValidationError) as info:
        build_request(prompt="a cat <lora:ink:50>")
    assert "prompt" in info.value.errors and "ink" in info.value.errors["prompt"]


def test_lora_hashes_are_written_and_read_as_a1111_does():
    request = build_request(prompt="a cat <lora:ink:0.7>", loras=[LoraRef("film, grain", 0.5)]).request
    assert "Lora hashes" not in format_infotext(request)  # no file resolved yet: nothing to record
    resolved = build_request(prompt="a cat <lora:ink:0.7>",
                             loras=[LoraRef("film, grain", 0.5, "b" * 64), LoraRef("ink", 0.7, "c" * 64, True)]).request
    text = format_infotext(resolved)
    assert f'Lora hashes: "film grain: {"b" * 10}, ink: {"c" * 10}"' in text
    parsed = parse_a1111(text)
    assert parsed.extra["Lora hashes"] == f"film grain: {'b' * 10}, ink: {'c' * 10}"
    assert not any("Lora hashes" in w for w in parsed.warnings)
    # Darkroom's own chunk brings every LoRA back with its full hash, and the recipe rebuilds the same
    restored = parameters_from_text(darkroom_text_chunks(resolved))
    assert restored.parts["loras"] == resolved.loras and restored.build().request.loras == resolved.loras


# -- the engine ---------------------------------------------------------------------------------------------------
def test_loras_change_the_picture_and_leave_no_trace(engine, rec, tiny_model_dir, sd_layers):
    folder = paths.loras_dir()
    ink = write_lora(folder / "ink.safetensors", sd_layers, style="kohya", seed=1)
    write_lora(folder / "styles" / "film.safetensors", sd_layers, style="peft", seed=2)
    plain = image_of(run(engine, rec, request_for(tiny_model_dir, steps=2)))

    tagged = image_of(run(engine, rec, request_for(tiny_model_dir, steps=2, prompt="<lora:ink:1> a red apple")))
    assert not np.array_equal(tagged.image, plain.image)
    from engine.addon_files import sha256

    (lora,) = tagged.request.loras
    assert (lora.name, lora.weight, lora.sha256, lora.from_prompt) == ("ink", 1.0, sha256(ink), True)
    assert f"Lora hashes: \"ink: {sha256(ink)[:10]}\"" in format_infotext(tagged.request)

    again = image_of(run(engine, rec, request_for(tiny_model_dir, steps=2)))
    assert np.array_equal(again.image, plain.image)  # taken off: the base model's pixels exactly

    both = image_of(run(engine, rec, request_for(tiny_model_dir, steps=2, prompt="<lora:ink:1> a red apple",
                                                 loras=[LoraRef("styles/film", 0.8)])))
    assert not np.array_equal(both.image, tagged.image) and not np.array_equal(both.image, plain.image)
    assert [lo.name for lo in both.request.loras] == ["styles/film", "ink"]
    lighter = image_of(run(engine, rec, request_for(tiny_model_dir, steps=2, prompt="<lora:ink:0.3> a red apple")))
    assert not np.array_equal(lighter.image, tagged.image)  # the same LoRA kept in the model, its weight changed
    zero = image_of(run(engine, rec, request_for(tiny_model_dir, steps=2, prompt="<lora:ink:0> a red apple")))
    assert np.array_equal(zero.image, plain.image)
    same = image_of(run(engine, rec, request_for(tiny_model_dir, steps=2, prompt="<lora:ink:1> a red apple")))
    assert np.array_equal(same.image, tagged.image)


def failure(events) -> Failed:
    (failed,) = [e for e in events if isinstance(e, Failed)]
    return failed


def test_a_lora_for_another_model_fails_clearly_and_the_model_keeps_working(engine, rec, tiny_model_dir, sd_layers,
                                                                          sdxl_layers):
    folder = paths.loras_dir()
    write_lora(folder / "xl-style.safetensors", sdxl_layers, style="kohya")  # lora_te1_/lora_te2_: SDXL's
    write_lora(folder / "xl-unet.safetensors", {"unet": sdxl_layers["unet"]}, style="peft")  # names alone: SD's too
    transformer = {"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": np.zeros((4, 64), np.float32)}
    import torch

    write_lora(folder / "flux-ish.safetensors", {}, extra={k: torch.from_numpy(v) for k, v in transformer.items()})
    unknown = {"lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32),
               "lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4)}
    write_lora(folder / "odd.safetensors", sd_layers, extra=unknown)
    write_lora(folder / "nonsense.safetensors", {}, extra={"foo.bar.weight": torch.zeros(2, 2)})
    write_lora(folder / "names.safetensors", {}, extra={"foo.lora_down.weight": torch.zeros(2, 2),
                                                       "foo.lora_up.weight": torch.zeros(2, 2)})
    (folder / "pickled.pt").write_bytes(b"not opened")
    plain = image_of(run(engine, rec, request_for(tiny_model_dir, steps=2)))

    expected = {
        "xl-style": "was made for Stable Diffusion XL; the model loaded is Stable Diffusion 1.x/2.x",
        "xl-unet": "text conditioning 32 wide",
        "flux-ish": "was made for a transformer model (SD3 or Flux)",
        "odd": "has weights for 1 layers this model does not have",
        "nonsense": "tensors Darkroom does not recognise as LoRA layers",
        "names": "has no layers Darkroom recognises",
        "pickled": "a .pt file, which can run code when opened",
        "missing": "There is no LoRA called 'missing'",
    }
    for name, words in expected.items():
        failed = failure(run(engine, rec, request_for(tiny_model_dir, steps=2, prompt=f"a red apple <lora:{name}:1>")))
        assert words in failed.message, (name, failed.message)
        after = image_of(run(engine, rec, request_for(tiny_model_dir, steps=2)))
        assert np.array_equal(after.image, plain.image), name


def test_sdxl_loras_reach_both_text_encoders(engine, rec, tiny_sdxl_dir, sdxl_layers):
    write_lora(paths.loras_dir() / "xl.safetensors", sdxl_layers, style="kohya", seed=3)
    text_only = {k: v for k, v in sdxl_layers.items() if k != "unet"}
    write_lora(paths.loras_dir() / "xl-text.safetensors", text_only, style="peft", seed=4)
    plain = image_of(run(engine, rec, request_for(tiny_sdxl_dir, steps=2)))
    styled = image_of(run(engine, rec, request_for(tiny_sdxl_dir, steps=2, prompt="a red apple <lora:xl:1>")))
    text = image_of(run(engine, rec, request_for(tiny_sdxl_dir, steps=2, prompt="a red apple <lora:xl-text:1>")))
    assert not np.array_equal(styled.image, plain.image) and not np.array_equal(text.image, plain.image)
    assert np.array_equal(image_of(run(engine, rec, request_for(tiny_sdxl_dir, steps=2))).image, plain.image)


def test_flux_takes_transformer_loras_and_refuses_u_net_ones(engine, rec, tiny_flux_dir, sd_layers):
    write_lora(paths.loras_dir() / "flux-style.safetensors", transformer_layers(tiny_flux_dir), style="peft", seed=5)
    write_lora(paths.loras_dir() / "sd-style.safetensors", sd_layers, style="kohya")

    def flux(prompt="a red apple"):
        return run(engine, rec, request_for(tiny_flux_dir, steps=2, cfg=3.5, prompt=prompt))

    plain = image_of(flux())
    assert not np.array_equal(image_of(flux("a red apple <lora:flux-style:1>")).image, plain.image)
    failed = failure(flux("a red apple <lora:sd-style:1>"))
    assert "made for a U-Net model" in failed.message and "Flux.1" in failed.message
    assert np.array_equal(image_of(flux()).image, plain.image)


def test_sd3_takes_two_transformer_loras_with_their_weights(engine, rec, tiny_sd3_dir):
    layers = transformer_layers(tiny_sd3_dir)
    write_lora(paths.loras_dir() / "sd3-a.safetensors", layers, style="peft", seed=6)
    write_lora(paths.loras_dir() / "sd3-b.safetensors", layers, style="peft", seed=7)

    def sd3(prompt="a red apple"):
        return image_of(run(engine, rec, request_for(tiny_sd3_dir, steps=2, cfg=4.0, prompt=prompt))).image

    plain = sd3()
    one = sd3("a red apple <lora:sd3-a:1>")
    both = sd3("a red apple <lora:sd3-a:1> <lora:sd3-b:0.5>")
    assert not np.array_equal(one, plain) and not np.array_equal(both, one)
    assert np.array_equal(sd3(), plain)


def test_flux_takes_kohya_loras_in_black_forest_labs_names(engine, rec, tiny_flux_dir):
    """sd-scripts names Flux layers as the original model does (fused q, k, v); diffusers splits them."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(8)
    inner, rank = 32, 4  # the tiny transformer: 2 heads of 16
    key = "lora_unet_double_blocks_0_img_attn_qkv"
    paths.loras_dir().mkdir(parents=True, exist_ok=True)
    save_file({f"{key}.lora_down.weight": torch.randn(rank, inner, generator=g) * 0.3,
               f"{key}.lora_up.weight": torch.randn(3 * inner, rank, generator=g) * 0.3,
               f"{key}.alpha": torch.tensor(float(rank))}, str(paths.loras_dir() / "flux-kohya.safetensors"))

    def flux(prompt="a red apple"):
        return image_of(run(engine, rec, request_for(tiny_flux_dir, steps=2, cfg=3.5, prompt=prompt))).image

    plain = flux()
    assert not np.array_equal(flux("a red apple <lora:flux-kohya:1>"), plain)
    assert np.array_equal(flux(), plain)


def test_jobs_with_loras_run_off_the_fast_path(tiny_model_dir, sd_layers, monkeypatch):
    """The fast path's compiled code was made without LoRA layers: a LoRA job runs eagerly, and the compiled code
    takes over again once the LoRA is off."""
    from engine.engine import Engine, EngineOptions, PreviewOptions
    from engine import fastpath
    from tests.engine_helpers import Recorder
    from tests.test_fastpath import FakeCompile

    write_lora(paths.loras_dir() / "ink.safetensors", sd_layers, seed=1)
    compile_fn = FakeCompile()
    monkeypatch.setattr(fastpath, "COMPILE_DEVICES", ("cpu",))
    monkeypatch.setattr(fastpath, "default_compile", compile_fn)
    rec = Recorder()
    engine = Engine(rec, EngineOptions(device="cpu", fast_path=True, preview=PreviewOptions(interval_s=0.0)))
    try:
        plain = image_of(run(engine, rec, request_for(tiny_model_dir, steps=3)))
        assert engine._runtime._fast.wait(10)
        compiled_calls = lambda: [c for c in compile_fn.calls if c["thread"] == "darkroom-engine"]  # noqa: E731
        styled = image_of(run(engine, rec, request_for(tiny_model_dir, steps=3, prompt="a red apple <lora:ink:1>")))
        assert compiled_calls() == [] and not np.array_equal(styled.image, plain.image)
        again = image_of(run(engine, rec, request_for(tiny_model_dir, steps=3)))
        assert len(compiled_calls()) == 3 and np.array_equal(again.image, plain.image)
    finally:
        assert engine.shutdown(10)


def test_an_sd_scripts_sd3_lora_gets_a_message_about_its_format(tmp_path):
    from types import SimpleNamespace

    import torch

    from engine.errors import DarkroomError
    from engine.loras import ResolvedLora, check_family

    lora = ResolvedLora(LoraRef("sd3-style", 1.0), tmp_path / "sd3-style.safetensors")
    tensors = {"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": torch.zeros(4, 64)}
    with pytest.raises(DarkroomError, match="sd-scripts") as info:
        check_family(lora, tensors, SimpleNamespace(name="sd3", title="Stable Diffusion 3"))
    assert "diffusers format works" in info.value.message
