"""Learning-rate schedules (`fit { lr_schedule = ... }`), applied by the training loop.

The rate of every optimizer's parameter group is set before each step to its initial
rate times `factor(step, total)`: a pure function of the step, so a resumed run follows
the same schedule without saving scheduler state, and every engine (one optimizer or a
generator/critic pair) is covered without engine code.

    constant                       the optimizer's rate throughout (the default)
    cosine(warmup = 0, final = 0)  linear warm-up over `warmup` steps, then a half cosine
                                   from the rate down to `final` times it at the last step
    step(at = 0.6, factor = 0.1)   the rate times `factor` from the fraction `at` of the run on
"""
from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["lr_factor", "optimizers_of", "LearningRateSchedule", "parse_lr_schedule"]


def lr_factor(schedule: dict, step: int, total: int) -> float:
    """The multiplier of the initial rate for optimizer step `step` (1-based) of `total`."""
    name = schedule.get("name", "constant")
    if name == "constant":
        return 1.0
    if name == "cosine":
        warmup = int(schedule.get("warmup", 0))
        final = float(schedule.get("final", 0.0))
        if step <= warmup:
            return step / warmup
        progress = (step - warmup) / max(total - warmup, 1)
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    if name == "step":
        at, factor = float(schedule.get("at", 0.6)), float(schedule.get("factor", 0.1))
        return factor if step > at * total else 1.0
    raise ValueError(f"unknown learning-rate schedule {name!r}")


def optimizers_of(trainable: Any) -> list[torch.optim.Optimizer]:
    """The torch optimizers an engine holds (its attributes), in a stable order."""
    if hasattr(trainable, "optimizers"):
        return list(trainable.optimizers())
    return [value for _, value in sorted(vars(trainable).items()) if isinstance(value, torch.optim.Optimizer)]


class LearningRateSchedule:
    """Sets every parameter group's rate before a step; a no-op for `constant`."""

    def __init__(self, schedule: dict | str | None, total: int, trainable: Any) -> None:
        if isinstance(schedule, str):
            schedule = {"name": schedule}
        self.schedule = schedule or {"name": "constant"}
        self.total = total
        self.groups = [group for opt in optimizers_of(trainable) for group in opt.param_groups]
        for group in self.groups:
            # `initial_lr` is torch's own key for a scheduler's base rate; it is saved
            # with the optimizer, so a resumed run keeps the original base
            group.setdefault("initial_lr", group["lr"])

    @property
    def active(self) -> bool:
        return self.schedule.get("name", "constant") != "constant" and bool(self.groups)

    def apply(self, step: int) -> None:
        factor = lr_factor(self.schedule, step, self.total)
        for group in self.groups:
            group["lr"] = group["initial_lr"] * factor


def parse_lr_schedule(text: str) -> dict:
    """`--lr-schedule TEXT`, checked by the front end exactly as the fit block's entry."""
    from .api import _plain
    from .errors import RuntimeUserError
    from .fit_entries import InvalidFitEntry, checked_fit_entry

    try:
        return _plain(checked_fit_entry("lr_schedule", text, "--lr-schedule"))
    except InvalidFitEntry as exc:  # report in the argument's terms
        raise RuntimeUserError(f"--lr-schedule {text!r} is not a schedule", hint=str(exc)) from None
