"""The window's state, without widgets: the form's values and the jobs.

- :class:`FormModel` holds the generation form's values keyed by the field registry (:data:`engine.fields.FIELDS`),
  as people typed them, and the fields the last validation rejected. Widgets bind to it; settings store it.
- :class:`JobsModel` is the one place for job state: the jobs submitted from this window (running first, then
  queued), which one the canvas follows and its last progress, and what the canvas shows. It submits and cancels
  through :class:`gui.bridge.Bridge` and ignores events of jobs it no longer shows.

Both are plain QObjects with ``*_changed`` signals; they live on the GUI thread and are called only there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from engine.engine import JobOptions
from engine.events import Cancelled, Failed, Finished, ImageReady, Preview, Progress, ReplayDecoded, Started
from engine import fields
from engine.request import BuiltRequest, GenerationRequest, ValidationError, build_request

from .bridge import Bridge
from .results import Result, ResultStore


class FormModel(QObject):
    """The form's values (field name → value as typed: the seed stays text such as "random")."""

    #: (field name, new value)
    value_changed = Signal(str, object)
    #: field name → message, for the fields the last :meth:`build` rejected (empty when none)
    errors_changed = Signal(dict)
    #: the seed of the last picture made (int) or None
    last_seed_changed = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._values: dict[str, Any] = {f.name: _normalise(f.name, f.default) for f in fields.FIELDS}
        self._errors: dict[str, str] = {}
        self._last_seed: int | None = None

    # -- values -----------------------------------------------------------------------------------------------
    def value(self, name: str) -> Any:
        return self._values[name]

    def values(self) -> dict[str, Any]:
        """Every field's value, in registry order (what :attr:`Settings.generation` stores)."""
        return dict(self._values)

    def set_value(self, name: str, value: Any) -> None:
        """Set one field (KeyError for a name the registry lacks). An edited field loses its error mark."""
        value = _normalise(name, value)
        if self._values[name] == value and type(self._values[name]) is type(value):
            return
        self._values[name] = value
        self.value_changed.emit(name, value)
        if name in self._errors:
            del self._errors[name]
            self.errors_changed.emit(dict(self._errors))

    def set_values(self, values: Mapping[str, Any]) -> list[str]:
        """Set the registry fields found in ``values`` (other keys are ignored: a request's ``version``, its
        parts). A value its field cannot hold (a number out of range, an unknown sampler) is left out and its
        name returned; the seed and the texts are taken as they are and checked when the request is built."""
        rejected = []
        for field in fields.FIELDS:
            if field.name not in values:
                continue
            value = values[field.name]
            if field.kind not in ("seed", "text", "model"):
                try:
                    value = field.parse(value)
                except ValueError:
                    rejected.append(field.name)
                    continue
            elif field.kind != "seed" and not isinstance(value, str):
                rejected.append(field.name)
                continue
            self.set_value(field.name, value)
        return rejected

    def set_request(self, request: GenerationRequest) -> None:
        self.set_values(request.core())

    def build(self, parts: Mapping[str, Any] | None = None) -> BuiltRequest:
        """The request these values make, with the request ``parts`` given (a source image, a mask…). Raises
        :class:`ValidationError` and marks the fields it names.

        Values the builder rounds (sizes to a multiple of 8) are written back, so the form shows what was used."""
        values = {}
        for name, value in self._values.items():
            kind = fields.FIELD[name].kind
            values[name] = value.strip() if kind == "text" else (value.strip() or "random") if kind == "seed" else value
        try:
            built = build_request(**values, **(parts or {}))
        except ValidationError as exc:
            self._set_errors({k: v for k, v in exc.errors.items() if k in fields.FIELD})
            raise
        self._set_errors({})
        for field in fields.FIELDS:
            if field.multiple > 1:
                self.set_value(field.name, getattr(built.request, field.name))
        return built

    # -- errors -----------------------------------------------------------------------------------------------
    @property
    def errors(self) -> dict[str, str]:
        return dict(self._errors)

    def clear_errors(self) -> None:
        self._set_errors({})

    def _set_errors(self, errors: dict[str, str]) -> None:
        if errors != self._errors:
            self._errors = dict(errors)
            self.errors_changed.emit(dict(errors))

    # -- last seed --------------------------------------------------------------------------------------------
    @property
    def last_seed(self) -> int | None:
        return self._last_seed

    def set_last_seed(self, seed: int | None) -> None:
        if seed != self._last_seed:
            self._last_seed = seed
            self.last_seed_changed.emit(seed)

    def reuse_last_seed(self) -> None:
        if self._last_seed is not None:
            self.set_value("seed", self._last_seed)


def _normalise(name: str, value: Any) -> Any:
    kind = fields.FIELD[name].kind
    if kind == "seed":
        return "random" if value is None else str(value)
    if kind == "int":
        return int(value)
    if kind == "float":
        return round(float(value), 4)
    return str(value)


# -- jobs ---------------------------------------------------------------------------------------------------------
#: What a job is for: "" a picture people asked for (listed in the session and saved as the settings say);
#: "live" live mode (not listed, not saved, until kept); "grid" a compare-grid cell (listed; the grid saves it).
JobKind = Literal["", "live", "grid"]


@dataclass
class JobInfo:
    """A job submitted from this window and not yet ended."""

    job_id: int
    request: GenerationRequest
    state: Literal["queued", "running"] = "queued"
    kind: JobKind = ""


@dataclass(frozen=True)
class ProgressState:
    """What the progress bar says. ``running``: a job is being made (the window title shows the fraction)."""

    text: str
    value: int = 0
    maximum: int = 1
    running: bool = False

    @property
    def fraction(self) -> float:
        return self.value / max(1, self.maximum)


IDLE = ProgressState("Idle")


@dataclass(frozen=True)
class Frame:
    """Which picture the canvas shows: a live preview, a job's finished image, or an earlier result picked from
    the session strip."""

    kind: Literal["preview", "final", "result", "replay"]
    job_id: int | None
    step: int = 0
    total: int = 0
    image_index: int = 0


@dataclass(frozen=True)
class Shown:
    """What the canvas shows: the image, which one it is, the caption over it, and the result behind it (None
    for a live preview)."""

    image: QImage
    frame: Frame
    caption: str
    result: Result | None = None


