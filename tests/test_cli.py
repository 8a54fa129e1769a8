import subprocess
import sys

import pytest
from PIL import Image

from engine.cli import main


def run_cli(*args, env_home):
    env = {"PATH": "", "DARKROOM_HOME": str(env_home), "HF_HUB_OFFLINE": "1", "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([sys.executable, "-m", "gui.launcher", *args], capture_output=True, text=True, env=env, timeout=300)


def test_generate_writes_png_with_metadata(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["generate", "a red apple", "--model", str(tiny_model_dir), "--seed", "42", "--steps", "3",
                 "--size", "64x64", "--batch", "2", "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out.split()
    files = sorted(out.glob("*.png"))
    assert len(files) == 2 and sorted(map(str, files)) == sorted(printed)
    seeds = set()
    for f in files:
        with Image.open(f) as im:
            assert im.size == (64, 64)
            text = im.text["parameters"]
        assert text.startswith("a red apple\n")
        assert "Steps: 3" in text and "CFG scale: 7" in text and "Size: 64x64" in text and "Model: tiny-sd" in text
        seeds.add(next(p for p in text.split(", ") if p.startswith("Seed: ")))
    assert seeds == {"Seed: 42", "Seed: 43"}


def test_generate_saves_into_the_gallery_by_default(tiny_model_dir, darkroom_home, capsys):
    assert main(["generate", "snowman", "--model", str(tiny_model_dir), "--steps", "2", "--size", "64x64", "--quiet"]) == 0
    saved = capsys.readouterr().out.strip()
    assert saved.startswith(str(darkroom_home / "gallery")) and saved.endswith(".png")


def test_bad_seed_is_one_line_exit_2(tmp_path):
    proc = run_cli("generate", "x", "--seed", "banana", env_home=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Seed must be a whole number" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_steps_cfg_size_and_sampler(tmp_path, capsys):
    assert main(["generate", "x", "--steps", "0", "--cfg", "99", "--sampler", "Nope"]) == 2
    err = capsys.readouterr().err
    assert "Steps must be from 1 to 150" in err and "CFG scale must be from 0 to 30" in err and "Nope" in err
    assert main(["generate", "x", "--size", "10x10"]) == 2
    assert "Width must be from 64 to 2048" in capsys.readouterr().err


def test_missing_model_exit_1_no_traceback(tmp_path):
    proc = run_cli("generate", "x", "--model", str(tmp_path / "nope"), env_home=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("darkroom: error: Model") and "Traceback" not in proc.stderr


def test_unwritable_out_folder_is_reported(tiny_model_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["generate", "x", "--model", str(tiny_model_dir), "--steps", "2", "--size", "64x64",
                 "--out", str(blocker / "sub"), "--quiet"])
    assert code == 1
    assert "darkroom: error:" in capsys.readouterr().err


def test_help_and_version(tmp_path):
    proc = run_cli("--help", env_home=tmp_path)
    assert proc.returncode == 0 and "generate" in proc.stdout and "gallery" in proc.stdout
    proc = run_cli("generate", "--help", env_home=tmp_path)
    assert proc.returncode == 0 and "--sampler" in proc.stdout and "--scheduler" not in proc.stdout
    assert "PySide6" not in proc.stderr


def test_cli_does_not_import_qt(tmp_path):
    code = "import sys, engine.cli; engine.cli.build_parser(); print(any(m.startswith('PySide6') for m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr


def test_generate_uses_the_gallery_folder_chosen_in_the_app(tiny_model_dir, tmp_path, capsys):
    from engine import settings

    chosen = tmp_path / "my pictures"
    prefs = settings.Settings(gallery_dir=str(chosen))
    settings.save(prefs)
    assert main(["generate", "rocket", "--model", str(tiny_model_dir), "--steps", "2", "--size", "64x64", "--quiet"]) == 0
    saved = capsys.readouterr().out.strip()
    assert saved.startswith(str(chosen)) and list(chosen.glob("*/*.png"))


def test_parameters_read_back_from_a_saved_png_remake_identical_pixels(tiny_model_dir, tmp_path, capsys):
    import numpy as np

    from engine.gallery import read_parameters

    args = ["--model", str(tiny_model_dir), "--steps", "3", "--size", "64x64", "--quiet", "--sampler", "Euler a",
            "--cfg", "6.5", "--negative", "blurry"]
    assert main(["generate", "a snowman, winter", *args, "--out", str(tmp_path / "a")]) == 0
    first = capsys.readouterr().out.strip()
    request = read_parameters(first).build().request  # the recipe, as "Use all parameters" reads it
    assert request.seed != 0 and request.negative_prompt == "blurry" and request.sampler == "Euler a"
    again = ["generate", request.prompt, "--seed", str(request.seed), "--negative", request.negative_prompt,
             "--model", str(tiny_model_dir), "--steps", str(request.steps), "--cfg", str(request.cfg),
             "--size", f"{request.width}x{request.height}", "--scheduler", request.sampler, "--quiet",
             "--out", str(tmp_path / "b")]
    assert main(again) == 0
    second = capsys.readouterr().out.strip()
    with Image.open(first) as a, Image.open(second) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


# -- every subcommand ------------------------------------------------------------------------------------------
def _subcommands(parser=None, prefix=()):
    """Every command path of the parser (("generate",), ("models", "list"), …), found by walking it, so a new
    subcommand is covered without editing this test."""
    import argparse

    from engine.cli import build_parser

    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,), sub
                yield from _subcommands(sub, prefix + (name,))


def _documented_options(parser):
    import argparse

    return [a.option_strings[-1] for a in parser._actions
            if a.option_strings and a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]


SUBCOMMANDS = [path for path, _ in _subcommands()]


def test_the_walk_finds_the_known_subcommands():
    assert {("generate",), ("models", "download"), ("gallery", "export"), ("train",), ("evaluate",)} <= set(SUBCOMMANDS)


@pytest.mark.parametrize("path", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(path, capsys):
    parser = dict(_subcommands())[path]
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert out.startswith("usage: darkroom " + " ".join(path))
    for option in _documented_options(parser):
        assert option in out, option


def test_every_subcommand_dispatches_to_a_handler():
    """A leaf subcommand (one without subcommands of its own) must run something, never fall back to the help."""
    import argparse

    parsers = dict(_subcommands())
    for path, parser in parsers.items():
        has_children = any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
        if not has_children and path != ("app",):  # "app" is handled by the launcher before the CLI
            chain = [parsers[path[:n]] for n in range(1, len(path) + 1)]  # a parent's default applies too
            assert any(p.get_default("handler") is not None for p in chain), path


def test_train_and_evaluate_run_their_handlers(monkeypatch, capsys):
    from engine.train import cli as train_cli

    seen = []
    monkeypatch.setattr(train_cli, "run_train", lambda args: seen.append("train") or 0)
    monkeypatch.setattr(train_cli, "run_evaluate", lambda args: seen.append("evaluate") or 0)
    assert main(["train", "--vae-steps", "1"]) == 0 and main(["evaluate", "--skip-speed"]) == 0
    assert seen == ["train", "evaluate"]


# -- generate's options come from the field registry -------------------------------------------------------------
def test_generate_options_are_the_registry_fields(monkeypatch, capsys):
    import engine.cli as cli
    from engine import fields

    for field in fields.FIELDS:
        if field.cli:
            assert field.cli in [o for p, sub in _subcommands() if p == ("generate",) for o in _documented_options(sub)]
    extra = fields.Field("clip_skip", "Clip skip", "Text encoder layers to skip.", "int", 1, (1, 12),
                         cli="--clip-skip", cli_metavar="N")
    monkeypatch.setattr(cli, "FIELDS", fields.FIELDS + (extra,))
    captured = {}

    def fake_build(**values):
        captured.update(values)
        raise cli.ValidationError({"x": "stop here"})

    monkeypatch.setattr(cli, "build_request", fake_build)
    assert main(["generate", "a fox", "--clip-skip", "3", "--size", "64x64", "--scheduler", "Euler"]) == 2
    assert captured == {"prompt": "a fox", "clip_skip": "3", "sampler": "Euler", "width": 64, "height": 64}


def test_options_left_out_take_the_registry_defaults(monkeypatch):
    import engine.cli as cli

    captured = {}
    monkeypatch.setattr(cli, "build_request", lambda **v: captured.update(v) or (_ for _ in ()).throw(
        cli.ValidationError({"x": "stop"})))
    main(["generate", "an owl", "--size", "64x96"])
    assert captured == {"prompt": "an owl", "width": 64, "height": 96}


# -- bad input: one line, the right exit code, no traceback -------------------------------------------------------
def test_undecodable_prompt_is_one_line_exit_2(tmp_path):
    env = {"PATH": "", "DARKROOM_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "LC_ALL": "C.UTF-8",
           "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run([sys.executable.encode(), b"-m", b"gui.launcher", b"generate", b"caf\xe9 \xff"],
                          capture_output=True, env=env, timeout=120)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("darkroom: error: ") and "UTF-8" in err
    assert "Traceback" not in err and "TextEncodeInput" not in err


def test_nul_in_prompt_is_refused(capsys):
    assert main(["generate", "a\0b"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NUL" in err


def test_an_unexpected_engine_error_prints_no_traceback(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import logging

    from engine import runtime

    def broken(self, job, preview):
        raise ValueError("TextEncodeInput must be Union[TextInputSequence]\nsecond line")

    monkeypatch.setattr(runtime.Runtime, "run_job", broken)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # let main() install the command line's own logging
    monkeypatch.setattr(root, "level", logging.WARNING)
    code = main(["generate", "x", "--model", str(tiny_model_dir), "--size", "64x64", "--out", str(tmp_path / "o"),
                 "--quiet"])
    err = capsys.readouterr().err
    root.handlers.clear()
    assert code == 1
    assert "Traceback" not in err and "second line" in err
    assert err.strip().splitlines()[-1] == (
        "darkroom: error: Generation failed: TextEncodeInput must be Union[TextInputSequence] second line")


def test_engine_failure_details_go_to_debug_logging(caplog):
    import logging

    from engine.engine import Engine

    with caplog.at_level(logging.DEBUG, logger="engine.engine"):
        try:
            {}["boom"]
        except KeyError as exc:
            failed = Engine._failure(7, exc)
    assert failed.details.startswith("Traceback")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0].getMessage() and "KeyError" in errors[0].getMessage()
    assert any(r.levelno == logging.DEBUG and "Traceback" in r.getMessage() for r in caplog.records)


def test_unexpected_cli_error_is_one_line_unless_debug(monkeypatch, capsys):
    import engine.models_cli as models_cli

    monkeypatch.setattr(models_cli, "cmd_list", lambda args: 1 / 0)
    assert main(["models", "list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ZeroDivisionError" in err and "--debug" in err
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "models", "list"])


# -- --out is checked before any work ---------------------------------------------------------------------------
def test_unwritable_out_is_reported_before_the_model_loads(tmp_path, monkeypatch, capsys):
    import engine.cli as cli

    monkeypatch.setattr(cli, "run_generation", lambda *a: pytest.fail("the engine started"))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["generate", "x", "--size", "64x64", "--out", str(blocker / "sub")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"Cannot write images into {blocker / 'sub'}" in err and "--out" in err
    assert "canvas" not in err


def test_out_folder_is_created_and_left_clean(tmp_path, monkeypatch):
    import engine.cli as cli

    monkeypatch.setattr(cli, "run_generation", lambda *a: 0)
    out = tmp_path / "new" / "folder"
    assert main(["generate", "x", "--size", "64x64", "--out", str(out)]) == 0
    assert out.is_dir() and list(out.iterdir()) == []


def test_read_only_out_folder(tmp_path, monkeypatch, capsys):
    import errno
    import os

    import engine.cli as cli

    monkeypatch.setattr(cli, "run_generation", lambda *a: pytest.fail("the engine started"))
    real_open = os.open

    def read_only(path, flags, *a):
        if str(path).startswith(str(tmp_path / "ro")) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, "open", read_only)
    (tmp_path / "ro").mkdir()
    assert main(["generate", "x", "--size", "64x64", "--out", str(tmp_path / "ro")]) == 1
    assert "Read-only file system" in capsys.readouterr().err


def test_memory_mode_comes_from_the_option_else_the_app(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from engine import engine as engine_mod
    from engine import settings

    seen = []
    real = engine_mod.Engine.__init__

    def spy(self, on_event, options=engine_mod.EngineOptions()):
        seen.append(options.memory_mode)
        real(self, on_event, options)

    monkeypatch.setattr(engine_mod.Engine, "__init__", spy)
    settings.save(settings.Settings(memory_mode="low"))
    args = ["generate", "rocket", "--model", str(tiny_model_dir), "--steps", "1", "--size", "64x64", "--quiet",
            "--out", str(tmp_path)]
    assert main(args) == 0 and main([*args, "--memory", "normal"]) == 0
    assert seen == ["low", "normal"]
    with pytest.raises(SystemExit) as info:
        main([*args, "--memory", "tiny"])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err
