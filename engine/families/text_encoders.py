"""Text encoders of the flow-matching families beyond SD's CLIP: T5's last hidden state and CLIP's pooled
output. Plain functions; worker thread only."""

from __future__ import annotations

from .components import clip_input_ids


def t5_hidden(tokenizer, encoder, text: str, device: str, max_length: int):
    """T5's last hidden state for ``text`` padded (and cut) to ``max_length`` tokens, batch of one. No attention
    mask, as SD3 and Flux were trained (the padding's states are part of the conditioning)."""
    tokens = clip_input_ids(tokenizer, text, max_length)
    return encoder(tokens.input_ids.to(device), output_hidden_states=False)[0]


def clip_pooled(tokenizer, encoder, text: str, device: str):
    """A CLIP text encoder's pooled output (the end token's final state), batch of one: Flux's pooled text."""
    tokens = clip_input_ids(tokenizer, text)
    return encoder(tokens.input_ids.to(device), output_hidden_states=False).pooler_output
