import json

import pytest

from engine.train.tokenizer import BOS, EOS, build_bpe, pre_tokenize, save_clip_tokenizer

CAPTIONS = ["red apple", "apple", "flag: spain", "woman astronaut: medium skin tone", "keycap #",
            "cat face", "snowman", "snowman without snow", "blue whale", "rocket", "1st place medal"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import CLIPTokenizer

    d = save_clip_tokenizer(CAPTIONS, tmp_path_factory.mktemp("tok"), model_max_length=32)
    return CLIPTokenizer.from_pretrained(str(d))


def test_files_are_clip_format(tmp_path):
    d = save_clip_tokenizer(CAPTIONS, tmp_path, model_max_length=32)
    vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
    merges = (d / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version")
    assert vocab[BOS] == len(vocab) - 2 and vocab[EOS] == len(vocab) - 1
    # 256 byte symbols, their end-of-word forms, one token per merge
    assert len(vocab) == 512 + len(merges) - 1 + 2
    for line in merges[1:]:
        a, b = line.split(" ")
        assert a in vocab and b in vocab and a + b in vocab


def test_every_caption_word_is_one_token(tokenizer):
    for caption in CAPTIONS:
        ids = tokenizer(caption).input_ids
        words = pre_tokenize(caption)
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert len(ids) == len(words) + 2, (caption, tokenizer.convert_ids_to_tokens(ids))
        assert tokenizer.convert_ids_to_tokens(ids[1:-1]) == [w + "</w>" for w in words]


def test_padding_length_and_roundtrip(tokenizer):
    assert tokenizer.model_max_length == 32
    ids = tokenizer("Red  Apple", padding="max_length", max_length=32, truncation=True).input_ids
    assert len(ids) == 32
    assert ids[3:] == [tokenizer.eos_token_id] * 29
    assert tokenizer.decode(ids, skip_special_tokens=True) == "red apple"


def test_unseen_words_still_tokenize(tokenizer):
    ids = tokenizer("zebrafish café ✨").input_ids
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert text == "zebrafish café ✨"
    assert len(ids) > 5  # split into pieces, not one unknown token


def test_frequent_words_get_low_rank_merges():
    vocab, merges = build_bpe(["aa bb", "aa cc", "aa dd"])
    first = "".join(merges[0])
    assert first == "aa</w>"
