import numpy as np

from engine.train.evaluate import embed, plot_losses, retrieval_ranks, save_grid


def _images(n=12, size=32):
    rng = np.random.RandomState(0)
    return rng.randint(0, 256, (n, size, size, 3)).astype(np.uint8)


def test_embedding_is_fixed_and_small():
    imgs = _images()
    e = embed(imgs)
    assert e.shape == (12, 16 * 16 * 3)
    assert float(e.min()) >= 0 and float(e.max()) <= 1
    assert np.allclose(embed(imgs).numpy(), e.numpy())


def test_retrieval_ranks():
    imgs = _images()
    train = embed(imgs)
    targets = np.arange(12)
    assert (retrieval_ranks(imgs, targets, train) == 0).all()
    # the wrong targets are never rank 0
    shifted = (targets + 1) % 12
    assert (retrieval_ranks(imgs, shifted, train) > 0).all()


def test_grid_and_loss_plot(tmp_path):
    from PIL import Image

    p = save_grid(_images(10), 4, tmp_path / "g.png", scale=2, labels=["x"] * 10)
    w, h = Image.open(p).size
    assert w == 4 * (64 + 2) + 2 and h == 3 * (64 + 2 + 12) + 2
    (tmp_path / "loss_vae.csv").write_text("step,loss,lr,elapsed_s\n" + "".join(
        f"{i},{1 / i:.4f},0.001,{i}\n" for i in range(1, 50)))
    out = plot_losses(tmp_path, tmp_path / "loss.png")
    assert Image.open(out).size == (840, 260)
    (tmp_path / "loss_unet.csv").write_text("step,loss,lr,elapsed_s,colour_loss\n" + "".join(
        f"{i},{1 / i:.4f},0.001,{i},{2 / i if i % 3 else float('nan'):.4f}\n" for i in range(1, 50)))
    # the colour loss too; its rows without a colour caption (nan) are left out of the curve
    with_nan = Image.open(plot_losses(tmp_path, tmp_path / "loss.png"))
    assert with_nan.size == (3 * 420, 260)
    (tmp_path / "loss_unet.csv").write_text("step,loss,lr,elapsed_s,colour_loss\n" + "".join(
        f"{i},{1 / i:.4f},0.001,{i},{2 / i:.4f}\n" for i in range(1, 50) if i % 3))
    colour_panel = (2 * 420, 0, 3 * 420, 260)
    without = Image.open(plot_losses(tmp_path, tmp_path / "loss2.png"))
    assert with_nan.crop(colour_panel).tobytes() == without.crop(colour_panel).tobytes()


def test_reconstruct_round_trips_through_the_autoencoder_in_batches():
    import torch

    from engine.train.evaluate import reconstruct

    class SwapRedGreen:
        """An 'autoencoder' whose decoder swaps red and green: what a colour-blind one does to pictures."""
        device, dtype = torch.device("cpu"), torch.float32

        def encode(self, x):
            return type("Enc", (), {"latent_dist": type("Dist", (), {"mean": x})})

        def decode(self, z):
            return type("Dec", (), {"sample": z[:, [1, 0, 2]]})

    imgs = _images(n=5, size=8)
    out = reconstruct(SwapRedGreen(), imgs, batch=2)
    assert out.dtype == np.uint8 and out.shape == imgs.shape
    assert np.abs(out.astype(int) - imgs[..., [1, 0, 2]]).max() <= 1  # every batch, rounding only
