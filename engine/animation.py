"""Noise → image as an animation: the per-step x0 previews of a generation, then the final picture.

Frames are scaled to one size (previews come at latent resolution, the final image at full size), optionally
captioned with the prompt, and written as an animated WebP or GIF (Pillow), looping, the final image held a
little longer. The file is written atomically to the path the person chose. Pure pixel code: safe on any thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import DarkroomError, ErrorKind

FORMATS = (".webp", ".gif")
#: Longest side of an exported animation (previews are upscaled, big images scaled down).
MAX_SIDE = 768


def frames_for_export(frames: Sequence[np.ndarray], caption: str = "", max_side: int = MAX_SIDE) -> list[np.ndarray]:
    """The frames at the final image's size (at most ``max_side``), with a caption bar when asked."""
    from PIL import Image, ImageDraw, ImageFont

    if not frames:
        raise DarkroomError("There are no steps to animate.", kind=ErrorKind.VALIDATION)
    fh, fw = frames[-1].shape[:2]
    scale = min(1.0, max_side / max(fw, fh))
    size = (max(1, round(fw * scale)), max(1, round(fh * scale)))
    font = ImageFont.load_default(size=max(10, size[0] // 28)) if caption else None
    bar = font.size + 12 if caption else 0
    out = []
    for frame in frames:
        image = Image.fromarray(np.ascontiguousarray(frame[..., :3])).convert("RGB")
        # Previews are small: nearest keeps their steps visible as the model's coarse guesses, not a blur.
        resample = Image.Resampling.NEAREST if image.width < size[0] else Image.Resampling.LANCZOS
        image = image.resize(size, resample)
        if caption:
            framed = Image.new("RGB", (size[0], size[1] + bar), (20, 20, 20))
            framed.paste(image, (0, 0))
            text = caption if len(caption) <= 120 else caption[:117] + "…"
            ImageDraw.Draw(framed).text((8, size[1] + bar / 2), text, fill=(235, 235, 235), font=font, anchor="lm")
            image = framed
        out.append(np.asarray(image))
    return out


def encode_animation(frames: Sequence[np.ndarray], suffix: str, *, frame_ms: int = 120, hold_ms: int = 1200) -> bytes:
    """The animation file's bytes: every frame shown ``frame_ms``, the last one ``hold_ms``, looping forever."""
    import io

    from PIL import Image

    suffix = suffix.lower()
    if suffix not in FORMATS:
        raise DarkroomError(f"Animations are saved as {' or '.join(FORMATS)}, not {suffix or 'no extension'}.",
                            kind=ErrorKind.VALIDATION)
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    durations = [frame_ms] * (len(images) - 1) + [hold_ms]
    buffer = io.BytesIO()
    if suffix == ".gif":
        # One palette for the whole animation, from a strip of frames across it: mapping to a given palette is
        # several times faster than a palette per frame, and the frames (guesses of one picture) share colours.
        picks = images[:: max(1, len(images) // 6)] + [images[-1]]
        strip = Image.new("RGB", (sum(im.width // 4 for im in picks), images[0].height // 4))
        for i, im in enumerate(picks):
            strip.paste(im.resize((im.width // 4 or 1, im.height // 4 or 1)), (i * (im.width // 4), 0))
        palette = strip.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        images = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in images]
        images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0,
                       disposal=1, optimize=False)
    else:  # method 0: the fastest WebP encoder setting, still a third of a GIF's size
        images[0].save(buffer, format="WEBP", save_all=True, append_images=images[1:], duration=durations, loop=0,
                       quality=85, method=0)
    return buffer.getvalue()


def export_animation(frames: Sequence[np.ndarray], path: str | Path, *, caption: str = "",
                     frame_ms: int = 120, hold_ms: int = 1200) -> Path:
    """Write ``frames`` (x0 previews in step order, then the final image) as an animation at ``path``.
    Raises DarkroomError (bad format, no frames, disk problems) with a message for people."""
    from .gallery import store

    path = Path(path)
    data = encode_animation(frames_for_export(frames, caption), path.suffix, frame_ms=frame_ms, hold_ms=hold_ms)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        store.write_file_replacing(path, data)
    except OSError as exc:
        raise store.disk_error(exc, path.parent, "save the animation") from None
    return path
