"""Textual-inversion embeddings: ``.safetensors`` files in :func:`engine.paths.embeddings_dir`, each a few learned
token vectors that a prompt calls up by writing the file's name as a word ("a photo in ink-style").

The vectors of one file are read as A1111 saves them: ``emb_params`` (or a file's only tensor) for the one text
encoder of SD 1.x/2.x; ``clip_l`` and ``clip_g`` for SDXL (and SD3's two CLIP encoders, Flux's CLIP-L). An
encoder takes only vectors of its own width: an embedding made for another kind of model is refused with a message
that says so. The text encoders put the vectors in place of placeholder tokens while encoding
(:mod:`engine.families.text_encoders`); the model itself is never changed.

Files are listed on every lookup (a new file is seen at once) and read once per session (cached by path, size and
modification time). The engine's worker thread; torch is imported inside functions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import addon_files, paths
from .errors import DarkroomError, ErrorKind
from .prompts import embedding_pattern, extract_loras

MAX_BYTES = 64 * 2**20
MAX_TENSORS = 16
#: Most vectors one embedding may hold (a CLIP chunk's 75 tokens).
MAX_VECTORS = 75


@dataclass(frozen=True)
class Embedding:
    name: str  # the file's name as written in prompts
    path: Path
    sha256: str
    tensors: dict = field(repr=False)  # key → N×D float tensor on the CPU

    def vectors_for(self, role: str | None, width: int):
        """The vectors for one text encoder: ``role`` "clip_l"/"clip_g" (None: SD 1.x/2.x's only encoder),
        ``width`` its token width. Raises DarkroomError for an embedding made for another kind of model."""
        tensors = self.tensors
        if role in tensors:
            vectors = tensors[role]
        elif "emb_params" in tensors:
            vectors = tensors["emb_params"]
        elif len(tensors) == 1:
            (vectors,) = tensors.values()
        else:
            kinds = ", ".join(sorted(tensors))
            raise DarkroomError(f"The embedding {self.name!r} holds vectors for {kinds}, none for this model's "
                                "text encoder: it was made for another kind of model.",
                                kind=ErrorKind.MODEL_UNSUPPORTED)
        if vectors.shape[-1] != width:
            raise DarkroomError(f"The embedding {self.name!r} has vectors {vectors.shape[-1]} wide; this model's "
                                f"text encoder takes {width}: it was made for another kind of model.",
                                kind=ErrorKind.MODEL_UNSUPPORTED)
        return vectors


_lock = threading.Lock()
_loaded: dict[tuple[str, int, int], Embedding] = {}


def available(folder: Path | None = None) -> dict[str, Path]:
    """Embedding files by the name a prompt uses (the file's stem)."""
    folder = folder or paths.embeddings_dir()
    return {name: path for name, path in addon_files.listing(folder).items() if "/" not in name}


def used_by(texts: Iterable[str], folder: Path | None = None) -> dict[str, Embedding]:
    """The embeddings the prompts ``texts`` name (a word equal to a file's name, ignoring case), by lower-case
    name, read and checked. Raises DarkroomError for a damaged or malformed file."""
    files = available(folder)
    if not files:
        return {}
    by_lower = {name.lower(): (name, path) for name, path in files.items()}
    pattern = embedding_pattern(by_lower)
    found: dict[str, Embedding] = {}
    for text in texts:
        for match in pattern.finditer(extract_loras(text)[0]):
            key = match.group(1).lower()
            if key not in found:
                found[key] = load(*by_lower[key])
    return found


def load(name: str, path: Path) -> Embedding:
    """One embedding file, read once and checked: 1 or 2-D float tensors of at most 75 vectors."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _lock:
        if key in _loaded:
            return _loaded[key]
    raw = addon_files.read_tensors(path, "embedding", MAX_BYTES, MAX_TENSORS)
    tensors = {}
    for tensor_name, tensor in raw.items():
        if not tensor.is_floating_point() or tensor.ndim not in (1, 2) or tensor.numel() == 0:
            raise DarkroomError(f"The embedding {name!r} is not a textual-inversion embedding (its tensor "
                                f"{tensor_name[:40]!r} is not a list of vectors).", kind=ErrorKind.MODEL_UNSUPPORTED)
        vectors = tensor.reshape(1, -1) if tensor.ndim == 1 else tensor
        if vectors.shape[0] > MAX_VECTORS:
            raise DarkroomError(f"The embedding {name!r} has {vectors.shape[0]} vectors; a prompt holds at most "
                                f"{MAX_VECTORS}.", kind=ErrorKind.MODEL_UNSUPPORTED)
        tensors[tensor_name] = vectors.float()
    if not tensors:
        raise DarkroomError(f"The embedding {name!r} holds no vectors.", kind=ErrorKind.MODEL_UNSUPPORTED)
    embedding = Embedding(name, path, addon_files.sha256(path), tensors)
    with _lock:
        _loaded[key] = embedding
    return embedding
