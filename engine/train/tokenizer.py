"""A CLIP-format byte-level BPE vocabulary built from the caption words.

The files (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json) are exactly what
``transformers.CLIPTokenizer`` reads, so the bundled model loads like any Stable Diffusion 1.x folder.
The base symbols are CLIP's 256 byte symbols, each also in its end-of-word form ("a</w>"); merges are
added so that every word seen in the captions becomes a single token. Unseen words still tokenize
(into smaller pieces, down to bytes), so no prompt is ever rejected.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable

from ..clip_bpe import bytes_to_unicode

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
# CLIP's pre-tokenizer, with \p{L}/\p{N} approximated for the standard-library `re` module
_PAT = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+", re.IGNORECASE)


def byte_level_tokenizer(folder: Path, model_max_length: int = 77):
    """A CLIP tokenizer over the 256 byte symbols and no merges, saved in ``folder``: any text tokenizes, and
    token counts match a real CLIP tokenizer's worst case. Returns (tokenizer, vocabulary size); the start and
    end tokens are the last two ids. For random-weight models (tests, benchmarks) that need no real vocabulary."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + [BOS, EOS]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=model_max_length)
    return tokenizer, len(vocab)


def unigram_t5_tokenizer(words: Iterable[str]):
    """A T5 tokenizer built without downloads: a Unigram model over ``words`` and the letters. Returns
    (tokenizer, vocabulary size). For random-weight SD3/Flux models (tests, benchmarks): any text tokenizes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -15.0)]
    vocab += [("▁" + w, -float(i + 1)) for i, w in enumerate(dict.fromkeys(words))]
    vocab += [(c, -20.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    model = Tokenizer(models.Unigram(vocab, unk_id=2))
    model.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    model.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    model.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                         special_tokens=[("</s>", 1)])
    tokenizer = T5TokenizerFast(tokenizer_object=model, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                extra_ids=0)
    return tokenizer, len(vocab)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def pre_tokenize(text: str) -> list[str]:
    return _PAT.findall(_normalise(text))


def _word_symbols(word: str) -> list[str]:
    b2u = bytes_to_unicode()
    syms = [b2u[b] for b in word.encode("utf-8")]
    syms[-1] = syms[-1] + "</w>"
    return syms


def _apply(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b), 1 << 60), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
        best, _ = min(pairs)
        if best == 1 << 60:
            break
        a, b = next((symbols[i], symbols[i + 1]) for r, i in pairs if r == best)
        out, i = [], 0
        while i < len(symbols):
            if i < len(symbols) - 1 and symbols[i] == a and symbols[i + 1] == b:
                out.append(a + b)
                i += 2
            else:
                out.append(symbols[i])
                i += 1
        symbols = out
    return symbols


def build_bpe(texts: Iterable[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges in CLIP's layout: bytes, bytes</w>, merges (by rank), then specials."""
    from collections import Counter

    counts = Counter(w for t in texts for w in pre_tokenize(t))
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    # Most frequent words first, so common words get the low-rank (high-priority) merges. A merge added
    # later has the highest rank, so it never changes how an already single-token word encodes.
    for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        syms = _apply(_word_symbols(word), ranks)
        while len(syms) > 1:
            pair = (syms[0], syms[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            syms = _apply(syms, ranks)
    base = list(bytes_to_unicode().values())
    tokens = base + [b + "</w>" for b in base] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab: dict[str, int] = {}
    for t in tokens:
        vocab.setdefault(t, len(vocab))
    return vocab, merges


def save_clip_tokenizer(texts: Iterable[str], out_dir: str | os.PathLike, model_max_length: int = 77) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_bpe(texts)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    with open(out / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    cfg = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        **special,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return out


def load_clip_tokenizer(path: str | os.PathLike):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(path))
