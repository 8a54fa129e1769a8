"""A few steps of every training stage on synthetic images; the export must load as a plain SD pipeline."""

import json

import numpy as np
import pytest

from tests.engine_helpers import request_for


def _synthetic_dataset(folder, n=8, size=16):
    rng = np.random.RandomState(0)
    colours = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 180, 60), "yellow": (240, 210, 40)}
    images, items = [], []
    for i in range(n):
        name, rgb = list(colours.items())[i % 4]
        img = np.full((size, size, 3), 255, np.uint8)
        r = 3 + i % 3
        yy, xx = np.mgrid[:size, :size]
        mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r * r if i % 2 else (abs(yy - size / 2) < r) & (abs(xx - size / 2) < r)
        img[mask] = rgb
        img = np.clip(img.astype(int) + rng.randint(-5, 5, img.shape), 0, 255).astype(np.uint8)
        shape = "circle" if i % 2 else "square"
        images.append(img)
        items.append({"index": i, "char": "", "captions": [f"{name} {shape}", f"{shape} {i}"]})
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", np.stack(images))
    (folder / "captions.json").write_text(json.dumps({"size": size, "count": n, "items": items}))


@pytest.fixture
def tiny_cfg(tmp_path):
    from engine.train.trainer import TrainConfig

    _synthetic_dataset(tmp_path / "data")
    return TrainConfig(
        data_dir=str(tmp_path / "data"), run_dir=str(tmp_path / "run"), out_dir=str(tmp_path / "models" / "tiny"),
        device="cpu", resolution=16, vae_channels=(8, 16), vae_steps=3, vae_batch=4,
        text_width=32, text_layers=1, text_heads=2, max_length=16,
        unet_channels=(32, 32), attention_heads=2, unet_steps=4, batch=4, warmup=2,
        checkpoint_every=2, log_every=1,
        # Two levels: attention at the full size is the only attention there is; one image per draw weight.
        unet_full_size_attention=True, group_skin_tones=False,
    )


