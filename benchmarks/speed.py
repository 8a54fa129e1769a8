"""How fast Darkroom generates, against calling the stock diffusers pipeline, headless.

    python benchmarks/speed.py --quick --device cpu
    python benchmarks/speed.py --cases sd15 --out benchmarks/results/<date>-h200-sd15.json

A standalone script beside the app, not part of it: nothing in ``engine`` or ``gui`` imports it. It prints the
report as JSON on stdout, or writes it to ``--out`` and prints one summary line; it never writes into the
checkout unless asked to.

On a GPU it builds the real SD1.5 and SDXL architectures (configs below, written out so nothing is downloaded)
with random weights in half precision, saves them once as diffusers folders under the cache, and measures in
one run on the same GPU, for SD1.5 at 512² and SDXL at 1024² (30 steps, CFG 7.5, batch 1):

- the stock pipeline (eager, SDPA attention, no preview), called with the same prompt, initial noise and sampler;
- Darkroom's engine (the real ``Engine``: queue, worker thread, events) with an x0 preview at every step: its
  first generation (eager while the U-Net compiles in the background), the compile (cold: empty cache), then
  warm generations with and without previews, and a relaunch in a fresh process (warm cache → full speed).

It reports seconds per image, denoising it/s (from events recorded on the GPU stream at each step's end),
their ratios, the preview overhead, time from submit to first preview, compile times and peak VRAM, writes JSON
and prints one line. On a CPU it runs the same comparison with the bundled model (or ``--model``), or a tiny
random SD pipeline when there is none, and says so. ``--quick`` is the CI-sized form: tiny model, few steps.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # measure the engine of this checkout, also when run as a plain script
    sys.path.insert(0, str(ROOT))

from engine.models import native_size  # noqa: E402

log = logging.getLogger(__name__)

PROMPT = "a lighthouse on a rocky cliff at dawn, oil painting, warm light"
NEGATIVE = "blurry, low quality"
SEED = 1234
COMPILE_TIMEOUT_S = 1800.0

# ------------------------------------------------------------------------------------------------ architectures
_CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
               max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu", projection_dim=768,
               layer_norm_eps=1e-5)
_CLIP_BIGG = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                  max_position_embeddings=77, vocab_size=49408, hidden_act="gelu", projection_dim=1280,
                  layer_norm_eps=1e-5)
_SD_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
               up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
               layers_per_block=2, act_fn="silu", latent_channels=4, norm_num_groups=32)
_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                  steps_offset=1, prediction_type="epsilon")


@dataclass(frozen=True)
class Arch:
    """A Stable Diffusion architecture written out: enough to build it with random weights."""

    name: str
    pipeline: str  # diffusers pipeline class
    size: int  # native image size
    unet: dict
    vae: dict
    text: dict
    text_2: dict | None = None
    scheduler: str = "EulerDiscreteScheduler"
    scheduler_config: dict | None = None

    @property
    def family(self) -> str:
        return "sdxl" if self.text_2 is not None else "sd"


ARCHS: dict[str, Arch] = {
    # stable-diffusion-v1-5: unet/config.json, vae/config.json, text_encoder/config.json
    "sd15": Arch(
        "sd15", "StableDiffusionPipeline", 512,
        unet=dict(sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
                  freq_shift=0, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                  up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                  block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1,
                  mid_block_scale_factor=1, act_fn="silu", norm_num_groups=32, norm_eps=1e-5,
                  cross_attention_dim=768, attention_head_dim=8),
        vae=dict(_SD_VAE, sample_size=512, scaling_factor=0.18215),
        text=_CLIP_L,
        scheduler="PNDMScheduler",
        scheduler_config=dict(_SCHEDULER, skip_prk_steps=True, set_alpha_to_one=False, clip_sample=False),
    ),
    # stable-diffusion-xl-base-1.0: unet/config.json, vae/config.json, text_encoder(_2)/config.json
    "sdxl": Arch(
        "sdxl", "StableDiffusionXLPipeline", 1024,
        unet=dict(sample_size=128, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
                  freq_shift=0, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                  mid_block_type="UNetMidBlock2DCrossAttn", block_out_channels=(320, 640, 1280),
                  layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1, act_fn="silu",
                  norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=2048, attention_head_dim=(5, 10, 20),
                  transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
                  addition_embed_type="text_time", addition_time_embed_dim=256,
                  projection_class_embeddings_input_dim=2816),
        vae=dict(_SD_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True),
        text=_CLIP_L,
        text_2=_CLIP_BIGG,
        scheduler_config=dict(_SCHEDULER, timestep_spacing="leading", interpolation_type="linear",
                              use_karras_sigmas=False),
    ),
    # CI-sized: the same layout in miniature (64×64 images), runs in well under a second per image on a CPU.
    "tiny": Arch(
        "tiny", "StableDiffusionPipeline", 64,
        unet=dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=8,
                  attention_head_dim=8),
        vae=dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                 up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(16, 16, 16, 16),
                 layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=64),
        text=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                  max_position_embeddings=77, vocab_size=1000, layer_norm_eps=1e-5),
        scheduler="DDIMScheduler",
        scheduler_config=dict(_SCHEDULER, clip_sample=False, set_alpha_to_one=False),
    ),
}

#: Goals on an H100/H200 (same run), and on a CPU with the bundled model.
TARGETS = {
    "sd15": {"speedup_min": 4.0, "its_min": 150.0, "preview_overhead_max": 0.03, "first_preview_s_max": 0.100},
    "sdxl": {"speedup_min": 1.4, "its_min": 22.0, "preview_overhead_max": 0.03, "first_preview_s_max": 0.100},
    "cpu": {"engine_vs_stock_max": 0.05},
    "relaunch_to_full_speed_s_max": 15.0,
}


def _byte_tokenizer(folder: Path):
    """A CLIP tokenizer over the 256 byte symbols (no merges): real token counts, no download."""
    from engine.train.tokenizer import byte_level_tokenizer

    return byte_level_tokenizer(folder)


def build_components(arch: Arch, device: str = "cpu", dtype=None):
    """The U-Net, VAE and text encoder(s) of ``arch`` with random weights (seeded), on ``device``."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**arch.unet)
        vae = AutoencoderKL(**arch.vae)
        special = dict(bos_token_id=512, eos_token_id=513, pad_token_id=513)  # the byte tokenizer's ids
        text = CLIPTextModel(CLIPTextConfig(**arch.text, **special))
        text_2 = CLIPTextModelWithProjection(CLIPTextConfig(**arch.text_2, **special)) if arch.text_2 else None
    parts = {"unet": unet, "vae": vae, "text_encoder": text, "text_encoder_2": text_2}
    if dtype is not None:
        for part in parts.values():
            if part is not None:
                part.to(dtype)
    return parts


