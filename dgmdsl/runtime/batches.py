"""Deterministic minibatches: per-epoch permutations, rank sharding, placement."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from dgmdsl.runtime.errors import RuntimeUserError

__all__ = ["EpochBatches", "epoch_permutation", "shard_indices", "widen"]

_SEED_STRIDE = 100003
# Dtypes a data set may be held in to save memory (binarized MNIST: uint8, 1 byte a
# pixel); the families read discrete data as int64, as validated data comes.
_COMPACT_DTYPES = (torch.uint8, torch.bool)


def epoch_permutation(n_rows: int, seed: int, epoch: int) -> torch.Tensor:
    """The row order of ``epoch``: a function of ``(seed, epoch)`` only.

    It uses its own generator, so it neither reads nor advances the global
    torch RNG, and a resumed run recomputes the same order.
    """
    generator = torch.Generator(device="cpu")
    generator.manual_seed((seed * _SEED_STRIDE + epoch) % 2**63)
    return torch.randperm(n_rows, generator=generator)


def shard_indices(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s share of ``order``, taken by striding.

    Every rank gets ``len(order) // world_size`` rows (the remainder is left
    out) so that all ranks take the same number of steps per epoch.
    """
    if world_size == 1:
        return order
    per_rank = len(order) // world_size
    return order[rank : per_rank * world_size : world_size]


class EpochBatches:
    """Minibatches of a dict of equal-length tensors, in a seeded order per epoch."""

    def __init__(
        self,
        data: Mapping[str, torch.Tensor],
        *,
        batch_size: int,
        seed: int,
        drop_last: bool,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.n_rows = _common_length(data)
        self.rows_per_rank = self.n_rows // world_size
        self.batch_size = batch_size
        self.batches_per_epoch = _batches_per_epoch(self.rows_per_rank, batch_size, drop_last)
        self._seed = seed
        self._rank = rank
        self._world_size = world_size
        self._device = _concrete(device)
        self._data, self._location = _place(data, self._device)
        self._on_device = self._location == self._device

    def order(self, epoch: int) -> torch.Tensor:
        """This rank's row indices for ``epoch``, on the device that holds the data."""
        order = epoch_permutation(self.n_rows, self._seed, epoch)
        return shard_indices(order, self._rank, self._world_size).to(self._location)

    def batch(self, order: torch.Tensor, position: int) -> tuple[dict[str, torch.Tensor], int]:
        """Batch number ``position`` of an epoch, on the training device, and its size."""
        start = position * self.batch_size
        index = order[start : start + self.batch_size]
        size = min(self.batch_size, self.rows_per_rank - start)
        if self._on_device:
            return widen({name: rows.index_select(0, index) for name, rows in self._data.items()}), size
        # The gathered batch is not pinned, so this copy is effectively synchronous;
        # only data sets too large for the GPU take this path. It is widened after the
        # copy, so that the compact dtype is what crosses to the device.
        return widen({
            name: rows.index_select(0, index).to(self._device, non_blocking=True)
            for name, rows in self._data.items()
        }), size


def widen(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``batch`` with compactly held columns (uint8, bool) as int64, the dtype of
    validated discrete data. Apply it to a batch, never to a whole data set."""
    return {name: rows.long() if rows.dtype in _COMPACT_DTYPES else rows for name, rows in batch.items()}


def _common_length(data: Mapping[str, torch.Tensor]) -> int:
    if not data:
        raise RuntimeUserError("there is no data to train on")
    lengths = {}
    for name, tensor in data.items():
        if not isinstance(tensor, torch.Tensor) or tensor.dim() == 0:
            raise ValueError(f"data column '{name}' must be a tensor with a row dimension")
        lengths[name] = tensor.shape[0]
    if len(set(lengths.values())) > 1:
        raise ValueError(f"data columns have different numbers of rows: {lengths}")
    n_rows = next(iter(lengths.values()))
    if n_rows == 0:
        raise RuntimeUserError("the data set is empty", hint="check the data file or the data set's n")
    return n_rows


def _batches_per_epoch(rows: int, batch_size: int, drop_last: bool) -> int:
    if rows == 0:
        raise RuntimeUserError("there are fewer data rows than training processes")
    if not drop_last:
        return -(-rows // batch_size)
    if rows < batch_size:
        raise RuntimeUserError(
            f"batch_size {batch_size} is larger than the data ({rows} rows) and drop_last is set",
            hint=f"use a batch size of at most {rows}",
        )
    return rows // batch_size


def _concrete(device: torch.device) -> torch.device:
    """``cuda`` -> ``cuda:N`` so that it compares equal to ``tensor.device``."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _place(
    data: Mapping[str, torch.Tensor], device: torch.device
) -> tuple[dict[str, torch.Tensor], torch.device]:
    """Where the data lives while training: on ``device`` when it is, or fits there."""
    if all(tensor.device == device for tensor in data.values()):
        return dict(data), device
    if device.type == "cuda" and _fits_on_gpu(data, device):
        # One copy up front instead of a host-to-device copy per batch.
        return {name: tensor.to(device) for name, tensor in data.items()}, device
    cpu = torch.device("cpu")
    return {name: tensor.to(cpu) for name, tensor in data.items()}, cpu


def _fits_on_gpu(data: Mapping[str, torch.Tensor], device: torch.device) -> bool:
    """Leave at least half of the free memory for the model and activations."""
    needed = sum(tensor.numel() * tensor.element_size() for tensor in data.values())
    free, _total = torch.cuda.mem_get_info(device)
    return needed <= free // 2
