"""Device policy: CUDA → fp16, Apple MPS → fp16, CPU → fp32. Called on the engine's worker thread."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceChoice:
    device: str
    dtype_name: str  # "float16" or "float32"

    @property
    def dtype(self):
        import torch

        return getattr(torch, self.dtype_name)

    @property
    def label(self) -> str:
        if self.device == "cuda":
            import torch

            return f"CUDA ({torch.cuda.get_device_name(0)})"
        return {"mps": "Apple GPU (MPS)", "cpu": "CPU"}.get(self.device, self.device)


def choose_device(preferred: str | None = None) -> DeviceChoice:
    import torch

    if preferred == "cpu":
        return DeviceChoice("cpu", "float32")
    if preferred in (None, "cuda") and torch.cuda.is_available():
        return DeviceChoice("cuda", "float16")
    mps = getattr(torch.backends, "mps", None)
    if preferred in (None, "mps") and mps is not None and mps.is_available():
        return DeviceChoice("mps", "float16")
    return DeviceChoice("cpu", "float32")
