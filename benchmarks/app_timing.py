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
  its first live preview (and ``launch_to_first_image``, ``launch_to_engine_ready``);
- ``ui_gaps``: how late a 5 ms QTimer fires on the UI thread while that generation runs (max and p95 per run);
- ``close_after_generation`` and ``close_mid_generation``: Ctrl+Q → the process has exited;
- ``close_at_launch``: Ctrl+Q right after the first paint (the engine still importing torch) → exited.

The app is not changed for this: a ``sitecustomize`` module put on ``PYTHONPATH`` installs an import hook that
instruments ``gui.main_window.MainWindow`` in the process that imports it (the app's, not the bootstrap's), which
then submits the generation, listens to the bridge's signals and presses Ctrl+Q. Timestamps are
``time.monotonic()``, shared by all processes of the machine. A benchmark, not a test: nothing here asserts;
``goals`` in the report says which figures are within the README's goals (launch → window ≤ 1 s, close ≤ 1 s,
bootstrap extra ≤ 0.3 s), and the exit status is 1 only when a scenario never got going.
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
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
VENV_ENTRY = ROOT / ".venv" / "bin" / "darkroom"
BOOTSTRAP = ROOT / "packaging" / "bootstrap.py"
RUN_TIMEOUT_S = 300
#: The generation each scenario submits: the bundled model at its native size.
GENERATE = {"prompt": "red apple", "seed": 1, "steps": 25}
#: A long one, to close in the middle of it.
LONG_GENERATE = {"prompt": "blue whale", "seed": 2, "steps": 150, "batch_count": 20}
TICK_S = 0.005

SITECUSTOMIZE = f"""
import os, sys
if os.environ.get("DARKROOM_PROBE"):
    sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
    import app_timing
    sys.path.pop(0)
    app_timing.install_import_hook()
"""


# -- inside the app's process ---------------------------------------------------------------------------------
def install_import_hook() -> None:
    """Instrument MainWindow when (and in whichever process) gui.main_window is imported."""
    import importlib.abc
    import importlib.util

    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "gui.main_window":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            run_module = spec.loader.exec_module

            def exec_module(module) -> None:
                run_module(module)
                _instrument(module.MainWindow)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Hook())


def _instrument(window_class) -> None:
    scenario = os.environ.pop("DARKROOM_PROBE")  # popped: processes the app starts are not probed
    out = open(os.environ.pop("DARKROOM_PROBE_OUT"), "a", encoding="utf-8")
    original_init = window_class.__init__

    def init(self, *args, **kwargs) -> None:
        original_init(self, *args, **kwargs)
        self._timing_probe = _Probe(self, scenario, out)

    window_class.__init__ = init


