"""Darkroom's own diffusion trainer: the bundled text-to-image model, from scratch.

Stage 1 trains an AutoencoderKL (reconstruction + KL). The images are then encoded once to latent
posteriors (mean, std). Stage 2 trains a small CLIPTextModel and a UNet2DConditionModel jointly with the
DDPM objective on x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε (SD's scaled_linear schedule, so every standard scheduler
samples it), predicting ε (L_simple = E‖ε − ε_θ(x_t, t, c)‖²) or v = √ᾱ_t·ε − √(1−ᾱ_t)·x_0, optionally with the
schedule rescaled to zero signal at t = T, and dropping the caption for classifier-free guidance.
The result is exported as a plain diffusers Stable Diffusion folder (fp16 safetensors) plus preview.json
(:mod:`.export`).

Runs on CUDA (bf16/fp16 autocast) or CPU, is seeded, resumable (checkpoints in the run folder), shows a
progress bar and writes a CSV loss log per stage. Checkpoints are read back with ``torch.load(weights_only=True)``:
tensors and plain containers only, never arbitrary pickled objects.

Folders left empty in :class:`TrainConfig` live in the user's data folder (:func:`default_folders`); the
bundled model in ``resources/`` is replaced only when ``out_dir`` names it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .export import export_pipeline, fit_preview
from .hardware import autocast_for, pick_device, seed_everything
from .networks import make_text_encoder, make_unet, make_vae
from .runfiles import LossLog, StageClock, atomic_save, load_checkpoint, progress
from .schedule import check_schedule, loss_weights, make_noise_scheduler, target

#: Name of the model folder a training run exports into, in the user's models folder by default.
EXPORT_NAME = "darkroom-emoji-trained"


def default_folders() -> dict[str, Path]:
    """Where training keeps its dataset, its run (checkpoints, logs) and its exported model by default: the
    user's data folder, never the checkout. The export lands in the models folder, so the app lists it."""
    from .. import paths

    training = paths.data_dir() / "training"
    return {"data_dir": training / "emoji64", "run_dir": training / "runs" / "emoji",
            "out_dir": paths.models_dir() / EXPORT_NAME}


