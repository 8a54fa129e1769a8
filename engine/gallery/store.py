"""Gallery files: names, PNG encoding and atomic writes.

Layout: ``<gallery>/YYYY-MM-DD/YYYYMMDD-HHMMSS-mmm-<seed>-<random>.png`` in local time, so names never collide
(milliseconds plus 32 random bits, and a write never replaces an existing file) and sort by time.

A write goes to a hidden temporary file in the destination folder (``.darkroom-<host>-<pid>-<random>.part``),
is flushed and fsynced, then linked (or renamed) to its final name and the folder is fsynced. A crash or a full
disk therefore never leaves a half-written image under a real name; leftover temporary files of dead processes
are removed by the next rescan (:func:`remove_stale_temp_files`).
"""

from __future__ import annotations

import errno
import io
import os
import re
import secrets
import socket
import stat
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Mapping

import numpy as np

from ..errors import DiskError

TEMP_PREFIX = ".darkroom-"
TEMP_SUFFIX = ".part"
#: Temporary files older than this are removed by a rescan even when their owner cannot be checked.
STALE_TEMP_SECONDS = 3600.0

_NAME_RE = re.compile(r"^(\d{8})-(\d{6})-(\d{3})-")
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"

#: PNG compression used for gallery images (zlib level; 6 is Pillow's and A1111's default).
PNG_COMPRESS_LEVEL = 6


def day_folder_name(when: datetime) -> str:
    return when.strftime("%Y-%m-%d")


def image_file_name(when: datetime, seed: int) -> str:
    """``YYYYMMDD-HHMMSS-mmm-<seed>-<8 hex>.png``: sorts by time, and two writers never pick the same name."""
    return f"{when:%Y%m%d-%H%M%S}-{when.microsecond // 1000:03d}-{int(seed)}-{secrets.token_hex(4)}.png"


def time_from_name(name: str) -> float | None:
    """The local time encoded in a gallery file name, as a Unix timestamp, or None for other names."""
    m = _NAME_RE.match(name)
    if not m:
        return None
    try:
        dt = datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S")
    except ValueError:
        return None
    try:
        return dt.timestamp() + int(m.group(3)) / 1000.0
    except (OverflowError, OSError, ValueError):
        return None


def encode_png(image: np.ndarray, text: Mapping[str, str], compress_level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """PNG bytes of an H×W×3 (or H×W×4, H×W) ``uint8`` array with the given text chunks.

    Pillow writes ``tEXt`` for Latin-1 text and ``iTXt`` (UTF-8) otherwise, which is what other tools expect.
    A NUL inside a value would end the text early for every reader (PNG separates a chunk's fields with NUL), so
    each one is written as U+FFFD instead.
    """
    from PIL import Image, PngImagePlugin

    array = np.ascontiguousarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"images must be uint8 arrays, not {array.dtype}")
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value.replace("\0", "\ufffd"))
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return buffer.getvalue()


def disk_error(exc: OSError, folder: Path, what: str = "save the image") -> DiskError:
    """An OSError as a message in plain words (no advice tied to one front end: the window and the command line
    each add their own)."""
    code = exc.errno
    where = str(folder)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        message = f"Could not {what}: the disk holding {where} is full. Free some space or choose another folder."
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        message = (
            f"Could not {what}: Darkroom is not allowed to write to {where} (it is read-only or belongs to "
            "another user). Choose another folder."
        )
    elif code in (errno.ENOENT, errno.ENOTDIR):
        message = f"Could not {what}: the folder {where} does not exist (is a drive disconnected?). Choose another folder."
    else:
        message = f"Could not {what} in {where}: {exc.strerror or exc}."
    return DiskError(message, repr(exc))


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open a file for reading only if it is a regular file (or a link to one). Raises OSError otherwise.

    A FIFO named ``*.png`` would block a plain ``open`` forever, and opening a device can have side effects, so
    the path is checked before opening, opened without blocking (a FIFO swapped in meanwhile opens at once), and
    checked again on the open descriptor.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise _not_regular(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _not_regular(path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _not_regular(path: str | os.PathLike) -> OSError:
    return OSError(errno.EINVAL, "it is not a regular file", os.fspath(path))


_FATAL_LINK_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.ENOENT, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(folder: Path) -> None:
    if sys.platform == "win32":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _discard(tmp: Path) -> None:
    """Remove a temporary file if it is still there; a leftover is cleaned up by a later rescan."""
    try:
        os.unlink(tmp)
    except OSError:
        pass


def temp_name() -> str:
    return f"{TEMP_PREFIX}{_HOST}-{os.getpid()}-{secrets.token_hex(6)}{TEMP_SUFFIX}"


def _write_temp(folder: Path, data: bytes, durable: bool) -> Path:
    tmp = folder / temp_name()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)
    try:
        try:
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _discard(tmp)
        raise
    return tmp


def write_new_file(folder: Path, make_name, data: bytes, *, durable: bool = True, attempts: int = 20) -> Path:
    """Write ``data`` atomically to ``folder / make_name()`` without ever replacing an existing file.

    ``make_name`` is called again when a name is taken. Raises OSError; the folder must exist.
    """
    tmp = _write_temp(folder, data, durable)
    try:
        for _ in range(attempts):
            final = folder / make_name()
            try:
                os.link(tmp, final)  # fails if final exists: no file is ever replaced
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno in _FATAL_LINK_ERRORS:
                    raise
                # File systems without hard links (FAT, some network shares): rename instead.
                if final.exists():
                    continue
                os.replace(tmp, final)
            else:
                os.unlink(tmp)
            if durable:
                _fsync_dir(folder)
            return final
        raise FileExistsError(errno.EEXIST, "no free file name", str(folder))
    finally:
        _discard(tmp)


def write_file_replacing(path: Path, data: bytes, *, durable: bool = True) -> Path:
    """Write ``data`` atomically to ``path``, replacing what is there (the user chose this path)."""
    folder = path.parent
    tmp = _write_temp(folder, data, durable)
    try:
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    if durable:
        _fsync_dir(folder)
    return path


def _pid_alive(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # cannot ask safely; rely on age
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def is_temp_name(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def remove_stale_temp_files(folder: Path, names: list[str], now: float | None = None) -> int:
    """Remove temporary files in ``folder`` left by crashed writers. Returns how many were removed."""
    now = time.time() if now is None else now
    removed = 0
    for name in names:
        if not is_temp_name(name):
            continue
        parts = name[len(TEMP_PREFIX):-len(TEMP_SUFFIX)].split("-")
        path = folder / name
        stale = False
        if len(parts) == 3 and parts[0] == _HOST and parts[1].isdigit():
            stale = int(parts[1]) != os.getpid() and not _pid_alive(int(parts[1]))
        if not stale:
            try:
                stale = now - path.stat().st_mtime > STALE_TEMP_SECONDS
            except OSError:
                continue
        if stale:
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
    return removed
