"""Clean stops: Ctrl-C / SIGTERM requests, and non-finite losses."""

from __future__ import annotations

import math
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from dgmdsl.runtime.errors import RuntimeUserError

__all__ = ["StopRequest", "NonFiniteLoss"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Turn SIGINT/SIGTERM into a flag that the training loop polls between steps.

    Used as a context manager. The first signal sets :attr:`requested` and
    :attr:`signal_name` and puts the previous handlers back, so a second
    Ctrl-C force-quits as usual. Signals that were ignored when entering stay
    ignored. Outside the main thread (where Python cannot install handlers)
    it does nothing and :attr:`requested` stays false.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in _STOP_SIGNALS:
            previous = signal.getsignal(signum)
            if previous is signal.SIG_IGN:
                continue
            self._previous[signum] = previous
            signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._restore()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        self._restore()
        # os.write, not print: a handler can interrupt a buffered write to stderr.
        os.write(
            2,
            f"\n{self.signal_name} received: stopping after the current step and writing "
            "a checkpoint (send it again to quit at once)\n".encode(),
        )

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            # None means the handler was not installed from Python; the default is the safe fallback.
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()


class NonFiniteLoss(RuntimeUserError):
    """Training produced a NaN/inf loss (or parameters); the bad state was not saved."""

    def __init__(
        self,
        step: int,
        last_finite_loss: float | None,
        checkpoint: Path | None,
        value: float = math.nan,
        what: str = "loss",
    ) -> None:
        self.step = step
        self.last_finite_loss = last_finite_loss
        self.checkpoint = checkpoint
        self.value = value
        self.what = what
        shown = "non-finite" if what != "loss" else _describe(value)
        last = (
            f"last finite loss {last_finite_loss:.6g}"
            if last_finite_loss is not None
            else "no finite loss before it"
        )
        kept = (
            f"kept the last good checkpoint at {checkpoint}"
            if checkpoint is not None
            else "no checkpoint had been written yet"
        )
        super().__init__(
            f"{what} became {shown} at step {step} ({last}); stopped, {kept}",
            hint="try a smaller learning rate, e.g. optimizer = adam(lr = 1e-4), or check the data",
        )


def _describe(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"
