"""Prompt syntax as people know it from AUTOMATIC1111, so a prompt copied from an A1111 image means what it meant.

- ``(word)`` multiplies the attention to ``word`` by 1.1, ``[word]`` divides it by 1.1, nesting multiplies;
- ``(word:1.3)`` sets the multiplier explicitly; ``\\(`` ``\\)`` ``\\[`` ``\\]`` are literal brackets;
- ``BREAK`` (upper case, as a word) starts a new 75-token chunk;
- ``<lora:name:weight>`` applies a LoRA; the tag itself is taken out of the text the encoder sees.

No well-kept library implements these semantics: Compel (InvokeAI's) has a different syntax and weighting
(``word++``, ``(word)1.1``) and its own normalisation, so prompts from A1111 images would come out different.
The parser follows A1111's ``parse_prompt_attention`` (``modules/prompt_parser.py``) rule for rule, including its
handling of unbalanced brackets (an unclosed bracket weighs the rest of the prompt). Pure string code: safe on any
thread, linear in the prompt's length.
"""

from __future__ import annotations

import re
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
    ids: tuple[int, ...]  # start token, up to 75 tokens, end token, padding: CHUNK_TOKENS + 2 in all
    weights: tuple[float, ...]  # one per id (1.0 for the special tokens and padding)


def token_chunks(prompt: str, tokenize, *, bos: int, eos: int, pad: int, comma: int | None = None) -> list[Chunk]:
    """The prompt as 77-token chunks with a weight per token: its attention syntax parsed, ``BREAK`` starting a new
    chunk, long prompts continued in further chunks rather than cut. ``tokenize(text)`` returns token ids
    without start/end tokens. Each chunk is laid out as the pipelines' own tokenizer call lays out one prompt
    (start, tokens, end, then padding), so a plain prompt gives exactly the ids it gives there."""
    chunks: list[Chunk] = []
    ids: list[int] = []
    weights: list[float] = []

    def close() -> None:
        nonlocal ids, weights
        fill = CHUNK_TOKENS - len(ids)
        chunks.append(Chunk(tuple([bos, *ids, eos] + [pad] * fill), tuple([1.0, *weights, 1.0] + [1.0] * fill)))
        ids, weights = [], []

    for fragment in parse_attention(prompt):
        if fragment.is_break:
            close()
            continue
        for token in tokenize(fragment.text) if fragment.text else []:
            if len(ids) == CHUNK_TOKENS:
                cut = _last_comma(ids, comma)
                carry_ids, carry_weights = ids[cut:], weights[cut:]
                ids, weights = ids[:cut], weights[:cut]
                close()
                ids, weights = carry_ids, carry_weights
            ids.append(token)
            weights.append(fragment.weight)
    if ids or not chunks:
        close()
    return chunks


def _last_comma(ids: list[int], comma: int | None) -> int:
    """Where a full chunk is cut: just after its last comma if that is near the end, else at the end."""
    if comma is not None:
        for back in range(1, COMMA_BACKTRACK + 1):
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
    return scaled * (original_mean / scaled.float().mean()).to(hidden.dtype)
