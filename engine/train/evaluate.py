"""Measure the bundled model: caption retrieval, colour and shape fidelity (see attributes.py), CPU speed, grids, loss curves.

Prompt adherence: for N training captions (a fixed random choice of images, each with its first,
canonical caption) one image is generated per caption with a fixed seed. Each generated image is
embedded with a *fixed, untrained* embedding — the image area-downsampled to 16×16 RGB, flattened
(768 numbers in [0, 1]) — and the training images are ranked by Euclidean distance to it. A caption
counts as retrieved at k when its own emoji is among the k nearest training images. Chance is k / N_images.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

GRID_PROMPTS = ("red apple", "green apple", "red heart", "blue heart", "green heart", "snowman", "rocket", "cat face",
                "pizza", "")
EMBED_SIDE = 16


def embed(images):
    """Fixed embedding: uint8 N×H×W×3 → float N×768 (16×16 area-downsampled RGB in [0, 1])."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255.0
    x = F.adaptive_avg_pool2d(x, EMBED_SIDE)
    return x.reshape(len(x), -1)


def retrieval_ranks(generated, targets, train_emb):
    """Rank (0 = nearest) of each generated image's own training image under the fixed embedding."""
    import torch

    g = embed(generated)
    d = torch.cdist(g, train_emb)
    own = d[torch.arange(len(g)), torch.as_tensor(targets)]
    return (d < own[:, None]).sum(1)


def load_pipeline(model: str | Path, threads: int = 2):
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from ..loader import prepare_libraries

    prepare_libraries()
    if threads:
        torch.set_num_threads(threads)
    pipe = StableDiffusionPipeline.from_pretrained(str(model), torch_dtype=torch.float32, local_files_only=True,
                                                   safety_checker=None, feature_extractor=None)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompts, seeds, steps=25, guidance=5.0, size=64, batch=20):
    import numpy as np
    import torch

    out = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds[i:i + batch]]
        with torch.no_grad():
            res = pipe(list(prompts[i:i + batch]), num_inference_steps=steps, guidance_scale=guidance,
                       height=size, width=size, generator=gens, output_type="np")
        out.append((res.images * 255).round().clip(0, 255).astype(np.uint8))
    return np.concatenate(out)


