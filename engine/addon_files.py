"""Files that add to a loaded model, LoRAs and textual-inversion embeddings: found by name in their folder, hashed,
and read as ``.safetensors`` only (a pickle file can run code when opened, so it is never opened).

A name comes from a prompt or an image's metadata, so it is untrusted: it is only ever compared with the names of
files found by listing the folder (subfolders included), never joined into a path. File reads only; any thread
(the engine's worker thread in practice). Torch is imported only where tensors are read.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from .errors import DarkroomError, ErrorKind, ModelCorruptError

SUFFIX = ".safetensors"
#: Pickle-based formats people may have beside their safetensors files.
UNSAFE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")

_hash_lock = threading.Lock()
_hashes: dict[tuple[str, int, int], str] = {}


def listing(folder: Path) -> dict[str, Path]:
    """Every ``.safetensors`` file under ``folder`` by its name (the file's stem; a stem found twice keeps the
    first in sorted order), and by its path below the folder without the suffix ("style/ink")."""
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob(f"*{SUFFIX}"), key=lambda p: p.as_posix().lower()):
        if path.suffix != SUFFIX or not path.is_file():
            continue
        found.setdefault(path.stem, path)
        found.setdefault(path.relative_to(folder).with_suffix("").as_posix(), path)
    return found


def find(folder: Path, name: str, what: str) -> Path:
    """The file called ``name`` in ``folder`` (exact name first, then ignoring case). ``what`` names the kind of
    file in messages ("LoRA"). Raises DarkroomError (a validation error naming the folder, or a refusal of a
    pickle file)."""
    files = listing(folder)
    if name in files:
        return files[name]
    for key, path in files.items():
        if key.lower() == name.lower():
            return path
    for suffix in UNSAFE_SUFFIXES:
        if folder.is_dir() and any(p.stem.lower() == name.lower() for p in folder.rglob(f"*{suffix}")):
            raise DarkroomError(f"The {what} {name!r} is a {suffix} file, which can run code when opened. Darkroom "
                                f"only opens .safetensors files; convert it first.", kind=ErrorKind.MODEL_UNSUPPORTED)
    # Like a missing source picture: the request names something that is not there.
    raise DarkroomError(f"There is no {what} called {name!r} in {folder}. Put its .safetensors file there.",
                        str(folder), kind=ErrorKind.VALIDATION)


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, remembered for the session by path, size and modification time."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if key in _hashes:
            return _hashes[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _hash_lock:
        _hashes[key] = value
    return value


def read_tensors(path: Path, what: str, max_bytes: int, max_tensors: int) -> dict:
    """All tensors of a ``.safetensors`` file (on the CPU), after checking its size and tensor count. Raises
    ModelCorruptError for anything safetensors cannot read, and a plain refusal for a file too large."""
    from safetensors import safe_open

    if path.suffix != SUFFIX:
        raise DarkroomError(f"The {what} {path.name} is not a .safetensors file.", kind=ErrorKind.MODEL_UNSUPPORTED)
    size = path.stat().st_size
    if size > max_bytes:
        raise DarkroomError(f"The {what} {path.name} is {size / 2**20:.0f} MB, larger than any {what} Darkroom "
                            f"opens ({max_bytes / 2**20:.0f} MB).", kind=ErrorKind.MODEL_UNSUPPORTED)
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            if len(keys) > max_tensors:
                raise DarkroomError(f"The {what} {path.name} holds {len(keys)} tensors, more than any {what} has.",
                                    kind=ErrorKind.MODEL_UNSUPPORTED)
            return {key: f.get_tensor(key) for key in keys}
    except DarkroomError:
        raise
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        raise ModelCorruptError(f"The {what} {path.name} is damaged or incomplete and cannot be read.",
                                f"{path}: {exc}") from exc
