"""Errors the training runtime reports to users (printed without a traceback)."""

from __future__ import annotations

__all__ = ["RuntimeUserError"]


class RuntimeUserError(Exception):
    """A problem the user can fix (bad run directory, device, checkpoint, flag).

    ``str(error)`` is the one-line message; ``error.hint`` is an optional
    suggestion that the command line prints on a ``hint:`` line.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message