def reconstruct(vae, images, batch: int = 256):
    """uint8 N×H×W×3 images through the autoencoder (posterior mean), back to uint8."""
    import numpy as np
    import torch

    out = []
    for i in range(0, len(images), batch):
        x = torch.as_tensor(images[i:i + batch]).permute(0, 3, 1, 2).to(vae.device, vae.dtype) / 127.5 - 1
        with torch.no_grad():
            rec = vae.decode(vae.encode(x).latent_dist.mean).sample.float()
        out.append(((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


def save_grid(images, cols: int, path: Path, scale: int = 1, labels=None):
    """Tile uint8 images into a PNG (optionally upscaled with nearest-neighbour)."""
    import numpy as np
    from PIL import Image, ImageDraw

    n, h, w, _ = images.shape
    rows = (n + cols - 1) // cols
    pad = 2
    label_h = 12 if labels else 0
    canvas = Image.new("RGB", (cols * (w * scale + pad) + pad, rows * (h * scale + pad + label_h) + pad),
                       (235, 235, 235))
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        r, c = divmod(i, cols)
        x = pad + c * (w * scale + pad)
        y = pad + r * (h * scale + pad + label_h)
        if labels:
            draw.text((x + 1, y), labels[i][: (w * scale) // 6], fill=(20, 20, 20))
        tile = Image.fromarray(np.asarray(images[i]))
        if scale != 1:
            tile = tile.resize((w * scale, h * scale), Image.NEAREST)
        canvas.paste(tile, (x, y + label_h))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)
    return path


def plot_losses(run_dir: str | Path, out_png: str | Path, smooth: int = 0):
    """Loss curves of both stages from the run's CSV logs, drawn with Pillow (log-scale y), and the colour loss
    when the run trained with one."""
    import csv
    import math

    from PIL import Image, ImageDraw

    run_dir = Path(run_dir)
    unet_log = run_dir / "loss_unet.csv"
    panels = [("autoencoder: reconstruction loss", run_dir / "loss_vae.csv", "loss"),
              ("U-Net + text encoder: training loss", unet_log, "loss")]
    if unet_log.exists() and "colour_loss" in unet_log.read_text().partition("\n")[0].split(","):
        panels.append(("text encoder: colour loss", unet_log, "colour_loss"))
    W, H, M = 420, 260, 40
    img = Image.new("RGB", (W * len(panels), H), "white")
    d = ImageDraw.Draw(img)
    for k, (title, path, column) in enumerate(panels):
        ox = k * W
        d.text((ox + M, 6), title, fill="black")
        if not path.exists():
            d.text((ox + M, H // 2), f"(no {path.name} in the run folder)", fill="gray")
            continue
        rows = [r for r in csv.DictReader(open(path)) if math.isfinite(float(r[column]))]
        if not rows:
            continue
        xs = [int(r["step"]) for r in rows]
        ys = [float(r[column]) for r in rows]
        n_s = smooth or max(1, len(ys) // 25)
        sm = [sum(ys[max(0, i - n_s + 1):i + 1]) / len(ys[max(0, i - n_s + 1):i + 1]) for i in range(len(ys))]
        lo, hi = math.log10(max(min(ys), 1e-6)), math.log10(max(ys))
        hi = hi if hi > lo else lo + 1
        x0, x1, y0, y1 = ox + M, ox + W - 10, H - 30, 24
        d.rectangle([x0, y1, x1, y0], outline="black")

        def pt(x, y):
            px = x0 + (x1 - x0) * (x - xs[0]) / max(1, xs[-1] - xs[0])
            py = y0 - (y0 - y1) * (math.log10(max(y, 1e-6)) - lo) / (hi - lo)
            return px, py

        d.line([pt(x, y) for x, y in zip(xs, ys)], fill=(170, 200, 240), width=1)
        d.line([pt(x, y) for x, y in zip(xs, sm)], fill=(20, 60, 160), width=2)
        d.text((x0, y0 + 4), f"step {xs[0]}", fill="black")
        d.text((x1 - 70, y0 + 4), f"step {xs[-1]}", fill="black")
        d.text((ox + 2, y1), f"{10 ** hi:.3g}", fill="black")
        d.text((ox + 2, y0 - 10), f"{10 ** lo:.3g}", fill="black")
        d.text((x1 - 150, y1 + 4), f"last (smoothed) {sm[-1]:.4f}", fill="black")
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    img.save(out_png, optimize=True)
    return Path(out_png)


def time_generation(pipe, steps=25, size=64, guidance=5.0, runs=5):
    import torch

    def once():
        g = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        with torch.no_grad():
            pipe("red apple", num_inference_steps=steps, guidance_scale=guidance, height=size, width=size,
                 generator=g, output_type="np")
        return time.perf_counter() - t

    once()  # warm-up
    times = [once() for _ in range(runs)]
    return {"median_s": statistics.median(times), "runs_s": [round(t, 3) for t in times],
            "steps": steps, "size": size, "guidance": guidance, "threads": torch.get_num_threads()}


def evaluate(model: str | Path, data_dir: str | Path, out: str | Path, n_captions=200, steps=25, guidance=5.0,
             threads=2, speed=True, seed=0, log=print) -> dict:
    """Measure ``model`` against the dataset in ``data_dir``; writes evaluation.json and the grids into ``out``."""
    import numpy as np
    import torch

    from .dataset import load_dataset

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(model, threads)
    images, captions = load_dataset(data_dir)
    size = images.shape[1]
    report: dict = {"model": str(model), "images": int(len(images)), "steps": steps, "guidance": guidance,
                    "sampler": "DDIM", "embedding": f"{EMBED_SIDE}x{EMBED_SIDE} area-downsampled RGB, L2"}

    rng = np.random.RandomState(seed)
    idx = rng.choice(len(images), size=min(n_captions, len(images)), replace=False)
    prompts = [captions[i][0] for i in idx]
    seeds = list(range(1000, 1000 + len(idx)))
    t = time.time()
    gen = generate(pipe, prompts, seeds, steps=steps, guidance=guidance, size=size)
    report["generation_wall_s"] = round(time.time() - t, 1)
    train_emb = embed(images)
    ranks = retrieval_ranks(gen, idx, train_emb)
    report["retrieval"] = {
        "captions": len(idx),
        "top1": float((ranks < 1).float().mean()), "top5": float((ranks < 5).float().mean()),
        "chance_top1": 1 / len(images), "chance_top5": 5 / len(images),
        "median_rank": float(ranks.float().median()),
    }
    # the same measure on the autoencoder's reconstructions of the target images: the ceiling that the
    # embedding and the autoencoder leave for any generator
    rr = retrieval_ranks(reconstruct(pipe.vae, images[idx]), idx, train_emb)
    report["retrieval_autoencoder_ceiling"] = {"top1": float((rr < 1).float().mean()),
                                               "top5": float((rr < 5).float().mean())}
    log(f"retrieval: top-1 {report['retrieval']['top1']:.1%}, top-5 {report['retrieval']['top5']:.1%} "
        f"(chance {1 / len(images):.3%} / {5 / len(images):.3%}); autoencoder ceiling "
        f"{report['retrieval_autoencoder_ceiling']['top5']:.1%}")

    from .attributes import colour_fidelity, colour_pairs, shape_separation

    def draw(ps, ss):
        return generate(pipe, ps, ss, steps=steps, guidance=guidance, size=size)

    report["colour"] = colour_fidelity(draw, images, captions)
    # and on the autoencoder's reconstructions of the target emoji: a colour the autoencoder cannot reproduce,
    # no U-Net can draw
    target_of = {cap: i for cs in colour_pairs(captions).values() for i, cap in cs.values()}
    report["colour_autoencoder_ceiling"] = colour_fidelity(
        lambda ps, _: reconstruct(pipe.vae, images[[target_of[p] for p in ps]]), images, captions, seeds=(0,))
    report["shape"] = shape_separation(draw, images, captions)
    log(f"colour: {report['colour']['within_tolerance']:.1%} within tolerance (chance "
        f"{report['colour']['chance']:.1%}, autoencoder ceiling "
        f"{report['colour_autoencoder_ceiling']['within_tolerance']:.1%}); "
        f"shape: {report['shape']['accuracy']:.1%} separated (chance {report['shape']['chance']:.0%})")

    # retrieval examples: prompt | generated | nearest training image
    n_show = 16
    near = torch.cdist(embed(gen[:n_show]), train_emb).argmin(1).numpy()
    trip = np.concatenate([np.stack([images[idx[i]], gen[i], images[near[i]]]) for i in range(n_show)])
    save_grid(trip, 6, out / "retrieval_examples.png", scale=1)

    # prompt grid: 4 seeds for each prompt, and an empty prompt with 8 seeds
    named = [p for p in GRID_PROMPTS if p]
    ps = [p for p in named for _ in range(4)]
    ss = [s for _ in named for s in range(4)]
    g = generate(pipe, ps, ss, steps=steps, guidance=guidance, size=size)
    save_grid(g, 8, out / "samples.png", scale=2, labels=ps)
    e = generate(pipe, [""] * 16, list(range(16)), steps=steps, guidance=1.0, size=size)
    save_grid(e, 8, out / "samples_empty_prompt.png", scale=2)
    report["grid_prompts"] = named
    # "visibly different": mean pixel distance between prompts vs within a prompt
    # mean pairwise distance (same embedding) between samples of one prompt vs of different prompts
    dist = torch.cdist(embed(g), embed(g))
    label = torch.arange(len(named)).repeat_interleave(4)
    same = label[:, None] == label[None, :]
    off = ~torch.eye(len(label), dtype=torch.bool)
    report["grid_distance"] = {"within_prompt": float(dist[same & off].mean()),
                               "between_prompts": float(dist[~same].mean())}
    ee = embed(e)
    report["empty_prompt_diversity"] = float(torch.cdist(ee, ee).sum() / (len(ee) * (len(ee) - 1)))

    if speed:
        report["speed"] = time_generation(pipe, steps=steps, size=size, guidance=guidance)
        log(f"speed: {steps} steps at {size}x{size} (CFG) median {report['speed']['median_s']:.3f}s "
            f"on {report['speed']['threads']} threads")
    (out / "evaluation.json").write_text(json.dumps(report, indent=1) + "\n")
    return report
