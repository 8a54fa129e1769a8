"""The GPU fast path: a compiled, CUDA-graphed denoiser per image shape, and previews that never stall the loop.

The denoiser is the family's network (:attr:`engine.families.base.Family.denoiser`: SD's and SDXL's U-Net, a
transformer for later families); the fast path knows only its call (positional and keyword tensors, from
``Family.example_inputs``), never a family. What it does, per loaded model (one :class:`FastPath`, owned by the
runtime on the engine's worker thread):

- **channels_last + SDPA.** The denoiser's weights are switched to channels_last once, when the model loads, and
  attention runs through PyTorch's scaled-dot-product attention (diffusers' default; a classic processor is
  replaced).
- **Compile in the background, never in the way.** The first generation of a shape (model, latent size, CFG
  batch, dtype, text length: an :class:`engine.compile_keys.ShapeKey`) runs eagerly while a daemon thread runs
  ``torch.compile`` (static shapes, ``dynamic=False``) on an example input of that shape. The worker thread
  never compiles: compiled code is only called under ``set_stance("fail_on_recompile")``, so a guard miss raises
  instead of blocking for a minute.
- **CUDA graphs, captured by us.** When a shape's compile is done, the next generation captures one CUDA graph
  of the compiled denoiser on the worker thread (static input buffers, one memory pool shared by all shapes of the
  model) and replays it every step. We capture ourselves instead of using ``mode="reduce-overhead"`` because
  inductor's CUDA-graph trees bind a graph to the thread that first ran it (here the compile thread) and keep
  thread-local state; an explicit graph has a lifetime and a thread we control.
- **Cache on disk** (:mod:`engine.compile_cache`). Inductor's caches live under the app's cache folder, so a
  relaunch recompiles from cache in seconds. A small manifest there remembers shapes whose compile failed, so a
  broken shape is not retried on every launch (until torch, the GPU or the model changes).
- **Fail safe.** Any exception while compiling, capturing or replaying marks that shape broken, logs a warning
  and runs it eagerly from then on; the image being made continues with the eager denoiser. A failure elsewhere in
  the fast loop disables the fast path for the model and the runtime remakes the image on the standard path.
- **Skip when it would not pay.** Only CUDA compiles (CPU and Apple GPUs run the standard path); a model gets at
  most :data:`MAX_SHAPES` compiled shapes per session (each costs a compile and graph memory), and a shape that
  failed before is not compiled again.

Previews on the fast path (:class:`engine.preview.DevicePreviews`): latent → RGB on the GPU, then a non-blocking copy into
pinned memory on a side stream, handed to the UI one step later (the first preview of an image as soon as it is
ready). Waiting for the previous step's copy is the loop's only host synchronisation, and it keeps progress,
ETA and cancel true to what the GPU has finished while the next step is already queued.

Nothing here runs on CPU-only machines in normal use; every policy (settings, keys, fallback, the compile
thread) is written so tests can drive it on a CPU by injecting the compile function.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

from .compile_cache import MANIFEST_NAME, Manifest, compile_cache_dir, configure_compile_cache
from .compile_keys import ShapeKey, environment, map_tensors, model_identity, shape_key, walk_tensors, zero_inputs
from .preview import DevicePreviews, HostPreviews

log = logging.getLogger(__name__)

#: Devices whose denoiser gets compiled. Tests widen it to run the policy on a CPU.
COMPILE_DEVICES: tuple[str, ...] = ("cuda",)
#: Compiled shapes per loaded model and session; later shapes run eagerly.
MAX_SHAPES = 4
#: Inductor options for the denoiser (1×1 convolutions as matrix multiplies, as diffusers' compile guide does).
INDUCTOR_OPTIONS: dict[str, Any] = {"conv_1x1_as_mm": True}

_INSTANCES: "weakref.WeakSet[FastPath]" = weakref.WeakSet()


def default_compile(denoiser):
    """``torch.compile`` of the denoiser with static shapes. CUDA graphs are captured by :class:`GraphedDenoiser`."""
    import torch

    return torch.compile(denoiser, fullgraph=False, dynamic=False, options=dict(INDUCTOR_OPTIONS))


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


# ------------------------------------------------------------------------------------------------ forwards
class _Guarded:
    """Calls compiled code on the worker thread: never recompiles there, falls back to eager on any error."""

    def __init__(self, fast: "FastPath", key: ShapeKey, eager: Callable[..., Any]):
        self._fast = fast
        self._key = key
        self._eager = eager

    def _compiled_call(self, args: tuple, kwargs: dict):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        if self._fast.state(self._key) == "ready":
            try:
                return self._compiled_call(args, kwargs)
            except Exception as exc:  # noqa: BLE001 - any failure: eager for good, with a note in the log
                self._fast._mark_broken(self._key, exc, "run")
        return self._eager(*args, **kwargs)


class CompiledDenoiser(_Guarded):
    """The compiled denoiser without CUDA graphs (used off CUDA, i.e. by tests)."""

    def __init__(self, fast, key, compiled, eager):
        super().__init__(fast, key, eager)
        self._compiled = compiled

    def _compiled_call(self, args, kwargs):
        import torch

        args = map_tensors(args, lambda t: t.contiguous())  # strides are guarded: hand over the warm-up's
        with torch.compiler.set_stance("fail_on_recompile"):
            out = self._compiled(*args, **kwargs)
        return (out[0],)


class GraphedDenoiser(_Guarded):
    """One CUDA graph of the compiled denoiser for one shape: inputs are copied into static buffers, the graph
    is replayed, and the output is cloned (the next replay overwrites the static output)."""

    def __init__(self, fast, key, eager, graph, static_inputs: list, static_out):
        super().__init__(fast, key, eager)
        self._graph = graph
        self._inputs = static_inputs
        self._out = static_out

    @classmethod
    def capture(cls, fast, key, compiled, eager, example, pool, warmup: int = 2) -> "GraphedDenoiser":
        import torch

        with torch.inference_mode(), torch.compiler.set_stance("fail_on_recompile"):
            args, kwargs = zero_inputs(example, "cuda")
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(warmup):  # lazy initialisation (cuBLAS/cuDNN handles, autotuning) before capture
                    compiled(*args, **kwargs)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
                out = compiled(*args, **kwargs)[0]
            torch.cuda.current_stream().synchronize()
        return cls(fast, key, eager, graph, [t for _, t in walk_tensors((args, kwargs))], out)

    def _compiled_call(self, args, kwargs):
        given = [t for _, t in walk_tensors((args, kwargs))]
        if len(given) != len(self._inputs) or any(a.shape != b.shape for a, b in zip(given, self._inputs)):
            return self._eager(*args, **kwargs)
        for buffer, value in zip(self._inputs, given):
            buffer.copy_(value)
        self._graph.replay()
        return (self._out.clone(),)


# ------------------------------------------------------------------------------------------------ the fast path
@dataclass
class ShapeState:
    state: str  # compiling | compiled | ready | broken | skipped
    compile_s: float | None = None
    capture_s: float | None = None
    error: str = ""
    forward: Any = field(default=None, repr=False)
    expected: str = "cold"  # "warm" when an earlier launch compiled this shape (its artefacts should be on disk)


class FastPath:
    """Per loaded model: decides, per shape, whether the denoiser runs compiled and graphed or eagerly.

    Worker-thread API: :meth:`forward_for` (returns a denoiser callable or ``None`` for eager), :meth:`previews`,
    :meth:`fail`, :meth:`close`. The compile thread only touches the shape table under the lock.
    """

    def __init__(
        self,
        denoiser,
        device: str,
        identity: str,
        *,
        compile_fn: Callable[[Any], Callable[..., Any]] | None = None,
        manifest: Manifest | None = None,
        max_shapes: int | None = None,
        env: str | None = None,
    ):
        self.denoiser = denoiser
        self.device = device
        self.identity = identity
        self._compile_fn = compile_fn
        self._manifest = manifest
        self._max_shapes = MAX_SHAPES if max_shapes is None else max_shapes
        self._env = env if env is not None else environment()
        self._lock = threading.Lock()
        self._shapes: dict[ShapeKey, ShapeState] = {}
        self._compiled = None
        self._thread: threading.Thread | None = None
        self._pool = None
        self._previews = None
        self._told_full = False
        self.disabled: str | None = None
        _INSTANCES.add(self)

    # -- construction --------------------------------------------------------------------------------------
    @classmethod
    def for_model(cls, model, options, compile_fn=None) -> "FastPath | None":
        """The fast path for a just-loaded model, or ``None`` when it does not apply (setting off, not CUDA)."""
        if not getattr(options, "fast_path", False):
            return None
        if model.device.device not in COMPILE_DEVICES:
            return None
        try:
            fast = cls(
                model.family.denoiser,
                model.device.device,
                model_identity(model),
                compile_fn=compile_fn,
                manifest=Manifest(compile_cache_dir() / MANIFEST_NAME),
            )
            fast.prepare()
        except Exception as exc:  # noqa: BLE001 - the standard path still works
            log.warning("the GPU fast path is off for %s: %s: %s", model.name, type(exc).__name__, exc)
            return None
        return fast

    def prepare(self) -> None:
        """channels_last weights and SDPA attention; on the worker thread, before anything is compiled."""
        import torch

        self.denoiser.to(memory_format=torch.channels_last)
        processors = getattr(self.denoiser, "attn_processors", {})
        if processors and any(type(p).__name__ == "AttnProcessor" for p in processors.values()):
            from diffusers.models.attention_processor import AttnProcessor2_0

            self.denoiser.set_attn_processor(AttnProcessor2_0())
            log.info("attention switched to scaled-dot-product attention")

    @property
    def active(self) -> bool:
        return self.disabled is None

    def state(self, key: ShapeKey) -> str | None:
        with self._lock:
            entry = self._shapes.get(key)
            return entry.state if entry else None

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per shape: state, compile and capture seconds, error (for logs and the benchmark)."""
        with self._lock:
            return {
                key.label: {"state": s.state, "compile_s": s.compile_s, "capture_s": s.capture_s, "error": s.error,
                            "expected": s.expected}
                for key, s in self._shapes.items()
            }

    def compiling(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no compile is running (benchmarks and tests). True when idle."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.compiling()

    # -- the worker thread's entry point --------------------------------------------------------------------
    def forward_for(self, example: tuple[tuple, dict]) -> Callable[..., Any] | None:
        """The denoiser to use for a loop whose denoiser arguments look like ``example`` (``Family.
        example_inputs``: shapes and dtypes are what count), or ``None`` to run it eagerly. Starts a background
        compile for a new shape; captures the CUDA graph of a freshly compiled one."""
        key = shape_key(self.identity, example)
        if self.disabled is not None:
            return None
        busy = self.compiling()
        with self._lock:
            entry = self._shapes.get(key)
        if entry is None:
            if busy or not self._admit(key):
                return None  # one compile at a time: this shape asks again at its next generation
            self._start_compile(key, example)
            return None
        if busy:
            return None  # compiled code never runs while the compiler works (its guards and caches are shared)
        if entry.state == "compiled":
            self._capture(key, entry, example)
        return entry.forward if entry.state == "ready" else None

    def _admit(self, key: ShapeKey) -> bool:
        with self._lock:
            used = sum(1 for s in self._shapes.values() if s.state not in ("broken", "skipped"))
        record = self._manifest.get(key.digest(self._env)) if self._manifest else None
        if record and record.get("status") == "failed":
            with self._lock:
                self._shapes[key] = ShapeState("broken", error=f"failed on an earlier run: {record.get('error', '')}")
            log.info("not compiling %s: it failed on an earlier run (%s)", key.label, record.get("error", ""))
            return False
        if used >= self._max_shapes:
            with self._lock:
                self._shapes[key] = ShapeState("skipped")
            if not self._told_full:
                self._told_full = True
                log.info("%d sizes are compiled for this model already; new sizes run on the standard path",
                         self._max_shapes)
            return False
        return True

    def _start_compile(self, key: ShapeKey, example) -> None:
        if self._compile_fn is None or self.device == "cuda":
            configure_compile_cache()
        record = self._manifest.get(key.digest(self._env)) if self._manifest else None
        entry = ShapeState("compiling", expected="warm" if record and record.get("status") == "ok" else "cold")
        with self._lock:
            self._shapes[key] = entry
        log.info("compiling the denoiser for %s in the background (%s cache)", key.label, entry.expected)
        import torch

        self._thread = threading.Thread(
            target=self._compile, args=(key, entry, example, torch.get_num_threads()), name="darkroom-compile",
            daemon=True,
        )
        self._thread.start()

    def _compile(self, key: ShapeKey, entry: ShapeState, example, threads: int) -> None:
        started = time.perf_counter()
        try:
            import torch

            # The intra-op thread count is per thread and Dynamo guards on it: match the caller's, or the
            # compiled code would be refused on the worker thread.
            torch.set_num_threads(threads)

            if self._compiled is None:
                self._compiled = (self._compile_fn or default_compile)(self.denoiser)
            with torch.inference_mode():  # the loop runs in inference mode, and Dynamo guards on it
                args, kwargs = zero_inputs(example, self.device)
                self._compiled(*args, **kwargs)
                if self.device == "cuda":
                    torch.cuda.current_stream().synchronize()
        except Exception as exc:  # noqa: BLE001 - reported and remembered, never raised into the engine
            self._mark_broken(key, exc, "compile")
            return
        seconds = time.perf_counter() - started
        with self._lock:
            if entry.state == "compiling":
                entry.state, entry.compile_s = "compiled", seconds
        if self._manifest:
            self._manifest.put(key.digest(self._env), status="ok", compile_s=round(seconds, 2), shape=key.label)
        log.info("compiled the denoiser for %s in %.1fs", key.label, seconds)

    def _capture(self, key: ShapeKey, entry: ShapeState, example) -> None:
        started = time.perf_counter()
        try:
            if self.device == "cuda":
                import torch

                if self._pool is None:
                    self._pool = torch.cuda.graph_pool_handle()
                forward = GraphedDenoiser.capture(self, key, self._compiled, self.denoiser, example, self._pool)
            else:
                forward = CompiledDenoiser(self, key, self._compiled, self.denoiser)
        except Exception as exc:  # noqa: BLE001
            self._mark_broken(key, exc, "capture")
            return
        with self._lock:
            entry.forward, entry.state = forward, "ready"
            entry.capture_s = time.perf_counter() - started
        log.info("the denoiser for %s runs compiled from now on (graph captured in %.2fs)", key.label, entry.capture_s)

    def _mark_broken(self, key: ShapeKey, exc: BaseException, stage: str) -> None:
        message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
        with self._lock:
            entry = self._shapes.setdefault(key, ShapeState("broken"))
            entry.state, entry.error, entry.forward = "broken", f"{stage}: {message}", None
        log.warning("the GPU fast path could not %s the denoiser for %s; that size runs on the standard path (%s)",
                    stage, key.label, message, exc_info=log.isEnabledFor(logging.DEBUG))
        if self._manifest and not _is_oom(exc):
            self._manifest.put(key.digest(self._env), status="failed", error=f"{stage}: {message}", shape=key.label)

    # -- previews and failure ----------------------------------------------------------------------------------
    def previews(self, preview):
        """The preview pipe for this model's loops: on the GPU with a side stream, else synchronous."""
        if self.device != "cuda":
            return HostPreviews(preview)
        if self._previews is None or self._previews.preview is not preview:
            self._previews = DevicePreviews(preview)
        return self._previews

    def fail(self, exc: BaseException) -> None:
        """Something in the fast loop failed: the standard path takes over for this model, for good."""
        self.disabled = f"{type(exc).__name__}: {exc}"
        log.warning("the GPU fast path failed and is off for this model; generating on the standard path (%s)",
                    self.disabled, exc_info=log.isEnabledFor(logging.DEBUG))
        self._drop_graphs()

    def _drop_graphs(self) -> None:
        with self._lock:
            for entry in self._shapes.values():
                entry.forward = None
                if entry.state == "ready":
                    entry.state = "compiled"
        self._pool = None

    def close(self) -> None:
        """Forget compiled code and graphs (the model is being unloaded). A running compile cannot be stopped;
        it ends on its own and its result is dropped."""
        self.disabled = self.disabled or "closed"
        self._drop_graphs()
        self._previews = None
        compiled, self._compiled = self._compiled, None
        if compiled is not None and not self.compiling():
            try:
                import torch

                torch._dynamo.reset()  # drop guards and code held for the old model's denoiser
            except Exception:  # noqa: BLE001
                log.debug("dynamo reset failed", exc_info=True)


def instances() -> list[FastPath]:
    """Live fast paths (one per loaded model), for diagnostics and the benchmark."""
    return list(_INSTANCES)
