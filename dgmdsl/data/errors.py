"""The one exception for bad or missing data, and a did-you-mean helper."""
from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["DataError", "did_you_mean"]


class DataError(Exception):
    """A user error about data: a missing file, an unknown data set, a bad value.

    Renders as ``data.csv: variable 'x', row 17: error: message`` with a
    ``hint:`` line when one helps; parts that are ``None`` are left out.
    ``row`` is the 0-based index of the example (data row) at fault.
    """

    def __init__(
        self,
        message: str,
        *,
        variable: str | None = None,
        row: int | None = None,
        value: object | None = None,
        hint: str | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.variable = variable
        self.row = row
        self.value = value
        self.hint = hint
        self.source = source

    @property
    def where(self) -> str | None:
        """``data.csv: variable 'x', row 17``; None when nothing locates the error."""
        parts = [] if self.source is None else [self.source]
        place = []
        if self.variable is not None:
            place.append(f"variable '{self.variable}'")
        if self.row is not None:
            place.append(f"row {self.row}")
        if place:
            parts.append(", ".join(place))
        return ": ".join(parts) or None

    def __str__(self) -> str:
        where = self.where
        text = f"{where}: error: {self.message}" if where else f"error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """``did you mean 'x'?`` for the closest candidate, or None when none is close."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
