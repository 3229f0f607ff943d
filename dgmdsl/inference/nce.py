"""Noise- and flow-contrastive estimation: logistic classification of data against noise,
with log Z a learned parameter of the model (`model.log_z`)."""
from __future__ import annotations

from typing import Any

import torch

from ..families.distributions import TORCH_DISTRIBUTIONS
from ..families.energy import engine_options
from ..numerics.contrastive import fce_loss, nce_loss
from .base import GradientEngine, TrainSettings, make_optimizer

__all__ = ["NCE", "FCE", "NOISE_WIDTH"]

NOISE_WIDTH = 2.0  # without a `noise` option: N(data mean, (NOISE_WIDTH * data std)^2) per dimension


class NCE(GradientEngine):
    """`nce(noise = <distribution>, ratio = nu)`: nu noise draws per data point."""

    name = "nce"

    def __init__(self, model, settings: TrainSettings) -> None:
        super().__init__(model, settings)
        options = engine_options(model, settings.method_options)
        self.noise_options = options.get("noise")
        self.ratio = int(options.get("ratio", 1))
        self._noise: tuple[torch.device, torch.distributions.Distribution] | None = None
        self.last_accuracy: torch.Tensor | None = None

    def noise(self, like: torch.Tensor) -> torch.distributions.Distribution:
        """The noise distribution with parameters on `like`'s device (built once per device)."""
        if self._noise is None or self._noise[0] != like.device:
            self._noise = (like.device, self._build_noise(like))
        return self._noise[1]

    def _build_noise(self, like: torch.Tensor) -> torch.distributions.Distribution:
        if self.noise_options is None:
            loc, scale = self.model.data_loc, NOISE_WIDTH * self.model.data_scale
            return torch.distributions.Normal(loc.to(like), scale.to(like))
        options = dict(self.noise_options)
        ctor = TORCH_DISTRIBUTIONS[options.pop("name")][0]
        return ctor(**{k: torch.as_tensor(v, dtype=like.dtype, device=like.device) for k, v in options.items()})

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.model.x(batch)
        loss, self.last_accuracy = nce_loss(self.model.energy, self.model.log_z, x, self.noise(x), self.ratio)
        return loss

    def train_step(self, batch: dict[str, torch.Tensor], step: int):
        loss = super().train_step(batch, step)
        return {"loss": loss, "accuracy": self.last_accuracy, "log_z": self.model.log_z.detach().clone()}


class FCE(GradientEngine):
    """`fce(noise = f)`: the declared flow f is the noise and is trained against the energy
    on the same value function (Gao et al. 2020); both take one step per batch."""

    name = "fce"
    validates = False  # the noise flow moves with training: losses at two checks do not compare

    def __init__(self, model, settings: TrainSettings) -> None:
        super().__init__(model, settings)
        self.ratio = int(engine_options(model, settings.method_options).get("ratio", 1))
        self.flow_parameters = list(model.noise_flow.parameters())
        self.flow_optimizer = make_optimizer(self.flow_parameters, settings.critic_optimizer or settings.optimizer)

    def trainable_parameters(self):
        """The energy's parameters and log Z; the flow has its own optimizer."""
        flow = {id(p) for p in self.model.noise_flow.parameters()}
        return [p for p in self.model.parameters() if p.requires_grad and id(p) not in flow]

    def train_step(self, batch: dict[str, torch.Tensor], step: int):
        model, flow = self.model, self.model.noise_flow
        energy_loss, flow_loss, accuracy = fce_loss(model.energy, model.log_z, model.x(batch), flow.log_prob,
                                                    flow.sample, self.ratio)
        # Each loss is differentiated only for its own player (flow_loss also reaches the energy).
        energy_params = self.trainable_parameters()
        energy_grads = torch.autograd.grad(energy_loss, energy_params, retain_graph=True, allow_unused=True)
        flow_grads = torch.autograd.grad(flow_loss, self.flow_parameters, allow_unused=True)
        for optimizer, params, grads in ((self.optimizer, energy_params, energy_grads),
                                         (self.flow_optimizer, self.flow_parameters, flow_grads)):
            for p, g in zip(params, grads):
                p.grad = g
            if self.settings.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, self.settings.grad_clip)
            optimizer.step()
        return {"loss": energy_loss.detach(), "flow_loss": flow_loss.detach(), "accuracy": accuracy,
                "log_z": model.log_z.detach().clone()}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "flow_optimizer": self.flow_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "flow_optimizer" in state:
            self.flow_optimizer.load_state_dict(state["flow_optimizer"])