@dataclass
class TrainConfig:
    """The defaults are the shipped weights' recipe: 14,500 U-Net steps of batch 32 (no attention at 16×16, skin
    tones grouped), learning rate 1e-3 decaying over the first 12,000, a colour loss of weight 0.02, on the
    GroupNorm-8 autoencoder trained for 1,000 steps; 2 to 2.5 hours on 2 CPU cores, depending on the machine's load
    (the U-Net took 1 h 53 min and 2 h 11 min in two runs). The model card lists what each measured run used."""

    data_dir: str = ""  # "" (here and below): the folder in default_folders()
    run_dir: str = ""
    out_dir: str = ""
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # auto: bf16 autocast on CUDA (fp16 where bf16 is missing) and on CPUs with native bf16 arithmetic
    # (AVX512-BF16/AMX: ~15 % faster U-Net steps and ~28 % faster autoencoder steps on a 2-core Xeon, measured);
    # fp32: no autocast anywhere
    precision: str = "auto"
    threads: int = 0  # torch CPU threads (0: leave torch's default)
    resolution: int = 64
    # autoencoder
    vae_channels: tuple = (32, 64, 64)
    vae_layers: int = 1
    # GroupNorm groups in the autoencoder. With one channel per group (32 groups over 32 channels, diffusers'
    # default) every feature map is normalised on its own, which erases the ratios between colour channels: an
    # autoencoder built so drew green and red objects brown and orange. 8 groups keep 4+ channels together.
    vae_norm_groups: int = 8
    latent_channels: int = 4
    vae_steps: int = 1000
    vae_batch: int = 32
    vae_lr: float = 1e-3
    kl_weight: float = 1e-6
    # text encoder
    text_width: int = 192
    text_layers: int = 2
    text_heads: int = 4
    max_length: int = 32
    # unet
    unet_channels: tuple = (64, 128, 192)
    unet_layers: int = 1
    attention_heads: int = 4
    unet_steps: int = 14500
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 300
    # Steps over which the learning rate falls from lr to its floor (lr/10) along a cosine; the steps after them
    # train on at the floor (the recipe's last 2,500: top-5 72 % → 80 %). 0, or more than unet_steps: decay over
    # all unet_steps. A finished run can thus be extended (rerun its --run-dir with more --unet-steps) without
    # raising the learning rate again, and still match a run made in one go.
    lr_decay_steps: int = 12000
    caption_dropout: float = 0.1
    ema_decay: float = 0.999
    # Min-SNR-γ loss weighting (Hang et al. 2023): the ε loss of step t is weighted by min(SNR_t, γ)/SNR_t, so the
    # nearly clean steps, which are easy and dominate the gradient's conflicts, stop slowing the rest. 0: L_simple.
    min_snr_gamma: float = 5.0
    # What the U-Net predicts: "epsilon" (SD 1.x) or "v_prediction" (SD 2.x). v stays well defined at zero SNR.
    prediction_type: str = "epsilon"
    # Rescale the schedule so ᾱ_T = 0 (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are
    # Flawed"). SD's schedule leaves √ᾱ_T ≈ 0.07 of the image in the last step's latent, so a model can learn to
    # read the picture's average colour from it, which pure noise at sampling time does not have. Needs
    # v-prediction (ε carries no information at ᾱ = 0).
    zero_terminal_snr: bool = False
    # Attention blocks at the latents' full size (16×16) too: without them a step takes 0.63× the time
    # (train_step.py), and the steps saved buy more of them within the same wall time.
    unet_full_size_attention: bool = False
    # Draw an emoji and its skin-tone variants as one image (dataset.skin_tone_weights), so the 1,890 skin-tone
    # variants stop taking half of every batch from the objects that exist once; off: every image equally often.
    group_skin_tones: bool = True
    # Weight of an auxiliary loss that makes the text encoder say what colour a caption names: a linear head (trained
    # alongside, never exported) reads the target image's mean foreground colour (CIELAB) from the mean of the text
    # encoder's outputs over the caption's tokens. The jointly trained text encoder otherwise separates colour words
    # only as far as the diffusion loss happens to push it, and has put "red" next to "blue". 0: off. Measured (model
    # card): at 0.2 every colour right but objects' shapes less reliable; at 0.02 red right and shapes kept.
    colour_loss_weight: float = 0.02
    # bookkeeping
    checkpoint_every: int = 250
    log_every: int = 10
    stages: str = "vae,unet,export"

    def resolved(self) -> "TrainConfig":
        """A copy with every empty folder replaced by its default."""
        defaults = default_folders()
        return replace(self, **{k: str(v) for k, v in defaults.items() if not getattr(self, k)})

    def to_json(self) -> dict:
        d = asdict(self)
        d["vae_channels"] = list(self.vae_channels)
        d["unet_channels"] = list(self.unet_channels)
        return d


# ----------------------------------------------------------------------------- helpers

def _lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def load_images(cfg: TrainConfig):
    """(uint8 N×H×W×3 array, caption lists) from the dataset folder."""
    from .dataset import load_dataset

    images, captions = load_dataset(cfg.data_dir)
    if images.shape[1] != cfg.resolution:
        import numpy as np
        from PIL import Image

        images = np.stack([np.asarray(Image.fromarray(im).resize((cfg.resolution,) * 2, Image.LANCZOS))
                           for im in images])
    return images, captions


def to_tensor(images):
    import torch

    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


# ----------------------------------------------------------------------------- stage 1: autoencoder