def build_random_model(arch: Arch, folder: Path, device: str = "cpu", dtype_name: str = "float32") -> Path:
    """Save ``arch`` with random weights as a diffusers folder (built on ``device``, stored in ``dtype_name``)."""
    import diffusers
    import torch

    from engine.loader import prepare_libraries

    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        return folder
    prepare_libraries()
    parts = build_components(arch, device, getattr(torch, dtype_name))
    tokenizer, _ = _byte_tokenizer(folder.parent / f".{folder.name}-tokenizer")
    scheduler = getattr(diffusers, arch.scheduler)(**(arch.scheduler_config or {}))
    kwargs: dict[str, Any] = dict(unet=parts["unet"], vae=parts["vae"], text_encoder=parts["text_encoder"],
                                  tokenizer=tokenizer, scheduler=scheduler)
    if arch.family == "sdxl":
        kwargs.update(text_encoder_2=parts["text_encoder_2"], tokenizer_2=tokenizer)
    else:
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe = getattr(diffusers, arch.pipeline)(**kwargs)
    tmp = folder.with_name(folder.name + ".partial")
    pipe.save_pretrained(tmp, safe_serialization=True)
    os.replace(tmp, folder)
    return folder


# ------------------------------------------------------------------------------------------------ timing
class StepTimer:
    """Marks the end of each step: CUDA events on the current stream (no host wait), or the wall clock."""

    def __init__(self, device: str):
        self.cuda = device == "cuda"
        self.marks: list[Any] = []

    def mark(self) -> None:
        if self.cuda:
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def its(self) -> float | None:
        """Steps per second between the first and the last mark."""
        if len(self.marks) < 2:
            return None
        if self.cuda:
            self.marks[-1].synchronize()
            seconds = self.marks[0].elapsed_time(self.marks[-1]) / 1000.0
        else:
            seconds = self.marks[-1] - self.marks[0]
        return (len(self.marks) - 1) / seconds if seconds > 0 else None


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _peak_reset(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb(device: str) -> float | None:
    if device != "cuda":
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# ------------------------------------------------------------------------------------------------ runners
class Stock:
    """The stock diffusers pipeline as people call it: eager, SDPA attention, no preview."""

    def __init__(self, folder: Path, device: str, dtype_name: str, sampler: str):
        import diffusers
        import torch

        from engine import families, samplers
        from engine.devices import DeviceChoice
        from engine.families.components import load_pipeline
        from engine.loader import prepare_libraries

        prepare_libraries()
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        family = families.for_pipeline(index["_class_name"])
        if family is None:
            raise BenchError(f"{folder} is a {index['_class_name']} model, which Darkroom does not run")
        # The family's load options (no safety checker), so both sides load the same parts.
        cls = getattr(diffusers, index["_class_name"])
        self.pipe = load_pipeline(cls, folder, DeviceChoice(device, dtype_name), family.load_options).to(device)
        self.pipe.set_progress_bar_config(disable=True)
        self.pipe.scheduler = samplers.get(sampler).make(self.pipe.scheduler.config)
        self.device = device
        self.dtype = getattr(torch, dtype_name)
        processors = {type(p).__name__ for p in self.pipe.unet.attn_processors.values()}
        self.attention = ",".join(sorted(processors))

    def run(self, size: tuple[int, int], steps: int, cfg: float, seed: int = SEED) -> dict:
        import torch

        width, height = size
        pipe = self.pipe
        shape = (1, pipe.unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
        # The engine's initial noise (CPU generator, float32), handed over so both make the same picture.
        latents = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
        latents = latents.to(self.device, self.dtype)
        timer = StepTimer(self.device)

        def on_step_end(_pipe, _i, _t, kwargs):
            timer.mark()
            return kwargs

        _sync(self.device)
        started = time.perf_counter()
        out = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=cfg,
                   height=height, width=width, latents=latents, output_type="np", callback_on_step_end=on_step_end)
        seconds = time.perf_counter() - started  # output_type="np" ends with a copy to the host
        image = (out.images[0] * 255).round().clip(0, 255).astype("uint8")
        return {"s_per_image": seconds, "its": timer.its(), "image": image}


class EngineRunner:
    """Darkroom's engine as the app drives it, one job at a time, with every event timed as it arrives."""

    def __init__(self, folder: Path, device: str, fast_path: bool, preview_interval: float = 0.0):
        from engine.engine import Engine, EngineOptions, PreviewOptions

        self.device = device
        self.preview_interval = preview_interval
        self.folder = folder
        self._lock = threading.Lock()
        self._job: dict | None = None
        import torch

        # The same CPU thread count as the stock pipeline on this thread, so both sides get the same cores.
        self.engine = Engine(self._on_event, EngineOptions(device=device, fast_path=fast_path,
                                                           preview=PreviewOptions(mode="x0", interval_s=preview_interval),
                                                           cpu_threads=torch.get_num_threads()))
        self.engine.start()

    def _on_event(self, event) -> None:
        from engine.events import Cancelled, Failed, Finished, ImageReady, Preview, Progress, StatusChanged

        now = time.perf_counter()
        job = self._job
        if isinstance(event, StatusChanged) and job is not None and event.message.endswith(" loaded"):
            job["loaded_at"] = now
        if job is None or getattr(event, "job_id", None) != job.get("id"):
            return
        if isinstance(event, Progress):
            job["timer"].mark()
        elif isinstance(event, Preview):
            job["previews"] += 1
            job.setdefault("first_preview", now)
        elif isinstance(event, ImageReady):
            job["image_at"], job["image"], job["notes"] = now, event.image, event.notes
        elif isinstance(event, Failed):
            job["error"] = f"{event.message} {event.details[-500:]}"
        if isinstance(event, (Finished, Failed, Cancelled)):
            job["done"].set()

    def run(self, size: tuple[int, int], steps: int, cfg: float, sampler: str, preview: bool = True,
            seed: int = SEED, timeout: float = 900.0) -> dict:
        from engine.engine import PreviewOptions
        from engine.request import build_request

        width, height = size
        request = build_request(prompt=PROMPT, negative_prompt=NEGATIVE, seed=seed, steps=steps, cfg=cfg,
                                width=width, height=height, sampler=sampler, model=str(self.folder)).request
        self.engine.set_preview(PreviewOptions(mode="x0" if preview else "off", interval_s=self.preview_interval))
        job = {"id": None, "timer": StepTimer(self.device), "previews": 0, "done": threading.Event()}
        with self._lock:
            self._job = job
            started = time.perf_counter()
            job["id"] = self.engine.submit(request)
        if not job["done"].wait(timeout):
            raise RuntimeError(f"the engine did not finish a job in {timeout:.0f}s")
        if "error" in job or "image" not in job:
            raise RuntimeError(f"the engine failed: {job.get('error', 'no image')}")
        first = job.get("first_preview")
        if "loaded_at" in job:  # the model was loaded by this job: time the generation from then on
            load_s = job["loaded_at"] - started
            started = job["loaded_at"]
        else:
            load_s = None
        return {
            "model_load_s": load_s,
            "s_per_image": job["image_at"] - started,
            "its": job["timer"].its(),
            "first_preview_s": first - started if first else None,
            "previews": job["previews"],
            "image": job["image"],
            "notes": list(job.get("notes", ())),
        }

    def fast_path(self):
        from engine import fastpath

        for fast in fastpath.instances():
            if fast.disabled != "closed" and Path(fast.identity.split("|")[0]) == self.folder.resolve():
                return fast
        return None

    def close(self) -> None:
        self.engine.shutdown(timeout=30)


def _pixel_diff(a, b) -> dict | None:
    import numpy as np

    if a is None or b is None or a.shape != b.shape:
        return None
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"max": int(d.max()), "mean": round(float(d.mean()), 3)}


