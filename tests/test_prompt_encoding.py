"""Every family reads prompts with A1111's syntax: weights in the tokens they name, BREAK and long prompts in
further 77-token chunks, LoRA tags out of the text, T5 given the plain words; a plain prompt encodes exactly as
the pipelines' own tokenizer call made it encode before."""

from __future__ import annotations

import pytest
import torch

from engine.devices import choose_device
from engine.loader import load_model
from engine.models import resolve
from engine.paths import BUNDLED_MODELS

LONG = ", ".join(f"word{i}" for i in range(16))  # 101 byte-level tokens: two chunks


@pytest.fixture(scope="module")
def families(tiny_model_dir, tiny_sdxl_dir, tiny_sd3_dir, tiny_flux_dir):
    cpu = choose_device("cpu")
    loaded = {name: load_model(resolve(str(folder)), cpu).family for name, folder in
              (("sd", tiny_model_dir), ("sdxl", tiny_sdxl_dir), ("sd3", tiny_sd3_dir), ("flux", tiny_flux_dir))}
    # An untrained final layer norm centres every state on zero, leaving A1111's emphasis no mean to restore;
    # a trained encoder's is not centred. This copy in memory gets an offset, as a trained one has.
    with torch.no_grad():
        loaded["sd"].text_encoder.get_submodule("final_layer_norm").bias.add_(0.5)
    return loaded


