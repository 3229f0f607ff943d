"""Maximum likelihood on an exact log-density (fully observed models, flows, chain rule)."""
from __future__ import annotations

import torch

from .base import GradientEngine

__all__ = ["ExactNLL"]


class ExactNLL(GradientEngine):
    name = "exact_nll"

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return -self.model.log_prob(batch).mean()