def _summarise(samples: list[dict], key: str) -> float | None:
    value = _median(s.get(key) for s in samples)
    return None if value is None else round(value, 4)


# ------------------------------------------------------------------------------------------------ one case
def run_case(name: str, folder: Path, device: str, dtype_name: str, size: tuple[int, int], steps: int, cfg: float,
             sampler: str, runs: int, fast_path: bool = True, relaunch: bool = True, notes: list[str] | None = None,
             targets: dict | None = None, model_label: str | None = None, preview_interval: float = 0.0) -> dict:
    """Stock pipeline vs the engine for one model and size; returns the case's JSON."""
    import gc

    notes = notes if notes is not None else []
    result: dict[str, Any] = {"case": name, "model": model_label or str(folder), "size": list(size), "dtype": dtype_name,
                              "steps": steps, "cfg": cfg, "sampler": sampler, "batch": 1}
    # 1. Stock pipeline, alone on the device.
    _peak_reset(device)
    stock = Stock(folder, device, dtype_name, sampler)
    stock.run(size, steps, cfg)  # warm-up: cuDNN/cuBLAS autotuning, allocator
    stock_runs = []
    gpu = device == "cuda"
    if gpu:
        stock_runs = [stock.run(size, steps, cfg) for _ in range(runs)]
        result["stock"] = {"s_per_image": _summarise(stock_runs, "s_per_image"), "its": _summarise(stock_runs, "its"),
                           "s_per_image_min": round(min(r["s_per_image"] for r in stock_runs), 4),
                           "peak_vram_gb": _peak_gb(device), "attention": stock.attention}
        stock_image = stock_runs[-1]["image"]
        del stock
        gc.collect()
        import torch

        torch.cuda.empty_cache()

    # 2. The engine: first generation (eager; the compile starts in the background), the compile, warm runs.
    _peak_reset(device)
    engine = EngineRunner(folder, device, fast_path, preview_interval)
    try:
        first = engine.run(size, steps, cfg, sampler)
        compile_info: dict[str, Any] = {"cold_s": None, "capture_s": None, "state": "not used on this device"}
        fast = engine.fast_path()
        if fast is not None and not fast.wait(COMPILE_TIMEOUT_S):
            notes.append(f"{name}: the compile took longer than {COMPILE_TIMEOUT_S:.0f}s; measured without it.")
        engine.run(size, steps, cfg, sampler)  # warm-up (captures the CUDA graph when the compile is done)
        fast = engine.fast_path()
        if fast is not None:
            stats = list(fast.stats().values())
            if stats:
                compile_info = {"cold_s": stats[0]["compile_s"], "capture_s": stats[0]["capture_s"],
                                "state": stats[0]["state"], "error": stats[0]["error"],
                                "cache": stats[0]["expected"]}
            if fast.disabled:
                compile_info["disabled"] = fast.disabled
        engine_runs, quiet_runs = [], []
        for _ in range(runs):
            if not gpu:  # CPU timings drift with other work: interleave the stock calls with the engine's
                stock_runs.append(stock.run(size, steps, cfg))
            engine_runs.append(engine.run(size, steps, cfg, sampler, preview=True))
            quiet_runs.append(engine.run(size, steps, cfg, sampler, preview=False))
        peak = _peak_gb(device)
    finally:
        engine.close()
    if not gpu:
        result["stock"] = {"s_per_image": _summarise(stock_runs, "s_per_image"), "its": _summarise(stock_runs, "its"),
                           "s_per_image_min": round(min(r["s_per_image"] for r in stock_runs), 4),
                           "peak_vram_gb": None, "attention": stock.attention}
        stock_image = stock_runs[-1]["image"]
        del stock

    its_preview = _summarise(engine_runs, "its")
    its_quiet = _summarise(quiet_runs, "its")
    s_preview = _summarise(engine_runs, "s_per_image")
    s_quiet = _summarise(quiet_runs, "s_per_image")
    result["engine"] = {
        "s_per_image": s_preview,
        "s_per_image_min": round(min(r["s_per_image"] for r in engine_runs), 4),
        "its": its_preview,
        "submit_to_first_preview_s": _summarise(engine_runs, "first_preview_s"),
        "previews_per_image": engine_runs[-1]["previews"],
        "no_preview": {"s_per_image": s_quiet, "its": its_quiet},
        "preview_overhead": round(its_quiet / its_preview - 1.0, 4) if its_preview and its_quiet else None,
        "first_generation": {k: None if first[k] is None else round(first[k], 4)
                             for k in ("model_load_s", "s_per_image", "its", "first_preview_s")},
        "compile": compile_info,
        "peak_vram_gb": peak,
        "notes": engine_runs[-1]["notes"],
        "pixel_diff_vs_stock": _pixel_diff(engine_runs[-1]["image"], stock_image),
    }
    stock_s, stock_its = result["stock"]["s_per_image"], result["stock"]["its"]
    result["speedup"] = round(stock_s / s_preview, 3) if stock_s and s_preview else None
    result["its_ratio"] = round(its_preview / stock_its, 3) if its_preview and stock_its else None
    result["engine_vs_stock"] = round(s_preview / stock_s - 1.0, 4) if stock_s and s_preview else None
    best_stock, best_engine = result["stock"]["s_per_image_min"], result["engine"]["s_per_image_min"]
    result["engine_vs_stock_best_runs"] = round(best_engine / best_stock - 1.0, 4) if best_stock else None

    if gpu and relaunch and fast_path and compile_info.get("state") == "ready":
        result["engine"]["compile"].update(relaunch_probe(folder, device, size, steps, cfg, sampler))
    result["targets"], result["met"] = _check(name, device, result, targets)
    return result


