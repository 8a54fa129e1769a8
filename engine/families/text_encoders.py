"""Text encoders: CLIP read with AUTOMATIC1111's prompt syntax, and T5.

CLIP encoders (SD 1.x/2.x, both of SDXL's, SD3's CLIP-L and CLIP-G, Flux's CLIP-L) see a prompt as A1111 gives
it to them (:mod:`engine.prompts`): ``<lora:…>`` tags taken out, ``(word:1.2)`` / ``(word)`` / ``[word]`` weights,
``BREAK``, and prompts longer than 75 tokens continued in further 77-token chunks, each encoded alone and joined
along the sequence axis. Weights scale each token's hidden state and the chunk's mean is restored afterwards
(A1111's "original" emphasis). A prompt and its negative get the same number of chunks (empty-prompt chunks fill
the shorter), so a CFG batch stacks. The pooled output (SDXL, SD3, Flux) is the first chunk's, unweighted, as in
A1111. A plain prompt of at most 75 tokens is one chunk laid out exactly as the tokenizer's own padded call lays it
out, so it encodes to the very same tensor as before the syntax was read.

A word equal to a textual-inversion embedding's name (:mod:`engine.embeddings`) takes as many places in its chunk
as the embedding has vectors; the encoder's token lookup returns those vectors there (as A1111 does), and its
weight applies to them like to any token.

T5 (SD3, Flux) knows nothing of that syntax: it reads :func:`engine.prompts.plain_text`, the words with tags,
brackets and weights taken out (an embedding's name stays a plain word for it).

Plain functions and one small class; the engine's worker thread only (torch is imported inside functions).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..prompts import Chunk, apply_weights, extract_loras, plain_text, token_chunks
from .components import clip_input_ids


class ClipText:
    """One CLIP tokenizer with its text encoder. ``role`` names the vectors of a textual-inversion file meant for
    this encoder ("clip_l", "clip_g"; None for SD 1.x/2.x's only encoder)."""

    def __init__(self, tokenizer, encoder, role: str | None = None) -> None:
        self.tokenizer, self.encoder, self.role = tokenizer, encoder, role

    @cached_property
    def comma(self) -> int | None:
        return self.tokenizer.get_vocab().get(",</w>")

    @property
    def width(self) -> int:
        """Width of the encoder's token embeddings (what a textual-inversion vector must match)."""
        return int(self.encoder.get_input_embeddings().embedding_dim)

    @cached_property
    def size(self) -> int:
        """Tokens per chunk: the encoder's positions less the start and end tokens (75 for CLIP)."""
        positions = int(getattr(self.encoder.config, "max_position_embeddings", 77))
        return min(int(self.tokenizer.model_max_length), positions) - 2

    @cached_property
    def placeholder(self) -> int:
        """The id standing where embedding vectors go: any id that is no special token (A1111 uses 0)."""
        tok = self.tokenizer
        return next(i for i in range(4) if i not in {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id})

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids)

    def chunks(self, text: str, counts: dict[str, int] | None = None) -> list[Chunk]:
        """``text`` (its ``<lora:…>`` tags taken out) as weighted 77-token chunks; ``counts``: vectors per
        embedding name the text may use."""
        tok = self.tokenizer
        return token_chunks(extract_loras(text)[0], self.tokenize, bos=tok.bos_token_id, eos=tok.eos_token_id,
                            pad=tok.pad_token_id, comma=self.comma, embeddings=counts, placeholder=self.placeholder,
                            size=self.size)


@dataclass
class ChunkedTexts:
    """Prompts as chunks for each CLIP encoder (``rows[text][clip]``, every list of the same length: a CFG batch
    stacks them, and encoders' states join side by side), and the textual-inversion vectors they use for each
    encoder (``vectors[clip]``: name → N×D)."""

    rows: list[list[list[Chunk]]]
    vectors: list[dict[str, Any]]


