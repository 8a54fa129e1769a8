"""A1111 prompt syntax: the cases from A1111's own documentation of parse_prompt_attention, BREAK and LoRA tags."""

import pytest

from engine.prompts import BREAK, Fragment, LoraTag, extract_loras, parse_attention


def pairs(text):
    return [(f.text, round(f.weight, 6)) for f in parse_attention(text)]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("\\(literal\\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
         [("a ", 1.0), ("house", 1.573), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55), (", sun, ", 1.1),
          ("sky", 1.4641), (".", 1.1)]),
        ("[faded]", [("faded", round(1 / 1.1, 6))]),
        ("(word: 0.8 )", [("word", 0.8)]),
        ("", [("", 1.0)]),
        ("time: noon", [("time: noon", 1.0)]),
    ],
)
def test_attention_as_a1111_parses_it(text, expected):
    assert pairs(text) == expected


def test_break_splits_and_is_a_marker():
    out = parse_attention("a red apple BREAK on a table")
    assert out == [Fragment("a red apple", 1.0), BREAK, Fragment("on a table", 1.0)]
    assert out[1].is_break
    assert not any(f.is_break for f in parse_attention("BREAKFAST and a breakthrough"))


def test_hostile_input_is_linear_and_never_raises():
    text = "(" * 5000 + "x" + "[" * 5000 + ":1.2.3)" + "\\" * 100
    assert parse_attention(text)


def test_lora_tags_are_taken_out_with_their_weights():
    text, tags = extract_loras("a cat <lora:ink_style:0.7>, <LORA:film grain>, <lora:ink_style:0.4> night")
    assert text == "a cat , ,  night"
    assert tags == (LoraTag("film grain", 1.0), LoraTag("ink_style", 0.4))
    assert extract_loras("<lora:x:abc>") == ("<lora:x:abc>", ())
    assert extract_loras("<lora:x:0.5:0.9>") == ("", (LoraTag("x", 0.5),))
    assert extract_loras("no tags here") == ("no tags here", ())


# -- chunks -----------------------------------------------------------------------------------------------------
from engine.prompts import CHUNK_TOKENS, pad_chunks, token_chunks  # noqa: E402

BOS, EOS, PAD, COMMA = 1000, 1001, 1002, 44


def words(text):
    return [COMMA if w == "," else len(w) for w in text.replace(",", " , ").split()]


def chunks(text, comma=COMMA):
    return token_chunks(text, words, bos=BOS, eos=EOS, pad=PAD, comma=comma)


def test_plain_prompt_is_laid_out_like_the_tokenizer_does():
    (c,) = chunks("a red apple")
    assert c.ids[:5] == (BOS, 1, 3, 5, EOS) and set(c.ids[5:]) == {PAD} and len(c.ids) == CHUNK_TOKENS + 2
    assert set(c.weights) == {1.0}


def test_weights_follow_the_tokens():
    (c,) = chunks("a (red:1.5) apple")
    assert c.weights[:5] == (1.0, 1.0, 1.5, 1.0, 1.0)


def test_long_prompts_continue_in_new_chunks_and_break_starts_one():
    long = chunks(" ".join(["w"] * 100))
    assert len(long) == 2 and long[0].ids.count(1) == 75 and long[1].ids.count(1) == 25
    broken = chunks("a cat BREAK a dog")
    assert len(broken) == 2 and broken[1].ids[:3] == (BOS, 1, 3)


def test_a_full_chunk_is_cut_after_a_nearby_comma():
    text = " ".join(["w"] * 70) + " , " + " ".join(["ww"] * 10)
    first, second = chunks(text)
    assert first.ids[71] == COMMA and first.ids[72] == EOS  # cut right after the comma
    assert second.ids[1:11] == (2,) * 10


def test_empty_prompt_and_padding_to_the_same_count():
    (empty,) = chunks("")
    assert empty.ids[:2] == (BOS, EOS)
    a, b = pad_chunks(chunks(" ".join(["w"] * 100)), [empty], empty)
    assert len(a) == len(b) == 2 and b[1] == empty


def test_apply_weights_keeps_the_mean_and_leaves_plain_chunks_alone():
    import torch

    from engine.prompts import apply_weights

    hidden = torch.randn(1, 77, 8) + 0.5
    assert apply_weights(hidden, [1.0] * 77) is hidden
    weights = [1.0] * 77
    weights[3] = 1.5
    out = apply_weights(hidden, weights)
    assert torch.allclose(out.mean(), hidden.mean(), atol=1e-5)
    ratio = (out[0, 3] / out[0, 2]) / (hidden[0, 3] / hidden[0, 2])
    assert torch.allclose(ratio, torch.full_like(ratio, 1.5), atol=1e-4)
