"""`darkroom train` and `darkroom evaluate` from the command line: dispatch, folders, the optional extra, and
checkpoints that are never unpickled."""

from __future__ import annotations

from pathlib import Path

from engine import paths
from engine.cli import main
from tests.test_train_trainer import _synthetic_dataset

TINY = ["--device", "cpu", "--resolution", "16", "--vae-channels", "8,16", "--vae-steps", "3", "--vae-batch", "4",
        "--text-width", "32", "--text-layers", "1", "--text-heads", "2", "--max-length", "16",
        "--unet-channels", "32,32", "--attention-heads", "2", "--unet-steps", "4", "--batch", "4", "--warmup", "2",
        "--checkpoint-every", "2", "--log-every", "1"]


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_train_defaults_to_the_user_data_folder_and_leaves_resources_alone(capsys):
    from engine.train.trainer import EXPORT_NAME, default_folders

    folders = default_folders()
    assert all(str(f).startswith(str(paths.data_dir())) for f in folders.values())
    _synthetic_dataset(folders["data_dir"])
    bundled = _tree(paths.BUNDLED_MODELS)
    assert main(["train", *TINY]) == 0
    out = capsys.readouterr().out
    export = paths.models_dir() / EXPORT_NAME
    assert f"trained model: {export}" in out
    assert (export / "model_index.json").is_file() and (folders["run_dir"] / "unet.pt").is_file()
    assert _tree(paths.BUNDLED_MODELS) == bundled
    assert main(["models", "list"]) == 0
    listed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [EXPORT_NAME, "in your models folder", str(export)] in [[r[0], r[4], r[5]] for r in listed]  # the app lists it


def test_export_to_names_the_model_folder(tmp_path, capsys):
    import json
    import math

    _synthetic_dataset(tmp_path / "data")
    dest = tmp_path / "exported"
    assert main(["train", *TINY, "--data-dir", str(tmp_path / "data"), "--run-dir", str(tmp_path / "run"),
                 "--export-to", str(dest), "--prediction-type", "v_prediction", "--zero-terminal-snr"]) == 0
    assert (dest / "unet").is_dir() and not paths.models_dir().exists()
    scheduler = json.loads((dest / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "v_prediction" and scheduler["rescale_betas_zero_snr"] is True
    assert scheduler["timestep_spacing"] == "trailing"  # sampling starts at t = T, where the model saw pure noise
    losses = [float(row.split(",")[1]) for row in (tmp_path / "run" / "loss_unet.csv").read_text().splitlines()[1:]]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)  # the v target is finite at zero SNR


def test_a_refused_schedule_is_one_line(tmp_path, capsys):
    _synthetic_dataset(tmp_path / "data")
    code = main(["train", *TINY, "--data-dir", str(tmp_path / "data"), "--run-dir", str(tmp_path / "run"),
                 "--zero-terminal-snr"])
    assert code != 0 and "--prediction-type v_prediction" in capsys.readouterr().err


def test_train_without_the_extra_says_what_to_install(monkeypatch, capsys, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "emoji" else real(name, *a))
    assert main(["train", "--data-dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "emoji package" in err and "pip install -e '.[train]'" in err


def test_missing_font_is_one_line(monkeypatch, capsys, tmp_path):
    from engine.train import dataset

    monkeypatch.setattr(dataset, "FONT_CANDIDATES", ())
    monkeypatch.delenv("DARKROOM_EMOJI_FONT", raising=False)
    assert main(["train", "--data-dir", str(tmp_path / "none"), "--font", str(tmp_path / "no.ttf")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Noto Color Emoji" in err


class _Payload:
    """Pickled, this runs code when loaded by a plain torch.load."""

    def __init__(self, flag: Path):
        self.flag = flag

    def __reduce__(self):
        return (Path.write_text, (self.flag, "the checkpoint ran code"))


def test_resuming_never_unpickles_objects_from_a_checkpoint(tmp_path, capsys):
    import torch

    _synthetic_dataset(tmp_path / "data")
    run = tmp_path / "run"
    run.mkdir()
    flag = tmp_path / "flag"
    torch.save({"model": _Payload(flag), "step": 1}, run / "vae.pt")
    code = main(["train", *TINY, "--data-dir", str(tmp_path / "data"), "--run-dir", str(run),
                 "--export-to", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and not flag.exists()
    assert err.count("\n") == 1 and "is not one this trainer wrote" in err and str(run / "vae.pt") in err


def test_evaluate_writes_into_the_user_data_folder_by_default(monkeypatch):
    from engine.train import evaluate as evaluate_module

    seen = {}
    monkeypatch.setattr(evaluate_module, "evaluate", lambda **kw: seen.update(kw) or {})
    assert main(["evaluate", "--skip-speed"]) == 0
    assert Path(seen["out"]) == paths.data_dir() / "training" / "evaluation" / "darkroom-emoji"
    assert Path(seen["model"]) == paths.BUNDLED_MODELS / "darkroom-emoji"
    assert not str(seen["out"]).startswith(str(paths.RESOURCES))
