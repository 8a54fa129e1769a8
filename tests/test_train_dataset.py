"""The dataset builder renders real emoji: the Noto Color Emoji font (fonts-noto-color-emoji) is required."""

import json

import numpy as np
import pytest

from engine.train import dataset as ds


@pytest.fixture(scope="module")
def renderer():
    return ds.EmojiRenderer()  # fails loudly (FontMissingError) when the font is not installed


def test_red_apple_is_red_on_white(renderer):
    img = np.asarray(renderer.render("\U0001F34E", 64))  # 🍎
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert (img[0, 0] == 255).all() and (img[-1, -1] == 255).all()  # plain white background
    centre = img[20:44, 20:44].reshape(-1, 3).astype(int)
    assert (centre[:, 0] - centre[:, 2]).mean() > 80  # mostly red


def test_sequences_render_as_one_glyph(renderer):
    for seq in ["\U0001F469\u200D\U0001F680", "\U0001F1EA\U0001F1F8", "\U0001F44D\U0001F3FD"]:  # 👩‍🚀 🇪🇸 👍🏽
        img = renderer.render(seq, 64)
        assert img is not None, seq
        arr = np.asarray(img)
        assert (arr < 250).any(axis=2).mean() > 0.2
    # different emoji give different pictures
    a = np.asarray(renderer.render("\u26C4", 64)).astype(int)  # ⛄
    b = np.asarray(renderer.render("\U0001F680", 64)).astype(int)  # 🚀
    assert np.abs(a - b).mean() > 10


def test_captions():
    import emoji

    caps = ds.captions_for("\U0001F1EA\U0001F1F8", emoji.EMOJI_DATA["\U0001F1EA\U0001F1F8"])
    assert caps[0] == "flag: spain" and "spain" in caps
    caps = ds.captions_for("\U0001F34E", emoji.EMOJI_DATA["\U0001F34E"])
    assert caps[0] == "red apple"
    seq = "\U0001F469\U0001F3FD\u200D\U0001F680"  # woman astronaut: medium skin tone
    assert ds.captions_for(seq, emoji.EMOJI_DATA[seq])[0] == "woman astronaut: medium skin tone"
    assert all(c == c.lower() and "_" not in c for c in caps)


def test_build_dataset_small(tmp_path):
    meta = ds.build_dataset(tmp_path, size=32, limit=40, progress=False)
    images, captions = ds.load_dataset(tmp_path)
    assert meta["count"] == len(images) == len(captions) >= 30
    assert images.shape[1:] == (32, 32, 3)
    saved = json.loads((tmp_path / "captions.json").read_text(encoding="utf-8"))
    assert all(item["captions"] for item in saved["items"])
    assert len({im.tobytes() for im in images}) > 0.9 * len(images)


def test_whole_font_is_about_3900_emoji():
    items = ds.list_emoji()
    assert 3500 < len(items) < 4500


def test_missing_font_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(ds, "FONT_CANDIDATES", (str(tmp_path / "nope.ttf"),))
    monkeypatch.delenv("DARKROOM_EMOJI_FONT", raising=False)
    with pytest.raises(ds.FontMissingError, match="fonts-noto-color-emoji"):
        ds.find_font()


def test_skin_tone_variants_share_one_images_weight():
    from engine.train.dataset import skin_tone_weights

    captions = [["farmer"], ["farmer: dark skin tone", "farmer dark skin tone"], ["farmer: light skin tone"],
                ["people holding hands: dark skin tone, light skin tone"], ["people holding hands"],
                ["rocket"], ["flag: japan", "japanese flag"], []]
    weights = skin_tone_weights(captions)
    assert weights[:3] == [1 / 3] * 3
    assert weights[3:5] == [0.5, 0.5]
    assert weights[5:] == [1.0, 1.0, 1.0]  # a colon alone ("flag: japan") is not a variant
