"""`darkroom train` (dataset + trainer) and `darkroom evaluate` (retrieval accuracy, CPU speed, grids).

Training is an optional part of Darkroom: building the dataset needs the ``emoji`` package (the ``train`` extra)
and the Noto Color Emoji font. Everything it writes goes to the user's data folder unless a folder is named;
the bundled model in ``resources/`` is only replaced with ``--export-to resources/models/darkroom-emoji``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
from pathlib import Path

from ..errors import DarkroomError

#: What to run when the train extra is missing.
INSTALL_TRAIN = "pip install -e '.[train]' in the checkout (python3 packaging/bootstrap.py test installs it too)"

#: Options whose names or help differ from the config field they set.
_FOLDER_OPTIONS = {
    "data_dir": ("--data-dir", "the rendered dataset (default: <data folder>/training/emoji64; built if missing)"),
    "run_dir": ("--run-dir", "checkpoints and loss logs; rerun with the same folder to resume "
                             "(default: <data folder>/training/runs/emoji)"),
    "out_dir": ("--export-to", "where the trained model is written (default: <models folder>/darkroom-emoji-trained, "
                               "so the app lists it); the bundled model changes only if you name its folder"),
}


def _add_config_args(p: argparse.ArgumentParser) -> None:
    from .trainer import TrainConfig

    for f in dataclasses.fields(TrainConfig):
        default = f.default
        if f.name in _FOLDER_OPTIONS:
            flag, text = _FOLDER_OPTIONS[f.name]
            p.add_argument(flag, dest=f.name, default=default, metavar="FOLDER", help=text)
        elif isinstance(default, bool):
            p.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=default,
                           help=f"(default {'on' if default else 'off'})")
        elif isinstance(default, tuple):
            p.add_argument("--" + f.name.replace("_", "-"), type=lambda s: tuple(int(v) for v in s.split(",")),
                           default=default, help=f"comma-separated (default {','.join(map(str, default))})")
        else:
            p.add_argument("--" + f.name.replace("_", "-"), type=type(default), default=default,
                           help=f"(default {default})")


def register(subparsers) -> None:
    """Add `train` and `evaluate` to an argparse subparsers object; each sets ``handler``."""
    t = subparsers.add_parser(
        "train", help="build the emoji dataset and train the bundled model (needs the train extra)",
        description="Render the Noto Color Emoji dataset (if needed), then train the autoencoder, the text "
                    "encoder and the U-Net, and export a diffusers Stable Diffusion folder. Resumable: "
                    "rerun the same command to continue from the run folder's checkpoints.")
    _add_config_args(t)
    t.add_argument("--font", default=None, help="path to NotoColorEmoji.ttf (default: system font)")
    t.add_argument("--rebuild-data", action="store_true", help="re-render the dataset even if present")
    t.add_argument("--limit", type=int, default=None, help="only the first N emoji (quick trials)")
    t.set_defaults(handler=run_train)

    e = subparsers.add_parser("evaluate", help="measure the bundled model: caption retrieval, CPU speed, grids")
    e.add_argument("--model", default=None, help="model folder (default: the bundled darkroom-emoji)")
    e.add_argument("--data-dir", default=None, help="the training dataset (default: the one `darkroom train` builds)")
    e.add_argument("--captions", type=int, default=200, help="how many training captions to generate")
    e.add_argument("--steps", type=int, default=25)
    e.add_argument("--guidance", type=float, default=5.0)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--out", default=None, help="where to write evaluation.json and the grids "
                                              "(default: <data folder>/training/evaluation/<model name>)")
    e.add_argument("--skip-speed", action="store_true")
    e.add_argument("--run-dir", default=None, help="training run folder: also draw its loss curves")
    e.set_defaults(handler=run_evaluate)


def run_train(args) -> int:
    from .trainer import TrainConfig, train

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}).resolved()
    data = Path(cfg.data_dir)
    if args.rebuild_data or not (data / "images.npy").exists():
        if importlib.util.find_spec("emoji") is None:
            raise DarkroomError(f"Building the training dataset needs the emoji package: {INSTALL_TRAIN}.")
        from .dataset import FontMissingError, build_dataset

        try:
            meta = build_dataset(data, cfg.resolution, font_path=args.font, limit=args.limit)
        except FontMissingError as exc:
            raise DarkroomError(str(exc)) from None
        print(f"dataset: rendered {meta['count']} emoji into {data}")
    out = train(cfg)
    print(f"trained model: {out}")
    return 0


def run_evaluate(args) -> int:
    from .. import paths
    from .evaluate import evaluate, plot_losses
    from .trainer import default_folders

    model = Path(args.model) if args.model else paths.BUNDLED_MODELS / "darkroom-emoji"
    out = Path(args.out) if args.out else paths.data_dir() / "training" / "evaluation" / model.name
    if args.run_dir:
        plot_losses(args.run_dir, out / "loss_curves.png")
    evaluate(model=model, data_dir=args.data_dir or default_folders()["data_dir"], n_captions=args.captions,
             steps=args.steps, guidance=args.guidance, threads=args.threads, out=out, speed=not args.skip_speed)
    return 0
