#!/usr/bin/env python3
"""How the real app feels, timed from outside: launch, first preview, UI stalls, closing.

    python3 benchmarks/app_timing.py [--runs 3] [--json-out FILE]

Runs the installed app (``.venv/bin/darkroom`` and ``python3 packaging/bootstrap.py``) in subprocesses on an X
display (it starts Xvfb itself when ``DISPLAY`` is unset and Xvfb exists), each in a fresh ``DARKROOM_HOME``, and
prints one JSON object with these figures (milliseconds; median, min and max over the runs):

- ``launch_to_window``: process start → the window's first paint, through the venv's entry point and through
  the bootstrap (``python3 packaging/bootstrap.py``, with the system's python3), launched alternately, and the
  bootstrap's extra cost (``bootstrap_extra``: the difference within each pair of launches);
- ``launch_to_first_preview``: a generation with the bundled model submitted as soon as the window shows →
  its first live preview (and ``launch_to_first_image``; ``launch_to_engine_ready``: torch and diffusers imported;
  ``launch_to_model_loaded``: the model loaded and the job started);
- ``ui_gaps``: how late a 5 ms QTimer fires on the UI thread while that generation runs (max and p95 per run);
- ``close_after_generation`` and ``close_mid_generation``: Ctrl+Q → the process has exited;
- ``close_at_launch``: Ctrl+Q right after the first paint (the engine still importing torch) → exited.

The app marks the moments itself (:mod:`gui.timing_probe`, switched on by ``DARKROOM_TIMING_LOG``; it also
submits the generation and quits as Ctrl+Q does), so a checkout and a frozen bundle (``bundle_timing.py``) are
timed the same way. Timestamps are ``time.monotonic()``, shared by all processes of the machine. A benchmark, not
a test: nothing here asserts; ``goals`` in the report says which figures are within the README's goals (launch →
window ≤ 1 s, close ≤ 1 s, bootstrap extra ≤ 0.3 s), and the exit status is 1 only when a scenario never got
going.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmark_report import emit  # noqa: E402  (benchmarks/ is on sys.path: the script's own folder)

from gui.timing_probe import GENERATE, LONG_GENERATE, TICK_S  # noqa: E402  (imports no Qt)

VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
VENV_ENTRY = ROOT / ".venv" / "bin" / "darkroom"
BOOTSTRAP = ROOT / "packaging" / "bootstrap.py"
RUN_TIMEOUT_S = 300


# -- the driver ---------------------------------------------------------------------------------------------
def start_xvfb(first: int = 99) -> tuple[subprocess.Popen, str]:
    """Xvfb on the first free display from ``first`` on, and that display's name. RuntimeError when Xvfb is not
    installed or does not come up."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise RuntimeError("no Xvfb; install it (apt-get install xvfb) or run under a desktop")
    number = next(n for n in range(first, first + 100) if not Path(f"/tmp/.X{n}-lock").exists())
    proc = subprocess.Popen([xvfb, f":{number}", "-screen", "0", "1400x900x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):  # up to 10 s
        if Path(f"/tmp/.X11-unix/X{number}").exists():
            return proc, f":{number}"
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("Xvfb did not start")


def _start_display() -> subprocess.Popen | None:
    """Xvfb when there is no DISPLAY (which it then names); None when one is already there."""
    if os.environ.get("DISPLAY"):
        return None
    try:
        proc, os.environ["DISPLAY"] = start_xvfb()
    except RuntimeError as exc:
        sys.exit(f"app_timing: {exc}")
    return proc


def run_once(command: list[str], scenario: str, clean: bool = False) -> dict:
    """Start the app with ``command`` in a fresh ``DARKROOM_HOME`` (a first launch, without the welcome dialog),
    let :mod:`gui.timing_probe` drive ``scenario``, and return the marks' times in ms after the start (``exited``:
    when the process was reaped; a mark's figures as ``<mark>_<figure>``). ``clean``: the environment of a person
    without Python (``PATH=/usr/bin:/bin``, no virtual environment), for a bundle."""
    with tempfile.TemporaryDirectory(prefix="darkroom-timing-") as tmp:
        marks = Path(tmp) / "marks.jsonl"
        env = dict(os.environ, DARKROOM_HOME=str(Path(tmp) / "home"), DARKROOM_TIMING_LOG=str(marks),
                   DARKROOM_TIMING_SCENARIO=scenario, DARKROOM_NO_WELCOME="1", HF_HUB_OFFLINE="1")
        env.pop("QT_QPA_PLATFORM", None)
        if clean:
            for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH"):
                env.pop(key, None)
            env["PATH"] = "/usr/bin:/bin"
        t0 = time.monotonic()
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            return {"error": f"timed out after {RUN_TIMEOUT_S} s", "stderr": err.decode(errors="replace")[-2000:]}
        result: dict = {"exited": (time.monotonic() - t0) * 1000, "returncode": proc.returncode}
        for line in marks.read_text(encoding="utf-8").splitlines() if marks.exists() else []:
            mark = json.loads(line)
            name = mark.pop("event")
            result.setdefault(name, (mark.pop("t") - t0) * 1000)
            result.update({f"{name}_{k}": v for k, v in mark.items()})
        if "shown" not in result or proc.returncode != 0:
            result["stderr"] = err.decode(errors="replace")[-2000:]
        return result


def checkout() -> dict:
    """The commit measured, and how many tracked files differed from it (the app runs from the working tree)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD") or None,
            "modified_files": len(git("status", "--porcelain", "--untracked-files=no").splitlines())}


def summary(values: list[float]) -> dict:
    if not values:
        return {"runs": 0}
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
            "max": round(max(values), 1), "runs": [round(v, 1) for v in values]}


def collect(commands: list[list[str]], scenario: str, runs: int) -> list[list[dict]]:
    """``runs`` results of ``scenario`` for each command, after one warm-up of each (file caches, Qt's font cache,
    the venv's bytecode, and the bootstrap's setup on its first run). With several commands the runs alternate,
    so drift from other work on the machine falls on all of them alike."""
    for command in commands:
        run_once(command, scenario)
    results: list[list[dict]] = [[] for _ in commands]
    for _ in range(runs):
        for command, out in zip(commands, results):
            out.append(run_once(command, scenario))
    for r in (r for out in results for r in out):
        if "shown" not in r or "error" in r or "failed" in r:
            print(f"app_timing: a {scenario} run went wrong: {r}", file=sys.stderr)
    return results


#: What each figure should stay under (ms), as the README's Speed section states them.
GOALS_MS = {"launch_to_window": 1000.0, "close": 1000.0, "bootstrap_extra": 300.0}


def goals(report: dict) -> dict:
    """Each goal with the figure it is checked on (the median) and whether it was met."""
    window = report["launch_to_window"]
    checks = {
        "launch_to_window": window["venv_entry_point"].get("median"),
        "launch_to_window_bootstrap": window["bootstrap"].get("median"),
        "close_at_launch": report["close_at_launch"].get("median"),
        "close_after_generation": report["close_after_generation"].get("median"),
        "close_mid_generation": report["close_mid_generation"].get("median"),
        "bootstrap_extra": window["bootstrap_extra"].get("median"),
    }
    out = {}
    for name, value in checks.items():
        goal = GOALS_MS["close" if name.startswith("close") else
                        "launch_to_window" if name.startswith("launch") else name]
        out[name] = {"median": value, "goal": goal, "met": value is not None and value <= goal}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="measured runs per scenario (after one warm-up)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not VENV_ENTRY.exists():
        sys.exit("app_timing: set up the app first: python3 packaging/bootstrap.py")
    system_python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or "python3"
    bootstrap = [system_python, str(BOOTSTRAP)]
    xvfb = _start_display()
    try:
        venv_launch, boot_launch = collect([[str(VENV_ENTRY)], bootstrap], "launch", args.runs + 2)
        [generate] = collect([[str(VENV_ENTRY)]], "generate", args.runs)
        [close_mid] = collect([[str(VENV_ENTRY)]], "close-mid", args.runs)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)

    def pick(results, key):
        return [r[key] for r in results if key in r]

    def closing(results):
        return [r["exited"] - r["close_requested"] for r in results if "close_requested" in r and "exited" in r]

    venv_shown, boot_shown = pick(venv_launch, "shown"), pick(boot_launch, "shown")
    # the bootstrap's cost over the entry point, per pair of back-to-back launches
    extra = [b["shown"] - v["shown"] for v, b in zip(venv_launch, boot_launch) if "shown" in v and "shown" in b]
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "checkout": checkout(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "bootstrap_python": bootstrap[0],
                    "display": "Xvfb" if xvfb is not None else os.environ.get("DISPLAY", "")},
        "units": "ms",
        "launch_to_window": {
            "venv_entry_point": summary(venv_shown),
            "bootstrap": summary(boot_shown),
            "bootstrap_extra": summary(extra),
            "bootstrap_extra_median": round(statistics.median(boot_shown) - statistics.median(venv_shown), 1)
            if venv_shown and boot_shown else None,
        },
        "launch_to_engine_ready": summary(pick(generate, "engine_ready")),
        "launch_to_model_loaded": summary(pick(generate, "model_loaded")),
        "launch_to_first_preview": summary(pick(generate, "first_preview")),
        "launch_to_first_image": summary(pick(generate, "first_image")),
        "ui_gaps": {"max": summary(pick(generate, "ui_gaps_max_ms")), "p95": summary(pick(generate, "ui_gaps_p95_ms")),
                    "denoising_max": summary(pick(generate, "ui_gaps_loop_max_ms")),
                    "denoising_p95": summary(pick(generate, "ui_gaps_loop_p95_ms")),
                    "long_denoising_max": summary(pick(close_mid, "ui_gaps_loop_max_ms"))},
        "close_at_launch": summary(closing(venv_launch)),
        "close_after_generation": summary(closing(generate)),
        "close_mid_generation": summary(closing(close_mid)),
        "generation": {"settings": GENERATE, "long_settings": LONG_GENERATE, "tick_ms": TICK_S * 1000},
    }
    report["goals"] = goals(report)
    emit(report, args.json_out)
    for name, check in report["goals"].items():
        print(f"app_timing: {name}: {check['median']} ms (goal <= {check['goal']:.0f} ms, "
              f"{'met' if check['met'] else 'NOT met'})", file=sys.stderr)
    if not (venv_shown and boot_shown and pick(generate, "first_preview")):
        print("app_timing: some scenario never showed the window or a preview; see the errors above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
