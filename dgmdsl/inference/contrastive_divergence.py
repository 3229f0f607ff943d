"""Persistent contrastive divergence: negatives from short-run chains kept in a replay buffer."""
from __future__ import annotations

from typing import Any

import torch

from ..families.energy import engine_options
from ..numerics.mcmc_samplers import ReplayBuffer, contrastive_divergence_loss, langevin, random_walk_mh
from .base import GradientEngine, TrainSettings

__all__ = ["ContrastiveDivergence", "SAMPLER_DEFAULTS"]

SAMPLER_DEFAULTS = {"langevin": {"steps": 60, "step_size": 0.01}, "mh": {"steps": 60, "proposal_scale": 0.1}}
BUFFER_DEFAULT = 10_000
FRESH_DEFAULT = 0.05   # fraction of chains restarted from noise each step (Du & Mordatch 2019)
L2_DEFAULT = 0.1       # squared-energy penalty that pins the free additive constant of E


class ContrastiveDivergence(GradientEngine):
    """`cd(sampler = langevin(steps, step_size) | mh(steps, proposal_scale), buffer, fresh, l2)`.

    Each step restarts `batch` chains from distinct buffer slots (a `fresh` fraction from
    uniform noise over the training data's range), runs the sampler, writes the chains back
    and descends mean E(data) - mean E(chains). `buffer = 0` means no persistence: every
    chain starts from noise. The buffer is engine state and is saved in checkpoints.
    """

    name = "cd"
    validates = False  # its loss compares data with the model's own chains, not a fit to data

    def __init__(self, model, settings: TrainSettings) -> None:
        super().__init__(model, settings)
        options = engine_options(model, settings.method_options)
        sampler = options.get("sampler", "langevin")
        sampler = {"name": sampler} if isinstance(sampler, str) else sampler
        self.sampler = {**SAMPLER_DEFAULTS[sampler["name"]], **sampler}
        capacity = int(options.get("buffer", BUFFER_DEFAULT))
        self.fresh = float(options.get("fresh", FRESH_DEFAULT)) if capacity else 1.0
        # sample() takes distinct slots, so the buffer holds at least one batch.
        self.capacity = max(capacity, settings.batch_size)
        self.l2 = float(options.get("l2", L2_DEFAULT))
        self.buffer: ReplayBuffer | None = None
        self.last_acceptance: torch.Tensor | None = None

    def _new_buffer(self, generator: torch.Generator | None = None) -> ReplayBuffer:
        # Created lazily: the data range is known only after the model's initialize().
        low, high = float(self.model.data_low.min()), float(self.model.data_high.max())
        return ReplayBuffer(self.capacity, (self.model.dim,), init="uniform", low=low, high=high,
                            device=self.model.device, dtype=self.model.data_loc.dtype, generator=generator)

    def negatives(self, x0: torch.Tensor) -> torch.Tensor:
        s = self.sampler
        if s["name"] == "langevin":
            return langevin(self.model.energy, x0, int(s["steps"]), float(s["step_size"]))
        x, rate = random_walk_mh(self.model.energy, x0, int(s["steps"]), float(s["proposal_scale"]))
        self.last_acceptance = torch.tensor(rate)
        return x

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.model.x(batch)
        if self.buffer is None:
            self.buffer = self._new_buffer()
        x0, slots = self.buffer.sample(len(x), self.fresh)
        x_model = self.negatives(x0)
        self.buffer.push(slots, x_model)
        return contrastive_divergence_loss(self.model.energy, x, x_model, self.l2)

    def train_step(self, batch: dict[str, torch.Tensor], step: int):
        loss = super().train_step(batch, step)
        if self.last_acceptance is None:
            return loss
        return {"loss": loss, "acceptance_rate": self.last_acceptance}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.buffer is not None:
            state["buffer"] = self.buffer.data
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "buffer" in state:
            # A private generator: restoring must not move the global random stream.
            self.capacity = len(state["buffer"])
            self.buffer = self._new_buffer(torch.Generator())
            self.buffer.data.copy_(state["buffer"].to(self.buffer.data))
