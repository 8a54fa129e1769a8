"""Images people bring in (sources, masks, control images): read safely, normalised, stored by content.

Every file is untrusted. Reading refuses non-regular files, oversized files and decompression bombs, applies the
EXIF orientation, and turns palette, 16-bit, CMYK, greyscale and alpha images into plain 8-bit RGB (keeping the
alpha channel apart, for masks). Recipes refer to such images by :class:`~engine.request.ImageRef`: the SHA-256
of a normalised PNG (no metadata, so no GPS position travels with a shared recipe) stored once under the gallery
folder's ``sources/`` and named by that hash, so the same image is stored once however often it is used.
A reference read back from an image's metadata only counts when it names a file inside that folder whose bytes
have that hash. Pure file and pixel code (Pillow, numpy): safe on any thread.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .errors import DarkroomError, ErrorKind
from .request import RESIZE_MODES, ImageRef

#: Largest image accepted, in pixels (a 64-megapixel photo fits; decompression bombs do not).
MAX_PIXELS = 8192 * 8192
#: Largest file read.
MAX_FILE_BYTES = 256 * 1024 * 1024
SOURCES_FOLDER = "sources"


class ImageInputError(DarkroomError):
    kind = ErrorKind.VALIDATION


@dataclass(frozen=True, eq=False)
class InputImage:
    """A decoded image: read-only ``uint8`` H×W×3 RGB, and its alpha channel (H×W) when it had one."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return self.rgb.shape[1], self.rgb.shape[0]


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


def decode_image(data: bytes, name: str = "the image") -> InputImage:
    """Decode image bytes (any format Pillow reads) into 8-bit RGB plus alpha. Raises ImageInputError."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise Image.DecompressionBombError("too many pixels")
                im = ImageOps.exif_transpose(im)
                im.load()
                rgb, alpha = _to_rgb(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError(
            f"{name} is too large: at most {MAX_PIXELS // 1_000_000} megapixels are accepted.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageInputError(f"{name} is not an image Darkroom can read, or it is damaged.", repr(exc)[:300]) from None
    return InputImage(_frozen(rgb), None if alpha is None else _frozen(alpha))


def _to_rgb(im) -> tuple[np.ndarray, np.ndarray | None]:
    """8-bit RGB and the alpha channel of any Pillow image mode."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16- and 32-bit greyscale: scale to 8 bits rather than clip (Pillow's "L" conversion clips at 255).
        values = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2), None
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"))
        return rgba[..., :3], rgba[..., 3]
    return np.asarray(im.convert("RGB")), None


def read_image(path: str | Path) -> tuple[InputImage, bytes]:
    """Decode an image file and return it with the file's bytes. Raises ImageInputError (missing, not a regular
    file, too big, unreadable)."""
    from .gallery.store import open_regular

    path = Path(path)
    try:
        with open_regular(path) as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ImageInputError(f"The image {path.name} does not exist.", str(path)) from None
    except OSError as exc:
        raise ImageInputError(f"The image {path.name} cannot be read: {exc.strerror or exc}.", str(path)) from None
    if len(data) > MAX_FILE_BYTES:
        raise ImageInputError(f"The image {path.name} is larger than {MAX_FILE_BYTES >> 20} MB.")
    return decode_image(data, path.name), data


def normalised_png(image: InputImage) -> bytes:
    """The PNG Darkroom stores for an input image: its pixels (and alpha) only, encoded the same way every time."""
    from PIL import Image

    pixels = image.rgb if image.alpha is None else np.dstack([image.rgb, image.alpha])
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def store_image(root: Path, image: InputImage) -> ImageRef:
    """Store ``image`` under ``root/sources`` by content (once, however often it is used) and return its reference.
    Raises DiskError when the folder cannot be written."""
    from .gallery import store

    data = normalised_png(image)
    digest = hashlib.sha256(data).hexdigest()
    relative = f"{SOURCES_FOLDER}/{digest}.png"
    target = root / SOURCES_FOLDER / f"{digest}.png"
    if not (target.is_file() and _sha256_of(target) == digest):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            store.write_file_replacing(target, data)
        except OSError as exc:
            raise store.disk_error(exc, target.parent, "store the source image") from None
    return ImageRef(digest, relative)


def _sha256_of(path: Path) -> str:
    from .gallery.store import open_regular

    digest = hashlib.sha256()
    with open_regular(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_ref(root: Path, ref: ImageRef) -> Path:
    """The file a reference names under ``root``, checked: a relative path inside ``root`` (never elsewhere on
    the disk, whatever an image's metadata says) whose content has the reference's hash. Raises ImageInputError."""
    relative = PurePosixPath(ref.path)
    if relative.is_absolute() or ".." in relative.parts or "\\" in ref.path or ":" in ref.path:
        raise ImageInputError(f"The recipe names an image outside the gallery ({ref.path[:80]}); it is not used.")
    path = Path(root, *relative.parts)
    try:
        matches = _sha256_of(path) == ref.sha256
    except OSError:
        raise ImageInputError(
            f"The image this recipe starts from ({ref.path[:80]}) is no longer in the gallery folder.", str(path)) from None
    if not matches:
        raise ImageInputError(f"The image {ref.path[:80]} in the gallery folder was changed since the recipe was made.")
    return path


def resize_to(image: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:
    """``image`` (H×W×C uint8) at ``width``×``height``: "stretch" ignores the aspect ratio, "fill" scales to
    cover and crops the centre, "fit" scales to fit inside and pads with the edge pixels."""
    from PIL import Image

    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}")
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    pil = Image.fromarray(np.ascontiguousarray(image))
    if mode == "stretch":
        return np.asarray(pil.resize((width, height), Image.Resampling.LANCZOS))
    scale = max(width / w, height / h) if mode == "fill" else min(width / w, height / h)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    scaled = np.asarray(pil.resize((sw, sh), Image.Resampling.LANCZOS))
    if mode == "fill":
        top, left = (sh - height) // 2, (sw - width) // 2
        return np.ascontiguousarray(scaled[top:top + height, left:left + width])
    top, left = (height - sh) // 2, (width - sw) // 2
    pad = [(top, height - sh - top), (left, width - sw - left)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(scaled, pad, mode="edge")