class _Probe:
    """Drives one scenario in the app and writes what happened, one JSON line per event, flushed at once (the
    app ends with os._exit)."""

    def __init__(self, window, scenario: str, out) -> None:
        from PySide6.QtCore import QTimer

        self.window, self.scenario, self.out = window, scenario, out
        self.gaps: list[tuple[float, float]] = []  # (when, how late)
        self.first_preview_at: float | None = None
        self.seen: set[str] = set()
        self._poll = QTimer(window, interval=2, timeout=self._check_painted)
        self._poll.start()
        bridge = window.bridge
        bridge.preview.connect(lambda *a: self.once("first_preview", self._after_preview))
        bridge.image_ready.connect(lambda *a: self.once("first_image"))
        bridge.job_finished.connect(lambda *a: self.once("finished", self._after_finished))
        bridge.job_failed.connect(lambda event: self.record("failed", message=getattr(event, "message", "")))
        bridge.status_changed.connect(lambda event: getattr(event, "device", "") and self.once("engine_ready"))

    def record(self, event: str, **extra) -> None:
        self.out.write(json.dumps({"event": event, "t": time.monotonic(), **extra}) + "\n")
        self.out.flush()

    def once(self, event: str, then=None) -> None:
        if event not in self.seen:
            self.seen.add(event)
            self.record(event)
            if then is not None:
                then()

    def _check_painted(self) -> None:
        painted = self.window.first_paint_at
        if painted is None:
            return
        self._poll.stop()
        # first_paint_at is time.perf_counter(); on Linux both clocks are CLOCK_MONOTONIC, the offset is noise
        self.record("shown", painted_t=painted + (time.monotonic() - time.perf_counter()))
        if self.scenario == "launch":
            self._press_ctrl_q()
        else:
            self._submit(LONG_GENERATE if self.scenario == "close-mid" else GENERATE)

    def _submit(self, values: dict) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.window.form_model.set_values(values)
        job = self.window.generate()
        self.record("submitted", job=job)
        self._last_tick = time.monotonic()
        self._ticker = QTimer(self.window, interval=int(TICK_S * 1000), timeout=self._tick)
        self._ticker.setTimerType(Qt.TimerType.PreciseTimer)
        self._ticker.start()

    def _tick(self) -> None:
        now = time.monotonic()
        self.gaps.append((now, max(0.0, now - self._last_tick - TICK_S)))
        self._last_tick = now

    def _stop_ticks(self) -> None:
        """Lateness of the UI thread's ticks over the whole generation (engine start-up included) and from its
        first preview on (the denoising loop alone)."""
        self._ticker.stop()

        def stats(gaps: list[float]) -> tuple[float, float]:
            ordered = sorted(gaps) or [0.0]
            return ordered[-1] * 1000, ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000

        all_max, all_p95 = stats([g for _, g in self.gaps])
        loop_max, loop_p95 = stats([g for t, g in self.gaps if self.first_preview_at and t > self.first_preview_at])
        worst_t = max(self.gaps, key=lambda item: item[1])[0] if self.gaps else time.monotonic()
        self.record("ui_gaps", max_ms=all_max, p95_ms=all_p95, loop_max_ms=loop_max, loop_p95_ms=loop_p95,
                    ticks=len(self.gaps), worst_ended_t=worst_t)

    def _after_preview(self) -> None:
        self.first_preview_at = time.monotonic()
        if self.scenario == "close-mid":
            from PySide6.QtCore import QTimer

            QTimer.singleShot(500, self._close_mid)

    def _close_mid(self) -> None:
        self._stop_ticks()
        self._press_ctrl_q()

    def _after_finished(self) -> None:
        if self.scenario == "generate":
            from PySide6.QtCore import QTimer

            self._stop_ticks()
            QTimer.singleShot(300, self._press_ctrl_q)

    def _press_ctrl_q(self, waited: float = 0.0) -> None:
        """Ctrl+Q as a key press, once the window is active (a shortcut only reaches the active window; without
        a window manager, Xvfb activates it only when asked)."""
        from PySide6.QtCore import Qt, QTimer
        from PySide6.QtTest import QTest

        if not self.window.isActiveWindow() and waited < 2.0:
            if waited == 0.0:
                self.window.activateWindow()
            QTimer.singleShot(2, lambda: self._press_ctrl_q(waited + 0.002))
            return
        self.record("close_requested", active=self.window.isActiveWindow())
        QTest.keyClick(self.window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)


