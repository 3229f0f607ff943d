"""The concrete toy data sets (LANGUAGE.md §6), each with an exact density.

Every generator's exact definition is in the docstring of the function or
class that builds it; all 2-D sets have a per-coordinate scale of about 1.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .toy_base import Arc, CurveToySet, MixtureToySet, ToySet
from .validate import VarSpec

__all__ = [
    "CheckerboardSet",
    "FullCovarianceMixtureSet",
    "LOGISTIC_TOY_BIAS",
    "LOGISTIC_TOY_WEIGHTS",
    "LogisticToySet",
    "TOY_SETS",
]

LOGISTIC_TOY_WEIGHTS = np.array([1.5, -2.0, 0.75])
LOGISTIC_TOY_WEIGHTS.setflags(write=False)
LOGISTIC_TOY_BIAS = -0.5

# The 8-D mixture's parameters are drawn once from this seed, independent of
# the sample seed, so every run sees the same distribution.
_GMM8D_PARAMETER_SEED = 8_2024
_GMM8D_COMPONENTS = 5
_GMM8D_DIM = 8

_LOG_2PI = np.log(2 * np.pi)
Curve = Callable[[np.ndarray], np.ndarray]


def _uniform_arc(weight: float, t_low: float, t_high: float, point: Curve) -> Arc:
    """An arc whose parameter t is uniform on [t_low, t_high]."""
    width = t_high - t_low
    return Arc(
        weight, t_low, t_high, point,
        pdf=lambda t: np.full(np.shape(t), 1.0 / width),
        inverse_cdf=lambda u: t_low + width * u,
    )


def _negated(point: Curve) -> Curve:
    return lambda t: -point(t)


def _moon_point(t: np.ndarray) -> np.ndarray:
    return np.stack([2 * np.cos(t) - 1, 2 * np.sin(t) - 0.5], axis=1)


def moons() -> CurveToySet:
    """Two interleaved half circles (sklearn's moons, doubled and centred).

    With probability 1/2 each, x = s * (2 cos t - 1, 2 sin t - 0.5) + 0.1 eps,
    s = +1 or -1, t ~ U(0, pi), eps ~ N(0, I).
    """
    arcs = (_uniform_arc(0.5, 0.0, np.pi, _moon_point), _uniform_arc(0.5, 0.0, np.pi, _negated(_moon_point)))
    return CurveToySet("moons", "two interleaved half circles", arcs, noise_std=0.1)


def _spiral_point(t: np.ndarray) -> np.ndarray:
    return (t / np.pi)[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)


def two_spirals() -> CurveToySet:
    """Two interleaved Archimedean spirals of 1.5 turns each.

    With probability 1/2 each, x = s * (t / pi) (cos t, sin t) + 0.1 eps,
    s = +1 or -1, t = 3 pi sqrt(u), u ~ U(0, 1) (density 2t / (3 pi)^2,
    so points are close to evenly spread along the arms), eps ~ N(0, I).
    """
    end = 3 * np.pi

    def spiral_arc(point: Curve) -> Arc:
        return Arc(0.5, 0.0, end, point, pdf=lambda t: 2 * t / end**2, inverse_cdf=lambda u: end * np.sqrt(u))

    arcs = (spiral_arc(_spiral_point), spiral_arc(_negated(_spiral_point)))
    return CurveToySet("two_spirals", "two interleaved spirals", arcs, noise_std=0.1)


def swiss_roll() -> CurveToySet:
    """The 2-D swiss roll: x = (t cos t, t sin t) / 5 + 0.1 eps, t ~ U(1.5 pi, 4.5 pi)."""

    def roll_point(t: np.ndarray) -> np.ndarray:
        return np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 5

    arcs = (_uniform_arc(1.0, 1.5 * np.pi, 4.5 * np.pi, roll_point),)
    return CurveToySet("swiss_roll", "a 2-D swiss roll", arcs, noise_std=0.1)


def rings() -> CurveToySet:
    """Four concentric circles of radius r in (0.5, 1, 1.5, 2).

    Circle r is chosen with probability r / 5 (uniform along the total
    length), then x = r (cos t, sin t) + 0.05 eps, t ~ U(0, 2 pi).
    """
    radii = (0.5, 1.0, 1.5, 2.0)

    def circle(radius: float) -> Curve:
        return lambda t: radius * np.stack([np.cos(t), np.sin(t)], axis=1)

    arcs = tuple(_uniform_arc(r / sum(radii), 0.0, 2 * np.pi, circle(r)) for r in radii)
    return CurveToySet("rings", "four concentric circles", arcs, noise_std=0.05)


def eight_gaussians() -> MixtureToySet:
    """Equal mixture of N(m_k, 0.1^2 I), m_k = 2 (cos(k pi / 4), sin(k pi / 4)), k = 0..7."""
    angles = np.arange(8) * np.pi / 4
    modes = 2 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return MixtureToySet("eight_gaussians", "8 Gaussians on a circle of radius 2", modes, mode_std=0.1)


def grid_25_gaussians() -> MixtureToySet:
    """Equal mixture of N(m, 0.05^2 I) over the 25 modes m in {-2, -1, 0, 1, 2}^2.

    Modes are 20 std apart, so a sample within 3 std of a mode is
    unambiguously assigned to it when counting covered modes.
    """
    axis = np.arange(-2.0, 3.0)
    modes = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    return MixtureToySet("grid_25_gaussians", "25 Gaussians on a 5x5 grid", modes, mode_std=0.05)


@dataclass(frozen=True, eq=False)
class CheckerboardSet(ToySet):
    """Uniform on the 8 black unit squares of a 4x4 board covering [-2, 2]^2.

    Square [i - 2, i - 1] x [j - 2, j - 1] (i, j = 0..3) is black when i + j
    is even; the density is 1/8 there and 0 elsewhere.
    """

    name: str = "checkerboard"
    description: str = "uniform on the black squares of a 4x4 checkerboard"

    @property
    def dim(self) -> int:
        return 2

    @cached_property
    def black_corners(self) -> np.ndarray:
        """Lower-left corners of the black squares, shape (8, 2)."""
        cells = np.stack(np.meshgrid(np.arange(4), np.arange(4), indexing="ij"), axis=-1).reshape(-1, 2)
        return cells[cells.sum(axis=1) % 2 == 0] - 2.0

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        which = rng.integers(len(self.black_corners), size=n)
        return {"x": self.black_corners[which] + rng.random((n, 2))}

    def log_density(self, x: np.ndarray) -> np.ndarray:
        cell = np.floor(np.asarray(x, dtype=np.float64) + 2.0)
        on_board = np.all((cell >= 0) & (cell <= 3), axis=1)
        black = on_board & (cell.sum(axis=1) % 2 == 0)
        return np.where(black, -np.log(len(self.black_corners)), -np.inf)


@dataclass(frozen=True, eq=False)
class FullCovarianceMixtureSet(ToySet):
    """Mixture of Gaussians N(means[k], covariances[k]) with probabilities `weights`."""

    name: str
    description: str
    means: np.ndarray
    covariances: np.ndarray
    weights: np.ndarray

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @cached_property
    def _cholesky(self) -> np.ndarray:
        return np.linalg.cholesky(self.covariances)

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        which = rng.choice(len(self.weights), size=n, p=self.weights)
        noise = rng.standard_normal((n, self.dim))
        return {"x": self.means[which] + np.einsum("nij,nj->ni", self._cholesky[which], noise)}

    def log_density(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        whitened = np.stack(
            [np.linalg.solve(chol, (x - mean).T).T for chol, mean in zip(self._cholesky, self.means)], axis=1
        )
        log_det = np.log(np.diagonal(self._cholesky, axis1=1, axis2=2)).sum(axis=1)
        log_joint = np.log(self.weights) - log_det - 0.5 * self.dim * _LOG_2PI - 0.5 * (whitened**2).sum(axis=2)
        peak = log_joint.max(axis=1)
        return peak + np.log(np.exp(log_joint - peak[:, None]).sum(axis=1))


def gaussian_mixture_8d() -> FullCovarianceMixtureSet:
    """A fixed mixture of 5 full-covariance Gaussians in 8-D.

    Drawn once from `np.random.default_rng(_GMM8D_PARAMETER_SEED)`: weights
    ~ Dirichlet(5, ..., 5), means ~ N(0, 2^2 I), covariances
    0.5 A A^T / 8 + 0.05 I with A an 8x8 standard normal matrix.
    """
    rng = np.random.default_rng(_GMM8D_PARAMETER_SEED)
    weights = rng.dirichlet(np.full(_GMM8D_COMPONENTS, 5.0))
    means = 2.0 * rng.standard_normal((_GMM8D_COMPONENTS, _GMM8D_DIM))
    factors = rng.standard_normal((_GMM8D_COMPONENTS, _GMM8D_DIM, _GMM8D_DIM))
    covariances = 0.5 * factors @ factors.transpose(0, 2, 1) / _GMM8D_DIM + 0.05 * np.eye(_GMM8D_DIM)
    return FullCovarianceMixtureSet(
        "gaussian_mixture_8d", "a fixed 5-component Gaussian mixture in 8-D", means, covariances, weights
    )


@dataclass(frozen=True, eq=False)
class LogisticToySet(ToySet):
    """Covariates x ~ N(0, I_3) and labels y | x ~ Bernoulli(sigmoid(w.x + b)),
    with w = LOGISTIC_TOY_WEIGHTS and b = LOGISTIC_TOY_BIAS.

    `log_density` is the covariates' density; `log_prob` is log p(y | x),
    since a model of this set treats x as a covariate.
    """

    name: str = "logistic_toy"
    description: str = "covariates and labels from a known logistic model"

    @property
    def dim(self) -> int:
        return len(LOGISTIC_TOY_WEIGHTS)

    @property
    def variables(self) -> tuple[VarSpec, ...]:
        return (VarSpec("x", "real", shape=(self.dim,)), VarSpec("y", "binary"))

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        x = rng.standard_normal((n, self.dim))
        y = rng.random(n) < 1.0 / (1.0 + np.exp(-self.logits(x)))
        return {"x": x, "y": y.astype(np.int64)}

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ LOGISTIC_TOY_WEIGHTS + LOGISTIC_TOY_BIAS

    def log_density(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return -0.5 * (x**2).sum(axis=1) - 0.5 * self.dim * _LOG_2PI

    def log_prob(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        signed_logits = np.where(np.asarray(arrays["y"]) == 1, 1.0, -1.0) * self.logits(arrays["x"])
        return -np.logaddexp(0.0, -signed_logits)


TOY_SETS: dict[str, ToySet] = {
    toy.name: toy
    for toy in (
        moons(),
        eight_gaussians(),
        grid_25_gaussians(),
        CheckerboardSet(),
        two_spirals(),
        swiss_roll(),
        rings(),
        gaussian_mixture_8d(),
        LogisticToySet(),
    )
}
