"""Sample metrics: MMD against closed forms, median bandwidth, mode coverage."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dgmdsl.numerics.sample_metrics import (
    median_bandwidth,
    mmd2,
    mmd2_with_bandwidth,
    mmd_report,
    mode_coverage,
    reconstruction_error,
)


def _gaussian_kernel_mean(shift_sq: float, var: float, h: float, dim: int) -> float:
    """E exp(-||w||² / (2 h²)) for w ~ N(shift, var I_dim)."""
    return (h**2 / (h**2 + var)) ** (dim / 2) * math.exp(-shift_sq / (2 * (h**2 + var)))


def _naive_mmd2(x: np.ndarray, y: np.ndarray, h: float, unbiased: bool) -> float:
    k = lambda a, b: np.exp(-((a[:, None, :] - b[None]) ** 2).sum(-1) / (2 * h**2))  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m, n = len(x), len(y)
    if unbiased:
        return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                - 2 * kxy.mean())
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


def _pairwise_median(points: np.ndarray) -> float:
    i, j = np.triu_indices(len(points), k=1)
    return float(np.median(np.linalg.norm(points[i] - points[j], axis=1)))


def test_median_bandwidth_matches_direct_computation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(31, 3)), rng.normal(1.0, 2.0, size=(40, 3))
    expected = _pairwise_median(np.concatenate([x, y]))
    _, h = mmd2_with_bandwidth(torch.from_numpy(x), torch.from_numpy(y))
    assert h == pytest.approx(expected, rel=1e-12)
    assert median_bandwidth(torch.from_numpy(x), torch.from_numpy(y)) == h


def test_median_bandwidth_subsample_is_deterministic_and_close():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(3000, 2)) * np.array([1.0, 3.0])
    full = _pairwise_median(points)
    tensor = torch.from_numpy(points)
    h = median_bandwidth(tensor)
    assert h == median_bandwidth(tensor)
    assert h == pytest.approx(full, rel=0.02)
    assert h != pytest.approx(full, rel=1e-9)  # it really did subsample


@pytest.mark.parametrize("unbiased", [True, False])
def test_chunked_mmd_matches_naive_kernel_matrices(unbiased):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(23, 4)), rng.normal(0.3, 1.0, size=(17, 4))
    expected = _naive_mmd2(x, y, 1.3, unbiased)
    for chunk in (5, 1024):
        value = mmd2(torch.from_numpy(x), torch.from_numpy(y), bandwidth=1.3, unbiased=unbiased, chunk=chunk)
        assert value.item() == pytest.approx(expected, rel=1e-10, abs=1e-14)
    # Image-shaped inputs are flattened.
    flat = mmd2(torch.from_numpy(x).reshape(23, 2, 2), torch.from_numpy(y).reshape(17, 2, 2), 1.3, unbiased)
    assert flat.item() == pytest.approx(expected, rel=1e-10, abs=1e-14)


def test_mmd_of_identical_distributions_is_zero_in_expectation():
    torch.manual_seed(0)
    h, n, dim, repeats = 1.0, 40, 2, 300
    unbiased, biased = [], []
    for _ in range(repeats):
        x, y = torch.randn(n, dim, dtype=torch.float64), torch.randn(n, dim, dtype=torch.float64)
        unbiased.append(mmd2(x, y, bandwidth=h).item())
        biased.append(mmd2(x, y, bandwidth=h, unbiased=False).item())
    unbiased, biased = np.array(unbiased), np.array(biased)
    se_u, se_b = unbiased.std(ddof=1) / math.sqrt(repeats), biased.std(ddof=1) / math.sqrt(repeats)
    assert abs(unbiased.mean()) < 3 * se_u
    # The biased (V-statistic) form keeps the diagonal: E = (2 / n) (1 - E k(x, x')).
    biased_mean = 2.0 / n * (1.0 - _gaussian_kernel_mean(0.0, 2.0, h, dim))
    assert abs(biased.mean() - biased_mean) < 3 * se_b
    assert biased.mean() > 10 * se_b


def test_mmd_of_shifted_gaussians_matches_closed_form():
    torch.manual_seed(1)
    h, dim, shift = 1.5, 2, torch.tensor([0.6, -0.3], dtype=torch.float64)
    shift_sq = float(shift.pow(2).sum())
    c = _gaussian_kernel_mean(0.0, 2.0, h, dim)
    exact = 2 * c - 2 * _gaussian_kernel_mean(shift_sq, 2.0, h, dim)
    values = np.array([mmd2(torch.randn(400, dim, dtype=torch.float64),
                            torch.randn(400, dim, dtype=torch.float64) + shift, bandwidth=h).item()
                       for _ in range(20)])
    assert abs(values.mean() - exact) < 3 * values.std(ddof=1) / math.sqrt(len(values))
    assert values.min() > 0.3 * exact  # each single estimate detects the shift


def test_mmd_report_separates_model_from_noise_floor():
    torch.manual_seed(2)
    heldout_a, heldout_b = torch.randn(1000, 2), torch.randn(1000, 2)
    good, shifted = torch.randn(1000, 2), torch.randn(1000, 2) + torch.tensor([0.4, 0.0])
    bad = mmd_report(shifted, heldout_a, heldout_b)
    fine = mmd_report(good, heldout_a, heldout_b)
    assert bad["bandwidth"] == fine["bandwidth"] == median_bandwidth(heldout_a, heldout_b)
    assert fine["noise_floor_mmd2"] == bad["noise_floor_mmd2"]
    assert abs(fine["noise_floor_mmd2"]) < 0.003 and abs(fine["mmd2"]) < 0.003
    assert bad["mmd2"] > 10 * max(abs(fine["noise_floor_mmd2"]), abs(fine["mmd2"]))
    assert mmd_report(shifted, heldout_a, heldout_b, bandwidth=0.7)["bandwidth"] == 0.7


EIGHT_MODES = torch.tensor([[2.0 * math.cos(a), 2.0 * math.sin(a)] for a in np.arange(8) * math.pi / 4])
STD = 0.02
WITHIN_3_STD_2D = 1.0 - math.exp(-4.5)  # P(chi_2 <= 3)


def _mode_samples(modes: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    which = torch.randint(len(modes), (n,), generator=gen)
    return modes[which] + STD * torch.randn(n, 2, generator=gen)


def test_mode_coverage_all_modes():
    result = mode_coverage(_mode_samples(EIGHT_MODES, 8000, 0), EIGHT_MODES, STD)
    assert result["modes_covered"] == 8 and result["n_modes"] == 8
    assert result["high_quality_fraction"] == pytest.approx(WITHIN_3_STD_2D, abs=0.005)
    assert sum(result["per_mode_counts"]) == round(result["high_quality_fraction"] * 8000)
    assert min(result["per_mode_counts"]) > 900


def test_mode_coverage_dropped_modes():
    kept = EIGHT_MODES[[0, 2, 3, 5, 6]]
    result = mode_coverage(_mode_samples(kept, 8000, 1), EIGHT_MODES, STD)
    assert result["modes_covered"] == 5
    assert [result["per_mode_counts"][i] for i in (1, 4, 7)] == [0, 0, 0]


def test_mode_coverage_junk_lowers_quality():
    gen = torch.Generator().manual_seed(2)
    junk = 6.0 * torch.rand(3000, 2, generator=gen) - 3.0  # uniform on [-3, 3]²
    samples = torch.cat([_mode_samples(EIGHT_MODES, 7000, 3), junk])
    result = mode_coverage(samples, EIGHT_MODES, STD)
    junk_near_modes = 8 * math.pi * (3 * STD) ** 2 / 36.0
    assert result["modes_covered"] == 8
    expected = 0.7 * WITHIN_3_STD_2D + 0.3 * junk_near_modes
    assert result["high_quality_fraction"] == pytest.approx(expected, abs=0.01)


def test_mode_coverage_threshold_and_per_mode_std():
    sparse = torch.cat([_mode_samples(EIGHT_MODES[1:], 7990, 4), _mode_samples(EIGHT_MODES[:1], 10, 5)])
    assert mode_coverage(sparse, EIGHT_MODES, STD)["modes_covered"] == 7  # 10 < ceil(0.2 * 8000 / 8)
    assert mode_coverage(sparse, EIGHT_MODES, STD, min_count=5)["modes_covered"] == 8
    # A per-mode std: mode 0 declared 100x tighter, so its samples are no longer high quality.
    stds = torch.full((8,), STD)
    stds[0] = STD / 100
    counts = mode_coverage(_mode_samples(EIGHT_MODES, 8000, 6), EIGHT_MODES, stds)["per_mode_counts"]
    assert counts[0] < 5 and min(counts[1:]) > 900


def test_reconstruction_error():
    x = torch.zeros(2, 2, 3)
    x_rec = x.clone()
    x_rec[0, 0, 0], x_rec[0, 1, 2], x_rec[1, 1, 1] = 1.0, 2.0, -3.0
    assert reconstruction_error(x, x_rec) == pytest.approx((1 + 4 + 9) / 2)
    with pytest.raises(ValueError, match="shape mismatch"):
        reconstruction_error(x, x_rec[:, :1])
