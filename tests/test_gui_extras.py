"""LoRAs and embeddings picked in the window: written into the prompt as A1111 does, and two LoRAs with their
weights reach the picture and its recipe (real engine, tiny random-weight model and LoRA files)."""

from __future__ import annotations

import numpy as np

from engine import paths
from gui.extras_panel import add_to_prompt, lora_tag
from gui.testing import wait_until
from tests.lora_files import model_layers, write_lora
from tests.window_fixtures import fill_form


def test_tags_are_added_to_the_end_of_the_prompt():
    assert lora_tag("ink", 0.8) == "<lora:ink:0.8>" and lora_tag("a/b", 1.0) == "<lora:a/b:1>"
    assert add_to_prompt("", "<lora:ink:1>") == "<lora:ink:1>"
    assert add_to_prompt("a fox ", "x") == "a fox, x" and add_to_prompt("a fox,", "x") == "a fox, x"


def test_pick_two_loras_and_an_embedding_then_generate(make_window, tiny_model_dir):
    import torch
    from safetensors.torch import save_file

    layers = model_layers(tiny_model_dir)  # before the window's engine starts loading models in its thread
    window = make_window()
    panel = window.form_panel.extras
    assert not panel.add_lora.isEnabled() and "No LoRAs" in panel.loras.currentText()

    write_lora(paths.loras_dir() / "ink.safetensors", layers, seed=1)
    write_lora(paths.loras_dir() / "styles" / "film.safetensors", layers, style="peft", seed=2)
    width = 32  # the tiny text encoder's width
    paths.embeddings_dir().mkdir(parents=True)
    save_file({"emb_params": torch.randn(2, width)}, str(paths.embeddings_dir() / "grainy.safetensors"))
    panel.refresh_button.click()
    assert [panel.loras.itemText(i) for i in range(panel.loras.count())] == ["film", "ink"]

    fill_form(window, prompt="a red apple", steps=2)
    got: list = []
    window.jobs.result_added.connect(got.append)
    assert window.generate() is not None
    wait_until(lambda: got and not window.jobs.busy)
    plain = got[-1].ready.image

    panel.loras.setCurrentText("ink")
    panel.weight.setValue(0.8)
    panel.add_lora.click()
    panel.loras.setCurrentText("film")
    panel.weight.setValue(0.5)
    panel.add_lora.click()
    panel.embeddings.setCurrentText("grainy")
    panel.add_embedding.click()
    assert window.form_model.value("prompt") == "a red apple, <lora:ink:0.8>, <lora:film:0.5>, grainy"
    assert window.generate() is not None
    wait_until(lambda: len(got) == 2 and not window.jobs.busy)
    made = got[-1]
    assert {(lora.name, lora.weight) for lora in made.request.loras} == {("ink", 0.8), ("film", 0.5)}
    assert not np.array_equal(made.ready.image, plain)
    assert window.banner.message() is None or window.banner.message().level != "error"
