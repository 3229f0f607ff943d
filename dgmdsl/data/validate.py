"""Checking a user's arrays against declared data variables.

All checks are vectorized; an error names the variable, the first offending
row (0-based example index), the value and, for a tensor variable, the
element within the row.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import DataError

__all__ = [
    "DISCRETE_KINDS",
    "KINDS",
    "MISSING",
    "VarSpec",
    "first_offense",
    "format_value",
    "shape_text",
    "validate_arrays",
]

KINDS = ("binary", "cat", "ordinal", "real", "positive", "unit")
DISCRETE_KINDS = frozenset({"binary", "cat", "ordinal"})
# How a missing discrete value is encoded once validated.
MISSING = -1
_MISSING_HINT = "drop or impute those rows; only variables the model can sum out may have missing values"


@dataclass(frozen=True)
class VarSpec:
    """A declared data variable: `x : binary[1, 28, 28]` is
    `VarSpec("x", "binary", shape=(1, 28, 28))`; `K` is set for cat/ordinal."""

    name: str
    kind: str
    K: int | None = None
    shape: tuple[int, ...] = ()
    missing_ok: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown variable kind {self.kind!r}; expected one of {KINDS}")
        if (self.kind in ("cat", "ordinal")) != (self.K is not None) or (self.K is not None and self.K < 1):
            raise ValueError(f"K must be a positive integer exactly for cat/ordinal, got kind {self.kind!r}, K={self.K!r}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def size(self) -> int:
        """Number of values per row (1 for a scalar)."""
        return math.prod(self.shape)

    @property
    def type_text(self) -> str:
        """The declared type as written in a spec, e.g. `cat(3)[5]`."""
        head = f"{self.kind}({self.K})" if self.K is not None else self.kind
        return head + (shape_text(self.shape) if self.shape else "")


def validate_arrays(
    arrays: Mapping[str, np.ndarray], variables: Sequence[VarSpec], source: str | None = None
) -> dict[str, np.ndarray]:
    """Checked copies of the arrays of the declared variables present in `arrays`.

    Flat (n, size) arrays are reshaped to (n, *shape). Discrete kinds come
    back as int64 with missing values as -1, continuous kinds as float32
    (missing stays NaN). Missing values are allowed only where `missing_ok`.
    """
    checked: dict[str, np.ndarray] = {}
    for var in variables:
        if var.name not in arrays:
            continue
        values = _shaped(var, np.asarray(arrays[var.name]), source)
        if checked:
            first, first_values = next(iter(checked.items()))
            if len(values) != len(first_values):
                raise DataError(
                    f"'{var.name}' has {len(values)} rows but '{first}' has {len(first_values)}",
                    variable=var.name,
                    source=source,
                )
        checked[var.name] = _checked_values(var, values, source)
    return checked


def _shaped(var: VarSpec, values: np.ndarray, source: str | None) -> np.ndarray:
    """`values` as (n, *var.shape), accepting a flat (n, size) layout."""
    if values.dtype.kind not in "biuf":
        raise DataError(f"values must be numbers, got dtype {values.dtype}", variable=var.name, source=source)
    if values.ndim == 0:
        raise DataError("expected one row per example, got a single value", variable=var.name, source=source)
    row_shape = values.shape[1:]
    if row_shape == var.shape:
        return values
    is_flat = row_shape == (var.size,) or (row_shape == () and var.size == 1)
    if is_flat:
        return values.reshape((len(values), *var.shape))
    raise DataError(
        f"shape mismatch: '{var.name}' is declared {var.type_text}, so each row should have shape "
        f"{shape_text(var.shape)}, but the data's rows have shape {shape_text(row_shape)}",
        variable=var.name,
        source=source,
        hint=f"a flat array with {var.size} columns per row is reshaped to {shape_text(var.shape)} automatically",
    )


def _checked_values(var: VarSpec, values: np.ndarray, source: str | None) -> np.ndarray:
    missing = np.isnan(values) if values.dtype.kind == "f" else np.zeros(values.shape, dtype=bool)
    discrete = var.kind in DISCRETE_KINDS
    if discrete:
        missing |= values == MISSING
    if not var.missing_ok and missing.any():
        row, element = first_offense(missing)
        value = values[row][element].item()
        raise DataError(
            f"missing value {format_value(value)}{_element_text(var, element)} cannot be summed out",
            variable=var.name, row=row, value=value, source=source, hint=_MISSING_HINT,
        )
    bad = ~missing & ~_in_support(var, values)
    if bad.any():
        row, element = first_offense(bad)
        value = values[row][element].item()
        raise DataError(
            f"value {format_value(value)}{_element_text(var, element)} is outside {_support_text(var)}",
            variable=var.name, row=row, value=value, source=source,
        )
    if discrete:
        return np.where(missing, np.int64(MISSING), values).astype(np.int64)
    return values.astype(np.float32)


def _in_support(var: VarSpec, values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if var.kind == "binary":
            return (values == 0) | (values == 1)
        if var.kind in ("cat", "ordinal"):
            integral = values == np.round(values) if values.dtype.kind == "f" else True
            return integral & (values >= 0) & (values < var.K)
        finite = np.isfinite(values)
        if var.kind == "positive":
            return finite & (values > 0)
        if var.kind == "unit":
            return (values > 0) & (values < 1)
        return finite


def _support_text(var: VarSpec) -> str:
    if var.kind == "binary":
        return "binary {0, 1}"
    if var.kind in ("cat", "ordinal"):
        last = var.K - 1
        values = ", ".join(map(str, range(var.K))) if var.K <= 4 else f"0, 1, ..., {last}"
        return f"{var.kind}({var.K}) {{{values}}}"
    return {"real": "real (finite numbers)", "positive": "positive (0, inf)", "unit": "unit (0, 1)"}[var.kind]


def _element_text(var: VarSpec, element: tuple[int, ...]) -> str:
    return f" at element {shape_text(element)}" if var.shape else ""


def first_offense(bad: np.ndarray) -> tuple[int, tuple[int, ...]]:
    """(row, index within the row) of the first True of `bad` (n, ...); `bad` must have one."""
    per_row = bad.reshape(len(bad), -1)
    row = int(per_row.any(axis=1).argmax())
    element = np.unravel_index(int(per_row[row].argmax()), bad.shape[1:])
    return row, tuple(int(i) for i in element)


def format_value(value: object) -> str:
    """A data value as a user wrote it: `2` rather than `2.0`, `NaN`, `0.5`."""
    number = value.item() if isinstance(value, np.generic) else value
    if isinstance(number, float) and math.isnan(number):
        return "NaN"
    if isinstance(number, bool) or (isinstance(number, float) and number.is_integer()):
        return str(int(number))
    return str(number)


def shape_text(shape: tuple[int, ...]) -> str:
    """`[1, 28, 28]`, or `scalar` for ()."""
    return f"[{', '.join(map(str, shape))}]" if shape else "scalar"
