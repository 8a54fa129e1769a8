import subprocess
import sys

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
    assert main(["generate", "x", "--steps", "0", "--cfg", "99", "--scheduler", "Nope"]) == 2
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
    assert proc.returncode == 0 and "--scheduler" in proc.stdout
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

    args = ["--model", str(tiny_model_dir), "--steps", "3", "--size", "64x64", "--quiet", "--scheduler", "Euler a",
            "--cfg", "6.5", "--negative", "blurry"]
    assert main(["generate", "a snowman, winter", *args, "--out", str(tmp_path / "a")]) == 0
    first = capsys.readouterr().out.strip()
    request = read_parameters(first).build().request  # the recipe, as "Use all parameters" reads it
    assert request.seed != 0 and request.negative_prompt == "blurry" and request.scheduler == "Euler a"
    again = ["generate", request.prompt, "--seed", str(request.seed), "--negative", request.negative_prompt,
             "--model", request.model, "--steps", str(request.steps), "--cfg", str(request.cfg),
             "--size", f"{request.width}x{request.height}", "--scheduler", request.scheduler, "--quiet",
             "--out", str(tmp_path / "b")]
    assert main(again) == 0
    second = capsys.readouterr().out.strip()
    with Image.open(first) as a, Image.open(second) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
