"""The loop passes of an editing job: the request's pictures as latents, control models at each pass's size,
and the hires fix's upscale between the first pass and the second.

Worker thread only (torch). One :class:`EditJob` per job, made after the model is loaded: it encodes the work
picture once and loads the control models once, then hands out a :class:`~engine.sampling.Pass` (and the
denoiser wrapper its control models need, if any) for every pass of every image.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
import numpy as np

from ..forward import img2img_start
from ..images import resize_to
from ..request import GenerationRequest
from ..sampling import Pass
from .control import ActiveControl, ControlledDenoiser, ControlModels, control_tensor
from .inputs import EditInputs

#: The value a masked-out pixel gets in the picture an inpainting U-Net sees (0 in the VAE's [-1, 1] range).
_MASKED_GREY = 128


@dataclass
class PassPlan:
    plan: Pass
    denoiser: ControlledDenoiser | None = None  # wraps the family's network when control models are active

    @property
    def standard_only(self) -> bool:
        """Passes the compiled fast path cannot run (its compiled call has only the plain network's inputs)."""
        return self.denoiser is not None or self.plan.extra is not None


class EditJob:
    def __init__(self, model, request: GenerationRequest, inputs: EditInputs, control_models: ControlModels):
        import torch

        self.model = model
        self.request = request
        self.inputs = inputs
        family = model.family
        self.family = family
        self.source = family.encode_image(inputs.work) if inputs.edits else None
        self.keep = None
        self.extra = None
        if family.extra_input_channels > 0:
            # An inpainting U-Net always takes the mask and the masked picture; without a mask, all is masked.
            mask = inputs.work_mask if inputs.work_mask is not None else np.ones((request.height, request.width),
                                                                                  np.float32)
            binary = (mask >= 0.5).astype(np.float32)
            base = inputs.work if inputs.work is not None else np.zeros((request.height, request.width, 3), np.uint8)
            masked = np.where(binary[..., None] > 0, np.uint8(_MASKED_GREY), base).astype(np.uint8)
            with torch.inference_mode():
                self.extra = torch.cat([family.mask_to_latent(binary), family.encode_image(masked)], dim=1)
        elif inputs.work_mask is not None:
            self.keep = family.mask_to_latent(inputs.work_mask)
        self.nets = [control_models.get(c.model, family, model.device) for c in request.controls]
        hires = request.hires
        self.hires_size = hires.size(request.width, request.height) if hires else None
        self._hires_cond = None

    # -- step counts --------------------------------------------------------------------------------------------
    def _first(self) -> Pass:
        r = self.request
        if self.source is None:
            return Pass(r.height, r.width, r.steps, extra=self.extra)
        return Pass(r.height, r.width, r.steps, self.inputs.strength, self.source, self.keep, self.extra)

    def _hires_steps(self) -> int:
        return self.request.hires.steps or self.request.steps

    @property
    def steps_per_image(self) -> int:
        """Steps every image runs, over all its passes: what progress counts to."""
        total = self._first().runs
        if self.request.hires:
            total += img2img_start(self.request.hires.strength, self._hires_steps())[0]
        return total

    # -- passes -------------------------------------------------------------------------------------------------
    def _controls(self, width: int, height: int) -> ControlledDenoiser | None:
        if not self.nets:
            return None
        device = self.model.device
        active = [ActiveControl(net, control_tensor(self.inputs.control(i, width, height), device), c.weight,
                                c.start, c.end)
                  for i, (net, c) in enumerate(zip(self.nets, self.request.controls))]
        return ControlledDenoiser(self.family.denoiser, active)

    def _with(self, plan: Pass, width: int, height: int) -> PassPlan:
        denoiser = self._controls(width, height)
        if denoiser is not None:
            plan = replace(plan, before_model=denoiser.before_model)
        return PassPlan(replace(plan, step_total=self.steps_per_image), denoiser)

    def first(self) -> PassPlan:
        return self._with(self._first(), self.request.width, self.request.height)

    def hires(self, latents) -> PassPlan:
        """The second pass of the hires fix, starting from ``latents`` (the first pass's result) upscaled."""
        import torch

        width, height = self.hires_size
        hires = self.request.hires
        if hires.upscaler == "latent":
            f = self.family.latent_format.vae_scale_factor
            with torch.inference_mode():
                up = torch.nn.functional.interpolate(latents.float(), size=(height // f, width // f), mode="bilinear",
                                                     align_corners=False).to(latents.dtype)
        else:
            picture, _ = self.family.decode(latents)
            up = self.family.encode_image(resize_to(picture, width, height, "stretch"))
        done = self._first().runs
        plan = Pass(height, width, self._hires_steps(), hires.strength, up, step_offset=done)
        return self._with(plan, width, height)

    def hires_cond(self):
        """The prompt's conditioning at the hires size (SDXL's conditioning names the picture's size)."""
        if self._hires_cond is None:
            self._hires_cond = self.family.condition(self.request, self.hires_size)
        return self._hires_cond

    def finish(self, image: np.ndarray) -> np.ndarray:
        """The saved picture from the decoded one: pasted into the canvas (a hires-fixed picture is whole)."""
        return image if self.request.hires else self.inputs.finish(image)

    @property
    def notes(self) -> tuple[str, ...]:
        return self.inputs.notes


def strength_zero_image(inputs: EditInputs) -> np.ndarray:
    """Strength 0 runs no model: the saved picture is the source as the request lays it out, exactly."""
    return inputs.finish(inputs.work)
