"""Worker-side state of the engine: the device, the loaded model (one at a time) with its GPU fast path
(engine/fastpath.py; CUDA only, ``EngineOptions.fast_path``), and running one job.

Everything here runs on the engine's worker thread; nothing is shared with other threads except through the
events it emits and the job's cancel token (and the fast path's compile thread, which only reads the family's
denoiser).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import time
from typing import Callable

from . import embeddings, memory
from .devices import choose_device
from .edit.control import ControlModels
from .edit.inputs import prepare as prepare_inputs
from .edit.passes import EditJob, PassPlan, strength_zero_image
from .errors import DarkroomError, ErrorKind
from .events import Cancelled, Event, Finished, ImageReady, Preview, Progress, Started, StatusChanged
from .fastpath import FastPath
from .lora_apply import AppliedLoras
from .loras import resolve as resolve_loras
from .loader import LoadedModel, load_model
from .models import resolve
from .preview import HostPreviews
from .replay import JobRecording, ReplayRefiner
from .sampling import Interrupted, StepState, denoise

log = logging.getLogger(__name__)


def cpu_threads() -> int:
    """Threads for CPU inference: all cores but one. PyTorch's worker threads spin while they wait, so when
    they fill every core, anything else running (the window, another program) can slow each step many times
    over; one free core keeps the UI responsive and the speed steady."""
    return max(1, (os.cpu_count() or 2) - 1)


class Runtime:
    def __init__(self, options, emit: Callable[[Event], None]):
        # The expensive imports every family shares happen here, on the worker thread, while the engine says it
        # is starting: their native code holds the GIL for a while, better at startup than in the middle of the
        # first generation. What only one family uses (its pipeline, its text encoders) loads with its model.
        import diffusers  # noqa: F401
        import torch

        self._options = options
        self._emit = emit
        self.device = choose_device(options.device)
        self._model: LoadedModel | None = None
        self._fast: FastPath | None = None  # the GPU fast path of the loaded model (None: standard path)
        self._controls = ControlModels()  # control models loaded for the current model
        self._loras = AppliedLoras()  # the LoRAs the loaded model holds
        self._refiner = ReplayRefiner(emit)  # replays of the loaded model waiting for decoded frames
        #: The memory mode setting (engine.memory.MODES); the engine sets it before each job.
        self.memory_mode = memory.check_mode(getattr(options, "memory_mode", "auto"))
        self._model_mode = "normal"  # the mode the loaded model runs in
        self._loaded_setting: str | None = None  # the memory mode setting the loaded model's mode comes from
        if self.device.device == "cpu":
            torch.set_num_threads(options.cpu_threads or cpu_threads())
            log.info("running on the CPU with %d threads", torch.get_num_threads())

    @property
    def device_name(self) -> str:
        return self.device.label

    @property
    def dtype_name(self) -> str:
        return self.device.dtype_name

    def model_for(self, model: str) -> LoadedModel:
        """The loaded model a request names, loading it (and dropping the previous one) when it changes. The
        memory mode is worked out again only when its setting changed: a model lowered to low VRAM by an
        out-of-memory error stays there until the setting or the model changes."""
        entry = resolve(model)
        same = self._model is not None and self._model.entry.path.resolve() == entry.path.resolve()
        if same and self.memory_mode == self._loaded_setting:
            return self._model
        mode = self._mode_for(entry)
        if same:
            self._loaded_setting = self.memory_mode
            if mode == self._model_mode:
                return self._model
            if mode == "low":
                self._lower_memory(self._model, f"{entry.name} now runs in low-VRAM mode")
                return self._model
        self._release()
        self._emit(StatusChanged(f"Loading {entry.name}…", busy=True, device=self.device_name, dtype=self.dtype_name))
        started = time.perf_counter()
        try:
            self._model = load_model(entry, self.device)
            self._model_mode, self._loaded_setting = mode, self.memory_mode
            memory.apply(self._model.family, mode, self.device.device)
            # The fast path's compiled graphs need every part on the GPU for good: not in low-VRAM mode.
            self._fast = FastPath.for_model(self._model, self._options) if mode == "normal" else None
        finally:
            message = f"{entry.name} loaded" if self._model else "Ready"
            self._emit(StatusChanged(message, device=self.device_name, dtype=self.dtype_name,
                                     vram_bytes=self._vram()))
        log.info("loaded %s in %.2fs (%s memory mode)", entry.name, time.perf_counter() - started, mode)
        return self._model

    def _mode_for(self, entry) -> str:
        offloadable = self.device.device in memory.OFFLOAD_DEVICES
        weights = memory.weights_bytes(entry.path) if offloadable and self.memory_mode == "auto" else 0
        return memory.effective(self.memory_mode, self.device.device, weights,
                                memory.gpu_total_bytes() if weights else None)

    def _lower_memory(self, model: LoadedModel, message: str) -> bool:
        """Switch the loaded model to low-VRAM mode in place; False when it already is (or cannot be)."""
        if memory.lower(self._model_mode) is None or self.device.device not in memory.OFFLOAD_DEVICES:
            return False
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        self._free_cache()
        self._emit(StatusChanged(message, busy=True, device=self.device_name, dtype=self.dtype_name))
        memory.apply(model.family, "low", self.device.device)
        self._model_mode = "low"
        log.warning("%s", message)
        return True

    def _vram(self) -> int | None:
        return memory.vram_in_use() if self.device.device == "cuda" else None

    def _free_cache(self) -> None:
        gc.collect()
        if self.device.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    def _release(self) -> None:
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        self._controls.clear()
        self._loras.forget()
        self._refiner.clear()
        if self._model is not None:
            self._model = None
            self._free_cache()

    def refine_replay(self) -> bool:
        """Decode one frame of a replay waiting for it (see :class:`engine.replay.ReplayRefiner`); False when none
        waits. For the engine's idle moments: one call costs one VAE decode of the loaded model."""
        model = self._model
        if model is None:
            self._refiner.clear()
            return False
        return self._refiner.step(model.entry.path, model.preview.decoder)

    def run_job(self, job, preview_options: Callable[[], object]) -> None:
        request = job.request
        refuse_unavailable_parts(request)
        inputs = prepare_inputs(request)  # reads the pictures: a missing file or an empty mask fails before loading
        loras = resolve_loras(request.loras)  # finds and hashes the files: a missing LoRA fails before loading too
        if loras:  # what the images record: each LoRA with its file's hash
            request = dataclasses.replace(request, loras=tuple(lora.ref for lora in loras))
        model = self.model_for(request.model)
        self._loras.apply(model.family, loras)  # before encoding: a LoRA may change the text encoders
        lora_notes = tuple(lora.note for lora in loras if lora.note)
        self._emit(Started(job.job_id, request, model.name))
        count = request.batch_count
        clock = _JobClock()
        index = 0

        try:
            edit = EditJob(model, request, inputs, self._controls)
            try:
                cond = model.family.condition(request)
            except Exception as exc:
                if not (memory.is_out_of_memory(exc) and self._lower_memory(model, _OOM_RETRY)):
                    raise
                cond = model.family.condition(request)
            request = with_embeddings_used(request, cond.cfg)
            recording = JobRecording(job.options, model.preview, model.family.prediction, request.cfg)
            for index in range(count):
                image_request = request.image_request(index)
                image_started = time.perf_counter()
                clock.step_started = image_started
                recording.start_image()
                if inputs.skips_model and request.hires is None:
                    image, notes = strength_zero_image(inputs), ()
                else:
                    image, notes = self._make_image(job, model, edit, image_request, cond, index, clock,
                                                    preview_options, recording)
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
                        notes=lora_notes + edit.notes + notes,
                        replay=recording.frames(),
                        guidance=recording.guidance,
                        replay_pending=self._refiner.add(job.job_id, index, model.entry.path, recording.latents()),
                    )
                )
        except Interrupted:
            self._emit(Cancelled(job.job_id, images_done=index))
            return
        except Exception as exc:
            if memory.is_out_of_memory(exc):
                self._free_cache()
            raise
        self._emit(Finished(job.job_id, count))

    def _make_image(self, job, model: LoadedModel, edit: EditJob, request, cond, index: int, clock: "_JobClock",
                    preview_options: Callable[[], object], recording: JobRecording):
        """One image, with its fallbacks: the GPU fast path first where it runs (a failure is logged and the
        standard path remakes the image and takes over for this model), then, after a CUDA out-of-memory error in
        normal mode, once more in low-VRAM mode (the model stays in it; the image's notes say so)."""
        # The fast path's compiled graphs were made without LoRA layers: jobs with LoRAs run eagerly.
        fast = self._fast if self._fast is not None and self._fast.active and not self._loras.active else None
        extra: tuple[str, ...] = ()
        while True:
            try:
                image, notes = self._image(job, model, edit, request, cond, index, fast, clock, preview_options,
                                           recording)
                return image, extra + notes
            except Interrupted:
                raise
            except Exception as exc:
                if fast is not None:
                    fast.fail(exc)
                    fast = None
                    if memory.is_out_of_memory(exc):
                        self._free_cache()
                elif memory.is_out_of_memory(exc) and self._lower_memory(model, _OOM_RETRY):
                    extra = (memory.OOM_NOTE,)
                else:
                    raise
            clock.step_started = time.perf_counter()
            recording.start_image()

    def _image(self, job, model: LoadedModel, edit: EditJob, request, cond, index: int, fast: FastPath | None,
               clock: "_JobClock", preview_options: Callable[[], object], recording: JobRecording | None = None):
        """One image: its passes (the first, and the hires fix's), the VAE decode and the paste into the canvas."""
        latents = self._latents(job, model, request, cond, index, fast, clock, preview_options, edit.first(),
                                recording)
        if request.hires is not None:
            latents = self._latents(job, model, request, edit.hires_cond(), index, fast, clock, preview_options,
                                    edit.hires(latents), recording)
        if job.token.cancelled:
            raise Interrupted()
        image, notes = model.family.decode(latents, half_first=fast is not None and fast.active)
        return edit.finish(image), notes

    def _latents(self, job, model: LoadedModel, request, cond, index: int, fast: FastPath | None, clock: "_JobClock",
                 preview_options: Callable[[], object], step: PassPlan, recording: JobRecording | None = None):
        """Run one pass of image ``index`` of a job, sending its Progress and Preview events. ``fast``: the GPU
        fast path (compiled denoiser when ready, no host waits but the previous step's, previews copied on a side
        stream); passes it cannot run (control models, an inpainting U-Net's extra inputs) run on the standard
        path."""
        if step.standard_only:
            fast = None
        count = job.request.batch_count
        previews = fast.previews(model.preview) if fast else HostPreviews(model.preview)
        previews.start_image()

        def show(ready) -> None:
            for rgb, step_done, total, kind in ready:
                self._emit(Preview(job.job_id, rgb, step_done, total, index, kind))

        def on_step(state: StepState) -> None:
            if recording is not None:
                recording.on_step(state)  # the replay: x0 of every step, whatever the preview throttle says
            now = time.perf_counter()
            per_step = clock.per_step
            per_step.append(now - clock.step_started)
            del per_step[:-10]
            clock.step_started = now
            avg = sum(per_step) / len(per_step)
            left = (state.total - state.step) + (count - index - 1) * state.total
            self._emit(Progress(job.job_id, state.step, state.total, index, count, 1.0 / avg if avg else 0.0, left * avg,
                                vram_bytes=self._vram()))
            options = preview_options()
            source = None
            if options.mode != "off" and clock.preview_due(now, options.interval_s):
                clock.last_preview = now
                source = state.x0 if options.mode == "x0" else state.xt_view
            ready = previews.step(source, state.step, state.total, options.mode)
            if source is not None:
                clock.preview_cost = time.perf_counter() - now
            show(ready)

        stop = lambda: job.token.cancelled  # noqa: E731
        plan = step.plan
        try:
            denoiser = step.denoiser
            if fast is not None:
                example = model.family.example_inputs(plan.height, plan.width, cond)
                denoiser = fast.forward_for(example)
            latents = denoise(model, request, cond, request.seed, on_step, stop, denoiser=denoiser, plan=plan,
                              on_guidance=recording.on_guidance if recording is not None else None)
        except BaseException:
            previews.discard()
            raise
        show(previews.flush())
        return latents

    def close(self) -> None:
        self._release()


