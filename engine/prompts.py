"""Prompt syntax as people know it from AUTOMATIC1111, so a prompt copied from an A1111 image means what it meant.

- ``(word)`` multiplies the attention to ``word`` by 1.1, ``[word]`` divides it by 1.1, nesting multiplies;
- ``(word:1.3)`` sets the multiplier explicitly; ``\\(`` ``\\)`` ``\\[`` ``\\]`` are literal brackets;
- ``BREAK`` (upper case, as a word) starts a new 75-token chunk;
- ``<lora:name:weight>`` applies a LoRA; the tag itself is taken out of the text the encoder sees;
- a word equal to a textual-inversion embedding's name stands for its vectors (:func:`token_chunks`).

No well-kept library implements these semantics: Compel (InvokeAI's) has a different syntax and weighting
(``word++``, ``(word)1.1``) and its own normalisation, so prompts from A1111 images would come out different.
The parser follows A1111's ``parse_prompt_attention`` (``modules/prompt_parser.py``) rule for rule, including its
handling of unbalanced brackets (an unclosed bracket weighs the rest of the prompt). Pure string code: safe on any
thread, linear in the prompt's length.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1

# The same tokens as A1111's re_attention: escapes, brackets, an explicit ":weight)" and plain text.
_ATTENTION = re.compile(
    r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:
""",
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_LORA = re.compile(r"<lora:([^:<>]+)((?::[^:<>]*)*)>", re.I)


@dataclass(frozen=True)
class Fragment:
    text: str  # "BREAK" fragments have text "BREAK" and weight -1
    weight: float

    @property
    def is_break(self) -> bool:
        return self.weight == -1 and self.text == "BREAK"


BREAK = Fragment("BREAK", -1.0)


def parse_attention(text: str) -> list[Fragment]:
    """Split a prompt into fragments with their attention weights, A1111's way. Adjacent fragments of the same
    weight are merged; ``BREAK`` becomes the :data:`BREAK` fragment."""
    res: list[list] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for p in range(start, len(res)):
            res[p][1] *= multiplier

    for m in _ATTENTION.finditer(text):
        token, weight = m.group(0), m.group(1)
        if token.startswith("\\"):
            res.append([token[1:], 1.0])
        elif token == "(":
            round_brackets.append(len(res))
        elif token == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            try:
                multiply_range(round_brackets.pop(), float(weight))
            except ValueError:  # "1.2.3": A1111 would fail; keep the text as written instead
                res.append([token, 1.0])
        elif token == ")" and round_brackets:
            multiply_range(round_brackets.pop(), ROUND_MULTIPLIER)
        elif token == "]" and square_brackets:
            multiply_range(square_brackets.pop(), SQUARE_MULTIPLIER)
        else:
            for i, part in enumerate(_BREAK.split(token)):
                if i > 0:
                    res.append(["BREAK", -1.0])
                res.append([part, 1.0])
    for pos in round_brackets:
        multiply_range(pos, ROUND_MULTIPLIER)
    for pos in square_brackets:
        multiply_range(pos, SQUARE_MULTIPLIER)

    merged: list[list] = []
    for text_part, w in res:
        if merged and w == merged[-1][1] and w != -1.0:
            merged[-1][0] += text_part
        elif text_part or w == -1.0:
            merged.append([text_part, w])
    if not merged:
        return [Fragment("", 1.0)]
    return [Fragment(t, float(w)) for t, w in merged]


def plain_text(text: str) -> str:
    """The prompt as words only: ``<lora:…>`` tags taken out, attention brackets and weights dropped, escaped
    brackets kept as literal ones, ``BREAK`` a space. What an encoder without A1111's syntax (T5) reads; a prompt
    without syntax comes back unchanged."""
    text, _ = extract_loras(text)
    return "".join(" " if f.is_break else f.text for f in parse_attention(text))


@dataclass(frozen=True)
class LoraTag:
    name: str
    weight: float


def extract_loras(text: str) -> tuple[str, tuple[LoraTag, ...]]:
    """The prompt without its ``<lora:name:weight>`` tags, and the tags in order (weight 1 when left out; a
    second tag for the same LoRA replaces the first, as in A1111)."""
    found: dict[str, LoraTag] = {}

    def take(m: re.Match) -> str:
        name = m.group(1).strip()
        params = m.group(2).split(":")[1:]  # weight, then A1111's optional separate U-Net weight (not used)
        try:
            weight = float(params[0]) if params and params[0].strip() else 1.0
        except ValueError:
            return m.group(0)  # not a number: leave the text alone
        found.pop(name, None)
        found[name] = LoraTag(name, weight)
        return ""

    return _LORA.sub(take, text), tuple(found.values())


# -- chunks of tokens with weights ---------------------------------------------------------------------------------
CHUNK_TOKENS = 75  # CLIP's 77 positions less the start and end tokens
#: A full chunk is cut after its last comma when that comma is at most this many tokens back (as A1111 does), so
#: a phrase is not split across two chunks.
COMMA_BACKTRACK = 20


@dataclass(frozen=True)
class Chunk:
    ids: tuple[int, ...]  # start token, up to 75 tokens, end token, padding: CHUNK_TOKENS + 2 in all (or size + 2)
    weights: tuple[float, ...]  # one per id (1.0 for the special tokens and padding)
    #: (position in ``ids``, embedding name): where a textual-inversion embedding's vectors replace the
    #: placeholder ids, one position per vector.
    fixes: tuple[tuple[int, str], ...] = ()


