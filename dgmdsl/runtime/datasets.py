"""Resolve a model's data: the spec's `fit { data = ... }`, or `--data NAME|PATH`, into
validated numpy arrays for the training and held-out splits (held-out = seed + 1)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import DataError, load_binarized_mnist, load_user_file, toy_dataset, validate_arrays
from ..data.userfiles import USER_FILE_SUFFIXES
from ..frontend.values import CallValue, Sym

__all__ = ["DataSource", "resolve_source", "load_split", "parse_data_option"]

DEFAULT_TOY_N = 20_000


@dataclass(frozen=True)
class DataSource:
    """What to load: a named set with options, or a user's file."""

    name: str | None = None           # a named set (toy, binarized_mnist, samples)
    options: tuple = ()               # sorted (key, value) pairs
    path: str | None = None

    def describe(self) -> str:
        if self.path:
            return self.path
        opts = ", ".join(f"{k} = {_show(v)}" for k, v in self.options)
        return f"{self.name}({opts})" if opts else str(self.name)

    def to_json(self) -> dict:
        return {"name": self.name, "options": {k: _plain(v) for k, v in self.options}, "path": self.path}

    @staticmethod
    def from_json(obj: dict) -> "DataSource":
        return DataSource(obj.get("name"), tuple(sorted(obj.get("options", {}).items())), obj.get("path"))


def _plain(v):
    return v.name if isinstance(v, Sym) else v


def _show(v) -> str:
    return v.name if isinstance(v, Sym) else repr(v)


def parse_data_option(text: str) -> DataSource:
    """`--data` on the command line: a path (existing, or with a data-file suffix) or a
    data-set expression such as `moons(n = 1000)`, checked like the spec's own entry."""
    if Path(text).suffix.lower() in USER_FILE_SUFFIXES or Path(text).exists() or text.endswith(".amat"):
        return DataSource(path=text)
    from .fit_entries import InvalidFitEntry, checked_fit_entry

    try:
        value = checked_fit_entry("data", text, "--data")
    except InvalidFitEntry as exc:  # report in the argument's terms
        raise DataError(f"--data {text!r} is neither a file nor a known data set", hint=str(exc)) from None
    return resolve_source(value)


def resolve_source(value) -> DataSource:
    if isinstance(value, str):
        return DataSource(path=value)
    if isinstance(value, Sym):
        return DataSource(value.name)
    if isinstance(value, CallValue):
        opts = dict(value.kwargs)
        if value.name == "samples":
            keys = ("model", "n", "seed")
            opts = {**dict(zip(keys, value.args)), **opts}
            opts["model"] = _plain(opts["model"])
        return DataSource(value.name, tuple(sorted((k, _plain(v)) for k, v in opts.items())))
    raise DataError("no data: the spec has no `fit { data = ... }`", hint="pass --data NAME|PATH")


def load_split(source: DataSource, split: str, specs, *, data_dir=None, program=None) -> dict[str, np.ndarray]:
    """Validated arrays of `source` for split 'train' or 'heldout'."""
    if source.path is not None:
        path = Path(source.path)
        if path.suffix == ".amat":
            return _mnist_arrays(_read_amat_checked(path), specs, {}, source.path)
        return load_user_file(path, specs)
    opts = dict(source.options)
    if source.name == "binarized_mnist":
        images = load_binarized_mnist("train" if split == "train" else "valid", data_dir)
        return _mnist_arrays(images, specs, opts, "binarized_mnist")
    seed = int(opts.get("seed", 0)) + (1 if split == "heldout" else 0)
    n = int(opts.get("n", DEFAULT_TOY_N))
    if source.name == "samples":
        arrays = _model_samples(program, opts["model"], n, seed)
    else:
        arrays = toy_dataset(source.name, n=n, seed=seed)
    return validate_arrays(_match_names(arrays, specs), specs, source.describe())


def _read_amat_checked(path: Path) -> np.ndarray:
    from ..data import read_amat
    if not path.exists():
        raise DataError(f"{path}: no such file")
    return read_amat(path)


def _mnist_arrays(images: np.ndarray, specs, opts: dict, source: str) -> dict[str, np.ndarray]:
    targets = [s for s in specs if s.size == images.shape[1]]
    if len(targets) != 1:
        raise DataError(f"{source} has {images.shape[1]} columns per row, but no single data variable "
                        f"of that size is declared", hint="declare e.g. `data x : binary[784]`")
    spec = targets[0]
    if "n" in opts:
        images = images[: int(opts["n"])]
    if spec.kind == "binary" and "scale" not in opts:
        # Already checked to be 0/1. Kept as uint8 (39 MB for the training split, where
        # validated int64 would take 314 MB); batches are widened as they are made
        # (runtime/batches.py: widen).
        return {spec.name: images.reshape(len(images), *spec.shape)}
    values = images.astype(np.float32)
    if "scale" in opts:
        a, b = (float(v) for v in opts["scale"])
        values = a + (b - a) * values
    return validate_arrays({spec.name: values.reshape(len(values), *spec.shape)}, [spec], source)


def _match_names(arrays: dict[str, np.ndarray], specs) -> dict[str, np.ndarray]:
    """A generated set's single array goes to the model's single data variable of that width."""
    names = {s.name for s in specs}
    if set(arrays) & names or len(arrays) != 1:
        return arrays
    (values,) = arrays.values()
    fits = [s for s in specs if s.size == int(np.prod(values.shape[1:]))]
    return {fits[0].name: values} if len(fits) == 1 else arrays


def _model_samples(program, model_name: str, n: int, seed: int) -> dict[str, np.ndarray]:
    if program is None or model_name not in program:
        raise DataError(f"samples({model_name}, ...) needs the model {model_name} in the same file")
    from .api import compile_model

    other = compile_model(program[model_name])
    draws = other.sample(n, seed=seed)
    return {k: v.cpu().numpy() for k, v in draws.items()}
