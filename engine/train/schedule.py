"""The trainer's noise schedule and objective: the diffusers scheduler settings training uses and the export writes,
what the U-Net is taught to predict, and the min-SNR-γ loss weights. Pure functions of a
:class:`~engine.train.trainer.TrainConfig`; torch and diffusers are imported inside (training thread)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .trainer import TrainConfig


def schedule_config(cfg: TrainConfig) -> dict:
    """The noise schedule training uses, as diffusers scheduler settings."""
    return {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "prediction_type": cfg.prediction_type, "rescale_betas_zero_snr": cfg.zero_terminal_snr,
            "clip_sample": False, "steps_offset": 1}


def sampling_config(cfg: TrainConfig) -> dict:
    """The exported DDIM scheduler's settings: the training schedule, sampled from t = T when that step is pure
    noise (zero terminal SNR: "trailing" spacing), as SD samples otherwise ("leading")."""
    return {**schedule_config(cfg), "set_alpha_to_one": False,
            "timestep_spacing": "trailing" if cfg.zero_terminal_snr else "leading"}


def check_schedule(cfg: TrainConfig) -> None:
    """Refuse settings the trainer cannot learn from, before any time is spent. Raises DarkroomError."""
    from ..errors import DarkroomError

    if cfg.prediction_type not in ("epsilon", "v_prediction"):
        raise DarkroomError(f"--prediction-type must be epsilon or v_prediction, not {cfg.prediction_type!r}.")
    if cfg.zero_terminal_snr and cfg.prediction_type == "epsilon":
        raise DarkroomError("--zero-terminal-snr needs --prediction-type v_prediction: at zero signal the noise "
                            "is the whole input, so predicting it teaches the model nothing.")


def make_noise_scheduler(cfg: TrainConfig):
    from diffusers import DDPMScheduler

    return DDPMScheduler(**schedule_config(cfg))


def loss_weights(cfg: TrainConfig, abar):
    """Per-timestep loss weights (a tensor like ``abar``). Min-SNR-γ: min(SNR, γ)/SNR on the ε loss, and
    min(SNR, γ)/(SNR + 1) on the v loss, the same weight on x_0's error (Hang et al. 2023, eq. 10) and finite at
    SNR = 0. γ ≤ 0: every step weighs 1."""
    import torch

    snr = abar / (1 - abar)
    if cfg.min_snr_gamma <= 0:
        return torch.ones_like(snr)
    return snr.clamp(max=cfg.min_snr_gamma) / (snr + 1 if cfg.prediction_type == "v_prediction" else snr)


def target(cfg: TrainConfig, a, x0, eps):
    """What the U-Net should output for x_t = √a·x0 + √(1−a)·ε: ε, or v = √a·ε − √(1−a)·x0."""
    return a.sqrt() * eps - (1 - a).sqrt() * x0 if cfg.prediction_type == "v_prediction" else eps
