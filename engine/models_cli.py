"""``darkroom models list|add|remove|download``: the model library from the command line. Never imports Qt; the
download is the only network access, and only when asked for. Main thread; Ctrl+C cancels a download (the files
finished so far are kept, and the next download of the same model fetches only what is missing)."""

from __future__ import annotations

import sys
import threading


def register(sub) -> None:
    models = sub.add_parser("models", help="list, add, remove or download models")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    msub.add_parser("list", help="the models Darkroom can use: family, precision, size, source").set_defaults(
        handler=cmd_list)
    add = msub.add_parser("add", help="add a diffusers folder or .safetensors file by path")
    add.add_argument("path")
    add.set_defaults(handler=cmd_add)
    remove = msub.add_parser("remove", help="remove a model added by path or downloaded (no file is deleted)")
    remove.add_argument("name", help="its name or path, as `darkroom models list` shows it")
    remove.set_defaults(handler=cmd_remove)
    dl = msub.add_parser("download", help="download a model from the Hugging Face Hub into its cache (needs the "
                                          "internet)")
    dl.add_argument("repo_id", help="e.g. stable-diffusion-v1-5/stable-diffusion-v1-5")
    dl.add_argument("--variant", choices=("fp16", "bf16"), default=None,
                    help="fetch this precision where the model has it (default: full precision)")
    dl.add_argument("--file", dest="single_file", default=None, metavar="NAME",
                    help="for a repository of single .safetensors checkpoints: the one to fetch")
    dl.add_argument("--config-only", action="store_true",
                    help="only the configuration (JSON and tokenizer files) a single-file checkpoint needs")
    dl.add_argument("--quiet", action="store_true", help="no progress bar")
    dl.set_defaults(handler=cmd_download)


def cmd_list(args) -> int:
    from .library import SOURCE_WORDS, format_size, library
    from .models import NO_MODEL_MESSAGE
    from .settings import load

    entries = library(tuple(load()[0].user_models))
    if not entries:
        print(NO_MODEL_MESSAGE, file=sys.stderr)
        return 0
    for e in entries:
        print(f"{e.name}\t{e.family}\t{e.precision}\t{format_size(e.size_bytes)}\t{SOURCE_WORDS.get(e.source, e.source)}"
              f"\t{e.model.path}")
    return 0


def _change_settings(change) -> str:
    from .settings import load, save

    settings, _problem = load()
    result = change(settings.user_models)
    save(settings)
    return result


def cmd_add(args) -> int:
    from .library import add

    print(_change_settings(lambda user_models: add(args.path, user_models)))
    return 0


def cmd_remove(args) -> int:
    from .library import remove

    print(f"Removed {_change_settings(lambda user_models: remove(args.name, user_models))} from the library.")
    return 0


def cmd_download(args) -> int:
    from .hub import download

    cancel = threading.Event()
    bar = None

    def on_progress(p) -> None:
        nonlocal bar
        if args.quiet:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=p.total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, leave=False)
        bar.n = p.done
        bar.set_postfix_str(p.file[-40:], refresh=False)
        bar.refresh()

    try:
        folder = download(args.repo_id, config_only=args.config_only, variant=args.variant,
                          single_file=args.single_file, on_progress=on_progress, cancel=cancel)
    except KeyboardInterrupt:
        cancel.set()
        raise
    finally:
        if bar is not None:
            bar.close()
    print(folder)
    return 0
