"""benchmarks/speed.py on a CPU, CI-sized: the harness runs end to end and writes what it promises. Timings are
never asserted (the machine is shared); only that they exist and the pictures agree."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _load_speed():
    """The benchmark is a script beside the app, not a module of it: load it from its file."""
    spec = importlib.util.spec_from_file_location("darkroom_speed_benchmark", ROOT / "benchmarks" / "speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


bench = _load_speed()
main = bench.main


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
    assert main(["--quick", "--device", "cpu", "--out", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and summary[0] == report["summary"] and summary[0].startswith("darkroom speed on CPU")
    for key in ("date", "device", "torch", "diffusers", "transformers", "settings", "cases", "notes"):
        assert key in report
    assert report["quick"] and report["device_kind"] == "cpu"
    (case,) = report["cases"]
    assert case["case"] == "tiny" and case["size"] == [64, 64] and case["steps"] == 4 and case["cfg"] == 7.5
    stock, engine = case["stock"], case["engine"]
    assert stock["s_per_image"] > 0 and stock["its"] > 0 and stock["attention"] == "AttnProcessor2_0"
    assert engine["s_per_image"] > 0 and engine["its"] > 0 and engine["no_preview"]["its"] > 0
    assert engine["previews_per_image"] == 4  # a preview at every step
    assert engine["submit_to_first_preview_s"] > 0  # measured; how it compares is the benchmark's to report
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
    assert main(["--device", "cpu", "--cases", "sd3"]) == 2
    assert "unknown case sd3" in capsys.readouterr().err
    assert main(["--device", "cpu", "--sampler", "Warp"]) == 2
    assert "unknown sampler 'Warp'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["--device", "cuda"]) == 1
        assert "no CUDA GPU" in capsys.readouterr().err


def test_without_out_the_report_goes_to_stdout_and_nothing_into_the_checkout(capsys, monkeypatch):
    """No --out: JSON on stdout, the summary on stderr, and no file under benchmarks/results."""
    results = ROOT / "benchmarks" / "results"
    before = sorted(results.iterdir()) if results.is_dir() else []
    monkeypatch.setattr(bench, "run_case", lambda name, *a, **k: {"case": name, "size": [64, 64], "speedup": None,
                                                                  "stock": {"s_per_image": None, "its": None},
                                                                  "engine": {"s_per_image": None, "its": None,
                                                                             "preview_overhead": None,
                                                                             "submit_to_first_preview_s": None}})
    assert main(["--quick", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["cases"][0]["case"] == "tiny" and report["summary"] in captured.err
    assert (sorted(results.iterdir()) if results.is_dir() else []) == before


def test_nothing_in_the_app_imports_the_benchmark():
    import ast

    for package in ("engine", "gui"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
                else:
                    continue
                assert not any(n.startswith("benchmarks") or n.split(".")[-1] in ("bench", "speed") for n in names), path
