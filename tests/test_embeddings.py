"""Textual-inversion embeddings: a prompt word equal to a file's name becomes its vectors in the text encoder,
weighted like any token; an embedding of the wrong width is refused clearly; images record them by hash."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine import paths
from engine.addon_files import sha256
from engine.devices import choose_device
from engine.errors import DarkroomError
from engine.events import Failed, Finished, ImageReady
from engine.gallery.infotext import format_infotext
from engine.loader import load_model
from engine.models import resolve
from tests.engine_helpers import request_for


@pytest.fixture(scope="module")
def sd(tiny_model_dir):
    return load_model(resolve(str(tiny_model_dir)), choose_device("cpu")).family


def save(name: str, **tensors) -> object:
    folder = paths.embeddings_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def token_vectors(clip, text: str) -> torch.Tensor:
    """The token embeddings of ``text``'s tokens: an embedding made of them must encode exactly like the text."""
    ids = clip.tokenize(text)
    return clip.encoder.get_input_embeddings().weight[ids].detach().clone()


def embeds(family, prompt, negative="", cfg=False):
    return family.encode(prompt, negative, cfg, 64, 64).tensors["embeds"]


def test_an_embedding_word_is_replaced_by_its_vectors(sd):
    save("InkStyle", emb_params=token_vectors(sd.clip, "rd"))  # two vectors: those of "r" and "d</w>"
    assert torch.equal(embeds(sd, "a inkstyle apple"), embeds(sd, "a rd apple"))  # any case, its vectors in place
    assert torch.equal(embeds(sd, "a (InkStyle:1.3) apple"), embeds(sd, "a (rd:1.3) apple"))  # weighted like tokens
    counts = {"inkstyle": 2}
    assert sd.clip.chunks("a inkstyles, xinkstyle, ink-inkstyle", counts)[0].fixes == ()  # not inside other words
    assert sd.clip.chunks("(a,INKSTYLE)", counts)[0].fixes == ((3, "inkstyle"),)
    both = embeds(sd, "a inkstyle apple", "blurry inkstyle", cfg=True)
    assert torch.equal(both, torch.cat([embeds(sd, "blurry rd"), embeds(sd, "a rd apple")]))


def test_an_embedding_stays_in_one_chunk(sd):
    save("wide", emb_params=torch.randn(8, 32))
    chunks = sd.clip.chunks("w " * 70 + "wide", {"wide": 8})
    assert len(chunks) == 2 and chunks[1].fixes == ((1, "wide"),) and chunks[0].fixes == ()
    assert embeds(sd, "w " * 70 + "wide").shape == (1, 154, 32)


def test_embeddings_of_the_wrong_width_are_refused(sd):
    save("xl-only", clip_l=torch.randn(2, 32), clip_g=torch.randn(2, 64))
    save("too-wide", emb_params=torch.randn(2, 768))
    with pytest.raises(DarkroomError, match="holds vectors for clip_g, clip_l, none for this model's text encoder"):
        embeds(sd, "a xl-only apple")
    with pytest.raises(DarkroomError, match="has vectors 768 wide; this model's text encoder takes 32"):
        embeds(sd, "a too-wide apple")
    save("not-vectors", emb_params=torch.zeros(2, 2, 32))
    with pytest.raises(DarkroomError, match="not a textual-inversion embedding"):
        embeds(sd, "not-vectors")


def test_sdxl_takes_each_encoders_own_vectors(tiny_sdxl_dir):
    xl = load_model(resolve(str(tiny_sdxl_dir)), choose_device("cpu")).family
    clip_l, clip_g = xl.clips
    save("xl-style", clip_l=token_vectors(clip_l, "rd"), clip_g=token_vectors(clip_g, "ap"))
    # each encoder got its own vectors: CLIP-L's states are those of "rd", CLIP-G's those of "ap"
    styled = embeds(xl, "a xl-style")
    assert torch.equal(styled[..., :32], embeds(xl, "a rd")[..., :32])
    assert torch.equal(styled[..., 32:], embeds(xl, "a ap")[..., 32:])
    save("xl-narrow", clip_l=torch.randn(1, 32), clip_g=torch.randn(1, 16))
    with pytest.raises(DarkroomError, match="16 wide; this model's text encoder takes 32"):
        embeds(xl, "xl-narrow")


def test_jobs_record_the_embeddings_they_used(engine, rec, tiny_model_dir):
    path = save("ink", emb_params=torch.randn(2, 32) * 0.1)
    wrong = save("wrong", emb_params=torch.randn(2, 48))
    plain = rec_image(engine, rec, request_for(tiny_model_dir, steps=2))
    assert plain.request.embeddings == () and "TI hashes" not in format_infotext(plain.request)
    used = rec_image(engine, rec, request_for(tiny_model_dir, steps=2, prompt="a ink apple", negative_prompt="ink"))
    assert not np.array_equal(used.image, plain.image)
    assert [(e.name, e.sha256) for e in used.request.embeddings] == [("ink", sha256(path))]
    assert f'TI hashes: "ink: {sha256(path)[:10]}"' in format_infotext(used.request)
    job = engine.submit(request_for(tiny_model_dir, steps=2, prompt="a wrong apple"))
    rec.wait_for(job)
    failed = rec.of(job)[-1]
    assert isinstance(failed, Failed) and "'wrong' has vectors 48 wide" in failed.message
    assert np.array_equal(rec_image(engine, rec, request_for(tiny_model_dir, steps=2)).image, plain.image)
    assert wrong.is_file()


def rec_image(engine, rec, request) -> ImageReady:
    job = engine.submit(request)
    rec.wait_for(job)
    events = rec.of(job)
    assert isinstance(events[-1], Finished), events[-1]
    (ready,) = [e for e in events if isinstance(e, ImageReady)]
    return ready
