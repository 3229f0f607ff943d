"""Seeded toy data sets by name: generation, lookup, entropy and modes.

`n` and `seed` fully determine a data set; held-out splits use `seed + 1`
(the caller's convention). Every set's density is known exactly, so
`toy_entropy` gives the best achievable NLL for benchmarks.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .errors import DataError, did_you_mean
from .toy_base import MixtureToySet, ToySet
from .toy_sets import LOGISTIC_TOY_BIAS, LOGISTIC_TOY_WEIGHTS, TOY_SETS

__all__ = [
    "LOGISTIC_TOY_BIAS",
    "LOGISTIC_TOY_WEIGHTS",
    "TOY_SETS",
    "ToySet",
    "toy_dataset",
    "toy_entropy",
    "toy_modes",
    "toy_set",
]


def toy_set(name: str) -> ToySet:
    """The registered toy set called `name`; a DataError with a did-you-mean otherwise."""
    try:
        return TOY_SETS[name]
    except KeyError:
        hint = did_you_mean(name, TOY_SETS) or f"toy data sets: {', '.join(sorted(TOY_SETS))}"
        raise DataError(f"unknown toy data set '{name}'", hint=hint) from None


def toy_dataset(name: str, n: int, seed: int, **options: object) -> dict[str, np.ndarray]:
    """`n` examples of toy set `name` drawn with `seed` (float32 `x`, int64 labels)."""
    return toy_set(name).generate(n, seed, **options)


@lru_cache(maxsize=None)
def toy_entropy(name: str, n: int = 200_000, seed: int = 12345) -> tuple[float, float]:
    """Monte Carlo -E log p in nats and its standard error.

    p is the density of what a model of the set fits: p(x), or p(y | x) for
    `logistic_toy`, whose covariates are not modelled. This is the best
    achievable expected NLL. Cached, since it is deterministic.
    """
    toy = toy_set(name)
    log_p = toy.log_prob(toy.generate(n, seed))
    standard_error = float(log_p.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return float(-log_p.mean()), standard_error


def toy_modes(name: str) -> tuple[np.ndarray, float] | None:
    """(modes (K, dim), isotropic std) for the equal-weight mixture sets, else None."""
    toy = toy_set(name)
    if isinstance(toy, MixtureToySet):
        return toy.modes.copy(), toy.mode_std
    return None
