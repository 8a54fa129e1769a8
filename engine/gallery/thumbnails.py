"""Thumbnails of gallery images, cached on disk as small JPEG files (no Qt: the GUI wraps the pixels).

A thumbnail's cache key is made of the image's path, size and modification time, so an edited or replaced file
gets a fresh thumbnail and a stale one is never shown. Files: ``<cache>/thumbnails/<size>/<ab>/<key>.jpg``.
Every function here is safe to call from worker threads.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from .. import paths

#: Longest edge of a cached thumbnail, in pixels.
THUMBNAIL_SIZE = 256
JPEG_QUALITY = 85
#: Images with more pixels than this are not thumbnailed (untrusted files could be decompression bombs).
MAX_SOURCE_PIXELS = 64 * 1024 * 1024


@dataclass(frozen=True)
class Thumbnail:
    """RGB pixels, row-major, 3 bytes a pixel."""

    width: int
    height: int
    rgb: bytes


def cache_root(size: int = THUMBNAIL_SIZE) -> Path:
    return paths.cache_dir() / "thumbnails" / str(size)


def cache_key(path: str | os.PathLike, file_size: int, mtime_ns: int) -> str:
    text = f"{os.fspath(path)}\0{int(file_size)}\0{int(mtime_ns)}"
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def cache_file(root: Path, key: str) -> Path:
    return root / key[:2] / f"{key}.jpg"


def _decode(data: bytes) -> Thumbnail | None:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
        return Thumbnail(img.width, img.height, img.tobytes())


def load_cached(root: Path, key: str) -> Thumbnail | None:
    try:
        data = cache_file(root, key).read_bytes()
    except OSError:
        return None
    try:
        return _decode(data)
    except Exception:  # noqa: BLE001 - a damaged cache file is remade
        return None


def make_thumbnail(source: str | os.PathLike, size: int = THUMBNAIL_SIZE) -> tuple[Thumbnail, bytes] | None:
    """Decode ``source`` and shrink it; returns the pixels and their JPEG bytes, or None if it is unreadable."""
    from PIL import Image

    from .store import open_regular

    try:
        with open_regular(source) as fp, Image.open(fp) as img:
            if img.width * img.height > MAX_SOURCE_PIXELS:
                return None
            img.draft("RGB", (size, size))
            if img.mode in ("RGBA", "LA", "P", "PA"):
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (32, 32, 32, 255))
                background.alpha_composite(rgba)
                img = background.convert("RGB")
            else:
                img = img.convert("RGB")
            img.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
            out = io.BytesIO()
            img.save(out, format="JPEG", quality=JPEG_QUALITY)
            return Thumbnail(img.width, img.height, img.tobytes()), out.getvalue()
    except Exception:  # noqa: BLE001 - untrusted or half-copied files must not break the gallery
        return None


def store(root: Path, key: str, jpeg: bytes) -> None:
    """Write a thumbnail into the cache (atomically; errors are ignored: the cache is only a cache)."""
    target = cache_file(root, key)
    tmp = target.with_name(f".{key}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(jpeg)
        os.replace(tmp, target)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def get_thumbnail(root: Path, key: str, source: str | os.PathLike, size: int = THUMBNAIL_SIZE) -> Thumbnail | None:
    """The cached thumbnail, or a fresh one (then cached). None when the image cannot be read."""
    cached = load_cached(root, key)
    if cached is not None:
        return cached
    made = make_thumbnail(source, size)
    if made is None:
        return None
    thumb, jpeg = made
    store(root, key, jpeg)
    return thumb


def forget(root: Path, key: str) -> None:
    try:
        cache_file(root, key).unlink()
    except OSError:
        pass
