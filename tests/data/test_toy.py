"""Toy data sets: determinism, shapes, and that each exact density is right.

Densities are checked against closed forms where they exist, against their
own generators through binned sample frequencies, and for normalization on
a grid fine enough (spacing <= noise std) that the Riemann sum is exact to
far below the tolerances used.
"""
from functools import lru_cache

import numpy as np
import pytest

from dgmdsl.data import (
    LOGISTIC_TOY_BIAS,
    LOGISTIC_TOY_WEIGHTS,
    TOY_SETS,
    DataError,
    toy_dataset,
    toy_entropy,
    toy_modes,
    toy_set,
    validate_arrays,
)

# Half-width of a square box holding all but a negligible part of the mass;
# 100 grid cells per axis give a spacing at most the set's noise std.
BOX_HALF_WIDTH = {
    "moons": 3.6,
    "eight_gaussians": 3.0,
    "grid_25_gaussians": 2.5,
    "checkerboard": 2.5,
    "two_spirals": 3.5,
    "swiss_roll": 3.4,
    "rings": 2.5,
}
CELLS, BINS = 100, 10
CURVE_SETS = ("moons", "two_spirals", "swiss_roll", "rings")


@lru_cache(maxsize=None)
def grid_density(name: str) -> tuple[np.ndarray, float]:
    """Density on the cell midpoints of the box, shape (CELLS, CELLS), and the cell area."""
    half = BOX_HALF_WIDTH[name]
    h = 2 * half / CELLS
    mids = -half + h * (np.arange(CELLS) + 0.5)
    points = np.stack(np.meshgrid(mids, mids, indexing="ij"), axis=-1).reshape(-1, 2)
    return np.exp(toy_set(name).log_density(points)).reshape(CELLS, CELLS), h * h


@pytest.mark.parametrize("name", sorted(TOY_SETS))
def test_generation_is_deterministic_and_well_typed(name):
    toy = toy_set(name)
    first, again, other = toy_dataset(name, 64, 3), toy_dataset(name, 64, 3), toy_dataset(name, 64, 4)
    assert first["x"].shape == (64, toy.dim) and first["x"].dtype == np.float32
    assert np.array_equal(first["x"], again["x"])
    assert not np.allclose(first["x"], other["x"])
    assert np.all(np.isfinite(toy.log_prob(first)))
    assert validate_arrays(first, toy.variables).keys() == first.keys()


def test_logistic_toy_labels_are_int64_bits():
    data = toy_dataset("logistic_toy", 500, 0)
    assert data["y"].shape == (500,) and data["y"].dtype == np.int64
    assert set(np.unique(data["y"])) == {0, 1}


@pytest.mark.parametrize("name", sorted(BOX_HALF_WIDTH))
def test_2d_density_integrates_to_one(name):
    density, area = grid_density(name)
    assert abs(density.sum() * area - 1.0) < 1e-4


@pytest.mark.parametrize("name", sorted(BOX_HALF_WIDTH))
def test_binned_samples_match_density(name):
    """Sample frequencies in 10x10 bins agree with the integrated density
    within 5 binomial standard errors (a wrong curve, weight or noise
    scale shifts many bins by far more)."""
    density, area = grid_density(name)
    step = CELLS // BINS
    bin_mass = density.reshape(BINS, step, BINS, step).sum(axis=(1, 3)) * area
    n = 20_000
    x = toy_dataset(name, n, 0)["x"].astype(np.float64)
    half = BOX_HALF_WIDTH[name]
    counts, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=BINS, range=[[-half, half], [-half, half]])
    assert counts.sum() == n  # nothing falls outside the box
    standard_error = np.sqrt(bin_mass * (1 - bin_mass) / n) + 1e-4
    assert np.max(np.abs(counts / n - bin_mass) / standard_error) < 5


