"""The generic minibatch training loop shared by gradient-based inference engines.

Design notes:
* Data order depends only on ``(seed, epoch)`` and the global step, so a
  resumed run visits exactly the batches an uninterrupted one would.
* Per-step losses stay on the device and are read back in groups (one
  host-device sync per group), so the loop does not stall a GPU every step;
  the group is always read (and checked to be finite) before a checkpoint.
* Checkpoints are written at the end, on a stop request and every
  ``checkpoint_every_s`` seconds, never per step.
* With ``patience`` the run is checked on held-out rows every ``validate_every``
  steps and stops when they stop improving (runtime/early_stopping.py); without it
  the loop pays one ``is None`` test a step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from dgmdsl.runtime.batches import EpochBatches
from dgmdsl.runtime.checkpoint import capture_rng_state, load_trainable_state, restore_rng_state, save_checkpoint
from dgmdsl.runtime.early_stopping import EarlyStopping, early_stopping_for_loop
from dgmdsl.runtime.errors import RuntimeUserError
from dgmdsl.runtime.progress import Progress
from dgmdsl.runtime.rundir import RunDir
from dgmdsl.runtime.schedules import LearningRateSchedule
from dgmdsl.runtime.steplog import LoopState, StepLog
from dgmdsl.runtime.stopping import NonFiniteLoss, StopRequest

__all__ = ["LoopConfig", "LoopResult", "Trainable", "run_loop", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = 1

StepOutput = torch.Tensor | dict[str, torch.Tensor]
OnStep = Callable[[int, StepOutput], None]


@dataclass
class LoopConfig:
    """How long and how to train; ``epochs``/``max_steps`` bound the run (first reached)."""

    epochs: int | None
    max_steps: int | None
    batch_size: int
    seed: int
    metrics_every: int = 50
    checkpoint_every_s: float | None = 300.0  # None: only at the end and on stop; 0: every step
    quiet: bool = False
    drop_last: bool = False
    log_every_s: float = 10.0
    rank: int = 0  # distributed rank; only rank 0 logs and checkpoints
    world_size: int = 1
    lr_schedule: dict | str | None = None  # see runtime/schedules.py
    patience: int | None = None  # held-out checks without improvement before stopping
    validate_every: int | None = None  # steps between checks; None: once an epoch

    def __post_init__(self) -> None:
        _require_positive("batch_size", self.batch_size)
        _require_positive("metrics_every", self.metrics_every)
        for name in ("patience", "validate_every"):
            if getattr(self, name) is not None:
                _require_positive(name, getattr(self, name))
        if self.epochs is not None:
            _require_positive("epochs", self.epochs)
        if self.max_steps is not None:
            _require_positive("max_steps", self.max_steps)
        if self.checkpoint_every_s is not None and self.checkpoint_every_s < 0:
            raise RuntimeUserError(f"checkpoint_every_s must be >= 0, got {self.checkpoint_every_s}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world size {self.world_size}")


def _require_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RuntimeUserError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class LoopResult:
    """What a call to :func:`run_loop` did (counts include resumed segments)."""

    steps: int
    epochs_done: float
    final_loss: float  # last finite loss; nan if no step ran
    stopped_by: str | None  # "SIGINT"/"SIGTERM"/"patience" when stopped early, else None
    elapsed_s: float
    checkpoint: Path | None
    best_step: int | None = None  # with patience: the step of the weights the model holds
    best_valid_loss: float | None = None


class Trainable(Protocol):
    """What an inference engine hands to the loop."""

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> StepOutput:
        """Take optimizer step number ``step`` (from 1); return the 0-dim loss, or a
        dict with ``"loss"`` and other scalar metrics (tensors or floats).

        Returned tensors are read back a few steps later (not synced each step):
        return detached metrics and do not modify them in place afterwards.
        """
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: modules, optimizers, engine state."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    # With `patience`, also: `model`, the torch module whose state is the weights kept
    # and restored, and `validation_loss(batch)`, a 0-dim held-out loss (no optimizer step).


def run_loop(
    trainable: Trainable,
    data: Mapping[str, torch.Tensor],
    config: LoopConfig,
    run_dir: RunDir | None,
    *,
    resume_state: dict[str, Any] | None = None,
    device: torch.device,
    on_step: OnStep | None = None,
    validation: Mapping[str, torch.Tensor] | None = None,
) -> LoopResult:
    """Train ``trainable`` on minibatches of ``data`` until the configured bound.

    The caller seeds the global torch RNG before building the model; with
    ``resume_state`` (a loaded checkpoint) the trainable, the RNG and the loop
    position are restored so that the run continues bit for bit. On SIGINT or
    SIGTERM it stops after the current step and checkpoints; on a non-finite
    loss it raises :class:`NonFiniteLoss` without saving the bad state.
    ``on_step(step, output)`` receives the raw ``train_step`` output (unsynced).
    ``validation`` holds the held-out rows that ``config.patience`` needs.
    """
    batches = EpochBatches(
        data,
        batch_size=config.batch_size,
        seed=config.seed,
        drop_last=config.drop_last,
        device=device,
        rank=config.rank,
        world_size=config.world_size,
    )
    total = _total_steps(config, batches.batches_per_epoch)
    layout = _layout(config, batches)
    main_run_dir = run_dir if config.rank == 0 else None
    state = LoopState() if resume_state is None else _resume(trainable, resume_state, layout)
    if main_run_dir is not None and resume_state is not None:
        main_run_dir.truncate_metrics(state.step)
    early_stopping = None
    if config.patience is not None:
        early_stopping = early_stopping_for_loop(trainable, validation, config, batches.batches_per_epoch,
                                                 device, resume_state)
    if state.step >= total or (early_stopping is not None and early_stopping.stopped):
        stopped_by = "patience" if early_stopping is not None and early_stopping.stopped else None
        return _result(state, batches, stopped_by, _existing_checkpoint(main_run_dir), early_stopping)
    session = _Session(trainable, batches, config, main_run_dir, layout, state, early_stopping)
    try:
        with StopRequest() as stop, Progress(
            total,
            initial=state.step,
            quiet=config.quiet,
            log_every_s=config.log_every_s,
            enabled=config.rank == 0,
        ) as progress:
            stopped_by = session.train(total, stop, progress, on_step)
    finally:
        if main_run_dir is not None:
            main_run_dir.flush()
    return _result(state, batches, stopped_by, session.checkpoint_path, early_stopping)


class _Session:
    """One process's share of a run: the step loop and checkpoint writing."""

    def __init__(
        self,
        trainable: Trainable,
        batches: EpochBatches,
        config: LoopConfig,
        run_dir: RunDir | None,
        layout: dict[str, Any],
        state: LoopState,
        early_stopping: EarlyStopping | None,
    ) -> None:
        self.trainable = trainable
        self.early_stopping = early_stopping
        self.batches = batches
        self.run_dir = run_dir
        self.layout = layout
        self.state = state
        self.checkpoint_every_s = config.checkpoint_every_s
        self.world_size = config.world_size  # throughput counts the global batch
        self.lr_schedule = config.lr_schedule
        self.checkpoint_path: Path | None = _existing_checkpoint(run_dir)
        sink = run_dir.append_metrics if run_dir is not None else None
        self.log = StepLog(
            state,
            metrics_every=config.metrics_every,
            batches_per_epoch=batches.batches_per_epoch,
            emit=sink,
            describe_checkpoint=lambda: self.checkpoint_path,
        )

    def train(
        self, total: int, stop: StopRequest, progress: Progress, on_step: OnStep | None
    ) -> str | None:
        """Run steps up to ``total``; return the signal name or "patience" if stopped early."""
        trainable, batches, log, early_stopping = self.trainable, self.batches, self.log, self.early_stopping
        per_epoch = batches.batches_per_epoch
        step = self.state.step
        epoch, position = divmod(step, per_epoch)
        order = batches.order(epoch)
        next_checkpoint = self._next_checkpoint_time(time.monotonic())
        schedule = LearningRateSchedule(self.lr_schedule, total, trainable)
        set_rate = schedule.apply if schedule.active else None
        while step < total:
            if position == per_epoch:
                epoch, position = epoch + 1, 0
                order = batches.order(epoch)
            batch, n_samples = batches.batch(order, position)
            n_samples *= self.world_size
            step, position = step + 1, position + 1
            if set_rate is not None:
                set_rate(step)
            output = trainable.train_step(batch, step)
            now = log.record(output, n_samples)
            if on_step is not None:
                on_step(step, output)
            if log.drain_due(now):
                self._drain(progress)
            if early_stopping is not None and early_stopping.due(step, total):
                self._validate(progress)
                if early_stopping.stopped:
                    break
            if stop.requested:
                break
            if now >= next_checkpoint:
                self._drain(progress)
                self._save()
                next_checkpoint = self._next_checkpoint_time(time.monotonic())
        self._drain(progress)
        stopped_by_patience = early_stopping is not None and early_stopping.stopped
        finished = step >= total or stopped_by_patience  # a signal during the last step changes nothing
        if finished:
            log.finish_interval()
            if early_stopping is not None:
                early_stopping.restore_best()  # so the final checkpoint holds the best weights
        self.state.elapsed_s = log.elapsed()
        self._save()
        if stopped_by_patience:
            return "patience"
        return None if finished else stop.signal_name

    def _validate(self, progress: Progress) -> None:
        # Drained first: the check follows only finite-loss steps, and the metrics file
        # stays in step order (training records up to this step, then this one).
        self._drain(progress)
        step = self.state.step
        loss = self.early_stopping.check(step)
        if self.run_dir is not None:
            epoch = round(step / self.batches.batches_per_epoch, 4)
            self.run_dir.append_metrics([{"step": step, "epoch": epoch, "valid_loss": loss}])

    def _drain(self, progress: Progress) -> None:
        summary = self.log.drain()
        if summary is not None:
            progress.update(*summary)

    def _next_checkpoint_time(self, now: float) -> float:
        every = self.checkpoint_every_s
        return math.inf if every is None or self.run_dir is None else now + every

    def _save(self) -> None:
        """Checkpoint the drained (hence finite-loss) state, if it is finite too."""
        if self.run_dir is None:
            return
        self.state.elapsed_s = self.log.elapsed()
        trainable_state = self.trainable.state_dict()
        if not _all_finite(trainable_state):
            raise NonFiniteLoss(
                self.state.step, self.state.last_finite_loss, self.checkpoint_path, what="parameters"
            )
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "step": self.state.step,
            "trainable": trainable_state,
            "loop": {**self.layout, **self.state.to_dict(), **self._position()},
            "rng": capture_rng_state(),
        }
        if self.early_stopping is not None:
            checkpoint["early_stopping"] = self.early_stopping.state_dict()
        self.run_dir.flush()
        save_checkpoint(self.run_dir.checkpoint_path, checkpoint)
        self.checkpoint_path = self.run_dir.checkpoint_path

    def _position(self) -> dict[str, int]:
        """Epoch and batch within it, for people reading a checkpoint (derivable from step)."""
        epoch, position = divmod(self.state.step, self.batches.batches_per_epoch)
        return {"epoch": epoch, "position": position}


