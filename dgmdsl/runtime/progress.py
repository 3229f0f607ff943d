"""Progress display: a tqdm bar on a terminal, periodic one-line logs otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

__all__ = ["Progress", "format_duration"]


class Progress:
    """Step/total, smoothed loss, samples/s and ETA, rate-limited to stay cheap.

    On a terminal this draws a tqdm bar on ``stream``; otherwise it writes one
    summary line every ``log_every_s`` seconds. ``quiet`` (``dgm fit --quiet``,
    ``fit(quiet=True)``) and ``enabled=False`` (e.g. on a non-zero distributed
    rank) show nothing at all.
    """

    def __init__(
        self,
        total: int | None,
        *,
        initial: int = 0,
        quiet: bool = False,
        log_every_s: float = 10.0,
        refresh_s: float = 0.5,
        stream: TextIO | None = None,
        desc: str = "fit",
        enabled: bool = True,
        loss_smoothing: float = 0.1,
    ) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.desc = desc
        self.enabled = enabled and not quiet
        self._alpha = loss_smoothing
        self._initial = initial
        self._step = initial
        self._loss_ema: float | None = None
        self._extra: dict[str, float] = {}
        self._start = time.monotonic()
        self._window_start = self._start
        self._window_samples = 0
        self._samples_per_s = 0.0
        use_bar = self.enabled and _is_terminal(self.stream)
        self._interval = refresh_s if use_bar else log_every_s
        self._next_emit = self._start + self._interval
        self._bar = (
            tqdm(
                total=total,
                initial=initial,
                file=self.stream,
                desc=desc,
                unit="step",
                mininterval=refresh_s,
                dynamic_ncols=True,
            )
            if use_bar
            else None
        )

    def update(
        self, step: int, loss: float, n_samples: int, extra: dict[str, float] | None = None
    ) -> None:
        """Record progress up to ``step``; draws at most once per refresh interval."""
        self._step = step
        self._window_samples += n_samples
        ema = self._loss_ema
        self._loss_ema = loss if ema is None else ema + self._alpha * (loss - ema)
        if extra:
            self._extra = extra
        now = time.monotonic()
        if now >= self._next_emit and self.enabled:
            self._emit(now)

    def _emit(self, now: float) -> None:
        self._measure_rate(now)
        self._next_emit = now + self._interval
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(self._step - self._bar.n)
        else:
            self._log_line(now)

    def _measure_rate(self, now: float) -> None:
        window = now - self._window_start
        if window > 0 and self._window_samples:
            self._samples_per_s = self._window_samples / window
            self._window_start, self._window_samples = now, 0

    def _postfix(self) -> str:
        parts = [] if self._loss_ema is None else [f"loss={self._loss_ema:.4g}"]
        parts += [f"{name}={value:.4g}" for name, value in self._extra.items()]
        rate = self._samples_per_s
        parts.append(f"{rate:,.0f} samples/s" if rate >= 100 else f"{rate:.3g} samples/s")
        return ", ".join(parts)

    def _log_line(self, now: float) -> None:
        of_total = f"/{self.total}" if self.total is not None else ""
        elapsed = now - self._start
        line = f"{self.desc}: step {self._step}{of_total}, {self._postfix()}, elapsed {format_duration(elapsed)}"
        eta = self._eta(elapsed)
        if eta is not None:
            line += f", eta {format_duration(eta)}"
        self.stream.write(line + "\n")
        self.stream.flush()

    def _eta(self, elapsed: float) -> float | None:
        done = self._step - self._initial
        if self.total is None or done <= 0:
            return None
        return (self.total - self._step) * elapsed / done

    def close(self) -> None:
        """Draw the final state; a log line is written only if steps were taken."""
        if not self.enabled:
            return
        now = time.monotonic()
        self._measure_rate(now)
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(self._step - self._bar.n)
            self._bar.close()
            self._bar = None
        elif self._step > self._initial:
            self._log_line(now)
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def format_duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3725`` -> ``1h02m05s``."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
