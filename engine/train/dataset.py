"""The bundled model's training set: Noto Color Emoji glyphs rendered with Pillow, with captions.

Each fully-qualified emoji that the font draws as one glyph becomes one image; its captions are the
Unicode name(s) and the names and aliases of the ``emoji`` package, lowercased, underscores as spaces
("red apple", "flag: spain", "woman astronaut: medium skin tone", ...). Glyphs are composited onto a
plain white background and resized with LANCZOS; nothing that changes meaning (flips, colour jitter).
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

FONT_PACKAGE = "fonts-noto-color-emoji"
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/google-noto-emoji/NotoColorEmoji.ttf",
    "/usr/local/share/fonts/NotoColorEmoji.ttf",
    "/System/Library/Fonts/NotoColorEmoji.ttf",
)
FONT_PIXEL_SIZE = 109  # the font's bitmap strike: CBDT glyphs only render at this size
BACKGROUND = (255, 255, 255)


class FontMissingError(RuntimeError):
    pass


def find_font(path: str | os.PathLike | None = None) -> Path:
    """Locate NotoColorEmoji.ttf (explicit path, $DARKROOM_EMOJI_FONT, or the usual system places)."""
    candidates = [path, os.environ.get("DARKROOM_EMOJI_FONT"), *FONT_CANDIDATES]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise FontMissingError(
        "The Noto Color Emoji font (NotoColorEmoji.ttf) was not found. Install it with "
        f"`sudo apt-get install {FONT_PACKAGE}` (Debian/Ubuntu; SIL Open Font License), or point "
        "DARKROOM_EMOJI_FONT / --font at the .ttf file."
    )


def _clean(text: str) -> str:
    text = text.strip(":").replace("_", " ").lower()
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2019", "'")
    return re.sub(r"\s+", " ", text).strip()


def captions_for(char: str, data: dict) -> list[str]:
    """Names people would type for one emoji, most canonical first, without duplicates."""
    names: list[str] = []
    en = data.get("en")
    if en:
        plain = _clean(en)
        cldr = _cldr_style(char, plain)
        if cldr:
            names.append(cldr)
        names.append(plain)
    base = [c for c in char if c not in "\ufe0f\u200d"]
    if len(base) == 1:
        try:
            names.append(_clean(unicodedata.name(base[0])))
        except ValueError:
            pass
    for alias in data.get("alias", []) or []:
        names.append(_clean(alias))
    out: list[str] = []
    for n in names:
        if n and n not in out:
            out.append(n)
    return out


_TONE = r"(?:light|medium-light|medium|medium-dark|dark) skin tone"
_TONE_RE = re.compile(rf"^(.*?) ({_TONE})(?: ({_TONE}))?$")


def _cldr_style(char: str, plain: str) -> str | None:
    """The CLDR short-name form: "flag: spain", "woman astronaut: medium skin tone"."""
    if len(char) == 2 and all(0x1F1E6 <= ord(c) <= 0x1F1FF for c in char):
        return f"flag: {plain}"
    m = _TONE_RE.match(plain)
    if m:
        tones = ", ".join(t for t in m.groups()[1:] if t)
        return f"{m.group(1)}: {tones}"
    return None


@dataclass
class EmojiEntry:
    index: int
    char: str
    captions: list[str]


def list_emoji() -> list[tuple[str, list[str]]]:
    """Fully-qualified emoji of the ``emoji`` package with their captions (font not consulted)."""
    import emoji

    fully = emoji.STATUS["fully_qualified"]
    out = []
    for char, data in emoji.EMOJI_DATA.items():
        if data.get("status") != fully:
            continue
        caps = captions_for(char, data)
        if caps:
            out.append((char, caps))
    return out


class EmojiRenderer:
    def __init__(self, font_path: str | os.PathLike | None = None):
        from PIL import ImageFont

        self.font_path = find_font(font_path)
        self.font = ImageFont.truetype(str(self.font_path), FONT_PIXEL_SIZE)
        self._single_w = self._width("\U0001F600")
        self._tofu = self._raw("\U000E0FFF")  # an unassigned code point: the font's "missing glyph"

    def _width(self, text: str) -> int:
        l, t, r, b = self.font.getbbox(text)
        return r - l

    def _raw(self, text: str):
        from PIL import Image, ImageDraw

        canvas = 160
        img = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
        ImageDraw.Draw(img).text((canvas // 2, canvas // 2), text, font=self.font,
                                 embedded_color=True, anchor="mm")
        return img

    def render(self, char: str, size: int = 64, background=BACKGROUND):
        """RGB image of one emoji on a plain background, or None if the font lacks it as one glyph."""
        from PIL import Image

        if self._width(char) > 1.3 * self._single_w:
            return None  # the font would draw a sequence as several glyphs
        raw = self._raw(char)
        bbox = raw.getbbox()
        if bbox is None:
            return None
        if self._tofu is not None and raw.tobytes() == self._tofu.tobytes():
            return None
        # centre the square glyph cell, keep aspect, small margin
        glyph = raw.crop(bbox)
        side = max(glyph.size)
        cell = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        cell.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
        margin = max(1, round(size * 0.04))
        inner = size - 2 * margin
        cell = cell.resize((inner, inner), Image.LANCZOS)
        out = Image.new("RGBA", (size, size), background + (255,))
        out.alpha_composite(cell, (margin, margin))
        return out.convert("RGB")


def build_dataset(out_dir: str | os.PathLike, size: int = 64, font_path=None, limit: int | None = None,
                  progress: bool = True) -> dict:
    """Render every emoji the font has into ``out_dir``: images.npy (N,H,W,3 uint8) + captions.json."""
    import numpy as np

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    renderer = EmojiRenderer(font_path)
    items = list_emoji()
    if limit:
        items = items[:limit]
    try:
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no background monitor thread
        it: Iterable = tqdm(items, desc="render", disable=not progress)
    except ImportError:
        it = items
    images, entries = [], []
    for char, caps in it:
        img = renderer.render(char, size)
        if img is None:
            continue
        entries.append({"index": len(images), "char": char, "captions": caps})
        images.append(np.asarray(img, dtype=np.uint8))
    arr = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    np.save(out_dir / "images.npy", arr)
    meta = {"size": size, "font": str(renderer.font_path), "count": len(entries), "items": entries}
    (out_dir / "captions.json").write_text(json.dumps(meta, ensure_ascii=False, indent=0), encoding="utf-8")
    return meta


def load_dataset(data_dir: str | os.PathLike):
    """Return (images uint8 N×H×W×3, list of caption lists)."""
    import numpy as np

    data_dir = Path(data_dir)
    arr = np.load(data_dir / "images.npy")
    meta = json.loads((data_dir / "captions.json").read_text(encoding="utf-8"))
    caps = [e["captions"] for e in meta["items"]]
    return arr, caps


def skin_tone_weights(captions: list[list[str]]) -> list[float]:
    """How often the trainer should draw each image so that an emoji and its skin-tone variants ("farmer",
    "farmer: dark skin tone", …) count as one: each of a group of n images gets 1/n. Half the emoji dataset is such
    variants (1,890 of 3,789 images), which a uniform draw gives half of every batch; grouping gives that share
    back to the objects and symbols, most of which exist once."""

    def base(caption: str) -> str:
        name, _, rest = caption.partition(": ")
        return name if "skin tone" in rest else caption

    keys = [base(caps[0]) if caps else "" for caps in captions]
    sizes: dict[str, int] = {}
    for key in keys:
        sizes[key] = sizes.get(key, 0) + 1
    return [1.0 / sizes[key] for key in keys]