def _total_steps(config: LoopConfig, batches_per_epoch: int) -> int:
    by_epochs = None if config.epochs is None else config.epochs * batches_per_epoch
    if config.max_steps is None:
        return batches_per_epoch if by_epochs is None else by_epochs
    return config.max_steps if by_epochs is None else min(config.max_steps, by_epochs)


def _layout(config: LoopConfig, batches: EpochBatches) -> dict[str, Any]:
    """What fixes the data order; a resumed run must match it to be reproducible."""
    return {
        "n_rows": batches.n_rows,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "drop_last": config.drop_last,
        "world_size": config.world_size,
        "batches_per_epoch": batches.batches_per_epoch,
    }


_RESUME_FLAGS = {
    "n_rows": "the same data",
    "batch_size": "the same --batch-size",
    "seed": "the same --seed",
    "drop_last": "the same drop_last setting",
    "world_size": "the same number of processes",
}


def _resume(trainable: Trainable, checkpoint: dict[str, Any], layout: dict[str, Any]) -> LoopState:
    """Restore the trainable, RNG and loop position from a loaded checkpoint."""
    if checkpoint.get("format") != CHECKPOINT_FORMAT or "loop" not in checkpoint:
        raise RuntimeUserError(
            f"the checkpoint has format {checkpoint.get('format')!r}; "
            f"this version reads format {CHECKPOINT_FORMAT}",
            hint="start a new run with --out",
        )
    saved = checkpoint["loop"]
    for key, needed in _RESUME_FLAGS.items():
        if saved.get(key) != layout[key]:
            raise RuntimeUserError(
                f"cannot resume: the run was started with {key} = {saved.get(key)!r}, now {layout[key]!r}",
                hint=f"resume with {needed} as the original run",
            )
    load_trainable_state(trainable, checkpoint["trainable"], "of the run being resumed")
    # Last, so that nothing done while restoring shifts the random stream.
    restore_rng_state(checkpoint["rng"])
    return LoopState.from_dict(saved)


