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