def embedding_pattern(names) -> re.Pattern | None:
    """A pattern finding any of ``names`` as a whole word (not inside a longer word), ignoring case; None for no
    names. Longer names are tried first, so ``style-v2`` wins over ``style``."""
    names = sorted({n for n in names if n}, key=len, reverse=True)
    if not names:
        return None
    return re.compile(r"(?<![\w-])(" + "|".join(re.escape(n) for n in names) + r")(?![\w-])", re.I)


def token_chunks(prompt: str, tokenize, *, bos: int, eos: int, pad: int, comma: int | None = None,
                 embeddings: Mapping[str, int] | None = None, placeholder: int = 0,
                 size: int = CHUNK_TOKENS) -> list[Chunk]:
    """The prompt as 77-token chunks with a weight per token: its attention syntax parsed, ``BREAK`` starting a new
    chunk, long prompts continued in further chunks rather than cut. ``tokenize(text)`` returns token ids
    without start/end tokens. Each chunk is laid out as the pipelines' own tokenizer call lays out one prompt
    (start, tokens, end, then padding), so a plain prompt gives exactly the ids it gives there.

    ``embeddings`` maps textual-inversion embedding names (lower case) to their vector counts: a word equal to one
    takes that many ``placeholder`` ids, recorded in the chunk's ``fixes`` for the encoder to replace, all in one
    chunk (a chunk without room for them is closed first, as A1111 does). ``size``: tokens per chunk for an
    encoder with fewer positions than CLIP's 77 (its positions less two)."""
    chunks: list[Chunk] = []
    ids: list[int] = []
    weights: list[float] = []
    fixes: list[tuple[int, str]] = []
    embeddings = {k.lower(): v for k, v in (embeddings or {}).items()}
    pattern = embedding_pattern(embeddings)

    def close() -> None:
        nonlocal ids, weights, fixes
        fill = size - len(ids)
        chunks.append(Chunk(tuple([bos, *ids, eos] + [pad] * fill), tuple([1.0, *weights, 1.0] + [1.0] * fill),
                            tuple(fixes)))
        ids, weights, fixes = [], [], []

    def add_tokens(tokens: list[int], weight: float) -> None:
        nonlocal ids, weights, fixes
        for token in tokens:
            if len(ids) == size:
                cut = _last_comma(ids, comma)
                if any(p - 1 + embeddings[n] > cut for p, n in fixes):
                    cut = len(ids)  # an embedding's vectors stay together, in the chunk that records them
                carry_ids, carry_weights = ids[cut:], weights[cut:]
                ids, weights = ids[:cut], weights[:cut]
                close()
                ids, weights = carry_ids, carry_weights
            ids.append(token)
            weights.append(weight)

    def add_embedding(name: str, weight: float) -> None:
        count = embeddings[name]
        if not 0 < count <= size:
            raise ValueError(f"The embedding {name!r} has {count} vectors; a prompt chunk holds {size}.")
        if len(ids) + count > size:
            close()
        fixes.append((len(ids) + 1, name))  # +1: the start token
        ids.extend([placeholder] * count)
        weights.extend([weight] * count)

    for fragment in parse_attention(prompt):
        if fragment.is_break:
            close()
            continue
        if not fragment.text:
            continue
        pieces = pattern.split(fragment.text) if pattern else [fragment.text]
        for i, piece in enumerate(pieces):  # odd pieces are embedding names (the pattern's one group)
            if i % 2:
                add_embedding(piece.lower(), fragment.weight)
            elif piece:
                add_tokens(tokenize(piece), fragment.weight)
    if ids or not chunks:
        close()
    return chunks


def _last_comma(ids: list[int], comma: int | None) -> int:
    """Where a full chunk is cut: just after its last comma if that is near the end, else at the end."""
    if comma is not None:
        for back in range(1, min(COMMA_BACKTRACK, len(ids)) + 1):
            if ids[-back] == comma:
                return len(ids) - back + 1
    return len(ids)


def pad_chunks(a: list[Chunk], b: list[Chunk], empty: Chunk) -> tuple[list[Chunk], list[Chunk]]:
    """Two prompts' chunks made the same length (CFG batches them) by adding empty-prompt chunks to the shorter."""
    n = max(len(a), len(b))
    return a + [empty] * (n - len(a)), b + [empty] * (n - len(b))


def apply_weights(hidden, weights):
    """A1111's "original" emphasis: scale each token's embedding by its weight, then restore the chunk's mean so
    weights change the balance within the prompt rather than its overall strength. ``hidden``: 1×77×D tensor;
    ``weights``: a sequence of 77 floats. Unweighted chunks are returned unchanged (bit for bit)."""
    if all(w == 1.0 for w in weights):
        return hidden
    import torch

    w = torch.tensor(weights, dtype=hidden.dtype, device=hidden.device).reshape(1, -1, 1)
    original_mean = hidden.float().mean()
    scaled = hidden * w
    scaled_mean = scaled.float().mean()
    if not scaled_mean.abs() > 1e-6 * scaled.float().abs().mean():
        # States centred on zero (an untrained encoder's final layer norm) have no mean to restore: dividing by
        # it would blow the chunk up to inf/NaN, so the weights are left as they are.
        return scaled
    return scaled * (original_mean / scaled_mean).to(hidden.dtype)
