"""Turning a ``--device`` string into a ``torch.device``."""

from __future__ import annotations

import torch

from dgmdsl.runtime.errors import RuntimeUserError

__all__ = ["resolve_device"]


def resolve_device(name: str) -> torch.device:
    """Resolve ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` to a concrete device.

    ``auto`` picks CUDA when it is available, else the CPU. A CUDA device is
    returned with its index so that it compares equal to ``tensor.device``.
    """
    text = name.strip().lower()
    if text == "auto":
        return _cuda_device(None) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise RuntimeUserError(
            f"unknown device '{name}'", hint="use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        return _cuda_device(device.index)
    raise RuntimeUserError(f"device '{name}' is not supported", hint="use auto, cpu, cuda or cuda:N")


def _cuda_device(index: int | None) -> torch.device:
    if not torch.cuda.is_available():
        raise RuntimeUserError(
            "CUDA was requested but is not available",
            hint="use --device cpu, or install a CUDA build of PyTorch and check the GPU driver",
        )
    count = torch.cuda.device_count()
    if index is None:
        index = torch.cuda.current_device()
    if index >= count:
        raise RuntimeUserError(
            f"there is no CUDA device {index} (this machine has {count})",
            hint=f"use cuda:0 to cuda:{count - 1}",
        )
    return torch.device("cuda", index)