def old_way(tokenizer, encoder, text, *, penultimate=False, max_length=77):
    """How prompts were encoded before the syntax was read: one padded, truncated tokenizer call."""
    ids = tokenizer(text, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt").input_ids
    with torch.inference_mode():
        out = encoder(ids, output_hidden_states=penultimate)
    return out, (out.hidden_states[-2] if penultimate else out[0])


@pytest.mark.parametrize("prompt", ["a red apple", "", "time: noon, a photo of a cat"])
def test_plain_prompts_encode_exactly_as_before(families, prompt):
    sd = families["sd"]
    _, hidden = old_way(sd.tokenizer, sd.text_encoder, prompt)
    assert torch.equal(sd.encode(prompt, "", False, 64, 64).tensors["embeds"], hidden)

    xl = families["sdxl"]
    outs = [old_way(c.tokenizer, c.encoder, prompt, penultimate=True) for c in xl.clips]
    cond = xl.encode(prompt, "", False, 64, 64).tensors
    assert torch.equal(cond["embeds"], torch.cat([h for _, h in outs], dim=-1))
    assert torch.equal(cond["text_embeds"], outs[1][0][0])

    sd3 = families["sd3"]
    outs = [old_way(c.tokenizer, c.encoder, prompt, penultimate=True) for c in sd3.clips]
    tok5, t5 = sd3.t5
    _, t5_states = old_way(tok5, t5, prompt, max_length=256)
    clip = torch.nn.functional.pad(torch.cat([h for _, h in outs], dim=-1), (0, 64 - 64))
    cond = sd3.encode(prompt, "", False, 64, 64).tensors
    assert torch.equal(cond["embeds"], torch.cat([clip, t5_states], dim=-2))
    assert torch.equal(cond["pooled"], torch.cat([o[0] for o, _ in outs], dim=-1))

    flux = families["flux"]
    out, _ = old_way(flux.clip.tokenizer, flux.clip.encoder, prompt)
    tok5, t5 = flux.t5
    _, t5_states = old_way(tok5, t5, prompt, max_length=flux.t5_tokens)
    cond = flux.encode(prompt, "", False, 64, 64).tensors
    assert torch.equal(cond["pooled"], out.pooler_output) and torch.equal(cond["embeds"], t5_states)


def test_a_weight_scales_its_own_tokens_and_the_mean_is_kept(families):
    from engine.prompts import apply_weights

    centred = torch.randn(1, 77, 8)
    centred = centred - centred.mean()
    weights = [1.0] * 77
    weights[3] = 2.0
    assert torch.isfinite(apply_weights(centred, weights)).all()  # no mean to restore: weights alone

    sd = families["sd"]
    plain = sd.encode("a red apple", "", False, 64, 64).tensors["embeds"][0]
    weighted = sd.encode("a (red:1.5) apple", "", False, 64, 64).tensors["embeds"][0]
    assert torch.allclose(weighted.mean(), plain.mean(), atol=1e-6)
    ratio = (weighted / plain).mean(dim=-1)  # one factor per token: the mean's correction, times the weight
    red = [2, 3, 4]  # the byte-level tokenizer: start, "a", then "r", "e", "d"
    others = [i for i in range(77) if i not in red]
    assert torch.allclose(ratio[others], ratio[others][0].expand(len(others)), atol=1e-5)
    assert torch.allclose(ratio[red], (1.5 * ratio[others][0]).expand(3), atol=1e-5)

    # (word) and [word] are 1.1 and 1/1.1; escaped brackets are text, not weights
    def factor(prompt, pos):
        embeds = sd.encode(prompt, "", False, 64, 64).tensors["embeds"][0]
        r = (embeds / plain).mean(dim=-1)
        return float(r[pos] / r[0])

    assert factor("a (red) apple", 3) == pytest.approx(1.1, rel=1e-5)
    assert factor("a [red] apple", 3) == pytest.approx(1 / 1.1, rel=1e-5)
    escaped = sd.encode("a \\(red\\) apple", "", False, 64, 64).tensors["embeds"]
    _, literal = old_way(sd.tokenizer, sd.text_encoder, "a (red) apple")
    assert torch.equal(escaped, literal)


def test_weights_reach_every_families_clip_states(families):
    xl, sd3 = families["sdxl"], families["sd3"]
    for family, key in ((xl, "embeds"), (sd3, "embeds")):
        plain = family.encode("a red apple", "", False, 64, 64).tensors[key]
        weighted = family.encode("a (red:1.4) apple", "", False, 64, 64).tensors[key]
        assert not torch.equal(plain[:, :77], weighted[:, :77])
    # SD3's T5 states read the plain words: the same with and without the syntax
    plain = sd3.encode("a red apple", "", False, 64, 64).tensors["embeds"][:, 77:]
    assert torch.equal(sd3.encode("a (red:1.4) apple", "", False, 64, 64).tensors["embeds"][:, 77:], plain)
    # Flux conditions on CLIP's pooled output (weights do not reach it) and T5's plain words
    flux = families["flux"]
    a = flux.encode("a red apple", "", False, 64, 64).tensors
    b = flux.encode("a (red:1.4) apple <lora:ink:0.5>", "", False, 64, 64).tensors
    c = flux.encode("a red apple <lora:ink:0.5>", "", False, 64, 64).tensors
    assert torch.equal(a["pooled"], b["pooled"]) and torch.equal(b["embeds"], c["embeds"])


def test_long_prompts_are_chunked_not_cut(families):
    sd = families["sd"]
    embeds = sd.encode(LONG, "", False, 64, 64).tensors["embeds"]
    assert embeds.shape == (1, 154, 32)
    changed = sd.encode(LONG.replace("word15", "word99"), "", False, 64, 64).tensors["embeds"]
    assert torch.equal(changed[:, :77], embeds[:, :77]) and not torch.equal(changed[:, 77:], embeds[:, 77:])
    # the negative prompt gets as many chunks; its second is the empty prompt's
    cond = sd.encode(LONG, "blurry", True, 64, 64).tensors["embeds"]
    empty = sd.encode("", "", False, 64, 64).tensors["embeds"]
    assert cond.shape == (2, 154, 32) and torch.equal(cond[0, 77:], empty[0]) and torch.equal(cond[1:], embeds)
    xl = families["sdxl"].encode(LONG, "", True, 64, 64).tensors
    assert xl["embeds"].shape == (2, 154, 64) and not xl["embeds"][0].any()  # empty negative: zeros, as long
    sd3 = families["sd3"].encode(LONG, "", True, 64, 64).tensors
    assert sd3["embeds"].shape == (2, 154 + 256, 64)


def test_break_starts_a_new_chunk(families):
    sd = families["sd"]
    broken = sd.encode("a red apple BREAK a blue sky", "", False, 64, 64).tensors["embeds"]
    first = sd.encode("a red apple", "", False, 64, 64).tensors["embeds"]
    second = sd.encode("a blue sky", "", False, 64, 64).tensors["embeds"]
    assert torch.equal(broken, torch.cat([first, second], dim=1))
    xl = families["sdxl"]
    cond = xl.encode("a red apple BREAK a blue sky", "", False, 64, 64).tensors
    alone = xl.encode("a red apple", "", False, 64, 64).tensors
    assert cond["embeds"].shape == (1, 154, 64) and torch.equal(cond["text_embeds"], alone["text_embeds"])


def test_lora_tags_are_not_encoded(families):
    sd = families["sd"]
    plain = sd.encode("a red apple", "", False, 64, 64).tensors["embeds"]
    tagged = sd.encode("a red <lora:ink style:0.7>apple", "<lora:film:1>", True, 64, 64).tensors["embeds"]
    empty = sd.encode("", "", False, 64, 64).tensors["embeds"]
    assert torch.equal(tagged[1:], plain) and torch.equal(tagged[:1], empty)


def test_an_encoder_with_fewer_positions_gets_shorter_chunks():
    family = load_model(resolve(str(BUNDLED_MODELS / "darkroom-emoji")), choose_device("cpu")).family
    assert family.clip.size == 30  # its tokenizer and encoder take 32 positions
    one = family.encode("a red apple", "", False, 64, 64).tensors["embeds"]
    long = family.encode(LONG, "", False, 64, 64).tensors["embeds"]
    assert one.shape[1] == 32 and long.shape[1] % 32 == 0 and long.shape[1] > 32
