"""CLIP's byte-level byte-pair encoding: the byte → symbol map CLIP and GPT-2 share, and CLIP's vocabulary built
from its merges file. Used by the shipped single-file configurations and the trainer's tokenizer. Any thread."""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

#: CLIP's vocabulary: 256 byte symbols, the same ending a word, 48,894 merges and 2 special tokens.
CLIP_MERGES = 49152 - 256 - 2


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) map of the 256 byte values to printable characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars)))


@lru_cache(maxsize=2)
def clip_vocabulary(merges_file: Path) -> tuple[dict[str, int], tuple[str, ...]]:
    """CLIP's token → id map and its merges, from CLIP's gzipped merges file, built as CLIP's own tokenizer does."""
    lines = gzip.decompress(merges_file.read_bytes()).decode("utf-8").split("\n")
    merges = tuple(lines[1:CLIP_MERGES + 1])
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}, merges
