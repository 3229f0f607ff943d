"""VQ-VAE training: `vq(commitment, codebook = ema(decay) | loss)`.

Per example: reconstruction NLL + commitment * |z_e - sg(e)|^2, plus |sg(z_e) - e|^2 with
`codebook = loss`; with `codebook = ema(decay)` the codebook instead moves to the running
mean of its assigned encodings after each step (the model owns that update, since it owns
the codebook's running statistics). The KL to the uniform prior is a constant and dropped.
"""
from __future__ import annotations

import torch

from .base import GradientEngine
from .svi import distribution_validation, method_option

__all__ = ["VQ", "DEFAULT_COMMITMENT"]

DEFAULT_COMMITMENT = 0.25


class VQ(GradientEngine):
    name = "vq"

    def __init__(self, model, settings) -> None:
        super().__init__(model, settings)
        commitment = method_option(model, settings, "commitment")
        self.commitment = float(DEFAULT_COMMITMENT if commitment is None else commitment)

    def fit(self, data, run_dir, resume_state, device) -> dict:
        with distribution_validation(False):
            return super().fit(data, run_dir, resume_state, device)

    def step_terms(self, batch: dict[str, torch.Tensor]):
        """(loss, terms): the minimized per-example mean and the model's per-example terms."""
        terms = self.model.vq_terms(batch)
        loss = terms.reconstruction + self.commitment * terms.commitment
        if self.model.ema_decay is None:
            loss = loss + terms.codebook
        return loss.mean(), terms

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.step_terms(batch)[0]

    def train_step(self, batch: dict[str, torch.Tensor], step: int):
        self.optimizer.zero_grad(set_to_none=True)
        loss, terms = self.step_terms(batch)
        loss.backward()
        if self.settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.trainable_parameters(), self.settings.grad_clip)
        self.optimizer.step()
        if self.model.ema_decay is not None:
            self.model.ema_update(terms.encodings, terms.codes, self.model.ema_decay)
        return {"loss": loss.detach(), "reconstruction": terms.reconstruction.detach().mean()}
