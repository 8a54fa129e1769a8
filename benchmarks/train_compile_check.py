#!/usr/bin/env python3
"""Whether ``torch.compile`` computes the trainer's gradients: one backward pass through the recipe's U-Net,
eager and compiled, on the same random batch.

    python3 benchmarks/train_compile_check.py [--threads 2] [--full-size-attention] [--out FILE]

The trainer does not compile its U-Net: with PyTorch 2.13 on the CPU (inductor), the compiled backward returns
zero gradients for most of the network below the first level (a full run trained that way learned no text
conditioning; see the bundled model's card). Rerun this after a PyTorch upgrade before compiling the training step
again. A check, not a test: it prints JSON (per-tensor gradient sums that are non-zero eager and zero compiled;
the largest relative difference of the others) and asserts nothing. The first compile takes minutes.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmark_report import emit  # noqa: E402  (benchmarks/ is on sys.path: the script's own folder)


def gradients(torch, unet, denoiser, x, t, cond) -> tuple[dict[str, float], float]:
    """Per-parameter sums of |gradient| (None: no gradient) and the text condition's, for one backward pass."""
    unet.zero_grad(set_to_none=True)
    cond.grad = None
    denoiser(x, t, encoder_hidden_states=cond).sample.float().square().mean().backward()
    grads = {n: (float(p.grad.abs().sum()) if p.grad is not None else None) for n, p in unet.named_parameters()}
    return grads, float(cond.grad.abs().sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full-size-attention", action="store_true", help="the U-Net with attention at 16×16")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    args = parser.parse_args(argv)
    import torch

    from engine.train.networks import make_unet
    from engine.train.trainer import TrainConfig

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(unet_full_size_attention=args.full_size_attention)
    unet = make_unet(cfg).to(memory_format=torch.channels_last)
    side = cfg.resolution // 2 ** (len(cfg.vae_channels) - 1)
    x = torch.randn(4, cfg.latent_channels, side, side).contiguous(memory_format=torch.channels_last)
    t = torch.randint(0, 1000, (4,))
    cond = torch.randn(4, cfg.max_length, cfg.text_width, requires_grad=True)
    eager, cond_eager = gradients(torch, unet, unet, x, t, cond)
    t0 = time.perf_counter()
    compiled, cond_compiled = gradients(torch, unet, torch.compile(unet), x, t, cond)
    vanished = sorted(n for n in eager if eager[n] and not compiled[n])
    others = [abs(compiled[n] - eager[n]) / eager[n] for n in eager if eager[n] and compiled[n]]
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "platform": platform.platform(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "full_size_attention": args.full_size_attention,
        "compile_and_backward_s": round(time.perf_counter() - t0, 1),
        "tensors": len(eager), "vanished_under_compile": len(vanished), "vanished": vanished,
        "largest_relative_difference_of_the_rest": round(max(others, default=0.0), 6),
        "condition_gradient": {"eager": cond_eager, "compiled": cond_compiled},
    }
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