def test_train_export_load_and_resume(tiny_cfg, tmp_path):
    import torch
    from diffusers import StableDiffusionPipeline

    from engine.train.trainer import train

    out = train(tiny_cfg, log=lambda *_: None)
    run = tmp_path / "run"
    # loss logs: one row per step of each stage
    vae_rows = (run / "loss_vae.csv").read_text().splitlines()
    unet_rows = (run / "loss_unet.csv").read_text().splitlines()
    assert len(vae_rows) == 1 + 3 and len(unet_rows) == 1 + 4
    assert all(np.isfinite(float(r.split(",")[1])) for r in unet_rows[1:])

    # a plain diffusers folder, fp16 safetensors, no safety checker, and a preview map
    index = json.loads((out / "model_index.json").read_text())
    assert index["requires_safety_checker"] is False and index["safety_checker"] == [None, None]
    for sub in ("unet", "vae", "text_encoder"):
        files = list((out / sub).glob("*.safetensors"))
        assert files, sub
        from safetensors import safe_open

        with safe_open(str(files[0]), "pt") as f:
            key = next(iter(f.keys()))
            assert f.get_tensor(key).dtype == torch.float16
    assert (out / "tokenizer" / "vocab.json").is_file() and (out / "tokenizer" / "merges.txt").is_file()
    preview = json.loads((out / "preview.json").read_text())
    assert len(preview["factors"]) == 4 and all(len(r) == 3 for r in preview["factors"])
    assert len(preview["bias"]) == 3 and preview["decode"] is True
    from engine import models
    assert models.recommended(str(out)) == {"sampler": "DDIM", "steps": 25, "cfg": 5.0}

    pipe = StableDiffusionPipeline.from_pretrained(str(out), torch_dtype=torch.float32)
    assert pipe.tokenizer.model_max_length == pipe.text_encoder.config.max_position_embeddings == 16
    assert abs(pipe.vae.config.scaling_factor - 1.0) > 1e-6  # fitted to the latents, not left at 1
    pipe.set_progress_bar_config(disable=True)
    img = pipe("red circle", num_inference_steps=2, height=16, width=16, guidance_scale=3.0,
               generator=torch.Generator().manual_seed(0), output_type="np").images
    assert img.shape == (1, 16, 16, 3) and np.isfinite(img).all()

    # resumable: asking for more steps continues from the checkpoint instead of starting again
    tiny_cfg.unet_steps = 6
    train(tiny_cfg, log=lambda *_: None)
    unet_rows = (run / "loss_unet.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in unet_rows[1:]] == [1, 2, 3, 4, 5, 6]
    assert torch.load(run / "unet.pt", weights_only=True)["step"] == 6  # plain tensors and containers

    # training the autoencoder on re-encodes the latents, and a U-Net trained on the old ones is not resumed
    from engine.errors import DarkroomError

    tiny_cfg.vae_steps = 4
    with pytest.raises(DarkroomError, match="autoencoder at step 3"):
        train(tiny_cfg, log=lambda *_: None)
    assert torch.load(run / "latents.pt", weights_only=True)["vae_step"] == 4


def test_training_is_seeded(tiny_cfg, tmp_path):
    from engine.train.trainer import train

    tiny_cfg.stages = "vae"
    train(tiny_cfg, log=lambda *_: None)
    first = (tmp_path / "run" / "loss_vae.csv").read_text().splitlines()
    tiny_cfg.run_dir = str(tmp_path / "run2")
    train(tiny_cfg, log=lambda *_: None)
    second = (tmp_path / "run2" / "loss_vae.csv").read_text().splitlines()
    assert [r.split(",")[1] for r in first[1:]] == [r.split(",")[1] for r in second[1:]]


def test_an_extended_run_trains_on_at_the_floor_learning_rate_as_a_run_made_in_one_go(tiny_cfg, tmp_path):
    from engine.train.trainer import train

    def log_rows(run):  # (step, loss, learning rate) per U-Net step
        return [tuple(r.split(",")[:3]) for r in (run / "loss_unet.csv").read_text().splitlines()[1:]]

    tiny_cfg.lr_decay_steps, tiny_cfg.stages = 4, "vae,unet"
    train(tiny_cfg, log=lambda *_: None)
    tiny_cfg.unet_steps = 6  # extended: rerun the same folder with more steps
    train(tiny_cfg, log=lambda *_: None)
    extended = log_rows(tmp_path / "run")
    assert [float(lr) for _, _, lr in extended[4:]] == [tiny_cfg.lr / 10] * 2

    tiny_cfg.run_dir = str(tmp_path / "one-go")
    train(tiny_cfg, log=lambda *_: None)
    assert log_rows(tmp_path / "one-go") == extended


def test_the_caption_mean_leaves_the_padding_out():
    import torch

    from engine.train.trainer import caption_mean

    eos = 9
    tok = torch.tensor([[1, 5, eos, eos, eos], [1, 5, 6, 7, eos]])
    hidden = torch.arange(10, dtype=torch.float32).view(1, 5, 2).expand(2, -1, -1)
    assert caption_mean(hidden, tok, eos).tolist() == [[2.0, 3.0], [4.0, 5.0]]  # positions 0–2, then 0–4


def test_the_colour_loss_trains_a_head_it_checkpoints_and_never_exports(tiny_cfg, tmp_path):
    import torch
    from safetensors import safe_open

    from engine.train.trainer import train

    tiny_cfg.colour_loss_weight = 1.0
    out = train(tiny_cfg, log=lambda *_: None)
    run = tmp_path / "run"
    rows = (run / "loss_unet.csv").read_text().splitlines()
    assert rows[0].split(",")[-1] == "colour_loss"
    assert all(np.isfinite(float(r.split(",")[-1])) for r in rows[1:])
    first = torch.load(run / "unet.pt", weights_only=True)
    assert set(first["colour_head"]) == {"weight", "bias"} and first["colour_head_opt"]["state"]

    tiny_cfg.unet_steps = 6  # resumed: the head goes on from its checkpoint
    train(tiny_cfg, log=lambda *_: None)
    resumed = torch.load(run / "unet.pt", weights_only=True)
    assert resumed["colour_head_opt"]["state"][0]["step"] == 6
    assert not torch.equal(first["colour_head"]["weight"], resumed["colour_head"]["weight"])
    with safe_open(str(next((out / "text_encoder").glob("*.safetensors"))), "pt") as f:
        assert not any("colour" in k for k in f.keys())


def test_the_colour_loss_makes_the_text_encoder_tell_the_colours_apart(tiny_cfg, tmp_path):
    """On the synthetic squares and circles the captions "red …" and "blue …" differ only in the colour word;
    with the colour loss the head reads the right colour from the text encoder after a few dozen steps."""
    import torch

    from engine.train.trainer import train

    tiny_cfg.colour_loss_weight, tiny_cfg.unet_steps, tiny_cfg.stages = 1.0, 60, "vae,unet"
    tiny_cfg.checkpoint_every, tiny_cfg.caption_dropout = 60, 0.0
    train(tiny_cfg, log=lambda *_: None)
    rows = (tmp_path / "run" / "loss_unet.csv").read_text().splitlines()[1:]
    colour = [float(r.split(",")[-1]) for r in rows]
    assert np.mean(colour[-10:]) < 0.5 * np.mean(colour[:10])
    assert torch.load(tmp_path / "run" / "unet.pt", weights_only=True)["step"] == 60


def test_preview_fit_recovers_a_linear_decoder():
    import torch

    from engine.train.export import fit_preview

    W = torch.tensor([[0.5, -0.2, 0.1], [0.1, 0.4, -0.3], [-0.2, 0.1, 0.6], [0.05, 0.05, 0.05]])
    b = torch.tensor([0.1, -0.1, 0.0])
    scale = 0.5

    class LinearVAE:
        device, dtype = torch.device("cpu"), torch.float32

        def decode(self, z):
            rgb = torch.einsum("nchw,ck->nkhw", z * scale, W) + b[None, :, None, None]
            return type("Out", (), {"sample": rgb.repeat_interleave(4, 2).repeat_interleave(4, 3)})

    lat = torch.randn(64, 4, 8, 8)
    preview, rmse = fit_preview(LinearVAE(), lat, scale, n=64)
    assert rmse < 1e-4
    assert np.allclose(preview["factors"], W.numpy(), atol=1e-4)
    assert np.allclose(preview["bias"], b.numpy(), atol=1e-4)


def test_mixed_precision_only_where_the_hardware_has_it(monkeypatch):
    import torch

    from engine.train import hardware as trainer

    cpu = torch.device("cpu")
    assert trainer.autocast_for(cpu, "fp32")().__class__.__name__ == "nullcontext"
    monkeypatch.setattr(trainer, "_cpu_has_bf16", lambda: False)
    with trainer.autocast_for(cpu, "auto")():
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(trainer, "_cpu_has_bf16", lambda: True)
    with trainer.autocast_for(cpu, "auto")():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        trainer.autocast_for(cpu, "fp8")


def test_every_sampler_draws_a_v_prediction_model_with_zero_terminal_snr(tiny_model_dir, tmp_path, rec, engine):
    """What the trainer exports with --prediction-type v_prediction --zero-terminal-snr (the scheduler settings
    below; the CLI test checks the export writes them), through the app's engine: the first step has no signal
    at all, where a division by it would turn the picture black."""
    import shutil

    from engine.events import Finished, ImageReady, Preview
    from engine.forward import schedule_from_config
    from engine.samplers import SAMPLERS
    from engine.train.schedule import sampling_config
    from engine.train.trainer import TrainConfig

    model = tmp_path / "zero-snr"
    shutil.copytree(tiny_model_dir, model)
    config_file = model / "scheduler" / "scheduler_config.json"
    trained = TrainConfig(prediction_type="v_prediction", zero_terminal_snr=True)
    config = {**json.loads(config_file.read_text()), **sampling_config(trained)}
    assert config["timestep_spacing"] == "trailing"
    config_file.write_text(json.dumps(config))
    schedule = schedule_from_config(config)
    assert schedule.signal[-1] == 0.0 and schedule.signal[0] > 0.99  # the Lab shows the schedule it was trained on

    for sampler in SAMPLERS:
        job = engine.submit(request_for(model, sampler=sampler.name, steps=3, cfg=3.0))
        rec.wait_for(job)
        assert rec.of(job, Finished), sampler.name
        [ready] = rec.of(job, ImageReady)
        previews = rec.of(job, Preview)
        # NaN comes out black (uint8 of NaN is 0)
        assert ready.image.std() > 0 and len(previews) == 3, sampler.name
        assert all(p.image.std() > 0 for p in previews), sampler.name


def test_schedules_the_trainer_cannot_learn_are_refused_before_training(tiny_cfg):
    from engine.errors import DarkroomError
    from engine.train.trainer import train

    tiny_cfg.zero_terminal_snr = True  # with ε-prediction
    with pytest.raises(DarkroomError, match="v_prediction"):
        train(tiny_cfg, log=lambda *_: None)
    tiny_cfg.prediction_type = "sample"
    with pytest.raises(DarkroomError, match="epsilon or v_prediction"):
        train(tiny_cfg, log=lambda *_: None)


def test_the_autoencoder_never_normalises_a_colour_feature_on_its_own():
    """One channel per GroupNorm group normalises each feature map separately, which erases the ratios between
    colour channels (green came out brown). Every norm layer of the default autoencoder keeps 4+ together."""
    import torch

    from engine.train.networks import make_vae
    from engine.train.trainer import TrainConfig

    norms = [m for m in make_vae(TrainConfig()).modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_channels // m.num_groups >= 4 for m in norms)


def test_grouped_skin_tones_draw_images_by_their_weights(tiny_cfg, monkeypatch):
    import torch

    from engine.train import dataset
    from engine.train.trainer import train

    drawn = []
    real = torch.multinomial
    monkeypatch.setattr(dataset, "skin_tone_weights", lambda captions: [0.0] * (len(captions) - 1) + [1.0])
    monkeypatch.setattr(torch, "multinomial", lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1])
    tiny_cfg.group_skin_tones = True
    tiny_cfg.stages = "vae,unet"
    train(tiny_cfg, log=lambda *_: None)
    assert len(drawn) == tiny_cfg.unet_steps
    assert all((d == 7).all() for d in drawn)  # only the one image with weight


def test_a_unet_without_full_size_attention_keeps_it_at_the_coarser_level_and_loads_in_the_app(tiny_cfg, tmp_path,
                                                                                              rec, engine):
    from engine.events import ImageReady
    from engine.train.networks import make_unet
    from engine.train.trainer import train

    tiny_cfg.unet_channels = (32, 32, 32)
    tiny_cfg.unet_full_size_attention = False
    unet = make_unet(tiny_cfg)
    assert unet.config.down_block_types == ("DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    assert unet.config.up_block_types == ("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    tiny_cfg.unet_full_size_attention = True
    assert make_unet(tiny_cfg).config.down_block_types[0] == "CrossAttnDownBlock2D"

    tiny_cfg.unet_full_size_attention = False
    tiny_cfg.resolution, tiny_cfg.vae_channels = 64, (8, 8, 16)  # the app's smallest size; latents 16×16
    out = train(tiny_cfg, log=lambda *_: None)
    job = engine.submit(request_for(out, steps=2))
    rec.wait_for(job)
    [ready] = rec.of(job, ImageReady)
    assert ready.image.shape == (64, 64, 3)


def test_a_run_stopped_between_checkpoints_resumes_with_one_log_and_one_clock(tiny_cfg, tmp_path, monkeypatch):
    """Stopped after step 4 but before its checkpoint: the resumed run trains steps 3 and 4 again, logs each step
    once, and its wall time is that of the steps kept, not the time between the sittings."""
    import torch

    from engine.train import runfiles, trainer

    now = [0.0]

    def tick():  # a clock that advances one second per reading
        now[0] += 1.0
        return now[0]

    class Stopped(Exception):
        pass

    real_save = trainer.atomic_save

    def save_or_stop(obj, path):
        if "unet" in obj and obj["step"] == 4:
            raise Stopped
        real_save(obj, path)

    monkeypatch.setattr(runfiles, "_now", tick)
    monkeypatch.setattr(trainer, "atomic_save", save_or_stop)
    with pytest.raises(Stopped):
        trainer.train(tiny_cfg, log=lambda *_: None)
    run = tmp_path / "run"
    at_checkpoint = torch.load(run / "unet.pt", weights_only=True)
    assert at_checkpoint["step"] == 2
    assert [r.split(",")[0] for r in (run / "loss_unet.csv").read_text().splitlines()[1:]] == ["1", "2", "3", "4"]

    between_sittings = 10_000.0  # fake seconds, as every reading of the clock here
    now[0] += between_sittings
    monkeypatch.setattr(trainer, "atomic_save", real_save)
    out = trainer.train(tiny_cfg, log=lambda *_: None)
    rows = [r.split(",") for r in (run / "loss_unet.csv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    elapsed = [float(r[3]) for r in rows]
    assert elapsed == sorted(elapsed) and elapsed[2] > at_checkpoint["elapsed_s"]
    unet_s = json.loads((out / "training.json").read_text())["wall_time_s"]["unet_s"]
    assert elapsed[-1] <= unet_s < between_sittings  # the steps' readings, not the gap
