"""Images people bring in: every odd format becomes plain RGB, hostile files get clear messages, and recipes
refer to stored images by content."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from engine.images import (
    ImageInputError,
    InputImage,
    decode_image,
    read_image,
    read_ref,
    resize_to,
    resolve_ref,
    store_image,
)
from engine.request import ImageRef


def encoded(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_rgba_keeps_alpha_apart():
    im = Image.new("RGBA", (5, 4), (10, 20, 30, 0))
    im.putpixel((1, 1), (200, 100, 50, 255))
    out = decode_image(encoded(im))
    assert out.rgb.shape == (4, 5, 3) and out.alpha.shape == (4, 5)
    assert out.alpha[1, 1] == 255 and out.alpha[0, 0] == 0
    assert tuple(out.rgb[1, 1]) == (200, 100, 50)
    assert not out.rgb.flags.writeable


def test_palette_with_transparency_and_plain_palette():
    im = Image.new("P", (3, 3), 0)
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.putpixel((2, 2), 1)
    plain = decode_image(encoded(im))
    assert plain.alpha is None and tuple(plain.rgb[2, 2]) == (0, 255, 0) and tuple(plain.rgb[0, 0]) == (255, 0, 0)
    im.info["transparency"] = 0
    transparent = decode_image(encoded(im, transparency=0))
    assert transparent.alpha is not None and transparent.alpha[0, 0] == 0 and transparent.alpha[2, 2] == 255


def test_16_bit_greyscale_is_scaled_not_clipped():
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    out = decode_image(encoded(Image.fromarray(values)))
    assert out.rgb[0, :, 0].tolist() == [0, 128, 255]


def test_cmyk_jpeg_becomes_rgb():
    out = decode_image(encoded(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95))
    r, g, b = out.rgb[4, 4].tolist()
    assert r > 200 and g < 60 and b < 60


def test_exif_rotation_is_applied():
    im = Image.new("RGB", (6, 2), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    out = decode_image(encoded(im, "JPEG", exif=exif.tobytes()))
    assert out.size == (2, 6)


def test_decompression_bomb_and_garbage_are_refused_clearly(monkeypatch):
    import engine.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(ImageInputError, match="too large"):
        decode_image(encoded(Image.new("RGB", (20, 20))), "big.png")
    with pytest.raises(ImageInputError, match="not an image"):
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "broken.png")


def test_read_image_refuses_missing_files_and_fifos(tmp_path):
    with pytest.raises(ImageInputError, match="does not exist"):
        read_image(tmp_path / "none.png")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageInputError, match="cannot be read"):
        read_image(fifo)  # would block forever with a plain open()


def test_store_is_content_addressed_and_deduplicated(tmp_path):
    image = InputImage(np.full((4, 4, 3), 7, np.uint8))
    first = store_image(tmp_path, image)
    second = store_image(tmp_path, InputImage(np.full((4, 4, 3), 7, np.uint8)))
    assert first == second and first.path == str((tmp_path / "sources" / f"{first.sha256}.png").resolve())
    assert len(list((tmp_path / "sources").iterdir())) == 1
    path = resolve_ref(tmp_path, ImageRef(first.sha256, f"sources/{first.sha256}.png"))
    assert np.array_equal(read_image(path)[0].rgb, image.rgb)
    # the stored file carries pixels only
    assert "exif" not in Image.open(path).info


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.png", "sources/../../x.png", "C:\\x.png"])
def test_references_outside_the_gallery_are_never_followed(tmp_path, path):
    with pytest.raises(ImageInputError, match="outside the gallery"):
        resolve_ref(tmp_path, ImageRef("0" * 64, path))


def test_reference_to_a_changed_or_missing_file_says_so(tmp_path):
    stored = store_image(tmp_path, InputImage(np.zeros((2, 2, 3), np.uint8)))
    ref = ImageRef(stored.sha256, f"sources/{stored.sha256}.png")
    (tmp_path / ref.path).write_bytes(encoded(Image.new("RGB", (2, 2), (1, 2, 3))))
    with pytest.raises(ImageInputError, match="changed"):
        resolve_ref(tmp_path, ref)
    with pytest.raises(ImageInputError, match="changed since"):
        read_ref(stored)
    (tmp_path / ref.path).unlink()
    with pytest.raises(ImageInputError, match="no longer in the gallery"):
        resolve_ref(tmp_path, ref)


def test_resize_modes():
    wide = np.zeros((10, 20, 3), np.uint8)
    wide[:, :10] = 255  # left half white
    assert resize_to(wide, 16, 16, "stretch").shape == (16, 16, 3)
    filled = resize_to(wide, 16, 16, "fill")
    assert filled.shape == (16, 16, 3) and filled[:, 0].min() > 200 and filled[:, -1].max() < 50
    fitted = resize_to(wide, 16, 16, "fit")
    assert fitted.shape == (16, 16, 3)
    assert resize_to(wide, 20, 10, "fit") is wide
    with pytest.raises(ValueError):
        resize_to(wide, 16, 16, "zoom")
