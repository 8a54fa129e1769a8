"""Exporting a trained model: the least-squares latent→RGB preview map and the plain diffusers Stable Diffusion
folder (fp16 safetensors, ``preview.json``, ``darkroom.json`` with the recommended settings) the app loads."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .trainer import TrainConfig

PREVIEW_FILE = "preview.json"


def fit_preview(vae, lat_mean, scale, n: int = 512, seed: int = 0):
    """Least-squares latent→RGB map: scaled latent (C) → decoded RGB in [-1, 1], per latent pixel."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(lat_mean), generator=g)[:n]
    z = lat_mean[idx]
    with torch.no_grad():
        rgb = torch.cat([vae.decode(z[i:i + 128].to(vae.device, vae.dtype)).sample.float().cpu()
                         for i in range(0, len(z), 128)])
    rgb = F.adaptive_avg_pool2d(rgb, z.shape[-2:])
    X = (z * scale).permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    Y = rgb.permute(0, 2, 3, 1).reshape(-1, 3)
    A = torch.cat([X, torch.ones(len(X), 1)], 1).double()
    sol = torch.linalg.lstsq(A, Y.double()).solution.float()
    pred = A.float() @ sol
    rmse = float((pred - Y).pow(2).mean().sqrt())
    return {"factors": [[round(float(v), 6) for v in row] for row in sol[:-1]],
            "bias": [round(float(v), 6) for v in sol[-1]]}, rmse


RECOMMENDED = {"sampler": "DDIM", "steps": 25, "cfg": 5.0}


def export_pipeline(cfg: TrainConfig, vae, te, unet, tokenizer_dir: Path, scale: float, preview: dict,
                    out_dir: Path, extra: dict | None = None):
    """Write a plain diffusers Stable Diffusion folder (fp16 safetensors) + preview.json."""
    import copy

    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    vae = copy.deepcopy(vae).to("cpu", torch.float16)
    vae.register_to_config(scaling_factor=round(scale, 6))
    te = copy.deepcopy(te).to("cpu", torch.float16)
    unet = copy.deepcopy(unet).to("cpu", torch.float16)
    from .schedule import sampling_config

    sched = DDIMScheduler(**sampling_config(cfg))
    tok = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    tmp = out_dir.with_name(out_dir.name + ".tmp-export")
    if tmp.exists():
        shutil.rmtree(tmp)
    pipe.save_pretrained(str(tmp), safe_serialization=True)
    # the CLIP-format files too (recent transformers writes only tokenizer.json)
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
        shutil.copy2(tokenizer_dir / name, tmp / "tokenizer" / name)
    # Its VAE decodes a 64-pixel image in a fraction of a U-Net step: previews can be exact decodes.
    (tmp / PREVIEW_FILE).write_text(json.dumps({**preview, "decode": True}, indent=1) + "\n")
    # the settings the evaluation measures it with, which the app applies when the model is chosen
    (tmp / "darkroom.json").write_text(json.dumps({"recommended": RECOMMENDED}, indent=1) + "\n")
    if extra:
        (tmp / "training.json").write_text(json.dumps(extra, indent=1) + "\n")
    # keep hand-written files (model card, images) that already live in the destination
    if out_dir.exists():
        for p in out_dir.iterdir():
            if p.is_file() and not (tmp / p.name).exists():
                shutil.copy2(p, tmp / p.name)
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir
