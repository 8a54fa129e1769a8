"""The engine: one long-lived worker thread that runs queued generation jobs in FIFO order.

Threading rules:
- ``submit``, ``cancel``, ``cancel_all``, ``preload``, ``set_preview``, ``set_memory_mode`` and ``shutdown`` may be
  called from any thread.
- ``on_event`` is called on the worker thread (and, for a job cancelled while still queued, on the thread that
  called ``cancel``). It must return quickly and must not call back into widgets directly.
- The worker imports torch and diffusers itself, so constructing and starting an Engine costs nothing on the
  caller's thread.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import traceback
from dataclasses import dataclass
from typing import Callable, Literal

from . import memory
from .errors import DarkroomError, ErrorKind
from .events import Cancelled, Event, Failed, Finished, StatusChanged
from .forward_job import ForwardRequest, ForwardRunner
from .request import GenerationRequest

log = logging.getLogger(__name__)

PreviewMode = Literal["x0", "xt", "off"]


@dataclass(frozen=True)
class PreviewOptions:
    """How live previews are made. ``interval_s`` throttles by wall clock: a preview is sent at most this often
    (20 per second by default), and at every step when steps are slower than that; 0 sends one at every step.
    With an interval, a preview that costs much (a model's decoded previews) is also spaced out so that previews
    take at most a fifth of the generation's time (``engine.runtime.PREVIEW_SHARE``)."""

    mode: PreviewMode = "x0"
    interval_s: float = 0.05


@dataclass(frozen=True)
class EngineOptions:
    device: str | None = None  # "cuda", "mps", "cpu" or None for the best available
    fast_path: bool = True  # GPU fast path (channels_last, torch.compile with CUDA graphs); ignored on CPU
    preview: PreviewOptions = PreviewOptions()
    cpu_threads: int | None = None  # CPU inference threads; None: all cores but one (see runtime.cpu_threads)
    memory_mode: str = "auto"  # GPU memory mode (engine.memory.MODES); CUDA only


@dataclass(frozen=True)
class JobOptions:
    """What a job records beside its images (see :mod:`engine.replay`). ``replay``: one x0 frame per step in
    ``ImageReady.replay``; ``inspect_step``: capture classifier-free guidance at that step (1-based) in
    ``ImageReady.guidance``."""

    replay: bool = True
    inspect_step: int | None = None


class CancelToken:
    """Set by ``Engine.cancel``; the denoising loop checks it once per step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class Job:
    job_id: int
    request: GenerationRequest | ForwardRequest
    token: CancelToken
    state: Literal["queued", "running", "done"] = "queued"
    options: JobOptions = JobOptions()


_STOP = object()
_PRELOAD = object()


class Engine:
    def __init__(self, on_event: Callable[[Event], None], options: EngineOptions = EngineOptions()):
        self._on_event = on_event
        self._options = options
        self._preview = options.preview
        self._memory_mode = memory.check_mode(options.memory_mode)
        self._queue: "queue.Queue[object]" = queue.Queue()
        self._jobs: dict[int, Job] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._runtime = None  # engine.runtime.Runtime, created on the worker thread
        self._preload_model = ""  # the model preload() asked for last

    # -- any thread -------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="darkroom-engine", daemon=True)
            self._thread.start()

    def submit(self, request: GenerationRequest | ForwardRequest, options: JobOptions = JobOptions()) -> int:
        """Queue a generation (or a forward-process job of the Diffusion Lab); returns its job id."""
        if not isinstance(request, (GenerationRequest, ForwardRequest)):
            raise TypeError("submit() takes a GenerationRequest; build one with engine.request.build_request")
        self.start()
        with self._lock:
            job = Job(next(self._ids), request, CancelToken(), options=options)
            self._jobs[job.job_id] = job
        self._queue.put(job)
        return job.job_id

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued or running job. Returns False when the job is unknown or already finished."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state == "done":
                return False
            job.token.cancel()
            was_queued = job.state == "queued"
            if was_queued:
                job.state = "done"
                del self._jobs[job_id]
        if was_queued:
            self._emit(Cancelled(job_id))
        return True

    def cancel_all(self) -> None:
        with self._lock:
            ids = list(self._jobs)
        for job_id in ids:
            self.cancel(job_id)

    def pending(self) -> list[int]:
        """Ids of jobs queued or running, in order."""
        with self._lock:
            return sorted(self._jobs)

    def set_preview(self, options: PreviewOptions) -> None:
        self._preview = options  # read once per step by the worker; assignment is atomic

    def preload(self, model: str) -> None:
        """Load ``model`` when the engine has nothing else to do, so that the next generation with it starts at
        once. Only the latest call counts; a queued job goes first and loads what it needs itself. A model that
        fails to load is only logged here: the generation that uses it reports why."""
        self._preload_model = model  # read by the worker; assignment is atomic
        self._queue.put(_PRELOAD)

    def set_memory_mode(self, mode: str) -> None:
        """The GPU memory mode of the next jobs (a job running now keeps its own)."""
        self._memory_mode = memory.check_mode(mode)  # read by the worker when a job starts

    @property
    def options(self) -> EngineOptions:
        return self._options

    @property
    def preview(self) -> PreviewOptions:
        return self._preview

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def shutdown(self, timeout: float = 2.0) -> bool:
        """Cancel everything, stop the worker and join it. Returns True when the thread has ended."""
        self.cancel_all()
        self._queue.put(_STOP)
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- worker thread ----------------------------------------------------------------------------------------
    def _emit(self, event: Event) -> None:
        if isinstance(event, (Finished, Failed, Cancelled)) and event.job_id is not None:
            with self._lock:  # a job has left pending() by the time anyone hears that it ended
                job = self._jobs.pop(event.job_id, None)
                if job is not None:
                    job.state = "done"
        try:
            self._on_event(event)
        except Exception as exc:  # a broken receiver must not kill the engine
            _log_failure(f"event receiver failed on {type(event).__name__}", exc)

    def _run(self) -> None:
        try:
            self._emit(StatusChanged("Starting the engine…", busy=True))
            from .runtime import Runtime

            self._runtime = Runtime(self._options, self._emit)
            self._emit(StatusChanged("Ready", device=self._runtime.device_name, dtype=self._runtime.dtype_name))
        except BaseException as exc:  # noqa: BLE001 - reported, then jobs fail with the same message
            _log_failure("engine failed to start", exc)
            startup_error = exc
        else:
            startup_error = None

        forward = ForwardRunner()
        while True:
            # Idle moments decode waiting replays, one frame at a time, so that a new job waits one decode at most.
            if startup_error is None and self._queue.empty() and self._refine_replay():
                continue
            item = self._queue.get()
            if item is _STOP:
                break
            if item is _PRELOAD:
                if startup_error is None and self._queue.empty():
                    self._preload()
                continue
            job: Job = item  # type: ignore[assignment]
            with self._lock:
                if job.state != "queued":
                    continue  # cancelled while queued; already reported
                job.state = "running"
            try:
                if startup_error is not None:
                    raise DarkroomError(
                        "The engine could not start, so nothing can be generated.",
                        "".join(traceback.format_exception(startup_error)),
                    )
                if isinstance(job.request, ForwardRequest):
                    forward.run(self._runtime, job, self._emit)
                else:
                    self._runtime.memory_mode = self._memory_mode
                    self._runtime.run_job(job, lambda: self._preview)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a Failed event
                self._emit(self._failure(job.job_id, exc))
            finally:
                with self._lock:
                    job.state = "done"
                    self._jobs.pop(job.job_id, None)
        if self._runtime is not None:
            self._runtime.close()

    def _refine_replay(self) -> bool:
        try:
            return self._runtime.refine_replay()
        except Exception as exc:  # noqa: BLE001 - the replays keep their quick frames; the engine goes on
            _log_failure("decoding a replay failed", exc)
            return False

    def _preload(self) -> None:
        model = self._preload_model
        if not model:
            return
        try:
            self._runtime.memory_mode = self._memory_mode
            self._runtime.model_for(model)
        except Exception as exc:  # noqa: BLE001 - the generation that needs it says why
            log.info("preloading %s failed: %s", model, " ".join(str(exc).split())[:200])

    @staticmethod
    def _failure(job_id: int, exc: Exception) -> Failed:
        if isinstance(exc, DarkroomError):
            return Failed(job_id, exc.kind.value, exc.message, exc.details or "")
        details = "".join(traceback.format_exception(exc))
        text = " ".join(str(exc).split())  # one line, whatever the library put in its message
        if "out of memory" in text.lower() or type(exc).__name__ == "OutOfMemoryError":
            return Failed(
                job_id,
                ErrorKind.OUT_OF_MEMORY.value,
                "The GPU ran out of memory. Try a smaller size or batch, the Low VRAM memory mode, or closing "
                "other programs that use the GPU.",
                details,
            )
        if isinstance(exc, OSError) and exc.errno is not None:
            return Failed(job_id, ErrorKind.DISK.value, f"A file could not be read or written: {exc.strerror}.", details)
        _log_failure(f"job {job_id} failed", exc)
        return Failed(job_id, ErrorKind.INTERNAL.value, f"Generation failed: {text[:200] or type(exc).__name__}", details)


def _log_failure(what: str, exc: BaseException) -> None:
    """One line at error level; the traceback only at debug level, so a front end that logs warnings (the
    command line without --debug) never prints one. The Failed event carries it for whoever wants it."""
    log.error("%s: %s: %s", what, type(exc).__name__, " ".join(str(exc).split())[:300])
    log.debug("%s:\n%s", what, "".join(traceback.format_exception(exc)))


# Re-exported for callers that only need the engine's public surface.
__all__ = ["Engine", "EngineOptions", "PreviewOptions", "JobOptions", "CancelToken", "Job", "Cancelled", "Finished"]
