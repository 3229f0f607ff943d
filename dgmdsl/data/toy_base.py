"""Building blocks of the toy data sets.

`ToySet` is the contract every toy set meets. Two generic kinds cover most
sets: `MixtureToySet` (an isotropic Gaussian mixture) and `CurveToySet`
(points on 1-D curves plus isotropic Gaussian noise). A noisy curve's
density is a 1-D integral over the curve parameter; Gauss-Legendre panels
turn it into a Gaussian mixture over quadrature nodes, so both kinds share
one mixture density routine.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .errors import DataError, did_you_mean
from .validate import VarSpec

__all__ = [
    "Arc",
    "CurveToySet",
    "MixtureToySet",
    "ToySet",
    "isotropic_mixture_log_density",
]

# Bounds the (rows x components) logit block so memory stays near 16 MB.
_CHUNK_ELEMENTS = 2_000_000
# Panel length (in units of the noise std, measured along the curve) and
# Gauss-Legendre nodes per panel; chosen so log densities are accurate to ~3e-5.
_PANEL_LENGTH_IN_STDS = 2.0
_NODES_PER_PANEL = 5
# Resolution of the table used to place panels uniformly in arc length.
_ARC_TABLE_POINTS = 4097
# Panels halve this many times towards each end of an arc: seen from a point
# at distance d beyond an end, the integrand decays over an arc length of
# noise_std^2 / d, far shorter than a panel when d >> noise_std.
_END_GRADING_LEVELS = 10


class ToySet(ABC):
    """A seeded toy data set whose data density is known exactly.

    Subclasses provide `name`, `description`, `dim`, `sample` and
    `log_density`. `generate(n, seed)` is deterministic in `(n, seed)`.
    """

    name: str
    description: str

    @property
    @abstractmethod
    def dim(self) -> int:
        """Number of columns of `x`."""

    @property
    def variables(self) -> tuple[VarSpec, ...]:
        """What `generate` returns, as data variables (for checking a spec)."""
        return (VarSpec("x", "real", shape=(self.dim,)),)

    def generate(self, n: int, seed: int, **options: object) -> dict[str, np.ndarray]:
        """`n` examples drawn with `np.random.default_rng(seed)`; floats as float32."""
        _reject_options(self.name, options)
        rng = np.random.default_rng(_check_seed(seed))
        arrays = self.sample(_check_count(n), rng)
        return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in arrays.items()}

    @abstractmethod
    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw `n` examples with `rng` (float64 is fine; `generate` casts)."""

    @abstractmethod
    def log_density(self, x: np.ndarray) -> np.ndarray | None:
        """Exact log density of `x` with shape (n, dim), as float64 (n,)."""

    def log_prob(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """Log density of what a model of this set fits; by default p(x)."""
        return self.log_density(arrays["x"])


def isotropic_mixture_log_density(
    x: np.ndarray, means: np.ndarray, log_weights: np.ndarray, std: float
) -> np.ndarray:
    """log sum_k exp(log_weights[k]) N(x; means[k], std^2 I), float64, shape (n,)."""
    x = _as_rows(x, means.shape[1])
    var = float(std) ** 2
    dim = means.shape[1]
    # log N(x; m, v I) = x.m/v - |m|^2/2v - |x|^2/2v - d/2 log(2 pi v): the
    # cross term is a matrix product, the rest are per-row or per-component.
    component_const = log_weights - (means**2).sum(axis=1) / (2 * var) - 0.5 * dim * np.log(2 * np.pi * var)
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // len(means))
    out = np.empty(len(x))
    for start in range(0, len(x), rows_per_chunk):
        chunk = x[start : start + rows_per_chunk]
        logits = chunk @ (means.T / var) + component_const
        peak = logits.max(axis=1)
        total = peak + np.log(np.exp(logits - peak[:, None]).sum(axis=1))
        out[start : start + len(chunk)] = total - (chunk**2).sum(axis=1) / (2 * var)
    return out


@dataclass(frozen=True, eq=False)
class MixtureToySet(ToySet):
    """Equal-weight isotropic Gaussian mixture: pick a mode uniformly, add N(0, mode_std^2 I)."""

    name: str
    description: str
    modes: np.ndarray
    mode_std: float

    @property
    def dim(self) -> int:
        return self.modes.shape[1]

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        which = rng.integers(len(self.modes), size=n)
        noise = rng.standard_normal((n, self.dim))
        return {"x": self.modes[which] + self.mode_std * noise}

    def log_density(self, x: np.ndarray) -> np.ndarray:
        log_weights = np.full(len(self.modes), -np.log(len(self.modes)))
        return isotropic_mixture_log_density(x, self.modes, log_weights, self.mode_std)


@dataclass(frozen=True, eq=False)
class Arc:
    """One piece of a curve set: chosen with probability `weight`, then t has
    density `pdf` on [t_low, t_high] (sampled as `inverse_cdf(u)`, u ~ U(0, 1))
    and the noiseless point is `point(t)` with shape (len(t), 2)."""

    weight: float
    t_low: float
    t_high: float
    point: Callable[[np.ndarray], np.ndarray]
    pdf: Callable[[np.ndarray], np.ndarray]
    inverse_cdf: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class CurveToySet(ToySet):
    """Pick an arc by weight, t from the arc's distribution, return
    `point(t) + noise_std * N(0, I)`. The density is
    sum_j weight_j * integral pdf_j(t) N(x; point_j(t), noise_std^2 I) dt."""

    name: str
    description: str
    arcs: tuple[Arc, ...]
    noise_std: float

    @property
    def dim(self) -> int:
        return 2

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        which = rng.choice(len(self.arcs), size=n, p=[arc.weight for arc in self.arcs])
        u = rng.random(n)
        noise = rng.standard_normal((n, 2))
        x = np.empty((n, 2))
        for j, arc in enumerate(self.arcs):
            on_arc = which == j
            x[on_arc] = arc.point(arc.inverse_cdf(u[on_arc]))
        return {"x": x + self.noise_std * noise}

    def log_density(self, x: np.ndarray, refinement: int = 1) -> np.ndarray:
        """Quadrature over the curve parameter; `refinement` > 1 shortens the
        panels by that factor (used to check the default's accuracy)."""
        means, log_weights = self._nodes if refinement == 1 else self._quadrature(refinement)
        return isotropic_mixture_log_density(x, means, log_weights, self.noise_std)

    @cached_property
    def _nodes(self) -> tuple[np.ndarray, np.ndarray]:
        return self._quadrature(1)

    def _quadrature(self, refinement: int) -> tuple[np.ndarray, np.ndarray]:
        """Quadrature nodes (as mixture means) and their log weights, all arcs."""
        panel_length = _PANEL_LENGTH_IN_STDS * self.noise_std / refinement
        means, weights = [], []
        for arc in self.arcs:
            t, quadrature_weights = _arc_nodes(arc, panel_length)
            means.append(arc.point(t))
            weights.append(arc.weight * arc.pdf(t) * quadrature_weights)
        return np.concatenate(means), np.log(np.concatenate(weights))


def _arc_nodes(arc: Arc, panel_length: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights in t on panels of equal arc length,
    graded geometrically towards both ends of the arc."""
    t_table = np.linspace(arc.t_low, arc.t_high, _ARC_TABLE_POINTS)
    steps = np.linalg.norm(np.diff(arc.point(t_table), axis=0), axis=1)
    s_table = np.concatenate([[0.0], np.cumsum(steps)])
    length = s_table[-1]
    n_panels = int(np.ceil(length / panel_length))
    graded = min(panel_length, length / 2) * 0.5 ** np.arange(1, _END_GRADING_LEVELS + 1)
    s_bounds = np.unique(np.concatenate([np.linspace(0.0, length, n_panels + 1), graded, length - graded]))
    bounds = np.interp(s_bounds, s_table, t_table)
    ref_nodes, ref_weights = np.polynomial.legendre.leggauss(_NODES_PER_PANEL)
    half = np.diff(bounds)[:, None] / 2
    centre = (bounds[:-1] + bounds[1:])[:, None] / 2
    return (centre + half * ref_nodes).ravel(), (half * ref_weights).ravel()


def _as_rows(x: np.ndarray, dim: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected points of shape (n, {dim}), got {x.shape}")
    return x


def _reject_options(name: str, options: Mapping[str, object]) -> None:
    if options:
        option = next(iter(options))
        raise DataError(
            f"data set '{name}' has no option '{option}'",
            hint=did_you_mean(option, ("n", "seed")) or "toy data sets take only n and seed",
        )


def _check_count(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"n must be a positive integer, got {n!r}")
    return int(n)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)