def _all_finite(tree: Any) -> bool:
    """Whether every floating-point tensor in a nested state is finite."""
    if isinstance(tree, torch.Tensor):
        if tree.is_floating_point() or tree.is_complex():
            return bool(torch.isfinite(tree).all())
        return True
    if isinstance(tree, Mapping):
        return all(_all_finite(value) for value in tree.values())
    if isinstance(tree, (list, tuple)):
        return all(_all_finite(value) for value in tree)
    return True


def _existing_checkpoint(run_dir: RunDir | None) -> Path | None:
    return run_dir.checkpoint_path if run_dir is not None and run_dir.has_checkpoint else None


def _result(
    state: LoopState,
    batches: EpochBatches,
    stopped_by: str | None,
    checkpoint: Path | None,
    early_stopping: EarlyStopping | None = None,
) -> LoopResult:
    last = state.last_finite_loss
    best = {}
    if early_stopping is not None:
        best_loss = early_stopping.best_loss
        best = {"best_step": early_stopping.best_step,
                "best_valid_loss": best_loss if math.isfinite(best_loss) else None}
    return LoopResult(
        steps=state.step,
        epochs_done=state.step / batches.batches_per_epoch,
        final_loss=math.nan if last is None else last,
        stopped_by=stopped_by,
        elapsed_s=state.elapsed_s,
        checkpoint=checkpoint,
        **best,
    )
