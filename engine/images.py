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
    target = root / SOURCES_FOLDER / f"{digest}.png"
    if not (target.is_file() and _sha256_of(target) == digest):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            store.write_file_replacing(target, data)
        except OSError as exc:
            raise store.disk_error(exc, target.parent, "store the source image") from None
    return ImageRef(digest, str(target.resolve()))


def _sha256_of(path: Path) -> str:
    from .gallery.store import open_regular

    digest = hashlib.sha256()
    with open_regular(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_ref(root: Path, ref: ImageRef, what: str = "image this recipe starts from") -> Path:
    """The file a reference read from an image's metadata names under ``root``, checked: a relative path inside
    ``root`` (never elsewhere on the disk, whatever the metadata says) whose content has the reference's hash.
    ``what`` names the image in messages ("mask", "control image"). Raises ImageInputError."""
    relative = PurePosixPath(ref.path)
    if relative.is_absolute() or ".." in relative.parts or "\\" in ref.path or ":" in ref.path:
        raise ImageInputError(f"The recipe names an image outside the gallery ({ref.path[:80]}); it is not used.")
    path = Path(root, *relative.parts)
    try:
        matches = _sha256_of(path) == ref.sha256
    except OSError:
        raise ImageInputError(
            f"The {what} ({ref.path[:80]}) is no longer in the gallery folder.", str(path)) from None
    if not matches:
        raise ImageInputError(f"The {what} ({ref.path[:80]}) in the gallery folder was changed since the recipe was made.")
    return path


def read_ref(ref: ImageRef, what: str = "source image") -> InputImage:
    """Decode the image a live request names: an absolute path (as :func:`store_image` and
    :func:`resolve_refs` make them) whose bytes have the reference's hash. Raises ImageInputError."""
    path = Path(ref.path)
    if not path.is_absolute():
        raise ImageInputError(
            f"The {what} {ref.path[:80]} is named relative to a gallery folder; open the recipe from its gallery.")
    try:
        image, data = read_image(path)
    except ImageInputError as exc:
        if not path.exists():
            raise ImageInputError(f"The {what} {path.name} is missing (it was at {path.parent}).", str(path)) from None
        raise exc
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise ImageInputError(f"The {what} {path.name} was changed since the recipe was made.", str(path))
    return image


# -- references inside requests: absolute while live, relative to the gallery folder in saved metadata ----------
#: Request parts holding image references, and what the image is called in messages.
_REF_LABELS = {"source": "source image", "mask": "mask", "controls": "control image"}


def _map_refs(request, fn):
    """``request`` with every image reference replaced by ``fn(ref, what)``."""
    import dataclasses

    changes = {}
    if request.source is not None:
        changes["source"] = dataclasses.replace(request.source, image=fn(request.source.image, _REF_LABELS["source"]))
    if request.mask is not None:
        changes["mask"] = dataclasses.replace(request.mask, image=fn(request.mask.image, _REF_LABELS["mask"]))
    if request.controls:
        changes["controls"] = tuple(dataclasses.replace(c, image=fn(c.image, _REF_LABELS["controls"]))
                                    for c in request.controls)
    return dataclasses.replace(request, **changes) if changes else request


def _inside(path: Path, root: Path) -> PurePosixPath | None:
    try:
        return PurePosixPath(path.resolve().relative_to(root.resolve()).as_posix())
    except (ValueError, OSError):
        return None


def relative_refs(request, root: Path | None):
    """The request as image metadata records it: references inside ``root`` relative to it; any other keeps
    only its file name (metadata never carries the user's folders, and such a reference resolves nowhere)."""
    def relative(ref: ImageRef, what: str) -> ImageRef:
        path = Path(ref.path)
        if not path.is_absolute():
            return ref
        inside = _inside(path, root) if root is not None else None
        return ImageRef(ref.sha256, str(inside) if inside is not None else path.name)

    return _map_refs(request, relative)


def adopt_refs(request, root: Path):
    """The request with every image it uses stored under ``root/sources`` (copied there, byte for byte, when it
    lives elsewhere), so the gallery's recipe can always find it. Raises ImageInputError / DiskError."""
    from .gallery import store

    def adopt(ref: ImageRef, what: str) -> ImageRef:
        path = Path(ref.path)
        if not path.is_absolute() or _inside(path, root) is not None:
            return ref
        target = root / SOURCES_FOLDER / f"{ref.sha256}.png"
        if not (target.is_file() and _sha256_of(target) == ref.sha256):
            read_ref(ref, what)  # checks that the file is still the image the recipe used
            try:
                with open(path, "rb") as f:
                    data = f.read(MAX_FILE_BYTES + 1)
                target.parent.mkdir(parents=True, exist_ok=True)
                store.write_file_replacing(target, data)
            except OSError as exc:
                raise store.disk_error(exc, target.parent, "store the source image") from None
        return ImageRef(ref.sha256, str(target))

    return _map_refs(request, adopt)


def resolve_refs(request, root: Path):
    """A recipe read back from an image (relative references) made runnable: every reference resolved under
    ``root`` and checked by hash, as absolute paths. Raises ImageInputError naming the missing image."""
    def resolve(ref: ImageRef, what: str) -> ImageRef:
        return ImageRef(ref.sha256, str(resolve_ref(root, ref, what).resolve()))

    return _map_refs(request, resolve)


def recipe_to_store(request, root: Path):
    """The request as saved metadata records it: every picture it uses kept under ``root/sources`` and named
    relative to ``root``, so the recipe is found again by hash from the gallery and never carries the user's
    folders. A picture that cannot be kept there is named by its file name only (the image is still saved;
    remaking it says the picture is missing). Control models are named, not located, as the main model is:
    remaking finds them by name in the models folder's ``controlnet`` folder."""
    import dataclasses
    import logging

    from .gallery.infotext import model_label

    try:
        request = adopt_refs(request, root)
    except DarkroomError as exc:
        logging.getLogger(__name__).warning("the recipe's pictures could not be kept in the gallery: %s", exc)
    if request.controls:
        request = dataclasses.replace(request, controls=tuple(dataclasses.replace(c, model=model_label(c.model))
                                                              for c in request.controls))
    return relative_refs(request, root)


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