def train_vae(cfg: TrainConfig, images, device, run: Path):
    """The autoencoder, its step, and the seconds the stage has taken (StageClock; None when a finished stage's
    checkpoint is older than the trainer's recording of them)."""
    import torch
    import torch.nn.functional as F

    ckpt_path = run / "vae.pt"
    vae = make_vae(cfg).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    step = 0
    spent = None  # unknown for a checkpoint written before the trainer recorded it
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    if ckpt_path.exists():
        ck = load_checkpoint(ckpt_path, device)
        vae.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        gen.set_state(ck["gen"])
        spent = ck.get("elapsed_s")
    if step >= cfg.vae_steps:
        return vae.eval(), step, spent
    data = to_tensor(images)
    log = LossLog(run / "loss_vae.csv", resume_step=step)
    amp = autocast_for(device, cfg.precision)
    bar = progress(cfg.vae_steps, step, "autoencoder")
    clock = StageClock(spent or 0.0)
    vae.train()
    while step < cfg.vae_steps:
        lr = _lr_at(step, cfg.vae_steps, cfg.vae_lr, 50)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, len(data), (cfg.vae_batch,), generator=gen)
        x = data[idx].to(device)
        with amp():
            post = vae.encode(x).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(device)
            rec = vae.decode(z).sample
        rec = rec.float()
        rec_loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x)
        kl = post.kl().mean() / (x.shape[1] * x.shape[2] * x.shape[3])
        loss = rec_loss + cfg.kl_weight * kl * (x.shape[1] * x.shape[2] * x.shape[3])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.vae_steps:
            log.write(step, rec_loss.item(), lr, clock())
            bar.set_postfix(rec=f"{rec_loss.item():.4f}", kl=f"{kl.item():.3f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.vae_steps:
            atomic_save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step,
                         "gen": gen.get_state(), "elapsed_s": clock()}, ckpt_path)
    bar.close()
    return vae.eval(), step, clock()


def encode_latents(cfg: TrainConfig, vae, vae_step: int, images, device, run: Path):
    """Posterior means and stds of every image, plus the latent scaling factor (1 / std). Reused from the run
    folder only when they were encoded by this autoencoder at this step (a resumed run may have trained it on)."""
    import torch

    path = run / "latents.pt"
    if path.exists():
        ck = load_checkpoint(path, "cpu")
        if ck.get("n") == len(images) and ck.get("vae_step") == vae_step:
            return ck["mean"], ck["std"], ck["scale"]
    data = to_tensor(images)
    means, stds = [], []
    with torch.no_grad():
        for i in range(0, len(data), 256):
            post = vae.encode(data[i:i + 256].to(device)).latent_dist
            means.append(post.mean.float().cpu())
            stds.append(post.std.float().cpu())
    mean, std = torch.cat(means), torch.cat(stds)
    sample = mean + std * torch.randn_like(mean)
    scale = float(1.0 / sample.std())
    atomic_save({"mean": mean, "std": std, "scale": scale, "n": len(images), "vae_step": vae_step}, path)
    return mean, std, scale


# ----------------------------------------------------------------------------- stage 2: text encoder + U-Net

class EMA:
    def __init__(self, params, decay: float):
        self.decay = decay
        self.shadow = [p.detach().clone().float() for p in params]

    def update(self, params, step: int):
        import torch

        d = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for s, p in zip(self.shadow, params):
                s.mul_(d).add_(p.detach().float(), alpha=1 - d)

    def copy_to(self, params):
        import torch

        with torch.no_grad():
            for s, p in zip(self.shadow, params):
                p.copy_(s.to(p.dtype))


def tokenize_captions(tokenizer, captions: list[list[str]], max_length: int):
    """Token ids for every caption, the image each belongs to, and the empty prompt's ids."""
    import torch

    flat, owner = [], []
    for i, caps in enumerate(captions):
        for c in caps:
            flat.append(c)
            owner.append(i)
    ids = tokenizer(flat, padding="max_length", max_length=max_length, truncation=True,
                    return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=max_length, return_tensors="pt").input_ids
    return ids, torch.tensor(owner), empty


def caption_mean(hidden, tok, eos_id: int):
    """The mean of the text encoder's outputs over each caption's tokens: start, words and the first end token
    (the padding after it repeats the end token and is left out)."""
    is_eos = (tok == eos_id).int()
    keep = ((is_eos.cumsum(1) - is_eos) == 0).to(hidden.dtype).unsqueeze(-1)
    return (hidden * keep).sum(1) / keep.sum(1)


