"""docs/tools: the scripts that make the README's pictures keep working with the engine they drive."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def test_filmstrip_tiles_the_chosen_previews_and_the_final_image(tmp_path):
    out = tmp_path / "strip.png"
    env = dict(os.environ, DARKROOM_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "docs/tools/filmstrip.py", "red apple", "--seed", "2", "--steps", "4", "--show", "1,2,4",
         "--cell", "32", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    sheet = np.asarray(Image.open(out).convert("RGB"), dtype=np.float32)
    assert sheet.shape == (32 + 18, 32 * 4, 3)  # three previews and the decoder's image, under a label row
    tiles = [sheet[18:, i * 32:(i + 1) * 32] for i in range(4)]
    assert all(tile.std() > 5 for tile in tiles)  # pictures, not blank cells
    assert np.abs(tiles[0] - tiles[2]).mean() > 1  # step 1 is noisier than step 4
