"""Settings: one typed object in JSON under DARKROOM_HOME, surviving bad files and persisting across windows."""

from __future__ import annotations

import json


from engine import paths
from engine import settings as settings_mod
from engine.settings import Settings


def test_settings_live_in_darkroom_home_and_round_trip(darkroom_home):
    s = Settings(user_models=["/models/x"], preview_mode="xt", last_seed=42, autosave=False)
    s.generation.update(prompt="a cat\non two lines", seed="42", steps=33, cfg=5.5, width=768, height=512,
                        sampler="Euler a")
    settings_mod.save(s)
    path = darkroom_home / "config" / "settings.json"
    assert settings_mod.settings_path() == path == paths.config_dir() / "settings.json"
    assert json.loads(path.read_text(encoding="utf-8"))["generation"]["steps"] == 33
    loaded, problem = settings_mod.load()
    assert problem == ""
    assert loaded == s
    assert not list(path.parent.glob(".settings-*")), "a temporary file was left behind"


def test_missing_file_gives_defaults_without_complaint():
    loaded, problem = settings_mod.load()
    assert loaded == Settings() and problem == ""


def test_damaged_file_gives_defaults_and_says_so(darkroom_home):
    path = settings_mod.settings_path()
    path.parent.mkdir(parents=True)
    path.write_text("{not json", encoding="utf-8")
    loaded, problem = settings_mod.load()
    assert loaded == Settings()
    assert "damaged" in problem


def test_wrong_types_fall_back_per_field(darkroom_home):
    path = settings_mod.settings_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"prompt": "kept", "steps": "many", "cfg": 6, "scheduler": "Nope",
                                "preview_mode": "x0", "user_models": [1, 2], "autosave": "yes",
                                "last_seed": True, "unknown": 1}), encoding="utf-8")
    loaded, problem = settings_mod.load()
    assert problem == ""
    # a version-1 file (flat keys, "scheduler") migrates field by field
    assert loaded.generation["prompt"] == "kept" and loaded.generation["cfg"] == 6
    assert loaded.generation["steps"] == Settings().generation["steps"]
    assert loaded.generation["sampler"] == Settings().generation["sampler"]
    assert loaded.user_models == [] and loaded.autosave is True and loaded.last_seed is None


def test_version_1_file_keeps_its_values(darkroom_home):
    path = settings_mod.settings_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": 1, "prompt": "fox", "seed": "7", "scheduler": "Euler a", "width": 768,
                                "gallery_dir": "/pics"}), encoding="utf-8")
    loaded, problem = settings_mod.load()
    assert problem == "" and loaded.gallery_dir == "/pics"
    assert {k: loaded.generation[k] for k in ("prompt", "seed", "sampler", "width")} == {
        "prompt": "fox", "seed": "7", "sampler": "Euler a", "width": 768}


def test_parameters_preview_mode_and_geometry_persist_across_two_windows(qtbot, darkroom_home, tiny_model_dir):
    from gui.main_window import MainWindow

    first = MainWindow(start_engine=False, gallery=None)
    qtbot.addWidget(first)
    first.show()
    assert first.models.add_path(tiny_model_dir)
    first.form_model.set_values({"prompt": "a quiet harbour\nat night", "negative_prompt": "blurry", "seed": "777",
                                 "steps": 31, "cfg": 4.5, "width": 768, "height": 512, "sampler": "Euler a",
                                 "batch_count": 3})
    first.set_preview_mode("xt")
    first.form_model.set_last_seed(123)
    first.resize(800, 611)  # fits the offscreen platform's 800×800 screen
    first.close()
    assert (darkroom_home / "config" / "settings.json").is_file()

    second = MainWindow(start_engine=False, gallery=None)
    qtbot.addWidget(second)
    second.show()
    v = second.form_model.values()
    assert v["prompt"] == "a quiet harbour\nat night" and v["negative_prompt"] == "blurry"
    assert (v["seed"], v["steps"], v["cfg"], v["width"], v["height"]) == ("777", 31, 4.5, 768, 512)
    assert (v["sampler"], v["batch_count"]) == ("Euler a", 3)
    assert v["model"] == str(tiny_model_dir.resolve())
    assert second.settings.preview_mode == "xt" and second.commands.preview["xt"].isChecked()
    assert second.bridge.engine.preview.mode == "xt"
    assert second.form_model.last_seed == 123 and second.form.reuse_seed.isEnabled()
    assert (second.width(), second.height()) == (800, 611)
    second.close()