def train_unet(cfg: TrainConfig, lat_mean, lat_std, scale, captions, tokenizer, device, run: Path, vae_step: int,
               images):
    """``images``: the dataset (uint8 N×H×W×3), read only for the colour loss's targets. Returns the text encoder,
    the U-Net (EMA weights), the step and the stage's seconds, as train_vae does."""
    import torch
    import torch.nn.functional as F

    ckpt_path = run / "unet.pt"
    te = make_text_encoder(cfg, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id).to(device)
    # channels_last: ~8 % faster convolutions on a 2-core x86 CPU (measured, see the model card)
    unet = make_unet(cfg).to(device, memory_format=torch.channels_last)
    params = list(unet.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.99))
    ema = EMA(params, cfg.ema_decay)
    sched = make_noise_scheduler(cfg)
    abar = sched.alphas_cumprod.to(device)
    snr_weight = loss_weights(cfg, abar)
    step = 0
    spent = None  # unknown for a checkpoint written before the trainer recorded it
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    head = head_opt = None
    if cfg.colour_loss_weight:
        # its own optimizer, so runs with and without the head keep the same optimizer state for the networks; it
        # learns at the base learning rate throughout (the measured runs did)
        head = torch.nn.Linear(cfg.text_width, 3).to(device)
        head_opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    if ckpt_path.exists():
        ck = load_checkpoint(ckpt_path, device)
        if ck.get("vae_step", vae_step) != vae_step:
            from ..errors import DarkroomError

            raise DarkroomError(
                f"The U-Net checkpoint in {run} was trained on the autoencoder at step {ck['vae_step']}, which has "
                f"trained on to step {vae_step} since; delete {ckpt_path.name} to train the U-Net again on it, or "
                "choose another --run-dir.")
        unet.load_state_dict(ck["unet"])
        te.load_state_dict(ck["text"])
        opt.load_state_dict(ck["opt"])
        ema.shadow = [s.to(device) for s in ck["ema"]]
        step = ck["step"]
        gen.set_state(ck["gen"])
        spent = ck.get("elapsed_s")
        if head is not None and "colour_head" in ck:
            head.load_state_dict(ck["colour_head"])
            head_opt.load_state_dict(ck["colour_head_opt"])
    ids, owner, empty = tokenize_captions(tokenizer, captions, cfg.max_length)
    # per image: the range of its captions in `ids`
    counts = torch.bincount(owner, minlength=len(captions))
    starts = torch.cumsum(counts, 0) - counts
    from .dataset import skin_tone_weights

    weights = torch.tensor(skin_tone_weights(captions)) if cfg.group_skin_tones else None
    if step < cfg.unet_steps:
        if head is not None:
            from .attributes import colour_targets

            colours_d = torch.as_tensor(colour_targets(images), dtype=torch.float32).to(device)
        log = LossLog(run / "loss_unet.csv", resume_step=step, extra=("colour_loss",) if head is not None else ())
        amp = autocast_for(device, cfg.precision)
        bar = progress(cfg.unet_steps, step, "text encoder + U-Net")
        clock = StageClock(spent or 0.0)
        colour_sum = colour_n = 0.0
        unet.train()
        te.train()
        lat_mean_d, lat_std_d = lat_mean.to(device), lat_std.to(device)
        ids_d, empty_d = ids.to(device), empty.to(device)
        while step < cfg.unet_steps:
            lr = _lr_at(step, min(cfg.lr_decay_steps or cfg.unet_steps, cfg.unet_steps), cfg.lr, cfg.warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            b = cfg.batch
            img = (torch.multinomial(weights, b, replacement=True, generator=gen) if weights is not None
                   else torch.randint(0, len(captions), (b,), generator=gen))
            pick = starts[img] + (torch.rand(b, generator=gen) * counts[img]).long()
            tok = ids_d[pick.to(device)]
            drop = (torch.rand(b, generator=gen) < cfg.caption_dropout).to(device)
            tok = torch.where(drop[:, None], empty_d.expand(b, -1), tok)
            img_d = img.to(device)
            noise_lat = torch.randn(lat_mean[:b].shape, generator=gen).to(device)
            x0 = (lat_mean_d[img_d] + lat_std_d[img_d] * noise_lat) * scale
            eps = torch.randn(x0.shape, generator=gen).to(device)
            t = torch.randint(0, sched.config.num_train_timesteps, (b,), generator=gen).to(device)
            a = abar[t].view(b, 1, 1, 1)
            xt = (a.sqrt() * x0 + (1 - a).sqrt() * eps).contiguous(memory_format=torch.channels_last)  # q(x_t|x_0)
            with amp():
                cond = te(tok)[0]
                pred = unet(xt, t, encoder_hidden_states=cond).sample
            per_sample = F.mse_loss(pred.float(), target(cfg, a, x0, eps), reduction="none").mean(dim=(1, 2, 3))
            loss = (per_sample * snr_weight[t]).mean()
            total = loss
            if head is not None:  # captions only: the empty prompt names no colour
                said = head(caption_mean(cond.float(), tok, tokenizer.eos_token_id))
                per_caption = (said - colours_d[img_d]).pow(2).mean(1)
                kept = (~drop).float()
                kept_sum = (per_caption * kept).sum()
                total = loss + cfg.colour_loss_weight * kept_sum / kept.sum().clamp(min=1)
                colour_sum, colour_n = colour_sum + kept_sum.item(), colour_n + kept.sum().item()
                head_opt.zero_grad(set_to_none=True)
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if head is not None:
                head_opt.step()
            ema.update(params, step)
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.unet_steps:
                # the colour loss over the captions it saw since the last row (nan if every one was dropped)
                extra = (colour_sum / colour_n if colour_n else math.nan,) if head is not None else ()
                colour_sum = colour_n = 0.0
                log.write(step, loss.item(), lr, clock(), *extra)
                bar.set_postfix(loss=f"{loss.item():.4f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.unet_steps:
                state = {"unet": unet.state_dict(), "text": te.state_dict(), "opt": opt.state_dict(),
                         "ema": ema.shadow, "step": step, "gen": gen.get_state(), "vae_step": vae_step,
                         "elapsed_s": clock()}
                if head is not None:
                    state.update(colour_head=head.state_dict(), colour_head_opt=head_opt.state_dict())
                atomic_save(state, ckpt_path)
        bar.close()
        spent = clock()
    ema.copy_to(params)
    unet.to(memory_format=torch.contiguous_format)  # safetensors stores contiguous tensors only
    return te.eval(), unet.eval(), step, spent


# ----------------------------------------------------------------------------- driver

def train(cfg: TrainConfig, log=print) -> Path:
    import torch

    from .tokenizer import save_clip_tokenizer

    cfg = cfg.resolved()
    check_schedule(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(cfg.to_json(), indent=1))
    stages = {s.strip() for s in cfg.stages.split(",") if s.strip()}
    started = time.time()
    timings = {}  # each stage's seconds, as its checkpoint records them (absent for one older than that record)

    images, captions = load_images(cfg)
    log(f"dataset: {len(images)} images, {sum(map(len, captions))} captions, device {device}")
    tok_dir = run / "tokenizer"
    if not (tok_dir / "vocab.json").exists():
        save_clip_tokenizer([c for caps in captions for c in caps], tok_dir, model_max_length=cfg.max_length)
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))

    vae, vae_step, spent = train_vae(cfg, images, device, run)
    if spent is not None:
        timings["vae_s"] = spent
    lat_mean, lat_std, scale = encode_latents(cfg, vae, vae_step, images, device, run)
    log(f"latents {tuple(lat_mean.shape[1:])}, scaling factor {scale:.4f}")
    if "unet" not in stages and "export" not in stages:
        return run
    te, unet, steps, spent = train_unet(cfg, lat_mean, lat_std, scale, captions, tokenizer, device, run, vae_step,
                                        images)
    if spent is not None:
        timings["unet_s"] = spent
    if "export" not in stages:
        return run
    preview, rmse = fit_preview(vae, lat_mean, scale)
    log(f"preview map fitted, rmse {rmse:.4f}")
    extra = {"trainer": "engine.train", "config": cfg.to_json(), "unet_steps_done": steps,
             "device": str(device), "torch": torch.__version__, "images": len(images),
             "captions": sum(map(len, captions)), "scaling_factor": scale, "preview_rmse": rmse,
             "wall_time_s": timings}
    out = export_pipeline(cfg, vae, te, unet, tok_dir, scale, preview, Path(cfg.out_dir), extra)
    log(f"exported {out} in {time.time() - started:.0f}s")
    return out