def chunk_texts(clips: Sequence[ClipText], texts: Sequence[str]) -> ChunkedTexts:
    """Chunks of every text for every encoder, empty-prompt chunks filling the shorter lists; embeddings the
    texts name (:func:`engine.embeddings.used_by`) get their vectors' places. Raises DarkroomError for an
    embedding that does not fit an encoder."""
    from .. import embeddings

    found = embeddings.used_by(texts)
    vectors = [{name: e.vectors_for(clip.role, clip.width) for name, e in found.items()} for clip in clips]
    counts = [{name: int(v.shape[0]) for name, v in per_clip.items()} for per_clip in vectors]
    rows = [[clip.chunks(text, counts[i]) for i, clip in enumerate(clips)] for text in texts]
    n = max(len(chunks) for row in rows for chunks in row)
    for row in rows:
        for i, clip in enumerate(clips):
            row[i] = row[i] + [clip.chunks("")[0]] * (n - len(row[i]))
    return ChunkedTexts(rows, vectors)


def attention_mask(chunk: Chunk, eos: int) -> list[int]:
    """1 for the start token through the end token, 0 for the padding (what the tokenizer's mask holds)."""
    end = chunk.ids.index(eos, 1) + 1
    return [1] * end + [0] * (len(chunk.ids) - end)


def encode_chunks(clip: ClipText, chunks: Sequence[Chunk], device: str, *, penultimate: bool = False,
                  vectors: dict[str, Any] | None = None):
    """(hidden states 1×(77·n)×D, projected text embedding 1×P or None) of one prompt's chunks: the last layer's
    states (``penultimate``: the layer before, as SDXL and SD3 use), each chunk weighted; the projection (of an
    encoder that has one) of the first chunk. ``vectors``: embedding name → N×D tensor for the chunks' fixes."""
    import torch

    weighted, projected = [], None
    for i, chunk in enumerate(chunks):  # one call per chunk, as A1111 does: a chunk's states never depend on others
        out = _run(clip, chunk, device, penultimate, vectors)
        states = out.hidden_states[-2] if penultimate else out[0]
        if i == 0 and out[0].ndim == 2:  # a projection model's first output is the (2-D) text embedding
            projected = out[0]
        weighted.append(apply_weights(states, chunk.weights))
    hidden = weighted[0] if len(weighted) == 1 else torch.cat(weighted, dim=1)
    return hidden, projected


def pooled_output(clip: ClipText, text: str, device: str):
    """The pooled output (the end token's final state, 1×D) of the prompt's first chunk, as A1111 takes it:
    Flux's pooled text. Weights change hidden states only, so they do not reach it."""
    chunked = chunk_texts([clip], [text])
    return _run(clip, chunked.rows[0][0][0], device, False, chunked.vectors[0]).pooler_output


def _run(clip: ClipText, chunk: Chunk, device: str, hidden_states: bool, vectors):
    """The encoder's output for one chunk (a batch of one)."""
    import torch

    encoder = clip.encoder
    ids = torch.tensor([chunk.ids], device=device)
    mask = None
    if getattr(encoder.config, "use_attention_mask", False):
        mask = torch.tensor([attention_mask(chunk, clip.tokenizer.eos_token_id)], device=device)
    with inserted_vectors(encoder, chunk, vectors or {}):
        return encoder(ids, attention_mask=mask, output_hidden_states=hidden_states)


@contextmanager
def inserted_vectors(encoder, chunk: Chunk, vectors: dict[str, Any]):
    """While open, the encoder's token embedding puts textual-inversion vectors where the chunk's fixes say
    (A1111's way: placeholder ids in, the embedding's vectors out of the lookup); the model is not changed."""
    if not chunk.fixes:
        yield
        return

    def hook(module, args, output):
        output = output.clone()
        for pos, name in chunk.fixes:
            vec = vectors[name]
            output[0, pos:pos + vec.shape[0]] = vec.to(output.device, output.dtype)
        return output

    handle = encoder.get_input_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def t5_hidden(tokenizer, encoder, text: str, device: str, max_length: int):
    """T5's last hidden state for ``text`` padded (and cut) to ``max_length`` tokens, batch of one. No attention
    mask, as SD3 and Flux were trained (the padding's states are part of the conditioning). T5 reads the plain
    words: A1111's weights, ``BREAK`` and ``<lora:…>`` tags are CLIP syntax and are taken out first."""
    tokens = clip_input_ids(tokenizer, plain_text(text), max_length)
    # The encoder may run on the CPU while the rest runs on the GPU (low-VRAM mode): its input goes where it is.
    return encoder(tokens.input_ids.to(encoder.device), output_hidden_states=False)[0].to(device)
