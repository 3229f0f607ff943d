"""Reading a user's own data file (`.npz`, `.npy`, `.csv`) into checked arrays.

- `.npz`: arrays matched to data variable names; other arrays are ignored.
- `.npy`: one array, for a model with exactly one data variable.
- `.csv`: a header row; a scalar variable is column `name`, a tensor
  variable is columns `name[0]`, `name[1]`, ... (or `name_0`, ...) in
  flattened C order. Empty cells, `nan` and `NA` are missing values.
"""
from __future__ import annotations

import csv
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .errors import DataError, did_you_mean
from .validate import VarSpec, validate_arrays

__all__ = ["USER_FILE_SUFFIXES", "VarSpec", "load_user_file"]

_MISSING_CELLS = ("", "na")


def load_user_file(path: str | Path, variables: Sequence[VarSpec]) -> dict[str, np.ndarray]:
    """The declared variables found in the file at `path`, validated.

    A variable missing from the file is left out of the result; a file that
    holds none of them is an error. See `validate_arrays` for the checks.
    """
    path = Path(path)
    source = str(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(
            f"cannot read data files of type '{path.suffix}'",
            source=source,
            hint=f"save the data as one of {', '.join(USER_FILE_SUFFIXES)}",
        )
    if not path.is_file():
        raise DataError("data file not found", source=source)
    try:
        arrays = reader(path, variables)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read the file: {err}", source=source) from None
    return validate_arrays(arrays, variables, source)


def _read_npz(path: Path, variables: Sequence[VarSpec]) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        found = {var.name: archive[var.name] for var in variables if var.name in names}
    if not found:
        _raise_nothing_matches(path, variables, names, "arrays")
    return found


def _read_npy(path: Path, variables: Sequence[VarSpec]) -> dict[str, np.ndarray]:
    if len(variables) != 1:
        raise DataError(
            f"a .npy file holds one array, but the model has {len(variables)} data variables "
            f"({', '.join(var.name for var in variables)})",
            source=str(path),
            hint="save one array per variable in a .npz file: np.savez(path, x=..., y=...)",
        )
    return {variables[0].name: np.load(path, allow_pickle=False)}


def _read_csv(path: Path, variables: Sequence[VarSpec]) -> dict[str, np.ndarray]:
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: drop a spreadsheet's BOM
        rows = [row for row in csv.reader(handle) if row]
    if not rows:
        raise DataError("the file is empty; a header row naming the columns is required", source=str(path))
    header = [cell.strip() for cell in rows[0]]
    _check_header(path, header)
    table = _parse_cells(path, header, rows[1:])
    column_of = {name: i for i, name in enumerate(header)}
    found = {}
    for var in variables:
        columns = _columns_of(path, var, column_of)
        if columns is not None:
            found[var.name] = table[:, columns[0]] if var.shape == () else table[:, columns]
    if not found:
        _raise_nothing_matches(path, variables, header, "columns")
    return found


def _check_header(path: Path, header: list[str]) -> None:
    if all(_is_number(cell) for cell in header):
        raise DataError(
            "the first row must be a header naming the columns", source=str(path),
            hint="add a header such as 'x[0],x[1],y'",
        )
    seen = set()
    for name in header:
        if name in seen:
            raise DataError(f"column '{name}' appears twice in the header", source=str(path))
        seen.add(name)


def _parse_cells(path: Path, header: list[str], rows: list[list[str]]) -> np.ndarray:
    """The data rows as float64 (n, columns), NaN where a cell is missing."""
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise DataError(f"the row has {len(row)} cells but the header has {len(header)}", row=i, source=str(path))
    cells = np.char.strip(np.array(rows, dtype=str).reshape(len(rows), len(header)))
    cells = np.where(np.isin(np.char.lower(cells), _MISSING_CELLS), "nan", cells)
    try:
        return cells.astype(np.float64)
    except ValueError:
        # Only on failure: find the first unreadable cell to name it.
        row, col = next((r, c) for r, c in np.ndindex(cells.shape) if not _is_number(cells[r, c]))
        raise DataError(
            f"cannot read '{cells[row, col]}' in column '{header[col]}' as a number", row=row, source=str(path)
        ) from None


def _columns_of(path: Path, var: VarSpec, column_of: dict[str, int]) -> list[int] | None:
    """Column indices holding `var` in C order, or None if the file has none of them."""
    styles = [[f"{var.name}[{i}]" for i in range(var.size)], [f"{var.name}_{i}" for i in range(var.size)]]
    if var.shape == ():
        styles.insert(0, [var.name])
    for names in styles:
        present = [name in column_of for name in names]
        if all(present):
            return [column_of[name] for name in names]
        if any(present):
            absent = names[present.index(False)]
            raise DataError(
                f"column '{absent}' is missing; {var.type_text} needs {var.size} columns "
                f"{names[0]} ... {names[-1]}",
                variable=var.name, source=str(path),
            )
    return None


def _raise_nothing_matches(path: Path, variables: Sequence[VarSpec], names: list[str], what: str) -> None:
    wanted = ", ".join(var.name for var in variables)
    suggestion = next(filter(None, (did_you_mean(var.name, names) for var in variables)), None)
    raise DataError(
        f"none of the data variables ({wanted}) is in the file; its {what}: {', '.join(names) or 'none'}",
        source=str(path),
        hint=suggestion or f"name the {what} after the model's data variables",
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_READERS: dict[str, Callable[[Path, Sequence[VarSpec]], dict[str, np.ndarray]]] = {
    ".npz": _read_npz,
    ".npy": _read_npy,
    ".csv": _read_csv,
}
USER_FILE_SUFFIXES = tuple(_READERS)
