"""The one sampler table: a row per sampler, and every other mapping derived from it.

A row says how to build the sampler (a diffusers scheduler class with overrides on top of the model's own
scheduler config), how its latents are held (k-diffusion style ``x = x0 + σ·ε`` or ``x_t = √ᾱ·x0 + √(1−ᾱ)·ε``),
whether its step draws noise, what AUTOMATIC1111 calls it (``Sampler`` and ``Schedule type``), and the names
other tools use for it (ComfyUI, InvokeAI, older A1111). Adding a sampler is adding a row.

Darkroom's names are A1111's older combined names ("DPM++ 2M Karras"). A1111 1.9 and later split them into
``Sampler`` and ``Schedule type``; in those versions "Automatic" means the sampler's own default schedule, which
for "DPM++ 2M" is Karras, so plain "DPM++ 2M" is written with the explicit schedule "Uniform".

Pure data and string handling: safe on any thread; diffusers is imported only when a scheduler is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Sampler:
    name: str  # what people see and what a request stores
    class_name: str  # diffusers scheduler class
    overrides: Mapping[str, Any] = field(default_factory=dict)
    sigma_space: bool = False  # latents held as x = x0 + σ·ε (k-diffusion style)
    noise_free: bool = False  # the step draws no noise, so it needs no generator
    a1111: str = ""  # A1111 ``Sampler`` value ("" → the name)
    schedule: str = "Automatic"  # A1111 ``Schedule type`` written for this sampler
    a1111_default: bool = False  # what A1111 1.9+ runs for ``a1111`` with schedule "Automatic"
    exact: tuple[str, ...] = ()  # other tools' names for exactly this sampler, schedule included
    base: tuple[str, ...] = ()  # other tools' names for the sampler family, schedule given separately

    @property
    def a1111_name(self) -> str:
        return self.a1111 or self.name

    def make(self, base_config: Mapping[str, Any]):
        """A fresh diffusers scheduler (schedulers hold per-run state, so every image gets its own)."""
        import diffusers

        cls = getattr(diffusers, self.class_name)
        config = {k: v for k, v in dict(base_config).items() if k not in _MODEL_ONLY_KEYS}
        config.update(self.overrides)
        return cls.from_config(config)


# Keys that only make sense for the scheduler the model shipped with and break others.
_MODEL_ONLY_KEYS = frozenset({
    "_class_name", "_diffusers_version", "skip_prk_steps", "set_alpha_to_one", "algorithm_type", "solver_order",
    "use_karras_sigmas", "clip_sample", "solver_type", "lower_order_final", "thresholding",
})

_DPM = {"algorithm_type": "dpmsolver++", "solver_order": 2}

SAMPLERS: tuple[Sampler, ...] = (
    Sampler("Euler", "EulerDiscreteScheduler", sigma_space=True, noise_free=True, base=("euler", "k_euler")),
    Sampler("Euler a", "EulerAncestralDiscreteScheduler", sigma_space=True,
            base=("euler_a", "k_euler_a", "euler_ancestral", "k_euler_ancestral", "euler ancestral")),
    Sampler("Heun", "HeunDiscreteScheduler", sigma_space=True, noise_free=True, base=("heun", "k_heun")),
    Sampler("DPM++ 2M", "DPMSolverMultistepScheduler", _DPM, noise_free=True, schedule="Uniform",
            base=("dpmpp_2m", "k_dpmpp_2m")),
    Sampler("DPM++ 2M Karras", "DPMSolverMultistepScheduler", {**_DPM, "use_karras_sigmas": True},
            noise_free=True, a1111="DPM++ 2M", schedule="Karras", a1111_default=True,
            exact=("k_dpmpp_2m_ka", "dpmpp_2m_k")),
    Sampler("DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler",
            {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
            a1111="DPM++ 2M SDE", schedule="Karras", exact=("dpmpp_2m_sde_k",),
            base=("dpmpp_2m_sde", "dpmpp_2m_sde_gpu")),
    Sampler("DDIM", "DDIMScheduler", {"clip_sample": False}, noise_free=True, base=("ddim",)),
    Sampler("DDPM", "DDPMScheduler", {"clip_sample": False}, base=("ddpm",)),
    Sampler("UniPC", "UniPCMultistepScheduler", noise_free=True, base=("unipc", "uni_pc", "uni_pc_bh2")),
    Sampler("LCM", "LCMScheduler", {"clip_sample": False}, base=("lcm",)),
)

SAMPLER_NAMES: tuple[str, ...] = tuple(s.name for s in SAMPLERS)
DEFAULT_SAMPLER = "DPM++ 2M"

_BY_NAME = {s.name: s for s in SAMPLERS}
_EXACT = {alias.lower(): s for s in SAMPLERS for alias in (s.name, *s.exact)}
_GROUPS: dict[str, list[Sampler]] = {}
for _s in SAMPLERS:
    _GROUPS.setdefault(_s.a1111_name.lower(), []).append(_s)
_BASE = {alias.lower(): _GROUPS[s.a1111_name.lower()] for s in SAMPLERS for alias in (s.a1111_name, *s.base)}

# Schedules that leave a sampler as it is ("Automatic" is resolved per sampler).
_PLAIN_SCHEDULES = frozenset({"", "automatic", "uniform", "normal", "simple", "sgm uniform", "ddim", "ddim_uniform"})


def get(name: str) -> Sampler:
    """The row of a Darkroom sampler name. Raises KeyError for names not in the table."""
    return _BY_NAME[name]


def from_a1111(sampler: Any, schedule: str | None) -> tuple[str | None, str | None]:
    """A1111's ``Sampler`` and ``Schedule type`` (or another tool's sampler name) as a Darkroom sampler.

    Returns ``(name, warning)``: ``name`` is None when Darkroom has nothing close; ``warning`` says in plain words
    when the result is only the nearest Darkroom has. ``schedule`` None means the field was absent (A1111 before
    1.9, where the schedule was part of the sampler name).
    """
    if not isinstance(sampler, str) or not sampler.strip():
        return None, None
    raw = sampler.strip()
    sched = (schedule or "").strip()
    sched_l = sched.lower()
    exact = _EXACT.get(raw.lower())
    if exact is not None and (exact.schedule == "Karras" or raw.lower() not in _BASE):
        if sched_l in ("", "automatic", exact.schedule.lower()) or (exact.schedule != "Karras" and sched_l in _PLAIN_SCHEDULES):
            return exact.name, None
        return exact.name, f"Schedule type {sched[:40]!r} is not available for {raw[:40]}; using {exact.name}."
    group = _BASE.get(raw.lower())
    if group is None:
        return None, f"Sampler {raw[:60]!r} is not available in Darkroom; the current sampler is kept."
    karras = next((s for s in group if s.schedule == "Karras"), None)
    plain = next((s for s in group if s.schedule != "Karras"), None)
    if sched_l == "karras":
        if karras is not None:
            return karras.name, None
        return plain.name, f"Schedule type {sched[:40]!r} is not available for {raw[:40]}; using {plain.name}."
    if schedule is not None and sched_l == "automatic":
        chosen = next((s for s in group if s.a1111_default), plain)
        if chosen is not None:
            return chosen.name, None
    if plain is None:
        return karras.name, (
            f"{raw[:40]} with schedule {sched[:40] or 'Automatic'!r} is not available; using {karras.name}."
        )
    if sched_l in _PLAIN_SCHEDULES:
        return plain.name, None
    return plain.name, f"Schedule type {sched[:40]!r} is not available for {raw[:40]}; using {plain.name} with its own schedule."


def from_alias(text: Any) -> str | None:
    """Another tool's single sampler name ("dpmpp_2m_k", "k_euler_a", "DPM++ 2M Karras") as a Darkroom name."""
    return from_a1111(text, None)[0]


