"""The engine contract and the shared minibatch-gradient engine."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..runtime.loop import LoopConfig, run_loop

__all__ = ["TrainSettings", "Engine", "GradientEngine", "make_optimizer"]


@dataclass
class TrainSettings:
    """Resolved training options: command line over the spec's fit block over defaults."""

    epochs: int | None = None
    max_steps: int | None = None
    batch_size: int = 128
    seed: int = 0
    optimizer: tuple[str, dict] = ("adam", {"lr": 1e-3})
    critic_optimizer: tuple[str, dict] | None = None
    method_options: dict = field(default_factory=dict)
    grad_clip: float | None = None
    quiet: bool = False
    checkpoint_every_s: float | None = 300.0
    metrics_every: int = 50


def make_optimizer(params, spec: tuple[str, dict]) -> torch.optim.Optimizer:
    name, options = spec
    opts = dict(options)
    betas = (opts.pop("beta1", 0.9), opts.pop("beta2", 0.999))
    if name == "adam":
        return torch.optim.Adam(params, betas=betas, **opts)
    if name == "adamw":
        return torch.optim.AdamW(params, betas=betas, **opts)
    if name == "sgd":
        return torch.optim.SGD(params, **opts)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, **opts)
    raise ValueError(f"unknown optimizer {name!r}")


class Engine:
    """Trains a compiled model with one inference method. Subclasses register in ENGINES."""

    name = "base"

    def __init__(self, model, settings: TrainSettings) -> None:
        self.model = model
        self.settings = settings

    def fit(self, data: dict[str, torch.Tensor], run_dir, resume_state: dict | None, device) -> dict:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])


class GradientEngine(Engine):
    """Minibatch gradient descent on `loss(batch)` through the shared loop."""

    def __init__(self, model, settings: TrainSettings) -> None:
        super().__init__(model, settings)
        self.optimizer = make_optimizer(self.trainable_parameters(), settings.optimizer)

    def trainable_parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def train_step(self, batch: dict[str, torch.Tensor], step: int):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(batch)
        loss.backward()
        if self.settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.trainable_parameters(), self.settings.grad_clip)
        self.optimizer.step()
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])

    def fit(self, data, run_dir, resume_state, device) -> dict:
        s = self.settings
        config = LoopConfig(epochs=s.epochs, max_steps=s.max_steps, batch_size=s.batch_size, seed=s.seed,
                            quiet=s.quiet, checkpoint_every_s=s.checkpoint_every_s, metrics_every=s.metrics_every)
        self.model.train()
        result = run_loop(self, data, config, run_dir, resume_state=resume_state, device=device)
        self.model.eval()
        return {"steps": result.steps, "epochs": round(result.epochs_done, 3), "final_loss": result.final_loss,
                "stopped_by": result.stopped_by, "elapsed_s": round(result.elapsed_s, 2),
                "checkpoint": str(result.checkpoint) if result.checkpoint else None}
