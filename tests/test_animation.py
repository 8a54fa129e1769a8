"""Animation export: one frame per step plus the final image, one size, looping, captioned when asked."""

import numpy as np
import pytest
from PIL import Image, ImageSequence

from engine.animation import export_animation
from engine.errors import DarkroomError


def steps_and_final(n=5, preview=8, final=64):
    frames = [np.full((preview, preview, 3), i * 40, np.uint8) for i in range(n)]
    return frames + [np.full((final, final, 3), 250, np.uint8)]


@pytest.mark.parametrize("suffix", [".webp", ".gif"])
def test_frame_count_size_and_loop(tmp_path, suffix):
    path = export_animation(steps_and_final(), tmp_path / f"anim{suffix}")
    with Image.open(path) as im:
        assert im.n_frames == 6 and im.size == (64, 64)
        assert im.info.get("loop") == 0
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
    assert frames[0].mean() < 10 and frames[-1].mean() > 240  # noise-dark first step, final image last


def test_caption_adds_a_bar_and_big_images_are_scaled_down(tmp_path):
    path = export_animation(steps_and_final(final=2000, preview=250), tmp_path / "a.webp", caption="a red apple")
    with Image.open(path) as im:
        assert im.width == 768 and im.height > 768


def test_bad_format_and_no_frames_are_clear(tmp_path):
    with pytest.raises(DarkroomError, match="webp or .gif"):
        export_animation(steps_and_final(), tmp_path / "a.bmp")
    with pytest.raises(DarkroomError, match="no steps"):
        export_animation([], tmp_path / "a.gif")
    assert not list(tmp_path.iterdir())