def _check(name: str, device: str, result: dict, targets: dict | None) -> tuple[dict, dict]:
    if targets is None:
        targets = TARGETS.get(name) if device == "cuda" else TARGETS["cpu"]
    if not targets:
        return {}, {}
    engine = result["engine"]
    values = {
        "speedup_min": result.get("speedup"),
        "its_min": engine.get("its"),
        "preview_overhead_max": engine.get("preview_overhead"),
        "first_preview_s_max": engine.get("submit_to_first_preview_s"),
        "engine_vs_stock_max": result.get("engine_vs_stock"),
    }
    met = {}
    for key, goal in targets.items():
        value = values.get(key)
        if value is None:
            met[key] = None
        elif key.endswith("_min"):
            met[key] = value >= goal
        else:
            met[key] = value <= goal
    relaunch = engine.get("compile", {}).get("relaunch_to_full_speed_s")
    if device == "cuda" and relaunch is not None:
        targets = {**targets, "relaunch_to_full_speed_s_max": TARGETS["relaunch_to_full_speed_s_max"]}
        met["relaunch_to_full_speed_s_max"] = relaunch <= TARGETS["relaunch_to_full_speed_s_max"]
    return targets, met


# ------------------------------------------------------------------------------------------------ relaunch
def relaunch_probe(folder: Path, device: str, size, steps: int, cfg: float, sampler: str, timeout: float = 900) -> dict:
    """Start a fresh process on the same compile cache: how long until it generates at full speed."""
    spec = {"folder": str(folder), "device": device, "size": list(size), "steps": steps, "cfg": cfg,
            "sampler": sampler, "spawned": time.time()}
    try:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--relaunch-probe", json.dumps(spec)],
                              capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
        line = [x for x in done.stdout.splitlines() if x.startswith("{")][-1]
        return json.loads(line)
    except Exception as exc:  # noqa: BLE001 - reported in the JSON
        return {"relaunch_error": f"{type(exc).__name__}: {exc}"}


