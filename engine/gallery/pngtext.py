"""The PNG text-chunk walker: reads an image's text chunks without decoding pixels, within hard limits.

Everything in an image is untrusted. The walker checks the signature, walks chunks itself with limits on chunk
sizes, decompressed sizes and chunk count, and only opens regular files (a FIFO named ``*.png`` must not hang a
scan). It returns :class:`PngText` or raises :class:`MetadataError`, nothing else, in time linear in its input.
Safe on any thread.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import DarkroomError, ErrorKind
from .store import open_regular

# -- limits ------------------------------------------------------------------------------------------------
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Largest text chunk read, compressed or not (bigger ones are skipped with a warning).
MAX_CHUNK_BYTES = 4 * 1024 * 1024
#: Largest decompressed text of one chunk.
MAX_TEXT_BYTES = 4 * 1024 * 1024
#: Most text read from one file, all chunks together.
MAX_TOTAL_TEXT_BYTES = 16 * 1024 * 1024
#: Most chunks walked in one file.
MAX_CHUNKS = 100_000
#: Longest prompt kept (longer ones are cut, with a warning).

class MetadataError(DarkroomError):
    """An image's parameters cannot be read. ``code`` says why, for programs:

    - ``"unreadable"``: the file cannot be opened or read;
    - ``"not_png"``: the file is not a PNG image;
    - ``"no_parameters"``: a valid PNG that holds no generation parameters;
    - ``"malformed"``: parameters are there but none of them can be used.
    """

    kind = ErrorKind.VALIDATION

    def __init__(self, code: str, message: str, details: str = ""):
        super().__init__(message, details)
        self.code = code


@dataclass(frozen=True, eq=False)
class PngText:
    """What the chunk walker found: the image size from ``IHDR`` and the text chunks, first of each key."""

    width: int
    height: int
    text: dict[str, str]
    warnings: tuple[str, ...] = ()


def _inflate(data: bytes) -> bytes | None:
    """zlib-decompress at most MAX_TEXT_BYTES; None when the data is bad or would be larger."""
    try:
        d = zlib.decompressobj()
        out = d.decompress(data, MAX_TEXT_BYTES + 1)
    except zlib.error:
        return None
    if len(out) > MAX_TEXT_BYTES or d.unconsumed_tail:
        return None
    return out


def _decode_text_chunk(ctype: bytes, data: bytes) -> tuple[str, str, str | None]:
    """``(keyword, text, warning)``; keyword "" when the chunk is unusable."""
    nul = data.find(b"\0", 0, 80)
    if nul <= 0:
        return "", "", "A text chunk has no valid keyword."
    key = data[:nul].decode("latin-1")
    rest = data[nul + 1:]
    if ctype == b"tEXt":
        return key, rest.decode("latin-1"), None
    if ctype == b"zTXt":
        if not rest or rest[0] != 0:
            return "", "", f"Text chunk {key!r} uses an unknown compression."
        raw = _inflate(rest[1:])
        if raw is None:
            return "", "", f"Text chunk {key!r} is damaged or too large."
        return key, raw.decode("latin-1"), None
    # iTXt: compression flag, method, language\0, translated keyword\0, UTF-8 text
    if len(rest) < 2:
        return "", "", f"Text chunk {key!r} is cut short."
    flag, method = rest[0], rest[1]
    rest = rest[2:]
    lang_end = rest.find(b"\0")
    if lang_end < 0:
        return "", "", f"Text chunk {key!r} is damaged."
    trans_end = rest.find(b"\0", lang_end + 1)
    if trans_end < 0:
        return "", "", f"Text chunk {key!r} is damaged."
    body = rest[trans_end + 1:]
    if flag == 1:
        if method != 0:
            return "", "", f"Text chunk {key!r} uses an unknown compression."
        body = _inflate(body)
        if body is None:
            return "", "", f"Text chunk {key!r} is damaged or too large."
    elif flag != 0:
        return "", "", f"Text chunk {key!r} is damaged."
    try:
        return key, body.decode("utf-8"), None
    except UnicodeDecodeError:
        return key, body.decode("utf-8", errors="replace"), f"Text chunk {key!r} is not valid UTF-8; bad bytes were replaced."


def read_png_text_from(fp: BinaryIO) -> PngText:
    """Walk a PNG's chunks and collect its text. Raises :class:`MetadataError` ("not_png") only."""
    if fp.read(8) != PNG_SIGNATURE:
        raise MetadataError("not_png", "This file is not a PNG image.")
    width = height = 0
    text: dict[str, str] = {}
    warnings: list[str] = []
    total = 0
    for count in range(MAX_CHUNKS + 1):
        if count == MAX_CHUNKS:
            warnings.append("The image has too many chunks; the rest were not read.")
            break
        header = fp.read(8)
        if len(header) < 8:
            if count == 0:
                raise MetadataError("not_png", "This PNG image is empty or cut short.")
            warnings.append("The image file is cut short.")
            break
        length, ctype = struct.unpack(">I4s", header)
        if length > 0x7FFFFFFF:
            warnings.append("The image file is damaged.")
            break
        if ctype == b"IHDR" and length <= 64:
            data = fp.read(length + 4)
            if len(data) >= 8 + 4:
                width, height = struct.unpack(">II", data[:8])
            continue
        if ctype == b"IEND":
            break
        if ctype not in (b"tEXt", b"zTXt", b"iTXt"):
            fp.seek(length + 4, io.SEEK_CUR)
            continue
        if length > MAX_CHUNK_BYTES or total + length > MAX_TOTAL_TEXT_BYTES:
            warnings.append("A text chunk is too large and was skipped.")
            fp.seek(length + 4, io.SEEK_CUR)
            continue
        data = fp.read(length)
        crc = fp.read(4)
        if len(data) < length or len(crc) < 4:
            warnings.append("The image file is cut short.")
            break
        if zlib.crc32(ctype + data) != struct.unpack(">I", crc)[0]:
            warnings.append("A damaged text chunk was skipped.")
            continue
        key, value, warning = _decode_text_chunk(ctype, data)
        if warning:
            warnings.append(warning)
        if key and key not in text:
            total += len(value)
            if total > MAX_TOTAL_TEXT_BYTES:
                warnings.append("The image holds too much text; the rest was not read.")
                break
            text[key] = value
    return PngText(width, height, text, tuple(dict.fromkeys(warnings)))


def read_png_text(source: str | os.PathLike | bytes) -> PngText:
    """The text chunks of a PNG given as a path or as bytes. Raises :class:`MetadataError` only."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return read_png_text_from(io.BytesIO(bytes(source)))
    try:
        with open_regular(source) as fp:  # never blocks on a FIFO named *.png
            return read_png_text_from(fp)
    except MetadataError:
        raise
    except OSError as exc:
        raise MetadataError(
            "unreadable", f"Cannot read {Path(source).name}: {exc.strerror or exc}.", repr(exc)
        ) from None
    except Exception as exc:  # noqa: BLE001 - a reader of untrusted files reports, never crashes
        raise MetadataError("unreadable", f"Cannot read {Path(source).name}.", repr(exc)) from None
