"""Data for dgmdsl: seeded toy sets, binarized MNIST, and a user's own files.

NumPy only; nothing here imports torch.
"""
from __future__ import annotations

from .errors import DataError, did_you_mean
from .mnist import (
    MNIST_PIXELS,
    MNIST_SPLITS,
    default_cache_dir,
    fetch_binarized_mnist,
    load_binarized_mnist,
    read_amat,
)
from .toy import (
    LOGISTIC_TOY_BIAS,
    LOGISTIC_TOY_WEIGHTS,
    TOY_SETS,
    ToySet,
    toy_dataset,
    toy_entropy,
    toy_modes,
    toy_set,
)
from .userfiles import USER_FILE_SUFFIXES, load_user_file
from .validate import MISSING, VarSpec, validate_arrays

__all__ = [
    "DATASETS",
    "DataError",
    "LOGISTIC_TOY_BIAS",
    "LOGISTIC_TOY_WEIGHTS",
    "MISSING",
    "MNIST_PIXELS",
    "MNIST_SPLITS",
    "TOY_SETS",
    "ToySet",
    "USER_FILE_SUFFIXES",
    "VarSpec",
    "default_cache_dir",
    "did_you_mean",
    "fetch_binarized_mnist",
    "load_binarized_mnist",
    "load_user_file",
    "read_amat",
    "toy_dataset",
    "toy_entropy",
    "toy_modes",
    "toy_set",
    "validate_arrays",
]

# Every named data set a spec may use in `fit { data = ... }`, for did-you-mean.
DATASETS: tuple[str, ...] = (*TOY_SETS, "binarized_mnist")
