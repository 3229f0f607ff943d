"""Score matching for energy-based models: Z never appears (LANGUAGE.md §7, rule 3)."""
from __future__ import annotations

import torch

from ..families.energy import engine_options
from ..numerics.score_matching import exact_score_matching_loss, sliced_score_matching_loss
from .base import GradientEngine, TrainSettings

__all__ = ["ExactScoreMatching", "SlicedScoreMatching"]


class ExactScoreMatching(GradientEngine):
    """Hyvarinen's objective with the exact Hessian trace (one extra backward per dimension)."""

    name = "exact_sm"
    validation_needs_grad = True  # the loss takes input gradients of the energy

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return exact_score_matching_loss(self.model.energy, self.model.x(batch))


class SlicedScoreMatching(GradientEngine):
    """Sliced score matching with `projections` Rademacher directions per example (SSM-VR)."""

    name = "ssm"
    validation_needs_grad = True

    def __init__(self, model, settings: TrainSettings) -> None:
        super().__init__(model, settings)
        self.projections = int(engine_options(model, settings.method_options).get("projections", 1))

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return sliced_score_matching_loss(self.model.energy, self.model.x(batch), self.projections)