@dataclass(frozen=True)
class FlowSampler:
    """How a sampler runs on a flow-matching model (SD3, Flux), whose time is σ ∈ [0, 1] with
    ``x_t = (1−σ)·x0 + σ·ε``: a flow scheduler class, its overrides, and where the schedule's shift goes.

    ``own_config``: the class is one of diffusers' FlowMatch schedulers and builds on the model's own scheduler
    config (what its pipeline runs), with the shift fixed for the image. ``note``: set when this is only the
    nearest flow sampler, said in plain words."""

    class_name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    shift_key: str = "shift"
    own_config: bool = False
    note: str = ""

    def make(self, base_config: Mapping[str, Any], shift: float):
        """A fresh scheduler with the schedule's ``shift`` (σ' = shift·σ / (1 + (shift − 1)·σ)) fixed."""
        import diffusers

        cls = getattr(diffusers, self.class_name)
        if self.own_config:
            config = {k: v for k, v in dict(base_config).items() if not k.startswith("_")}
            config["use_dynamic_shifting"] = False
        else:
            config = {"num_train_timesteps": base_config.get("num_train_timesteps", 1000)}
        config[self.shift_key] = shift
        config.update(self.overrides)
        return cls.from_config(config)


_FLOW_EULER = FlowSampler("FlowMatchEulerDiscreteScheduler", own_config=True)
_FLOW_EULER_A = FlowSampler("FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": True}, own_config=True)
_FLOW_DPM = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}
_KARRAS_NOTE = "The Karras schedule is for noise-predicting models; on {title} models {name} keeps the model's schedule."

#: Every sampler of :data:`SAMPLERS` on flow-matching models: the same method where diffusers has a flow version,
#: else the nearest, with a note. A noise-free sampler never maps to one that draws noise (its request holds no
#: generator).
FLOW_SAMPLERS: Mapping[str, FlowSampler] = {
    "Euler": _FLOW_EULER,
    "Euler a": _FLOW_EULER_A,
    "Heun": FlowSampler("FlowMatchHeunDiscreteScheduler"),
    "DPM++ 2M": FlowSampler("DPMSolverMultistepScheduler", {**_DPM, **_FLOW_DPM}, shift_key="flow_shift"),
    "DPM++ 2M Karras": FlowSampler("DPMSolverMultistepScheduler", {**_DPM, **_FLOW_DPM}, shift_key="flow_shift",
                                   note=_KARRAS_NOTE),
    "DPM++ 2M SDE Karras": FlowSampler(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, **_FLOW_DPM},
        shift_key="flow_shift", note=_KARRAS_NOTE),
    # DDIM's deterministic update on x_t = (1−σ)·x0 + σ·ε is exactly Euler's step.
    "DDIM": FlowSampler("FlowMatchEulerDiscreteScheduler", own_config=True,
                        note="On {title} models DDIM takes the same steps as Euler, which runs instead."),
    "DDPM": FlowSampler("FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": True}, own_config=True,
                        note="{title} models have no DDPM sampler; the nearest, Euler a, runs instead."),
    "UniPC": FlowSampler("UniPCMultistepScheduler", _FLOW_DPM, shift_key="flow_shift"),
    "LCM": FlowSampler("FlowMatchLCMScheduler", own_config=True),
}


def for_flow(name: str) -> FlowSampler:
    """The flow-matching form of the Darkroom sampler ``name``. Raises KeyError for names not in the table."""
    return FLOW_SAMPLERS[get(name).name]
