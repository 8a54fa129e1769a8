#!/usr/bin/env python3
"""How fast the double-click bundle starts, timed from outside: launch → window, launch → first preview.

    python3 benchmarks/bundle_timing.py [--bundle dist/Darkroom] [--runs 5] [--json-out FILE] [--no-venv]

Runs the bundle's ``Darkroom`` executable (built by ``python3 packaging/build.py``) and, for comparison in the same
run, this checkout from its virtual environment (``.venv/bin/python -m gui.launcher``, or the Python running this
script when there is no ``.venv``; ``PYTHONPATH`` is the checkout), alternately, each launch in a fresh ``DARKROOM_HOME`` (a first launch,
with the welcome dialog turned off) on an X display (Xvfb is started when ``DISPLAY`` is unset). The bundle
gets the environment of a person without Python: ``PATH=/usr/bin:/bin``, no virtual environment. Two scenarios:

- ``launch``: process start → the window's first paint (``launch_to_window``), then the window closes;
- ``generate``: "red apple", seed 1, 25 steps with the bundled model submitted at the first paint → the engine
  ready (torch and diffusers imported), the model loaded, the first live preview and the finished image
  (``launch_to_first_preview`` …).

The marks come from the app itself (:mod:`gui.timing_probe`, switched on by ``DARKROOM_TIMING_LOG``), as for
``app_timing.py``, whose launcher this uses. Times are ``time.monotonic()``, shared by all processes; the report
is JSON (milliseconds: median, min, max).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_timing import _start_display, checkout, run_once, summary  # noqa: E402
from benchmark_report import emit  # noqa: E402  (benchmarks/ is on sys.path: the script's own folder)

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
RUN_TIMEOUT_S = 300


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / "Darkroom", help="the bundle's folder")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per scenario (after one warm-up)")
    parser.add_argument("--no-venv", action="store_true", help="time only the bundle, not the checkout")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    exe = args.bundle / ("Darkroom.exe" if os.name == "nt" else "Darkroom")
    if not exe.exists():
        sys.exit(f"bundle_timing: no bundle at {exe}; build it with python3 packaging/build.py")
    builds = {"bundle": ([str(exe)], True)}
    if not args.no_venv:
        python = VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable)
        builds["venv"] = ([str(python), "-m", "gui.launcher"], False)
    xvfb = _start_display()
    results: dict[str, dict[str, list[dict]]] = {name: {"launch": [], "generate": []} for name in builds}
    try:
        for scenario in ("launch", "generate"):
            for command, clean in builds.values():  # warm-up: file caches, Qt's font cache
                run_once(command, scenario, clean)
            for _ in range(args.runs):
                for name, (command, clean) in builds.items():
                    results[name][scenario].append(run_once(command, scenario, clean))
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)
    report: dict = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "checkout": checkout(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "display": "Xvfb" if xvfb is not None else os.environ.get("DISPLAY", "")},
        "units": "ms",
    }
    failed = False
    for name, by_scenario in results.items():
        def pick(scenario: str, key: str) -> list[float]:
            return [r[key] for r in by_scenario[scenario] if key in r]

        report[name] = {
            "launch_to_window": summary(pick("launch", "shown")),
            "launch_to_engine_ready": summary(pick("generate", "engine_ready")),
            "launch_to_model_loaded": summary(pick("generate", "model_loaded")),
            "launch_to_first_preview": summary(pick("generate", "first_preview")),
            "launch_to_first_image": summary(pick("generate", "first_image")),
            "exit_after_close": summary([r["exited"] - r["close_requested"] for r in by_scenario["launch"]
                                         if "close_requested" in r]),
        }
        bad = [r for runs in by_scenario.values() for r in runs if "stderr" in r or "error" in r or "failed" in r]
        if bad:
            failed = True
            report[name]["problems"] = bad[:3]
            print(f"bundle_timing: {len(bad)} {name} run(s) went wrong: {bad[0]}", file=sys.stderr)
    emit(report, args.json_out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
