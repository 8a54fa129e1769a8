"""Correctness of Darkroom's engine on a CUDA GPU: every sampler in half precision, and full-size flow families.

    python benchmarks/gpu_check.py samplers --out samplers.json     # SD1.5 architecture, fp16, every sampler
    python benchmarks/gpu_check.py flow --out flow.json             # Flux.1-schnell and SD3.5 Medium, bf16

A script beside the app, as ``speed.py`` is (the app never imports it). The models are the published
architectures with random weights (nothing is downloaded), saved once as diffusers folders under the cache and
loaded through the app's own loader by the real :class:`~engine.engine.Engine`, with an x0 preview at every step
and the GPU fast path on, as the app runs them.

For each generation it records whether it finished, how many previews streamed, whether the final image or any
preview holds NaN/∞ or is black (every pixel below 8 of 255 — what an fp16 overflow in the VAE turns into),
seconds per image, peak VRAM (for the flow families in the normal and the low-VRAM memory mode) and the engine's
notes. Random weights make noise-like pictures: the check is that
numbers stay finite and pictures are not blank, not that they look like anything. Exit status 0 when every
generation passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import speed  # noqa: E402  (the architectures and the random-model builder; benchmarks/ is on sys.path)

PROMPT = "a lighthouse on a rocky cliff at dawn, oil painting, warm light"
NEGATIVE = "blurry, low quality"

# Published configurations, written out so nothing is downloaded.
T5_XXL = dict(vocab_size=32128, d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24,
              feed_forward_proj="gated-gelu", relative_attention_num_buckets=32, decoder_start_token_id=0,
              pad_token_id=0, eos_token_id=1, is_encoder_decoder=False)
VAE_16 = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
              up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
              act_fn="silu", latent_channels=16, norm_num_groups=32, sample_size=1024, use_quant_conv=False,
              use_post_quant_conv=False)
FLUX_SCHNELL = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                    guidance_embeds=False, axes_dims_rope=(16, 56, 56))
SD35_MEDIUM = dict(sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
                   num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                   pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=384,
                   dual_attention_layers=tuple(range(13)), qk_norm="rms_norm")


# ------------------------------------------------------------------------------------------------ models
def _t5_tokenizer():
    from engine.train.tokenizer import unigram_t5_tokenizer

    return unigram_t5_tokenizer(PROMPT.replace(",", "").split() + NEGATIVE.replace(",", "").split())[0]


def build_flow_model(name: str, folder: Path) -> Path:
    """Save ``flux-schnell`` or ``sd35-medium`` with random weights (built on the GPU, stored in bfloat16)."""
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    if (folder / "model_index.json").is_file():
        return folder
    torch.manual_seed(0)
    tokenizer, _ = speed._byte_tokenizer(folder.parent / f".{folder.name}-tokenizer")
    special = dict(bos_token_id=512, eos_token_id=513, pad_token_id=513)
    with torch.device("cuda"):
        vae = diffusers.AutoencoderKL(**VAE_16, scaling_factor=0.3611 if name == "flux-schnell" else 1.5305,
                                      shift_factor=0.1159 if name == "flux-schnell" else 0.0609)
        t5 = T5EncoderModel(T5Config(**T5_XXL))
        if name == "flux-schnell":
            clip = CLIPTextModel(CLIPTextConfig(**speed._CLIP_L, **special))
            transformer = diffusers.FluxTransformer2DModel(**FLUX_SCHNELL)
            scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
            parts = dict(text_encoder=clip, tokenizer=tokenizer, text_encoder_2=t5, tokenizer_2=_t5_tokenizer())
            cls = diffusers.FluxPipeline
        else:
            clip_l = CLIPTextModelWithProjection(CLIPTextConfig(**speed._CLIP_L, **special))
            clip_g = CLIPTextModelWithProjection(CLIPTextConfig(**speed._CLIP_BIGG, **special))
            transformer = diffusers.SD3Transformer2DModel(**SD35_MEDIUM)
            scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
            parts = dict(text_encoder=clip_l, tokenizer=tokenizer, text_encoder_2=clip_g, tokenizer_2=tokenizer,
                         text_encoder_3=t5, tokenizer_3=_t5_tokenizer())
            cls = diffusers.StableDiffusion3Pipeline
    pipe = cls(transformer=transformer, vae=vae, scheduler=scheduler, **parts)
    pipe.to(torch.bfloat16)
    tmp = folder.with_name(folder.name + ".partial")
    pipe.save_pretrained(tmp, safe_serialization=True)
    os.replace(tmp, folder)
    del pipe, transformer, t5, vae
    torch.cuda.empty_cache()
    return folder


# ------------------------------------------------------------------------------------------------ the engine
class Runner:
    """The real engine, one job at a time; checks every preview and the final image as they arrive."""

    def __init__(self, device: str = "cuda", fast_path: bool = True):
        from engine.engine import Engine, EngineOptions, PreviewOptions

        self._job: dict | None = None
        self.cuda = device == "cuda"
        self.engine = Engine(self._on_event, EngineOptions(device=device, fast_path=fast_path, memory_mode="normal",
                                                           preview=PreviewOptions(mode="x0", interval_s=0.0)))
        self.engine.start()

    def _on_event(self, event) -> None:
        import numpy as np

        from engine.events import Cancelled, Failed, Finished, ImageReady, Preview

        job = self._job
        if job is None or getattr(event, "job_id", None) != job.get("id"):
            return
        if isinstance(event, Preview):
            job["previews"] += 1
            image = np.asarray(event.image)
            job["preview_nonfinite"] += int(not np.isfinite(image.astype(np.float32)).all())
            job["preview_black"] += int(image.max() < 8)
        elif isinstance(event, ImageReady):
            job["image"], job["notes"], job["image_at"] = np.asarray(event.image), list(event.notes), time.perf_counter()
        elif isinstance(event, Failed):
            job["error"] = f"{event.message} {event.details[-800:]}"
        if isinstance(event, (Finished, Failed, Cancelled)):
            job["done"].set()

    def run(self, folder: Path, sampler: str, steps: int, size: int, cfg: float, timeout: float = 300.0) -> dict:
        import numpy as np
        import torch

        from engine.request import build_request

        request = build_request(prompt=PROMPT, negative_prompt=NEGATIVE, seed=1234, steps=steps, cfg=cfg,
                                width=size, height=size, sampler=sampler, model=str(folder)).request
        job: dict[str, Any] = {"id": None, "previews": 0, "preview_nonfinite": 0, "preview_black": 0,
                               "done": threading.Event()}
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self._job = job
        started = time.perf_counter()
        job["id"] = self.engine.submit(request)
        finished = job["done"].wait(timeout)
        out: dict[str, Any] = {"sampler": sampler, "steps": steps, "size": size, "cfg": cfg,
                               "previews": job["previews"], "preview_nonfinite": job["preview_nonfinite"],
                               "preview_black": job["preview_black"],
                               "peak_vram_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                               if self.cuda else None}
        if not finished:
            out["error"] = f"did not finish in {timeout:.0f}s"
        elif "error" in job or "image" not in job:
            out["error"] = job.get("error", "no image")
        else:
            image = job["image"]
            out.update(seconds=round(job["image_at"] - started, 3), image_mean=round(float(image.mean()), 2),
                       image_std=round(float(image.std()), 2), black=bool(image.max() < 8),
                       nonfinite=not bool(np.isfinite(image.astype(np.float32)).all()), notes=job["notes"])
        out["ok"] = ("error" not in out and not out.get("black") and not out.get("nonfinite") and out["previews"] >= steps // 2
                     and out["preview_nonfinite"] == 0)
        return out

    def fast_state(self) -> list[dict]:
        from engine import fastpath

        return [{"identity": f.identity.split("|")[-1] if f.identity else None, "disabled": f.disabled,
                 "shapes": {k: {"state": v["state"], "error": v["error"], "compile_s": v["compile_s"]}
                            for k, v in f.stats().items()}} for f in fastpath.instances()]

    def close(self) -> None:
        self.engine.shutdown(timeout=30)


# ------------------------------------------------------------------------------------------------ checks
def check_samplers(steps: int, arch: str = "sd15", device: str = "cuda") -> dict:
    """Every sampler on the SD1.5 architecture at 512², fp16, previews every step, fast path on (``arch`` "tiny"
    and ``device`` "cpu": the same check in miniature, for the tests)."""
    from engine import fastpath, paths
    from engine.samplers import SAMPLER_NAMES

    dtype_name = "float16" if device == "cuda" else "float32"
    folder = speed.build_random_model(speed.ARCHS[arch], paths.cache_dir() / "bench-models" / f"{arch}-{dtype_name}",
                                      device, dtype_name)
    size = speed.ARCHS[arch].size
    runner = Runner(device)
    results = []
    try:
        for sampler in SAMPLER_NAMES:
            result = runner.run(folder, sampler, steps, size, 7.5)
            print(json.dumps(result), file=sys.stderr, flush=True)
            results.append(result)
        # Once more after the background compile: the same samplers through the CUDA graph.
        for fast in fastpath.instances():
            fast.wait(600)
        for sampler in SAMPLER_NAMES:
            result = runner.run(folder, sampler, steps, size, 7.5)
            result["pass"] = "after compile"
            print(json.dumps(result), file=sys.stderr, flush=True)
            results.append(result)
        fast = runner.fast_state()
    finally:
        runner.close()
    return {"check": "samplers", "model": f"{arch} architecture, random weights, {dtype_name}", "results": results,
            "fast_path": fast, "passed": all(r["ok"] for r in results)}


def check_flow(names: list[str]) -> dict:
    """Full-size flow-matching families in bfloat16 at 1024²: finite, not black, previews at every step."""
    import shutil

    import torch

    from engine import paths

    results = []
    for name in names:
        folder = paths.cache_dir() / "bench-models" / name
        started = time.perf_counter()
        try:
            build_flow_model(name, folder)
        except Exception as exc:  # noqa: BLE001 - reported in the JSON
            results.append({"model": name, "ok": False, "error": f"build: {type(exc).__name__}: {exc}"})
            continue
        build_s = round(time.perf_counter() - started, 1)
        runner = Runner()
        try:
            steps, cfg = (4, 0.0) if name == "flux-schnell" else (12, 4.5)
            # Normal twice (the first loads the model), then low VRAM: peak VRAM per memory mode.
            for attempt, mode in (("first (eager, loads the model)", "normal"), ("second", "normal"),
                                  ("low VRAM", "low")):
                runner.engine.set_memory_mode(mode)
                result = runner.run(folder, "Euler", steps, 1024, cfg, timeout=600)
                result.update(model=name, attempt=attempt, memory_mode=mode, build_s=build_s)
                if attempt == "second":
                    result["fast_path"] = runner.fast_state()
                print(json.dumps(result), file=sys.stderr, flush=True)
                results.append(result)
        finally:
            runner.close()
        shutil.rmtree(folder, ignore_errors=True)  # tens of GB: the next model needs the disk
        torch.cuda.empty_cache()
    return {"check": "flow", "results": results, "passed": bool(results) and all(r["ok"] for r in results)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/gpu_check.py", description=__doc__.split("\n")[0])
    p.add_argument("check", choices=("samplers", "flow"))
    p.add_argument("--steps", type=int, default=20, help="steps per sampler (samplers check)")
    p.add_argument("--models", default="flux-schnell,sd35-medium", help="flow check: flux-schnell, sd35-medium")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here (default: stdout)")
    args = p.parse_args(argv)

    import diffusers
    import torch
    import transformers

    from engine.loader import prepare_libraries

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU is available here", file=sys.stderr)
        return 1
    prepare_libraries()
    if args.check == "samplers":
        report = check_samplers(args.steps)
    else:
        report = check_flow([m.strip() for m in args.models.split(",") if m.strip()])
    report.update(device=torch.cuda.get_device_name(0), torch=torch.__version__, diffusers=diffusers.__version__,
                  transformers=transformers.__version__, python=platform.python_version(),
                  date=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    text = json.dumps(report, indent=2) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    print(f"gpu_check {args.check}: {'passed' if report['passed'] else 'FAILED'}", file=sys.stderr)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
