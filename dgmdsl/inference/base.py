"""The engine contract and the shared minibatch-gradient engine."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..runtime.loop import LoopConfig, run_loop

__all__ = ["TrainSettings", "Engine", "GradientEngine", "describe_optimizers", "make_optimizer",
           "per_process_batch"]


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
    lr_schedule: dict | str | None = None   # runtime/schedules.py; None: constant
    patience: int | None = None      # early stopping on the held-out split (runtime/early_stopping.py)
    validate_every: int | None = None  # steps between held-out checks; None: once an epoch
    quiet: bool = False
    checkpoint_every_s: float | None = 300.0
    metrics_every: int = 50
    precision: str = "fp32"          # fp32 | bf16 | fp16 (autocast; fp16 with loss scaling)
    compile: bool = False            # torch.compile the loss
    rank: int = 0                    # torch.distributed rank and world size (one process: 0, 1)
    world_size: int = 1


def make_optimizer(params, spec: tuple[str, dict]) -> torch.optim.Optimizer:
    name, options = spec
    # a spec's `beta1 = 0` arrives as an int, which torch's Adam refuses next to a float
    opts = {key: float(value) if isinstance(value, int) else value for key, value in options.items()}
    betas = (opts.pop("beta1", 0.9), opts.pop("beta2", 0.999))
    if name == "adam":
        return torch.optim.Adam(params, betas=betas, **opts)
    if name == "adamw":
        return torch.optim.AdamW(params, betas=betas, **opts)
    if name == "optimistic_adam":
        from ..numerics.optimistic_adam import OptimisticAdam
        return OptimisticAdam(params, betas=betas, **opts)
    if name == "sgd":
        return torch.optim.SGD(params, **opts)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, **opts)
    raise ValueError(f"unknown optimizer {name!r}")


def describe_optimizers(engine) -> dict[str, str]:
    """The optimizers an engine built, by attribute name, as `Adam(lr=0.001, betas=(0.0, 0.9))`:
    what the defaults resolved to, for the run's record (before a schedule moves the rate)."""
    described = {}
    for name, value in sorted(vars(engine).items()):
        if isinstance(value, torch.optim.Optimizer):
            group = value.param_groups[0]
            options = [f"lr={group['lr']:g}"] + [f"{key}={group[key]}" for key in ("betas", "momentum")
                                                 if group.get(key)]
            described[name] = f"{type(value).__name__}({', '.join(options)})"
    return described


def per_process_batch(s: TrainSettings) -> int:
    """Each process's share of the batch: --batch-size is the global batch."""
    if s.batch_size % s.world_size:
        from ..runtime.errors import RuntimeUserError
        raise RuntimeUserError(f"batch size {s.batch_size} does not split over {s.world_size} processes",
                               hint="--batch-size is the global batch: make it a multiple of --nproc")
    return s.batch_size // s.world_size


class Engine:
    """Trains a compiled model with one inference method. Subclasses register in ENGINES."""

    name = "base"
    # Whether a held-out loss measures fit, so that `patience` can select on it: not for
    # samplers (nuts, hmc) nor for games and moving targets (adversarial, cd, fce, distill).
    validates = False

    def __init__(self, model, settings: TrainSettings) -> None:
        self.model = model
        self.settings = settings
        self.heldout: dict[str, torch.Tensor] | None = None  # rows for `patience`, set by the runtime

    def fit(self, data: dict[str, torch.Tensor], run_dir, resume_state: dict | None, device) -> dict:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])


class _LossModule(nn.Module):
    """The engine's loss as a module's forward, so DistributedDataParallel can wrap it
    (DDP synchronises gradients of what runs inside its forward)."""

    def __init__(self, engine: "GradientEngine") -> None:
        super().__init__()
        self.model = engine.model
        self._loss = engine.loss

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._loss(batch)


_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


class GradientEngine(Engine):
    """Minibatch gradient descent on `loss(batch)` through the shared loop; optionally
    compiled, under autocast, and data-parallel over torch.distributed processes."""

    validates = True
    validation_needs_grad = False  # True where the loss differentiates itself (score matching)

    def __init__(self, model, settings: TrainSettings) -> None:
        super().__init__(model, settings)
        self.optimizer = make_optimizer(self.trainable_parameters(), settings.optimizer)
        self._objective = None  # built in fit: plain, compiled and/or DDP-wrapped loss
        self.scaler = None

    def trainable_parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def _build_objective(self, device: torch.device):
        s = self.settings
        objective = _LossModule(self)
        if s.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel
            ids = [device.index] if device.type == "cuda" else None
            objective = DistributedDataParallel(objective, device_ids=ids)
        if s.compile:
            objective = torch.compile(objective)
        if s.precision == "fp16":
            self.scaler = torch.amp.GradScaler(device.type)
        return objective

    def _autocast(self):
        dtype = _AUTOCAST.get(self.settings.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.model.device.type, dtype=dtype)

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        objective = self._objective if self._objective is not None else self.loss
        with self._autocast():
            return objective(batch).float()

    def train_step(self, batch: dict[str, torch.Tensor], step: int):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.compute_loss(batch)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.trainable_parameters(), self.settings.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return self.reported(loss.detach())

    def validation_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss on held-out rows (the loop has put the model in eval mode), with
        no optimizer step; the plain loss, not the compiled or DDP-wrapped one, and without
        building a graph unless the loss needs one."""
        with torch.set_grad_enabled(self.validation_needs_grad), self._autocast():
            return self.loss(batch).detach().float()

    def reported(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss to log: across processes, the mean over the global batch."""
        if self.settings.world_size > 1:
            import torch.distributed as dist
            loss = loss.clone()
            dist.all_reduce(loss)
            loss /= self.settings.world_size
        return loss

    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state and self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])

    def loop_config(self) -> LoopConfig:
        s = self.settings
        return LoopConfig(epochs=s.epochs, max_steps=s.max_steps, batch_size=per_process_batch(s),
                          seed=s.seed, quiet=s.quiet, checkpoint_every_s=s.checkpoint_every_s,
                          metrics_every=s.metrics_every, rank=s.rank, world_size=s.world_size,
                          lr_schedule=s.lr_schedule, patience=s.patience, validate_every=s.validate_every)

    def fit(self, data, run_dir, resume_state, device) -> dict:
        config = self.loop_config()
        self._objective = self._build_objective(device)  # before the loop restores the scaler
        self.model.train()
        result = run_loop(self, data, config, run_dir, resume_state=resume_state, device=device,
                          validation=self.heldout)
        self.model.eval()
        out = {"steps": result.steps, "epochs": round(result.epochs_done, 3), "final_loss": result.final_loss,
               "stopped_by": result.stopped_by, "elapsed_s": round(result.elapsed_s, 2),
               "checkpoint": str(result.checkpoint) if result.checkpoint else None}
        if config.patience is not None:
            out.update(best_step=result.best_step, best_valid_loss=result.best_valid_loss)
        return out