class JobsModel(QObject):
    """Jobs of this window, their progress and what the canvas shows. See the module docstring."""

    #: the list of jobs changed (submitted, started, ended, cancelled)
    jobs_changed = Signal()
    progress_changed = Signal(object)  # ProgressState
    shown_changed = Signal(object)  # Shown
    #: False while the canvas shows an earlier result instead of following the running job
    follow_live_changed = Signal(bool)
    #: a finished picture of a shown job (it is in :attr:`results` already)
    result_added = Signal(object)  # Result
    #: a job, or the engine as a whole, failed (``Failed``)
    failed = Signal(object)
    #: a result's replay frames are now the VAE's decodes (:meth:`Result.set_decoded_replay`)
    replay_decoded = Signal(object)  # Result
    #: the engine's remarks on a finished picture ("the VAE overflowed and was decoded again in float32")
    notes = Signal(str)

    def __init__(self, bridge: Bridge, results: ResultStore | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self._bridge = bridge
        self.results = results if results is not None else ResultStore(parent=self)
        self._jobs: dict[int, JobInfo] = {}  # submission order
        self._current: int | None = None
        self._progress = IDLE
        self._shown: Shown | None = None
        self._follow_live = True
        bridge.job_started.connect(self._on_started)
        bridge.progress.connect(self._on_progress)
        bridge.preview.connect(self._on_preview)
        bridge.image_ready.connect(self._on_image_ready)
        bridge.replay_decoded.connect(self._on_replay_decoded)
        bridge.job_finished.connect(self._on_finished)
        bridge.job_failed.connect(self._on_failed)
        bridge.job_cancelled.connect(self._on_cancelled)

    # -- state ------------------------------------------------------------------------------------------------
    def jobs(self) -> list[JobInfo]:
        """Running job first, then the queued ones in order."""
        return sorted(self._jobs.values(), key=lambda j: j.state != "running")

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    @property
    def current_job(self) -> int | None:
        """The running job the canvas and progress bar follow."""
        return self._current

    @property
    def progress(self) -> ProgressState:
        return self._progress

    @property
    def shown(self) -> Shown | None:
        return self._shown

    @property
    def follow_live(self) -> bool:
        return self._follow_live

    # -- intents ----------------------------------------------------------------------------------------------
    def submit(self, request: GenerationRequest, options: JobOptions = JobOptions(replay=True),
               kind: JobKind = "") -> int:
        """Queue a request (by default recording its per-step x0 frames, the replay). RuntimeError when the
        engine has been shut down."""
        job_id = self._bridge.submit(request, options)
        self._jobs[job_id] = JobInfo(job_id, request, kind=kind)
        self.jobs_changed.emit()
        return job_id

    def cancel(self, job_id: int) -> bool:
        """Cancel a job: it leaves the queue at once and its remaining events are ignored."""
        return self._cancel([job_id]) > 0

    def cancel_current(self) -> bool:
        """Cancel the running job, or the first queued one when none runs yet."""
        jobs = self.jobs()
        return self.cancel(jobs[0].job_id) if jobs else False

    def cancel_all(self) -> int:
        return self._cancel(list(self._jobs))

    def show_result(self, result: Result) -> None:
        """Show an earlier result; a running job goes on behind it until :meth:`follow_live_view`."""
        self._set_follow_live(False)
        r = result.request
        self._show(Shown(result.full_image(), Frame("result", result.key[0], r.steps, r.steps, result.key[1]),
                         result_caption(result), result))

    def follow_live_view(self) -> None:
        self._set_follow_live(True)

    # -- engine events (already filtered by job) --------------------------------------------------------------
    def _on_started(self, event: Started) -> None:
        info = self._jobs.get(event.job_id)
        if info is None:
            return
        info.state = "running"
        self._current = event.job_id
        r = event.request
        self._set_progress(ProgressState(f"Starting {r.width}×{r.height}, {r.steps} steps, seed {r.seed}…", 0,
                                         r.steps * r.batch_count, running=True))
        self._set_follow_live(True)
        self.jobs_changed.emit()

    def _on_progress(self, p: Progress) -> None:
        if p.job_id != self._current:
            return
        self._set_progress(ProgressState(progress_text(p), p.image_index * p.total + p.step, p.total * p.image_count,
                                         running=True))

    def _on_preview(self, event: Preview, image: QImage) -> None:
        if event.job_id != self._current or not self._follow_live:
            return
        what = "model's guess (x0)" if event.kind == "x0" else "noisy latent (x_t)"
        self._show(Shown(image, Frame("preview", event.job_id, event.step, event.total, event.image_index),
                         f"Step {event.step}/{event.total} · {what}"))

    def _on_replay_decoded(self, event: ReplayDecoded) -> None:
        key = (event.job_id, event.image_index)
        result = self.results.get(key)
        shown = self._shown.result if self._shown is not None else None
        if result is None and shown is not None and shown.key == key:  # a live picture, not kept (yet)
            result = shown
        if result is not None and result.set_decoded_replay(event.frames):
            self.replay_decoded.emit(result)

    def _on_image_ready(self, ready: ImageReady, image: QImage) -> None:
        info = self._jobs.get(ready.job_id)
        if info is None:
            return
        result = Result.from_ready(ready, image, info.kind)
        if info.kind != "live":  # a live picture joins the session when it is kept
            self.results.add(result)
        if self._follow_live:
            steps = ready.request.steps
            self._show(Shown(image, Frame("final", ready.job_id, steps, steps, ready.image_index),
                             result_caption(result), result))
        if ready.notes:
            self.notes.emit(" ".join(ready.notes))
        self.result_added.emit(result)

    def _on_finished(self, event: Finished) -> None:
        if self._end(event.job_id):
            self._set_progress(ProgressState(f"Done: {event.images} picture{'s' if event.images != 1 else ''}", 1, 1))

    def _on_failed(self, event: Failed) -> None:
        if event.job_id is not None:
            if not self._end(event.job_id):
                return
            self._set_progress(ProgressState("Failed"))
        self.failed.emit(event)

    def _on_cancelled(self, event: Cancelled) -> None:
        self._cancel([event.job_id], engine_knows=True)

    # -- internals --------------------------------------------------------------------------------------------
    def _cancel(self, job_ids: list[int], engine_knows: bool = False) -> int:
        ended = [job_id for job_id in job_ids if job_id in self._jobs]
        if not engine_knows:
            for job_id in ended:
                self._bridge.cancel(job_id)
        was_current = self._current in ended
        for job_id in ended:
            del self._jobs[job_id]
        if not ended:
            return 0
        if was_current:
            self._current = None
            shown = self._shown
            if shown is not None and shown.frame.kind == "preview" and shown.frame.job_id in ended:
                self._show(Shown(shown.image, shown.frame, f"Cancelled at step {shown.frame.step}/{shown.frame.total}"))
            self._set_progress(ProgressState("Cancelled"))
        elif self._current is None and not self._jobs:
            self._set_progress(ProgressState("Cancelled"))
        self.jobs_changed.emit()
        return len(ended)

    def _end(self, job_id: int) -> bool:
        """Forget a job that ended on its own; False when it was not shown (its end is no news)."""
        if self._jobs.pop(job_id, None) is None:
            return False
        if job_id == self._current:
            self._current = None
        self.jobs_changed.emit()
        return True

    def _set_progress(self, state: ProgressState) -> None:
        if state != self._progress:
            self._progress = state
            self.progress_changed.emit(state)

    def _show(self, shown: Shown) -> None:
        self._shown = shown
        self.shown_changed.emit(shown)

    def _set_follow_live(self, on: bool) -> None:
        if on != self._follow_live:
            self._follow_live = on
            self.follow_live_changed.emit(on)


def result_caption(result: Result) -> str:
    r = result.request
    extra = f" · {result.seconds:.1f} s" if result.seconds else ""
    return f"Seed {r.seed} · {r.steps} steps · {r.sampler}{extra}"


def format_seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def progress_text(p: Progress) -> str:
    parts = []
    if p.image_count > 1:
        parts.append(f"Image {p.image_index + 1}/{p.image_count}")
    parts.append(f"Step {p.step}/{p.total}")
    if p.its > 0:
        parts.append(f"{p.its:.1f} it/s" if p.its >= 1 else f"{1 / p.its:.1f} s/it")
    if p.step < p.total or p.image_index + 1 < p.image_count:
        parts.append(f"ETA {format_seconds(p.eta_s)}")
    return "  ·  ".join(parts)
