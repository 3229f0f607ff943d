"""Statically binarized MNIST (the Larochelle & Murray split).

A directory may hold the canonical text files `binarized_mnist_{split}.amat`
(one example per line, 784 space-separated 0/1 values) or an `.npz` whose
arrays are named after the splits, either bit-packed (n, 98) uint8 as
written by `np.packbits(images, axis=1)` or plain (n, 784).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from .errors import DataError, did_you_mean
from .validate import first_offense, format_value

__all__ = [
    "MNIST_PIXELS",
    "MNIST_SPLITS",
    "default_cache_dir",
    "fetch_binarized_mnist",
    "load_binarized_mnist",
    "read_amat",
]

MNIST_SPLITS = ("train", "valid", "test")
MNIST_PIXELS = 784
_PACKED_COLUMNS = MNIST_PIXELS // 8
_NPZ_NAMES = ("binarized_mnist_train_valid.npz", "binarized_mnist.npz")
_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{split}.amat"
_FETCH_HINT = "run 'dgm data fetch binarized_mnist' or pass --data-dir"
# Lookup table byte -> is whitespace (far faster than np.isin on 80 MB).
_IS_WHITESPACE = np.zeros(256, dtype=bool)
_IS_WHITESPACE[list(b" \t\r\n")] = True
_NEWLINE, _ZERO = ord("\n"), ord("0")


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/dgmdsl`, else `~/.cache/dgmdsl`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dgmdsl"


def load_binarized_mnist(split: str, data_dir: str | Path | None = None) -> np.ndarray:
    """Images of `split` as uint8 (n, 784) of 0/1.

    Looks in `data_dir`, then `$DGM_DATA_DIR`, then `default_cache_dir()`;
    in each, the `.amat` file first, then the `.npz` files.
    """
    if split not in MNIST_SPLITS:
        hint = did_you_mean(split, MNIST_SPLITS) or f"splits: {', '.join(MNIST_SPLITS)}"
        raise DataError(f"unknown binarized_mnist split '{split}'", hint=hint)
    looked = []
    for directory in _search_dirs(data_dir):
        amat = directory / f"binarized_mnist_{split}.amat"
        if amat.is_file():
            return read_amat(amat)
        looked.append(str(amat))
        for npz in (directory / name for name in _NPZ_NAMES):
            images = _read_npz_split(npz, split) if npz.is_file() else None
            if images is not None:
                return images
            looked.append(f"{npz} (no '{split}' array)" if npz.is_file() else str(npz))
    places = "".join(f"\n    {place}" for place in looked)
    raise DataError(f"binarized_mnist split '{split}' not found; looked for:{places}", hint=_FETCH_HINT)


def _search_dirs(data_dir: str | Path | None) -> list[Path]:
    candidates = [data_dir, os.environ.get("DGM_DATA_DIR") or None, default_cache_dir()]
    unique: list[Path] = []
    for candidate in candidates:
        if candidate is not None and Path(candidate) not in unique:
            unique.append(Path(candidate))
    return unique


def _read_npz_split(path: Path, split: str) -> np.ndarray | None:
    """The split's images from an `.npz`, or None if it has no such array."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if split not in archive.files:
                return None
            images = archive[split]
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read the file: {err}", source=str(path)) from None
    if images.ndim == 2 and images.shape[1] == _PACKED_COLUMNS and images.dtype == np.uint8:
        return np.unpackbits(images, axis=1)
    if images.ndim != 2 or images.shape[1] != MNIST_PIXELS:
        raise DataError(
            f"array '{split}' has shape {images.shape}; expected (n, {MNIST_PIXELS}) pixels "
            f"or (n, {_PACKED_COLUMNS}) bit-packed uint8",
            source=str(path),
        )
    return _checked_binary(images, path)


def read_amat(path: str | Path) -> np.ndarray:
    """A `.amat` text file of 0/1 values, 784 per line, as uint8 (n, 784)."""
    path = Path(path)
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    parsed = _parse_single_digits(raw, path)
    if parsed is None:  # some value is longer than one character, e.g. "1.0"
        try:
            parsed = np.loadtxt(path, dtype=np.float64, ndmin=2)
        except ValueError as err:
            raise DataError(f"cannot read the file: {err}", source=str(path)) from None
        if parsed.shape[1] != MNIST_PIXELS:
            raise DataError(f"rows have {parsed.shape[1]} values; expected {MNIST_PIXELS}", source=str(path))
    return _checked_binary(parsed, path)


def _parse_single_digits(raw: np.ndarray, path: Path) -> np.ndarray | None:
    """Fast path for files whose values are all single digits: (n, 784) uint8,
    or None when some value is not one digit."""
    is_space = _IS_WHITESPACE[raw]
    if np.any(~is_space[1:] & ~is_space[:-1]):
        return None
    kept = raw[~is_space | (raw == _NEWLINE)]  # the digits, one newline per line
    newline = kept == _NEWLINE
    digits = kept[~newline] - _ZERO  # wraps around below '0', so > 9 is "not a digit"
    if np.any(digits > 9):
        return None
    bounds = np.concatenate([[-1], np.flatnonzero(newline), [len(kept)]])
    counts = np.diff(bounds) - 1
    counts = counts[counts > 0]  # blank lines hold no example
    if len(counts) == 0:
        raise DataError("the file holds no examples", source=str(path))
    if np.any(counts != MNIST_PIXELS):
        row = int(np.argmax(counts != MNIST_PIXELS))
        raise DataError(f"the row has {counts[row]} values; expected {MNIST_PIXELS}", row=row, source=str(path))
    return digits.reshape(len(counts), MNIST_PIXELS)


def _checked_binary(images: np.ndarray, path: Path) -> np.ndarray:
    bad = (images != 0) & (images != 1)
    if bad.any():
        row, (pixel,) = first_offense(bad)
        value = images[row, pixel].item()
        raise DataError(
            f"value {format_value(value)} at pixel {pixel} is outside binary {{0, 1}}",
            row=row, value=value, source=str(path),
        )
    return images.astype(np.uint8)


def fetch_binarized_mnist(cache_dir: str | Path | None = None) -> list[Path]:
    """Download the three `.amat` files into the cache directory (only those
    not already there). Each is written to a temporary file, checked, then
    renamed, so an interrupted download never leaves a partial file."""
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for split in MNIST_SPLITS:
        path = target / f"binarized_mnist_{split}.amat"
        if not path.is_file():
            _download(_URL.format(split=split), path)
        paths.append(path)
    return paths


def _download(url: str, path: Path) -> None:
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            shutil.copyfileobj(response, out)
        read_amat(partial)  # refuse a truncated or garbled download
        os.replace(partial, path)
    except DataError as err:
        raise DataError(f"the file downloaded from {url} is not valid: {err.message}", source=str(path)) from None
    except OSError as err:  # includes urllib's URLError
        raise DataError(
            f"could not download {url}: {err}",
            source=str(path),
            hint="check the network connection, or copy the .amat files into this directory by hand",
        ) from None
    finally:
        Path(partial).unlink(missing_ok=True)