def _relaunch_main(spec_text: str) -> int:
    spec = json.loads(spec_text)
    folder, device = Path(spec["folder"]), spec["device"]
    size, steps, cfg, sampler = tuple(spec["size"]), spec["steps"], spec["cfg"], spec["sampler"]
    engine = EngineRunner(folder, device, fast_path=True)
    out: dict[str, Any] = {}
    try:
        first = engine.run(size, steps, cfg, sampler)
        out["relaunch_first_image_s"] = round(first["s_per_image"], 3)
        fast = engine.fast_path()
        if fast is not None:
            fast.wait(COMPILE_TIMEOUT_S)
        second = engine.run(size, steps, cfg, sampler)
        fast = engine.fast_path()
        stats = list(fast.stats().values()) if fast else []
        out["warm_s"] = stats[0]["compile_s"] if stats else None
        out["warm_cache"] = stats[0]["expected"] if stats else None
        out["relaunch_state"] = stats[0]["state"] if stats else None
        ready_at = time.time() - second["s_per_image"]  # the job that runs compiled started here
        out["relaunch_to_full_speed_s"] = round(ready_at - spec["spawned"], 2)
        out["relaunch_its"] = second["its"]
    finally:
        engine.close()
    print(json.dumps(out), flush=True)
    return 0


