"""`darkroom train` (dataset + trainer) and `darkroom evaluate` (retrieval accuracy, CPU speed, grids)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def _add_config_args(p: argparse.ArgumentParser):
    from .trainer import TrainConfig

    for f in dataclasses.fields(TrainConfig):
        default = f.default
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, tuple):
            p.add_argument(flag, type=lambda s: tuple(int(v) for v in s.split(",")), default=default,
                           help=f"comma-separated (default {','.join(map(str, default))})")
        else:
            p.add_argument(flag, type=type(default), default=default, help=f"(default {default})")


def register(subparsers) -> None:
    """Add `train` and `evaluate` to an argparse subparsers object."""
    t = subparsers.add_parser(
        "train", help="build the emoji dataset and train the bundled model",
        description="Render the Noto Color Emoji dataset (if needed), then train the autoencoder, the text "
                    "encoder and the U-Net, and export a diffusers Stable Diffusion folder. Resumable: "
                    "rerun the same command to continue from the run folder's checkpoints.")
    _add_config_args(t)
    t.add_argument("--font", default=None, help="path to NotoColorEmoji.ttf (default: system font)")
    t.add_argument("--rebuild-data", action="store_true", help="re-render the dataset even if present")
    t.add_argument("--limit", type=int, default=None, help="only the first N emoji (quick trials)")
    t.set_defaults(func=run_train)

    e = subparsers.add_parser("evaluate", help="measure the bundled model: caption retrieval, CPU speed, grids")
    e.add_argument("--model", default="resources/models/darkroom-emoji")
    e.add_argument("--data-dir", default="data/emoji64")
    e.add_argument("--captions", type=int, default=200, help="how many training captions to generate")
    e.add_argument("--steps", type=int, default=25)
    e.add_argument("--guidance", type=float, default=5.0)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--out", default=None, help="where to write report.json and the grids "
                                              "(default: the model folder)")
    e.add_argument("--skip-speed", action="store_true")
    e.add_argument("--run-dir", default=None, help="training run folder: also draw its loss curves")
    e.set_defaults(func=run_evaluate)


def run_train(args) -> int:
    from .dataset import FontMissingError, build_dataset
    from .trainer import TrainConfig, train

    kw = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**kw)
    data = Path(cfg.data_dir)
    if args.rebuild_data or not (data / "images.npy").exists():
        try:
            meta = build_dataset(data, cfg.resolution, font_path=args.font, limit=args.limit)
        except FontMissingError as exc:
            print(f"darkroom train: {exc}", file=sys.stderr)
            return 2
        print(f"dataset: rendered {meta['count']} emoji into {data}")
    train(cfg)
    return 0


def run_evaluate(args) -> int:
    from .evaluate import evaluate, plot_losses

    if args.run_dir:
        plot_losses(args.run_dir, Path(args.out or args.model) / "loss_curves.png")
    evaluate(model=args.model, data_dir=args.data_dir, n_captions=args.captions, steps=args.steps,
             guidance=args.guidance, threads=args.threads, out=args.out, speed=not args.skip_speed)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="darkroom")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
