"""A model's recommended settings: read safely from its folder, applied on choosing it, the person's edits kept."""

import json
import shutil

import pytest

from engine import models
from engine.settings import Settings
from gui.models_controller import ModelsController
from gui.viewmodel import FormModel


def test_the_bundled_model_recommends_its_own_settings():
    assert models.recommended(models.DEFAULT_BUNDLED) == {"sampler": "DDIM", "steps": 25, "cfg": 5.0}


@pytest.fixture
def own_model(tmp_path, tiny_model_dir):
    folder = tmp_path / "tiny-own"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def test_a_hostile_settings_file_suggests_only_valid_known_settings(own_model):
    (own_model / "darkroom.json").write_text(json.dumps({"recommended": {
        "steps": 4, "cfg": 1e9, "sampler": "rm -rf /", "model": "/etc/passwd", "prompt": "x" * 100}}))
    assert models.recommended(str(own_model)) == {"steps": 4}
    for junk in ("[1, 2]", "{not json", '{"recommended": "fast"}'):
        (own_model / "darkroom.json").write_text(junk)
        assert models.recommended(str(own_model)) == {}


def test_choosing_a_model_applies_its_settings_and_keeps_what_the_person_changed(qtbot, own_model, tiny_model_dir):
    (own_model / "darkroom.json").write_text(json.dumps({"recommended": {"steps": 6, "cfg": 2.5,
                                                                          "sampler": "Euler a"}}))
    form = FormModel()
    controller = ModelsController(Settings(), form)
    form.set_values({"model": str(tiny_model_dir), "width": 512, "height": 512})
    assert controller.apply_model_defaults(str(tiny_model_dir), force=True) == ["width", "height"]
    assert (form.value("width"), form.value("steps"), form.value("cfg")) == (64, 25, 7.0)

    form.set_value("steps", 40)  # the person's own choice
    with qtbot.waitSignal(controller.status) as status:
        changed = controller.apply_model_defaults(str(own_model))
    assert set(changed) == {"cfg", "sampler"}
    assert (form.value("steps"), form.value("cfg"), form.value("sampler")) == (40, 2.5, "Euler a")
    assert "CFG 2.5" in status.args[0] and "Euler a" in status.args[0]

    # back to a model without recommendations: the app's defaults return, the person's steps stay
    controller.apply_model_defaults(str(tiny_model_dir))
    from engine.samplers import DEFAULT_SAMPLER
    assert (form.value("steps"), form.value("cfg"), form.value("sampler")) == (40, 7.0, DEFAULT_SAMPLER)


def test_restored_values_are_not_overwritten_at_start_up(own_model):
    (own_model / "darkroom.json").write_text(json.dumps({"recommended": {"cfg": 2.5}}))
    form = FormModel()
    controller = ModelsController(Settings(), form)
    form.set_values({"model": str(own_model), "cfg": 9.0})
    controller.settle(first_run=False)
    assert form.value("cfg") == 9.0
    controller.apply_model_defaults(str(own_model))
    assert form.value("cfg") == 9.0, "a value the person set is not a default to replace"
