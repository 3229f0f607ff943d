"""Early stopping on a held-out loss: `fit { patience = P, validate_every = N }`.

Every ``validate_every`` steps (default: once an epoch) and at the last step, the loop
has :class:`EarlyStopping` check the trainable's validation loss on the held-out rows
(:class:`HeldoutLoss`). It keeps a CPU copy of the weights with the lowest loss so far,
stops the run after ``patience`` checks in a row without a strict improvement, and
gives the model the best weights back at the end.

Design notes:
* The held-out loss runs on a forked random stream, reseeded alike at every check.
  Validating thus leaves training's stream alone (a run with patience takes the steps
  a run without it takes, until it stops), and every check draws the same Monte Carlo
  noise (an ELBO's latents, a DSM noise level), so two checks differ by the weights only.
* The state (best loss, step and weights; checks without improvement) goes into the
  checkpoints, so a resumed run keeps its best-so-far and its patience count.
* Over torch.distributed each process evaluates its strided share of the rows and the
  sums are all-reduced: every process gets the same loss and stops at the same step.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from dgmdsl.runtime.batches import widen
from dgmdsl.runtime.errors import RuntimeUserError

if TYPE_CHECKING:
    from dgmdsl.runtime.loop import LoopConfig

__all__ = ["EarlyStopping", "HeldoutLoss", "MAX_HELDOUT_ROWS", "early_stopping_for_loop"]

# Enough rows for a loss accurate to well under the differences that matter between
# checks (binarized MNIST's valid split has 10000), at a bounded cost per check.
MAX_HELDOUT_ROWS = 10_000
# The held-out noise stream's seed is the run's seed plus this (the held-out split of a
# generated set is likewise seed + 1), so it is not the stream training started from.
_SEED_OFFSET = 1


class HeldoutLoss:
    """The mean of ``trainable.validation_loss(batch)`` over the held-out rows, weighted
    by batch size, with the model in eval mode and the random stream of its own."""

    def __init__(
        self,
        trainable: Any,
        rows: Mapping[str, torch.Tensor],
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.trainable = trainable
        n_rows = min(len(next(iter(rows.values()))), MAX_HELDOUT_ROWS)
        if n_rows < world_size:
            raise RuntimeUserError(f"the held-out split has {n_rows} rows, fewer than the {world_size} processes")
        # Each process takes rows rank, rank + W, ...: together exactly the first n_rows.
        self.rows = {name: values[rank:n_rows:world_size].to(device) for name, values in rows.items()}
        self.n_rows = len(next(iter(self.rows.values())))
        self.batch_size = batch_size
        self.seed = seed + _SEED_OFFSET
        self.device = device
        self.world_size = world_size

    def __call__(self) -> float:
        model = self.trainable.model
        was_training = model.training
        model.eval()  # dropout off, batch norm on its running statistics, MADE's mask ensemble
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        try:
            with _own_random_stream(self.device, self.seed):
                for batch, size in self._batches():
                    total += self.trainable.validation_loss(batch).detach().double() * size
        finally:
            model.train(was_training)
        sums = torch.stack([total, torch.tensor(float(self.n_rows), dtype=torch.float64, device=self.device)])
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(sums)
        return float(sums[0] / sums[1])

    def _batches(self) -> Iterator[tuple[dict[str, torch.Tensor], int]]:
        for start in range(0, self.n_rows, self.batch_size):
            batch = {name: values[start : start + self.batch_size] for name, values in self.rows.items()}
            yield widen(batch), min(self.batch_size, self.n_rows - start)


@contextmanager
def _own_random_stream(device: torch.device, seed: int) -> Iterator[None]:
    """Run a block on the CPU's (and ``device``'s) generator seeded with ``seed``, then put
    the generators back as they were."""
    cuda = []
    if device.type == "cuda":
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def early_stopping_for_loop(
    trainable: Any,
    validation: Mapping[str, torch.Tensor] | None,
    config: LoopConfig,
    batches_per_epoch: int,
    device: torch.device,
    resume_state: Mapping[str, Any] | None,
) -> EarlyStopping:
    """What the loop checks with ``config.patience``; resumed from the checkpoint's state."""
    if validation is None:
        raise ValueError("patience needs held-out rows: pass validation= to run_loop")
    heldout_loss = HeldoutLoss(trainable, validation, batch_size=config.batch_size, seed=config.seed,
                               device=device, rank=config.rank, world_size=config.world_size)
    return EarlyStopping(heldout_loss, trainable.model, patience=config.patience,
                         every=config.validate_every or batches_per_epoch,
                         saved=(resume_state or {}).get("early_stopping"))


class EarlyStopping:
    """Best-so-far bookkeeping over the checks of one run."""

    def __init__(
        self,
        heldout_loss: Callable[[], float],
        model: torch.nn.Module,
        *,
        patience: int,
        every: int,
        saved: Mapping[str, Any] | None = None,
    ) -> None:
        self.heldout_loss = heldout_loss
        self.model = model
        self.patience = patience
        self.every = every
        self.best_loss = math.inf
        self.best_step: int | None = None
        self.checks_without_improvement = 0
        self.stopped = False
        self._best_weights: dict[str, Any] | None = None
        if saved is not None:
            self.load_state_dict(saved)

    def due(self, step: int, total: int) -> bool:
        """Whether to check after ``step``: every ``every`` steps, and after the last one
        (whose weights would otherwise never be compared)."""
        return step % self.every == 0 or step == total

    def check(self, step: int) -> float:
        """Evaluate the held-out loss after ``step``; keep the weights if they are the best."""
        loss = self.heldout_loss()
        if loss < self.best_loss:  # strictly; a NaN never improves
            self.best_loss, self.best_step = loss, step
            self.checks_without_improvement = 0
            self._best_weights = _copy_to_cpu(self.model.state_dict())
        else:
            self.checks_without_improvement += 1
            self.stopped = self.checks_without_improvement >= self.patience
        return loss

    def restore_best(self) -> None:
        """Give the model the best weights seen (nothing before the first finite check)."""
        if self._best_weights is not None:
            self.model.load_state_dict(self._best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_loss": self.best_loss,
            "best_step": self.best_step,
            "checks_without_improvement": self.checks_without_improvement,
            "stopped": self.stopped,
            "best_weights": self._best_weights,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_loss = float(state["best_loss"])
        self.best_step = state["best_step"]
        self.checks_without_improvement = int(state["checks_without_improvement"])
        self.stopped = bool(state["stopped"])
        self._best_weights = state["best_weights"]


def _copy_to_cpu(tree: Any) -> Any:
    """A copy of a state dict held on the CPU, off the device's memory."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().to("cpu", copy=True)
    if isinstance(tree, Mapping):
        return {key: _copy_to_cpu(value) for key, value in tree.items()}
    return copy.deepcopy(tree)
