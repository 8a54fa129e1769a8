"""What a training run keeps in its folder: CSV loss logs, checkpoints (written atomically, read back without
unpickling objects) and the progress bar. Used by the trainer's thread only."""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path


class LossLog:
    """A CSV of step, loss, learning rate, elapsed seconds, then any ``extra`` columns (named at creation).

    ``resume_step``: the step of the checkpoint the stage goes on from (0: a new log). Rows logged after that
    checkpoint are dropped, because those steps are trained again and logged anew."""

    def __init__(self, path: Path, resume_step: int, extra: tuple[str, ...] = ()):
        self.path = path
        header = ["step", "loss", "lr", "elapsed_s", *extra]
        if not resume_step or not path.exists():
            path.write_text(",".join(header) + "\n")
            return
        with open(path, newline="") as f:
            old = csv.DictReader(f)
            rows = list(old)
            kept = [r for r in rows if _step(r) <= resume_step]
            if old.fieldnames == header and len(kept) == len(rows):
                return
        # resumed with other columns (a colour loss turned on or off), or after steps past the checkpoint: one
        # header for the whole file, and "nan" where an earlier row has no value
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows([r.get(k) or "nan" for k in header] for r in kept)

    def write(self, step: int, loss: float, lr: float, elapsed: float, *extra: float):
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([step, f"{loss:.6f}", f"{lr:.3e}", f"{elapsed:.1f}", *(f"{v:.6f}" for v in extra)])


_now = time.monotonic  # a duration's clock: unlike the wall clock it never jumps


class StageClock:
    """Seconds a training stage has spent: what its checkpoint recorded plus this sitting's time since. A run
    stopped and resumed thus reports the time of one run: what a stopped sitting spent after its last checkpoint
    is not counted (those steps are trained, and timed, again), nor the time between sittings."""

    def __init__(self, spent: float = 0.0):
        self._start = _now() - spent

    def __call__(self) -> float:
        return _now() - self._start


def _step(row: dict) -> float:
    """A row's step; a row cut short (the run stopped while writing it) counts as past every checkpoint."""
    try:
        return int(row["step"]) if row.get("loss") else math.inf
    except (TypeError, ValueError):
        return math.inf


def progress(total: int, initial: int, desc: str):
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no background monitor thread
    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, mininterval=2.0)


def atomic_save(obj, path: Path):
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, device) -> dict:
    """A checkpoint this trainer wrote: tensors and plain containers only (``weights_only``), so a file that
    someone swapped for a pickle with code in it is refused, not run. Raises DarkroomError."""
    import pickle

    import torch

    from ..errors import DarkroomError

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise DarkroomError(
            f"The training checkpoint {path} is not one this trainer wrote (or it is damaged); delete it to start "
            "that stage again, or choose another --run-dir.",
            f"{type(exc).__name__}: {exc}",
        ) from None
