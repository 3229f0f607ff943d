"""Per-step losses and metrics, read back from the device in groups.

Keeping the step's loss tensor (instead of calling ``.item()``) lets a GPU run
ahead of Python; :meth:`StepLog.drain` reads a whole group with one sync,
checks every loss is finite in step order, and turns them into metric records.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dgmdsl.runtime.stopping import NonFiniteLoss

__all__ = ["LoopState", "StepLog"]

_MAX_PENDING = 128  # steps held on the device before a forced read-back
_DRAIN_EVERY_S = 0.5  # read back at least this often, for the progress display

Record = dict[str, Any]
DrainSummary = tuple[int, float, int, dict[str, float] | None]


@dataclass
class LoopState:
    """Loop state saved in checkpoints: verified step count and metric accumulators."""

    step: int = 0
    last_finite_loss: float | None = None
    elapsed_s: float = 0.0
    interval_loss: float = 0.0
    interval_steps: int = 0
    interval_samples: int = 0
    interval_start_s: float = 0.0
    interval_extra: dict[str, float] = field(default_factory=dict)
    interval_extra_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> LoopState:
        names = {entry.name for entry in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in saved.items() if key in names})


class StepLog:
    """Pending step outputs, finiteness checks and metric records for one process."""

    def __init__(
        self,
        state: LoopState,
        *,
        metrics_every: int,
        batches_per_epoch: int,
        emit: Callable[[list[Record]], None] | None,
        describe_checkpoint: Callable[[], Path | None],
    ) -> None:
        self.state = state
        self._metrics_every = metrics_every
        self._batches_per_epoch = batches_per_epoch
        self._emit = emit
        self._describe_checkpoint = describe_checkpoint
        now = time.monotonic()
        self._origin = now - state.elapsed_s  # elapsed training time = now - origin
        self._next_drain = now + _DRAIN_EVERY_S
        self._losses: list[torch.Tensor | float] = []
        self._extras: list[dict[str, Any] | None] = []
        self._samples: list[int] = []
        self._times: list[float] = []

    def elapsed(self, now: float | None = None) -> float:
        """Training time of the whole run so far, across resumed segments."""
        return (time.monotonic() if now is None else now) - self._origin

    def record(self, output: torch.Tensor | dict[str, Any], n_samples: int) -> float:
        """Keep one step's output without syncing; returns the current time."""
        if isinstance(output, torch.Tensor):
            self._losses.append(output.detach())
            self._extras.append(None)
        else:
            loss = output["loss"]
            self._losses.append(loss.detach() if isinstance(loss, torch.Tensor) else loss)
            # A shallow copy (an engine may reuse its dict); the extra metrics are
            # kept as returned, so they should be detached or computed without grad.
            self._extras.append(dict(output))
        self._samples.append(n_samples)
        now = time.monotonic()
        self._times.append(now)
        return now

    def drain_due(self, now: float) -> bool:
        return len(self._losses) >= _MAX_PENDING or now >= self._next_drain

    def drain(self) -> DrainSummary | None:
        """Read pending steps back; returns (step, mean loss, samples, extras) for display.

        Raises :class:`NonFiniteLoss` at the first non-finite loss, after
        emitting the records completed before it.
        """
        if not self._losses:
            return None
        losses = _to_floats(self._losses)
        extras = _extras_to_floats(self._extras)
        samples, times = self._samples, self._times
        self._losses, self._extras, self._samples, self._times = [], [], [], []
        self._next_drain = time.monotonic() + _DRAIN_EVERY_S
        records: list[Record] = []
        try:
            for loss, extra, n_samples, when in zip(losses, extras, samples, times):
                self._take(loss, extra, n_samples)
                if self.state.step % self._metrics_every == 0:
                    records.append(self._close_interval(when))
        finally:
            if records and self._emit is not None:
                self._emit(records)
        return self.state.step, sum(losses) / len(losses), sum(samples), extras[-1]

    def _take(self, loss: float, extra: dict[str, float] | None, n_samples: int) -> None:
        state = self.state
        if not math.isfinite(loss):
            raise NonFiniteLoss(
                state.step + 1, state.last_finite_loss, self._describe_checkpoint(), value=loss
            )
        state.step += 1
        state.last_finite_loss = loss
        state.interval_loss += loss
        state.interval_steps += 1
        state.interval_samples += n_samples
        for name, value in (extra or {}).items():
            state.interval_extra[name] = state.interval_extra.get(name, 0.0) + value
            state.interval_extra_counts[name] = state.interval_extra_counts.get(name, 0) + 1

    def finish_interval(self) -> None:
        """Emit the trailing partial interval at the natural end of training."""
        if self.state.interval_steps and self._emit is not None:
            self._emit([self._close_interval(time.monotonic())])

    def _close_interval(self, when: float) -> Record:
        state = self.state
        now_s = self.elapsed(when)
        span = now_s - state.interval_start_s
        record: Record = {
            name: total / state.interval_extra_counts[name]
            for name, total in state.interval_extra.items()
        }
        record.update(
            step=state.step,
            epoch=round(state.step / self._batches_per_epoch, 4),
            loss=state.interval_loss / state.interval_steps,
            samples_per_s=state.interval_samples / span if span > 0 else None,
            time=round(now_s, 3),
        )
        state.interval_loss, state.interval_steps, state.interval_samples = 0.0, 0, 0
        state.interval_extra, state.interval_extra_counts = {}, {}
        state.interval_start_s = now_s
        return record


def _to_floats(values: list[Any]) -> list[float]:
    """Scalars to floats with one device sync when they are tensors on one device."""
    tensors = [value for value in values if isinstance(value, torch.Tensor)]
    if len(tensors) < len(values) or len({tensor.device for tensor in tensors}) > 1:
        return [float(value) for value in values]
    try:
        stacked = torch.stack(tensors)
    except RuntimeError:  # mixed shapes such as () and (1,)
        stacked = torch.stack([tensor.reshape(()) for tensor in tensors])
    return stacked.reshape(len(tensors)).tolist()


def _extras_to_floats(extras: list[dict[str, Any] | None]) -> list[dict[str, float] | None]:
    """Per-step extra metrics (the step's output dict minus ``loss``) as floats."""
    by_name: dict[str, list[Any]] = {}
    for extra in extras:
        for name, value in (extra or {}).items():
            if name != "loss":
                by_name.setdefault(name, []).append(value)
    floats = {name: iter(_to_floats(values)) for name, values in by_name.items()}
    return [
        None if extra is None else {name: next(floats[name]) for name in extra if name != "loss"}
        for extra in extras
    ]