def with_embeddings_used(request, cfg: bool):
    """``request`` recording the textual-inversion embeddings its encoded prompts used (the negative one only
    with CFG), by name and file hash: what its images' metadata keeps."""
    from .request import EmbeddingRef

    texts = (request.prompt, request.negative_prompt) if cfg else (request.prompt,)
    used = tuple(EmbeddingRef(e.name, e.sha256) for e in embeddings.used_by(texts).values())
    return request if used == request.embeddings else dataclasses.replace(request, embeddings=used)


_OOM_RETRY = "Out of GPU memory: trying again in low-VRAM mode…"

#: Request parts the engine cannot use yet → what to tell people.
_UNAVAILABLE: dict[str, str] = {}


def refuse_unavailable_parts(request) -> None:
    """Raise a clear DarkroomError for a request using a part no feature handles yet, before any model loads."""
    for part in request.parts:
        if part in _UNAVAILABLE:
            raise DarkroomError(_UNAVAILABLE[part], kind=ErrorKind.VALIDATION)


#: The most of a generation's time previews may take. A linear preview (≈0.2 ms) never comes near it; a decoded
#: one (the bundled model's VAE, ≈19 ms against a ≈40 ms step on one CPU thread) is spaced out to stay under it.
PREVIEW_SHARE = 0.2


class _JobClock:
    """Per job: recent step durations (for it/s and ETA) and when the last preview was sent (throttling)."""

    def __init__(self) -> None:
        self.per_step: list[float] = []
        self.step_started = time.perf_counter()
        self.last_preview = float("-inf")  # the first step of a job always shows
        self.preview_cost = 0.0  # how long the last preview took to make

    def preview_due(self, now: float, interval_s: float) -> bool:
        """Whether a preview may be made at ``now``. ``interval_s`` 0 asks for every step; otherwise ``interval_s``
        after the last one, and late enough that previews take at most ``PREVIEW_SHARE`` of the time."""
        if interval_s <= 0:
            return True
        return now - self.last_preview >= max(interval_s, self.preview_cost / PREVIEW_SHARE)  # both from a start
