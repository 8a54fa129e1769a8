#!/usr/bin/env python3
"""How fast one training step of the bundled model's recipe runs, and where its time goes.

    python3 benchmarks/train_step.py [--threads 2] [--steps 15] [--variants eager,math,no16attn] [--out FILE]

Builds the trainer's own U-Net and text encoder (``engine.train.trainer``, the default recipe's sizes, random
weights) and times the text encoder + U-Net step the trainer runs (forward under its autocast, min-SNR-weighted
loss left out as it costs nothing, backward, gradient clipping, AdamW) on random batches, in one process, the
variants' steps taken in turn (so that a machine whose speed drifts shifts them all alike):

- ``eager``: the trainer as it is;
- ``math``: attention through PyTorch's plain math kernel instead of the fused (flash) one;
- ``no16attn``: the U-Net without attention at the latents' full 16×16 size (the trainer's
  ``--no-unet-full-size-attention``; cross-attention stays at 8×8 and in the middle block).

Then it profiles a few eager steps and reports the operators that take the most time. A benchmark, not a test:
it prints JSON (seconds per step: median over ``--steps`` after 3 warm-up steps; ``vs_eager``: each variant's
median over eager's) and asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmark_report import emit  # noqa: E402  (benchmarks/ is on sys.path: the script's own folder)


def _models(torch, attention_at_full_size: bool = True):
    from engine.train.networks import make_text_encoder, make_unet
    from engine.train.trainer import TrainConfig

    cfg = TrainConfig(unet_full_size_attention=attention_at_full_size)
    unet = make_unet(cfg).to(memory_format=torch.channels_last)
    text = make_text_encoder(cfg, vocab_size=5684, bos_id=0, eos_id=1)
    return cfg, unet, text


def _stepper(torch, cfg, unet, text):
    import torch.nn.functional as F

    from engine.train.hardware import autocast_for

    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.99))
    amp = autocast_for(torch.device("cpu"), cfg.precision)
    latent = cfg.resolution // 2 ** (len(cfg.vae_channels) - 1)

    def step() -> None:
        tokens = torch.randint(2, 5000, (cfg.batch, cfg.max_length))
        xt = torch.randn(cfg.batch, cfg.latent_channels, latent, latent).contiguous(memory_format=torch.channels_last)
        t = torch.randint(0, 1000, (cfg.batch,))
        with amp():
            cond = text(tokens)[0]
            pred = unet(xt, t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred.float(), torch.randn_like(pred.float()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    return step


def _warm_up(step, context) -> float:
    """Three steps; returns their seconds."""
    with context():
        t0 = time.perf_counter()
        for _ in range(3):
            step()
        return time.perf_counter() - t0


def _time_interleaved(steppers: dict, steps: int) -> dict[str, list[float]]:
    """One step of each variant in turn, ``steps`` rounds: a machine that speeds up or slows down during the run
    (other work, a shared host) shifts every variant alike, so their ratios hold."""
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(steps):
        for name, (step, context) in steppers.items():
            with context():
                t0 = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t0)
    return times


def _profile(torch, step, rows: int = 8) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3)} for e in events[:rows]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the trainer's --threads)")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per variant, after 3 warm-up steps")
    parser.add_argument("--variants", default="eager,no16attn", help="comma-separated: eager, math, no16attn")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    args = parser.parse_args(argv)
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    report: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "platform": platform.platform(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(), "variants": {}}
    steppers = {}
    for variant in args.variants.split(","):
        cfg, unet, text = _models(torch, attention_at_full_size=variant != "no16attn")
        report["batch"] = cfg.batch
        context = contextlib.nullcontext
        if variant == "math":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            context = lambda: sdpa_kernel(SDPBackend.MATH)
        elif variant not in ("eager", "no16attn"):
            parser.error(f"unknown variant {variant!r}")
        step = _stepper(torch, cfg, unet, text)
        report["variants"][variant] = {"first_3_steps_s": round(_warm_up(step, context), 1)}
        steppers[variant] = (step, context)
    for variant, times in _time_interleaved(steppers, args.steps).items():
        report["variants"][variant].update(s_per_step=round(statistics.median(times), 4),
                                           min=round(min(times), 4), max=round(max(times), 4))
        print(f"train_step: {variant}: {report['variants'][variant]}", file=sys.stderr, flush=True)
    if "eager" in report["variants"]:
        base = report["variants"]["eager"]["s_per_step"]
        report["vs_eager"] = {v: round(r["s_per_step"] / base, 3) for v, r in report["variants"].items()}
    cfg, unet, text = _models(torch)
    report["eager_profile"] = _profile(torch, _stepper(torch, cfg, unet, text))
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
