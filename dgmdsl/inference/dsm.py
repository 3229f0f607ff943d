"""Denoising score matching: the loss is the model's own `dsm_loss(batch, options)`.

Every family trained by dsm implements it (energy models at one noise level `sigma`;
NCSN over its noise levels; SDE diffusion with `weighting`; DDPM's simple loss). A model
that keeps an EMA of its weights (`fit { ema = decay }`) updates it after each step.
"""
from __future__ import annotations

import torch

from .base import GradientEngine, TrainSettings

__all__ = ["DenoisingScoreMatching"]


class DenoisingScoreMatching(GradientEngine):
    name = "dsm"

    def __init__(self, model, settings: TrainSettings) -> None:
        super().__init__(model, settings)
        # resolved once: no per-step lookups for models without an EMA
        self.update_ema = model.update_ema if getattr(model, "ema_decay", None) is not None else None
        # an energy's score is its input gradient; score and noise nets output theirs
        self.validation_needs_grad = model.family == "energy"

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.dsm_loss(batch, self.settings.method_options)

    def train_step(self, batch: dict[str, torch.Tensor], step: int):
        loss = super().train_step(batch, step)
        if self.update_ema is not None:
            self.update_ema()
        return loss