# -- the driver ---------------------------------------------------------------------------------------------
def _start_display() -> subprocess.Popen | None:
    """Xvfb on a free display when there is no DISPLAY; None when one is already there."""
    if os.environ.get("DISPLAY"):
        return None
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        sys.exit("app_timing: no DISPLAY and no Xvfb; install it (apt-get install xvfb) or run under a desktop.")
    number = next(n for n in range(99, 199) if not Path(f"/tmp/.X{n}-lock").exists())
    proc = subprocess.Popen([xvfb, f":{number}", "-screen", "0", "1400x900x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            sys.exit("app_timing: Xvfb did not start")
        time.sleep(0.05)
    os.environ["DISPLAY"] = f":{number}"
    return proc


def run_once(command: list[str], scenario: str, probe_dir: Path) -> dict:
    """Start the app with ``command``, let the probe drive ``scenario``, and return the events' times in ms
    after the start (``exited``: when the process was reaped)."""
    with tempfile.TemporaryDirectory(prefix="darkroom-timing-") as home:
        events_file = Path(home) / "events.jsonl"
        env = dict(os.environ, DARKROOM_HOME=str(Path(home) / "home"), DARKROOM_PROBE=scenario,
                   DARKROOM_PROBE_OUT=str(events_file), PYTHONPATH=str(probe_dir), HF_HUB_OFFLINE="1")
        env.pop("QT_QPA_PLATFORM", None)
        t0 = time.monotonic()
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            return {"error": f"timed out after {RUN_TIMEOUT_S} s", "stderr": err.decode(errors="replace")[-2000:]}
        exited = time.monotonic()
        result: dict = {"exited": (exited - t0) * 1000, "returncode": proc.returncode}
        for line in events_file.read_text(encoding="utf-8").splitlines() if events_file.exists() else []:
            event = json.loads(line)
            name = event.pop("event")
            t = event.pop("painted_t", event.pop("t"))
            result[name] = (t - t0) * 1000
            # other times ("…_t") are made relative to the start too
            result.update({(f"{name}_{k[:-2]}" if k.endswith("_t") else f"{name}_{k}"):
                           ((v - t0) * 1000 if k.endswith("_t") else v) for k, v in event.items()})
        if "shown" not in result:
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


def collect(commands: list[list[str]], scenario: str, probe_dir: Path, runs: int) -> list[list[dict]]:
    """``runs`` results of ``scenario`` for each command, after one warm-up of each (file caches, Qt's font cache,
    the venv's bytecode, and the bootstrap's setup on its first run). With several commands the runs alternate,
    so drift from other work on the machine falls on all of them alike."""
    for command in commands:
        run_once(command, scenario, probe_dir)
    results: list[list[dict]] = [[] for _ in commands]
    for _ in range(runs):
        for command, out in zip(commands, results):
            out.append(run_once(command, scenario, probe_dir))
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
        with tempfile.TemporaryDirectory(prefix="darkroom-probe-") as probe_dir:
            (Path(probe_dir) / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
            probe = Path(probe_dir)
            venv_launch, boot_launch = collect([[str(VENV_ENTRY)], bootstrap], "launch", probe, args.runs + 2)
            [generate] = collect([[str(VENV_ENTRY)]], "generate", probe, args.runs)
            [close_mid] = collect([[str(VENV_ENTRY)]], "close-mid", probe, args.runs)
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
        "launch_to_first_preview": summary(pick(generate, "first_preview")),
        "launch_to_first_image": summary(pick(generate, "first_image")),
        "ui_gaps": {"max": summary(pick(generate, "ui_gaps_max_ms")), "p95": summary(pick(generate, "ui_gaps_p95_ms")),
                    "worst_ended_after_launch": summary(pick(generate, "ui_gaps_worst_ended")),
                    "denoising_max": summary(pick(generate, "ui_gaps_loop_max_ms")),
                    "denoising_p95": summary(pick(generate, "ui_gaps_loop_p95_ms")),
                    "long_denoising_max": summary(pick(close_mid, "ui_gaps_loop_max_ms"))},
        "close_at_launch": summary(closing(venv_launch)),
        "close_after_generation": summary(closing(generate)),
        "close_mid_generation": summary(closing(close_mid)),
        "generation": {"settings": GENERATE, "long_settings": LONG_GENERATE, "tick_ms": TICK_S * 1000},
    }
    report["goals"] = goals(report)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n", encoding="utf-8")
    for name, check in report["goals"].items():
        print(f"app_timing: {name}: {check['median']} ms (goal <= {check['goal']:.0f} ms, "
              f"{'met' if check['met'] else 'NOT met'})", file=sys.stderr)
    if not (venv_shown and boot_shown and pick(generate, "first_preview")):
        print("app_timing: some scenario never showed the window or a preview; see the errors above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
