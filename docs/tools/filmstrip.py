"""Make the README's filmstrip: the engine's live x0 previews of one generation, noise → image.

    python docs/tools/filmstrip.py "red apple" --seed 3 --out docs/images/filmstrip.png

Drives the real Engine headless (the same events the window paints) and tiles the previews of chosen steps,
then the final image from the full VAE.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine.engine import Engine, EngineOptions, PreviewOptions
from engine.events import Cancelled, Failed, Finished, ImageReady, Preview
from engine.request import build_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--sampler", default="DDIM")
    parser.add_argument("--model", default="")
    parser.add_argument("--show", default="1,3,5,8,12,17,25", help="steps to show")
    parser.add_argument("--cell", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("docs/images/filmstrip.png"))
    args = parser.parse_args()

    previews: dict[int, np.ndarray] = {}
    final: list[np.ndarray] = []
    done = threading.Event()

    def on_event(event) -> None:
        if isinstance(event, Preview):
            previews[event.step] = event.image
        elif isinstance(event, ImageReady):
            final.append(event.image)
        elif isinstance(event, (Finished, Failed, Cancelled)):
            if isinstance(event, Failed):
                print(event.message)
            done.set()

    engine = Engine(on_event, EngineOptions(device="cpu", preview=PreviewOptions(mode="x0", interval_s=0.0)))
    request = build_request(prompt=args.prompt, seed=args.seed, steps=args.steps, cfg=args.cfg, width=64, height=64,
                            sampler=args.sampler, model=args.model).request
    engine.start()
    engine.submit(request)
    finished = done.wait(600)
    engine.shutdown()
    if not finished or not final:
        raise SystemExit("filmstrip: the generation did not finish")

    steps = [int(s) for s in args.show.split(",") if int(s) in previews]
    frames = [(f"step {s}", previews[s]) for s in steps] + [("final (VAE)", final[0])]
    cell, label = args.cell, 18
    sheet = Image.new("RGB", (cell * len(frames), cell + label), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    for i, (text, image) in enumerate(frames):
        tile = Image.fromarray(np.asarray(image)).resize((cell, cell), Image.BICUBIC)
        sheet.paste(tile, (i * cell, label))
        draw.text((i * cell + 4, 3), text, fill=(230, 230, 230))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