@pytest.mark.parametrize("name", sorted(BOX_HALF_WIDTH))
def test_entropy_matches_grid_integral(name):
    density, area = grid_density(name)
    positive = density[density > 0]
    grid_entropy = -(positive * np.log(positive)).sum() * area
    entropy, standard_error = toy_entropy(name, n=20_000, seed=3)
    assert abs(entropy - grid_entropy) < 4 * standard_error + 2e-3


@pytest.mark.parametrize("name", CURVE_SETS)
def test_curve_quadrature_is_converged(name):
    toy = toy_set(name)
    rng = np.random.default_rng(1)
    points = np.concatenate([toy_dataset(name, 1000, 2)["x"], rng.uniform(-3.5, 3.5, size=(1000, 2))])
    assert np.max(np.abs(toy.log_density(points) - toy.log_density(points, refinement=8))) < 1e-4


def test_rings_density_matches_bessel_closed_form():
    """Averaging N(x; r(cos t, sin t), s^2 I) over t gives
    exp(-(|x|^2 + r^2) / 2s^2) I0(|x| r / s^2) / (2 pi s^2)."""
    toy = toy_set("rings")
    radii, std = np.array([0.5, 1.0, 1.5, 2.0]), toy.noise_std
    rho = np.linspace(0.0, 0.7, 15)  # keeps I0's argument below float64 overflow
    angle = np.linspace(0, 2 * np.pi, 15)
    points = rho[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    per_ring = np.exp(-(rho[:, None] ** 2 + radii**2) / (2 * std**2)) * np.i0(rho[:, None] * radii / std**2)
    expected = np.log((per_ring * radii / radii.sum()).sum(axis=1) / (2 * np.pi * std**2))
    assert np.allclose(toy.log_density(points), expected, atol=1e-5)


def test_eight_gaussians_modes_density_and_coverage():
    modes, std = toy_modes("eight_gaussians")
    assert modes.shape == (8, 2) and np.allclose(np.linalg.norm(modes, axis=1), 2.0) and std == 0.1
    peak = toy_set("eight_gaussians").log_density(modes)
    assert np.allclose(peak, np.log(1 / 8 / (2 * np.pi * std**2)))
    n = 20_000
    x = toy_dataset("eight_gaussians", n, 0)["x"]
    nearest = np.min(np.linalg.norm(x[:, None, :] - modes, axis=2), axis=1)
    within = np.mean(nearest < 3 * std)
    expected = 1 - np.exp(-4.5)  # P(|N(0, I_2)| < 3)
    assert abs(within - expected) < 4 * np.sqrt(expected * (1 - expected) / n)
    entropy, standard_error = toy_entropy("eight_gaussians", n=n, seed=5)
    assert abs(entropy - (np.log(8) + np.log(2 * np.pi * np.e * std**2))) < 4 * standard_error


def test_grid_25_modes_are_all_covered_evenly():
    modes, std = toy_modes("grid_25_gaussians")
    assert modes.shape == (25, 2) and std == 0.05
    x = toy_dataset("grid_25_gaussians", 25_000, 0)["x"]
    counts = np.bincount(np.argmin(np.linalg.norm(x[:, None, :] - modes, axis=2), axis=1), minlength=25)
    assert np.all(np.abs(counts - 1000) < 5 * np.sqrt(1000))


def test_checkerboard_is_uniform_on_black_squares():
    toy = toy_set("checkerboard")
    log_p = toy.log_density(np.array([[-1.5, -1.5], [-0.5, -1.5], [0.5, 0.5], [2.5, 0.0]]))
    assert np.allclose(log_p[[0, 2]], -np.log(8)) and np.all(np.isneginf(log_p[[1, 3]]))
    x = toy_dataset("checkerboard", 4000, 0)["x"]
    assert np.all(np.isfinite(toy.log_density(x)))
    assert toy_entropy("checkerboard", n=1000) == pytest.approx((np.log(8), 0.0), abs=1e-12)
    assert toy_modes("checkerboard") is None


def gaussian_log_pdf(x, mean, cov):
    diff = x - mean
    quad = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
    return -0.5 * (quad + np.log(np.linalg.det(2 * np.pi * cov)))


def test_gaussian_mixture_8d_density_is_the_mixture():
    toy = toy_set("gaussian_mixture_8d")
    x = toy_dataset("gaussian_mixture_8d", 500, 1)["x"].astype(np.float64)
    components = np.stack([gaussian_log_pdf(x, m, c) for m, c in zip(toy.means, toy.covariances)], axis=1)
    expected = np.log(np.exp(components) @ toy.weights)
    assert np.allclose(toy.log_density(x), expected, rtol=1e-10, atol=1e-10)


def test_gaussian_mixture_8d_is_normalized_and_moments_match():
    toy = toy_set("gaussian_mixture_8d")
    n = 50_000
    x = toy_dataset("gaussian_mixture_8d", n, 0)["x"].astype(np.float64)
    # E_{x~p}[q(x)/p(x)] = 1 for any normalized q; with q = w_k-weighted
    # component k the ratio's variance is below 1/w_k, so the check is tight.
    k = int(np.argmax(toy.weights))
    ratio = np.exp(gaussian_log_pdf(x, toy.means[k], toy.covariances[k]) - toy.log_density(x))
    standard_error = ratio.std() / np.sqrt(n)
    assert standard_error < 0.02 and abs(ratio.mean() - 1) < 4 * standard_error
    mean = toy.weights @ toy.means
    spread = toy.means - mean
    cov = np.einsum("k,kij->ij", toy.weights, toy.covariances + spread[:, :, None] * spread[:, None, :])
    assert np.all(np.abs(x.mean(axis=0) - mean) < 4 * np.sqrt(np.diag(cov) / n))
    assert np.allclose(np.cov(x.T), cov, atol=0.1)


def test_logistic_toy_recovers_its_weights():
    """Newton's method on the log likelihood recovers (w, b) within 4 standard errors."""
    n = 20_000
    data = toy_dataset("logistic_toy", n, 0)
    design = np.concatenate([data["x"].astype(np.float64), np.ones((n, 1))], axis=1)
    theta = np.zeros(4)
    for _ in range(25):
        prob = 1 / (1 + np.exp(-design @ theta))
        hessian = design.T @ (design * (prob * (1 - prob))[:, None])
        theta += np.linalg.solve(hessian, design.T @ (data["y"] - prob))
    truth = np.append(LOGISTIC_TOY_WEIGHTS, LOGISTIC_TOY_BIAS)
    assert np.all(np.abs(theta - truth) < 4 * np.sqrt(np.diag(np.linalg.inv(hessian))))


def test_logistic_toy_entropy_is_conditional_label_entropy():
    """H(y | x) = E h(sigmoid(l)), l ~ N(b, |w|^2), by Gauss-Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    logits = LOGISTIC_TOY_BIAS + np.linalg.norm(LOGISTIC_TOY_WEIGHTS) * nodes
    prob = 1 / (1 + np.exp(-logits))
    binary_entropy = prob * np.logaddexp(0, -logits) + (1 - prob) * np.logaddexp(0, logits)
    expected = (weights @ binary_entropy) / np.sqrt(2 * np.pi)
    entropy, standard_error = toy_entropy("logistic_toy", n=20_000, seed=2)
    assert abs(entropy - expected) < 4 * standard_error


def test_unknown_names_and_options_are_data_errors():
    with pytest.raises(DataError) as err:
        toy_set("eight_gausians")
    assert err.value.hint == "did you mean 'eight_gaussians'?"
    with pytest.raises(DataError, match="no option 'noise'"):
        toy_dataset("moons", 10, 0, noise=0.1)
    for bad_n in (0, -5, 2.5, True):
        with pytest.raises(DataError, match="n must be a positive integer"):
            toy_dataset("moons", bad_n, 0)
    with pytest.raises(DataError, match="seed"):
        toy_dataset("moons", 10, -1)