# ------------------------------------------------------------------------------------------------ command
class BenchError(Exception):
    """A bad argument or an unusable machine: printed as one line, exit status ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmarks/speed.py",
        description="Measure seconds per image, it/s, preview overhead, time to first preview, compile times and "
        "peak VRAM: stock diffusers vs Darkroom's engine with a preview at every step.",
    )
    p.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: CUDA when available")
    p.add_argument("--cases", default=None, metavar="LIST",
                   help="GPU: sd15,sdxl (default both; random weights of the real architectures). "
                   "CPU: the bundled model unless --model or --cases sd15/sdxl/tiny")
    p.add_argument("--model", default=None, metavar="PATH", help="model folder for the CPU comparison")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default 30; --quick 4)")
    p.add_argument("--runs", type=int, default=None,
                   help="timed runs per measurement (default 3 on a GPU, 5 on a CPU; --quick 1)")
    p.add_argument("--cfg", type=float, default=7.5)
    p.add_argument("--sampler", default="Euler", help="sampler for both sides (default Euler)")
    p.add_argument("--no-fast-path", action="store_true", help="run the engine with EngineOptions.fast_path off")
    p.add_argument("--preview-interval", type=float, default=0.0, metavar="S",
                   help="the engine's preview throttle (default 0: a preview at every step; the app uses 0.05)")
    p.add_argument("--no-relaunch", action="store_true", help="skip the fresh-process relaunch measurement")
    p.add_argument("--quick", action="store_true", help="CI-sized: tiny random model, few steps")
    p.add_argument("--compile-cache", type=Path, default=None, metavar="DIR",
                   help="compile cache to use (default: a fresh folder, so the first compile is cold)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="write the JSON report to FILE and print a summary line (default: JSON on stdout)")
    return p


def _bundled_or_tiny(work: Path, notes: list[str]) -> tuple[str, Path]:
    """The bundled model, or a tiny random SD pipeline (with a note) while it is absent."""
    from engine import paths

    bundled = paths.BUNDLED_MODELS / "darkroom-emoji"
    if (bundled / "model_index.json").is_file():
        return "darkroom-emoji", bundled
    notes.append("The bundled model (resources/models/darkroom-emoji) is absent: a tiny random SD pipeline stands "
                 "in for it.")
    return "tiny", build_random_model(ARCHS["tiny"], work / "tiny")


def _device_label(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def summary_line(report: dict) -> str:
    parts = []
    for case in report["cases"]:
        eng, stock = case["engine"], case["stock"]
        size = "x".join(str(s) for s in case["size"])

        def fmt(v, pattern):
            return pattern.format(v) if v is not None else "n/a"

        part = (f"{case['case']} {size}: stock {fmt(stock['s_per_image'], '{:.3f}')} s ({fmt(stock['its'], '{:.1f}')} it/s)"
                f" -> darkroom {fmt(eng['s_per_image'], '{:.3f}')} s ({fmt(eng['its'], '{:.1f}')} it/s),"
                f" {fmt(case['speedup'], '{:.2f}')}x, preview {fmt(eng['preview_overhead'] and eng['preview_overhead'] * 100, '{:+.1f}')}%,"
                f" first preview {fmt(eng['submit_to_first_preview_s'] and eng['submit_to_first_preview_s'] * 1000, '{:.0f}')} ms")
        cold = eng.get("compile", {}).get("cold_s")
        if cold is not None:
            part += f", compile {cold:.0f} s cold"
            warm = eng["compile"].get("warm_s")
            if warm is not None:
                part += f" / {warm:.0f} s warm"
        if eng.get("peak_vram_gb") is not None:
            part += f", peak {eng['peak_vram_gb']:.1f} GiB"
        parts.append(part)
    return f"darkroom speed on {report['device']}: " + " | ".join(parts)


def run(args) -> int:
    import diffusers
    import torch
    import transformers

    from engine import __version__
    from engine.compile_cache import CACHE_ENV
    from engine.samplers import SAMPLER_NAMES

    if args.sampler not in SAMPLER_NAMES:
        raise BenchError(f"unknown sampler {args.sampler!r}; choose one of: {', '.join(SAMPLER_NAMES)}", 2)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA GPU is available here")
    gpu = device == "cuda"
    if not gpu:
        from engine.runtime import cpu_threads

        # Both sides run with the thread count the app uses on this machine, one pool at a time.
        torch.set_num_threads(cpu_threads())
    steps = args.steps or (4 if args.quick else 30)
    runs = args.runs or (1 if args.quick else 3 if gpu else 5)
    notes: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="darkroom-bench-"))
    cache = args.compile_cache or (work / "compile-cache")
    os.environ[CACHE_ENV] = str(cache)  # read when the engine first compiles; a fresh folder means a cold compile

    from engine import paths

    if args.quick:
        names = ["tiny"]
    elif args.cases:
        names = [c.strip() for c in args.cases.split(",") if c.strip()]
    elif args.model:
        names = ["model"]
    else:
        names = ["sd15", "sdxl"] if gpu else ["bundled"]
    unknown = [n for n in names if n not in ARCHS and n not in ("bundled", "model")]
    if unknown:
        raise BenchError(f"unknown case {', '.join(unknown)}; cases are sd15, sdxl, tiny, bundled", 2)

    dtype_name = "float16" if gpu else "float32"
    cases = []
    for name in names:
        tiny_label = "tiny random SD pipeline, built by the benchmark"
        if name == "model":
            folder = Path(args.model).expanduser().resolve()
            label, description = folder.name, str(folder)
        elif name == "bundled":
            label, folder = _bundled_or_tiny(work, notes)
            description = "resources/models/darkroom-emoji" if label != "tiny" else tiny_label
        elif name == "tiny":
            label, folder = "tiny", build_random_model(ARCHS["tiny"], work / "tiny", "cpu", dtype_name)
            description = tiny_label
        else:
            label = name
            store = paths.cache_dir() / "bench-models" / f"{name}-{dtype_name}"
            print(f"building {name} with random weights ({store})…", file=sys.stderr, flush=True)
            folder = build_random_model(ARCHS[name], store, device, dtype_name)
            description = f"{name} architecture (published configs), random weights, {dtype_name}"
        if not (folder / "model_index.json").is_file():
            raise BenchError(f"{folder} is not a diffusers model folder (no model_index.json)")
        size = (ARCHS[name].size,) * 2 if name in ("sd15", "sdxl") else native_size(str(folder))
        print(f"measuring {label} at {size[0]}x{size[1]}, {steps} steps…", file=sys.stderr, flush=True)
        case = run_case(label, folder, device, dtype_name, size, steps, args.cfg, args.sampler, runs,
                        fast_path=not args.no_fast_path, relaunch=not args.no_relaunch, notes=notes,
                        targets={} if args.quick else None, model_label=description,
                        preview_interval=args.preview_interval)
        cases.append(case)

    if not gpu:
        notes.append("CPU run: the GPU fast path does not apply (no compile); GPU figures need a CUDA machine.")
    report = {
        "darkroom": __version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": _device_label(device),
        "device_kind": device,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "quick": bool(args.quick),
        "settings": {"steps": steps, "cfg": args.cfg, "sampler": args.sampler, "runs": runs, "batch": 1,
                     "preview": ("x0 at every step (engine); none (stock)" if args.preview_interval <= 0 else
                                 f"x0 at most every {args.preview_interval} s, as the app (engine); none (stock)"),
                     "fast_path": not args.no_fast_path,
                     "compile_cache": "given" if args.compile_cache else "fresh (cold first compile)"},
        "cases": cases,
        "notes": notes,
    }
    report["summary"] = summary_line(report)
    text = json.dumps(report, indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        print(report["summary"], file=sys.stderr)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(report["summary"])
        print(f"results: {args.out}", file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.compile_cache is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except BenchError as exc:
        print(f"speed.py: error: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--relaunch-probe":
        logging.basicConfig(level=logging.WARNING)
        sys.exit(_relaunch_main(sys.argv[2]))
    sys.exit(main(sys.argv[1:]))
