"""Worker-side state of the engine: the device, the loaded model (one at a time) and running one job.

Everything here runs on the engine's worker thread; nothing is shared with other threads except through the
events it emits and the job's cancel token.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Callable

from .devices import choose_device
from .events import Cancelled, Event, Finished, ImageReady, Preview, Progress, Started, StatusChanged
from .loader import LoadedModel, load_model
from .models import resolve
from .sampling import Interrupted, StepState, decode, denoise, encode

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, options, emit: Callable[[Event], None]):
        import torch  # noqa: F401 - the expensive import happens here, on the worker thread

        self._options = options
        self._emit = emit
        self.device = choose_device(options.device)
        self._model: LoadedModel | None = None
        if self.device.device == "cpu":
            log.info("running on the CPU with %d threads", torch.get_num_threads())

    @property
    def device_name(self) -> str:
        return self.device.label

    @property
    def dtype_name(self) -> str:
        return self.device.dtype_name

    def model_for(self, model: str) -> LoadedModel:
        """The loaded model a request names, loading it (and dropping the previous one) when it changes."""
        entry = resolve(model)
        if self._model is not None and self._model.entry.path.resolve() == entry.path.resolve():
            return self._model
        self._release()
        self._emit(StatusChanged(f"Loading {entry.name}…", busy=True, device=self.device_name, dtype=self.dtype_name))
        started = time.perf_counter()
        try:
            self._model = load_model(entry, self.device)
        finally:
            message = f"{entry.name} loaded" if self._model else "Ready"
            self._emit(StatusChanged(message, device=self.device_name, dtype=self.dtype_name))
        log.info("loaded %s in %.2fs", entry.name, time.perf_counter() - started)
        return self._model

    def _release(self) -> None:
        if self._model is not None:
            self._model = None
            gc.collect()
            if self.device.device == "cuda":
                import torch

                torch.cuda.empty_cache()

    def run_job(self, job, preview_options: Callable[[], object]) -> None:
        request = job.request
        model = self.model_for(request.model)
        self._emit(Started(job.job_id, request, model.name))
        count = request.batch_count
        per_step: list[float] = []  # recent step durations, for it/s and ETA
        last_preview = [float("-inf")]  # the first step of a job always shows
        step_started = [time.perf_counter()]
        index = 0

        try:
            cond = encode(model, request, request.height, request.width)
            for index in range(count):
                image_request = request.image_request(index)
                image_started = time.perf_counter()
                step_started[0] = image_started

                def on_step(state: StepState, index=index) -> None:
                    now = time.perf_counter()
                    per_step.append(now - step_started[0])
                    del per_step[:-10]
                    step_started[0] = now
                    avg = sum(per_step) / len(per_step)
                    left = (state.total - state.step) + (count - index - 1) * state.total
                    self._emit(Progress(job.job_id, state.step, state.total, index, count, 1.0 / avg if avg else 0.0, left * avg))
                    options = preview_options()
                    if options.mode != "off" and now - last_preview[0] >= options.interval_s:
                        last_preview[0] = now
                        source = state.x0 if options.mode == "x0" else state.xt_view
                        rgb = model.preview.to_rgb(source)
                        self._emit(Preview(job.job_id, rgb, state.step, state.total, index, options.mode))

                latents = denoise(model, image_request, cond, image_request.seed, on_step, lambda: job.token.cancelled)
                if job.token.cancelled:
                    raise Interrupted()
                image, notes = decode(model, latents)
                self._emit(
                    ImageReady(
                        job.job_id,
                        image,
                        image_request,
                        index,
                        count,
                        model_name=model.name,
                        model_hash=model.model_hash,
                        device=self.device_name,
                        dtype=self.dtype_name,
                        seconds=time.perf_counter() - image_started,
                        notes=notes,
                    )
                )
        except Interrupted:
            self._emit(Cancelled(job.job_id, images_done=index))
            return
        except Exception as exc:
            if type(exc).__name__ == "OutOfMemoryError" and self.device.device == "cuda":
                import torch

                torch.cuda.empty_cache()
            raise
        self._emit(Finished(job.job_id, count))

    def close(self) -> None:
        self._release()
