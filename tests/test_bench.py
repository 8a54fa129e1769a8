"""`darkroom bench` on a CPU, CI-sized: the harness runs end to end and writes what it promises. Timings are
never asserted (the machine is shared); only that they exist and the pictures agree."""

from __future__ import annotations

import json

import pytest
import torch

from engine import bench
from engine.cli import main


@pytest.fixture(scope="module", autouse=True)
def tqdm_monitor():
    """diffusers makes (disabled) tqdm bars while loading and keeps one alive; tqdm starts its monitor thread for
    any bar. Start that thread before the per-test leak check, with a bar held open for this module."""
    from tqdm import tqdm

    bar = tqdm(disable=True)
    yield
    bar.close()


def test_quick_bench_runs_headless_and_writes_json(tmp_path, capsys):
    out = tmp_path / "results" / "quick.json"
    assert main(["bench", "--quick", "--device", "cpu", "--out", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and summary[0] == report["summary"] and summary[0].startswith("darkroom bench on CPU")
    for key in ("date", "device", "torch", "diffusers", "transformers", "settings", "cases", "notes"):
        assert key in report
    assert report["quick"] and report["device_kind"] == "cpu"
    (case,) = report["cases"]
    assert case["case"] == "tiny" and case["size"] == [64, 64] and case["steps"] == 4 and case["cfg"] == 7.5
    stock, engine = case["stock"], case["engine"]
    assert stock["s_per_image"] > 0 and stock["its"] > 0 and stock["attention"] == "AttnProcessor2_0"
    assert engine["s_per_image"] > 0 and engine["its"] > 0 and engine["no_preview"]["its"] > 0
    assert engine["previews_per_image"] == 4  # a preview at every step
    assert 0 < engine["submit_to_first_preview_s"] < engine["s_per_image"]
    assert engine["preview_overhead"] is not None and case["speedup"] > 0 and case["its_ratio"] > 0
    assert engine["compile"]["state"] == "not used on this device"
    # Same prompt, noise and sampler: the engine's picture is the stock pipeline's.
    assert engine["pixel_diff_vs_stock"]["max"] <= 1


def test_real_architectures_are_the_published_ones():
    """SD1.5 and SDXL as the benchmark builds them (on the meta device: no memory, no time)."""
    expected = {
        "sd15": {"unet": 859.52, "vae": 83.65, "text_encoder": 123.06},
        "sdxl": {"unet": 2567.46, "vae": 83.65, "text_encoder": 123.06, "text_encoder_2": 694.66},
    }
    for name, sizes in expected.items():
        parts = bench.build_components(bench.ARCHS[name], "meta")
        counts = {k: round(sum(p.numel() for p in m.parameters()) / 1e6, 2) for k, m in parts.items() if m is not None}
        assert counts == sizes, name
        arch = bench.ARCHS[name]
        side = arch.unet["sample_size"]
        kwargs = {}
        if name == "sdxl":
            kwargs["added_cond_kwargs"] = {"text_embeds": torch.zeros(2, 1280, device="meta"),
                                           "time_ids": torch.zeros(2, 6, device="meta")}
        with torch.inference_mode():
            out = parts["unet"](torch.zeros(2, 4, side, side, device="meta"), torch.zeros((), device="meta"),
                                encoder_hidden_states=torch.zeros(2, 77, arch.unet["cross_attention_dim"], device="meta"),
                                return_dict=False, **kwargs)[0]
        assert out.shape == (2, 4, side, side) and side * 8 == arch.size


def test_cpu_run_falls_back_to_a_tiny_model_and_says_so(tmp_path, monkeypatch):
    import engine.paths

    monkeypatch.setattr(engine.paths, "BUNDLED_MODELS", tmp_path / "none")
    notes: list[str] = []
    label, folder = bench._bundled_or_tiny(tmp_path / "work", notes)
    assert label == "tiny" and (folder / "model_index.json").is_file()
    assert notes and "absent" in notes[0]


def test_bad_arguments_fail_with_a_message(capsys):
    assert main(["bench", "--device", "cpu", "--cases", "sd3"]) == 2
    assert "unknown case sd3" in capsys.readouterr().err
    assert main(["bench", "--device", "cpu", "--sampler", "Warp"]) == 2
    if not torch.cuda.is_available():
        assert main(["bench", "--device", "cuda"]) == 1
        assert "no CUDA GPU" in capsys.readouterr().err


def test_targets_are_checked_and_summarised():
    case = {
        "case": "sd15", "size": [512, 512], "speedup": 4.4, "engine_vs_stock": -0.77,
        "stock": {"s_per_image": 1.15, "its": 26.0},
        "engine": {"s_per_image": 0.26, "its": 152.0, "preview_overhead": 0.012, "submit_to_first_preview_s": 0.045,
                   "compile": {"cold_s": 74.0, "warm_s": 9.5, "relaunch_to_full_speed_s": 16.0},
                   "peak_vram_gb": 3.2},
    }
    targets, met = bench._check("sd15", "cuda", case, None)
    assert met == {"speedup_min": True, "its_min": True, "preview_overhead_max": True, "first_preview_s_max": True,
                   "relaunch_to_full_speed_s_max": False}
    assert targets["relaunch_to_full_speed_s_max"] == 15.0
    line = bench.summary_line({"device": "NVIDIA H100", "cases": [case]})
    assert "4.40x" in line and "152.0 it/s" in line and "74 s cold / 10 s warm" in line and "+1.2%" in line
    empty = dict(case, speedup=None, engine=dict(case["engine"], its=None, preview_overhead=None))
    assert "n/a" in bench.summary_line({"device": "x", "cases": [empty]})


def test_step_timer_counts_steps_per_second():
    timer = bench.StepTimer("cpu")
    assert timer.its() is None
    timer.marks = [0.0, 0.5, 1.0]
    assert timer.its() == 2.0
