"""Sample-based evaluation: kernel MMD, mode coverage, reconstruction error.

These score models without a density (GANs) and sit next to NLL elsewhere.
Kernel sums run in float64, a block of rows at a time, so 10k x 10k samples fit
in memory on CPU.
"""
from __future__ import annotations

import math

import torch

__all__ = [
    "median_bandwidth",
    "mmd2",
    "mmd2_with_bandwidth",
    "mmd_report",
    "mode_coverage",
    "reconstruction_error",
]

Tensor = torch.Tensor
MEDIAN_MAX_POINTS = 2048
DEFAULT_CHUNK = 1024
# A mode counts as covered when it holds this fraction of the samples a uniform
# mixture would give it (cf. the "k samples within 3 std" rules of the
# unrolled-GAN / VEEGAN / PacGAN benchmarks, here scaled with the sample size).
COVERAGE_FRACTION = 0.2


def _flat64(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).to(torch.float64)


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    # Expanded form is fast; float64 keeps its cancellation error negligible.
    d2 = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2.0 * a @ b.T
    return d2.clamp_min(0.0)


def median_bandwidth(x: Tensor, y: Tensor | None = None, max_points: int = MEDIAN_MAX_POINTS) -> float:
    """Median pairwise Euclidean distance over distinct pairs of the pooled sample.

    Above `max_points` points the median is taken on a fixed random subset
    (seed 0), so it is deterministic and costs O(max_points²).
    """
    pooled = _flat64(x) if y is None else torch.cat([_flat64(x), _flat64(y)])
    if pooled.shape[0] > max_points:
        picker = torch.Generator().manual_seed(0)
        keep = torch.randperm(pooled.shape[0], generator=picker)[:max_points]
        pooled = pooled[keep.to(pooled.device)]
    n = pooled.shape[0]
    if n < 2:
        raise ValueError("the median heuristic needs at least two points")
    rows, cols = torch.triu_indices(n, n, offset=1, device=pooled.device)
    distances = _squared_distances(pooled, pooled)[rows, cols].sqrt()
    bandwidth = float(torch.quantile(distances, 0.5))
    # All points equal: any bandwidth gives MMD 0, so avoid dividing by zero.
    return bandwidth if bandwidth > 0.0 else 1.0


def _kernel_sum(a: Tensor, b: Tensor, bandwidth: float, chunk: int) -> Tensor:
    """Σ_ij exp(-||a_i - b_j||² / (2 h²)), a block of rows of `a` at a time."""
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    scale = -0.5 / bandwidth**2
    for start in range(0, a.shape[0], chunk):
        total = total + torch.exp(scale * _squared_distances(a[start:start + chunk], b)).sum()
    return total


def mmd2_with_bandwidth(x: Tensor, y: Tensor, bandwidth: float | None = None,
                        unbiased: bool = True, chunk: int = DEFAULT_CHUNK) -> tuple[Tensor, float]:
    """Gaussian-kernel MMD² between samples x and y, and the bandwidth h it used.

    k(a, b) = exp(-||a - b||² / (2 h²)); h defaults to `median_bandwidth(x, y)`.
    The unbiased (U-statistic) form drops the i = j terms and can be negative.
    """
    a, b = _flat64(x), _flat64(y.to(x.device))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x has {a.shape[1]} features but y has {b.shape[1]}")
    h = median_bandwidth(a, b) if bandwidth is None else float(bandwidth)
    u_value, v_value = _both_statistics(a, b, h, chunk, need_unbiased=unbiased)
    value = u_value if unbiased else v_value
    return value.to(x.dtype if x.is_floating_point() else torch.float64), h


def _both_statistics(a: Tensor, b: Tensor, h: float, chunk: int, need_unbiased: bool = True):
    """(U-statistic, V-statistic) MMD² from one set of kernel sums."""
    m, n = a.shape[0], b.shape[0]
    k_xx = _kernel_sum(a, a, h, chunk)
    k_yy = _kernel_sum(b, b, h, chunk)
    k_xy = _kernel_sum(a, b, h, chunk)
    biased = k_xx / m**2 + k_yy / n**2 - 2.0 * k_xy / (m * n)
    if not need_unbiased:
        return None, biased
    if min(m, n) < 2:
        raise ValueError("the unbiased MMD needs at least two samples on each side")
    # k(a, a) = 1 exactly, so the diagonal contributes m (resp. n).
    unbiased = (k_xx - m) / (m * (m - 1)) + (k_yy - n) / (n * (n - 1)) - 2.0 * k_xy / (m * n)
    return unbiased, biased


def mmd2(x: Tensor, y: Tensor, bandwidth: float | None = None, unbiased: bool = True,
         chunk: int = DEFAULT_CHUNK) -> Tensor:
    """Gaussian-kernel MMD² (see `mmd2_with_bandwidth`)."""
    return mmd2_with_bandwidth(x, y, bandwidth, unbiased, chunk)[0]


def mmd_report(samples: Tensor, heldout_a: Tensor, heldout_b: Tensor,
               bandwidth: float | None = None) -> dict[str, float]:
    """MMD² of samples vs held-out data next to the MMD² of two held-out samples.

    The second number is the noise floor: what a perfect model would score at
    these sample sizes. Both use one bandwidth, by default the median heuristic
    on the held-out data alone, so it does not move with the model being scored.
    The unbiased estimates scatter around 0 for a perfect model (the floor may be
    negative), so a ratio of them means nothing; the biased V-statistics are
    positive, and their ratio `floor_ratio` (about 1 for a perfect model, whatever
    the sample size) is the comparable figure ("within 2x the noise floor").
    """
    h = median_bandwidth(heldout_a, heldout_b) if bandwidth is None else float(bandwidth)
    ref = _flat64(heldout_a)
    model_u, model_v = _both_statistics(_flat64(samples.to(ref.device)), ref, h, DEFAULT_CHUNK)
    floor_u, floor_v = _both_statistics(_flat64(heldout_b.to(ref.device)), ref, h, DEFAULT_CHUNK)
    return {
        "mmd2": float(model_u),
        "noise_floor_mmd2": float(floor_u),
        "mmd2_biased": float(model_v),
        "noise_floor_mmd2_biased": float(floor_v),
        "floor_ratio": float(model_v / floor_v),
        "bandwidth": h,
    }


def mode_coverage(samples: Tensor, modes: Tensor, std: float | Tensor, k_std: float = 3.0,
                  min_count: int | None = None) -> dict[str, object]:
    """Mode coverage of samples from a known mixture (eight Gaussians, 5x5 grid, ...).

    Each sample is assigned to its nearest mode; it is high quality when its
    Euclidean distance to that mode divided by `std` (a float, or one per mode)
    is at most `k_std`. A mode is covered when it has at least `min_count`
    high-quality samples, by default max(1, ceil(0.2 * N / K)).
    """
    x = samples.reshape(samples.shape[0], -1).to(torch.float64)
    centers = modes.reshape(modes.shape[0], -1).to(x)
    n_samples, n_modes = x.shape[0], centers.shape[0]
    distance, nearest = torch.cdist(x, centers).min(dim=1)
    scale = torch.as_tensor(std, dtype=torch.float64, device=x.device).expand(n_modes)
    high_quality = distance / scale[nearest] <= k_std
    counts = torch.bincount(nearest[high_quality], minlength=n_modes)
    if min_count is None:
        min_count = max(1, math.ceil(COVERAGE_FRACTION * n_samples / n_modes))
    return {
        "modes_covered": int((counts >= min_count).sum()),
        "n_modes": n_modes,
        "high_quality_fraction": float(high_quality.double().mean()) if n_samples else 0.0,
        "per_mode_counts": counts.tolist(),
    }


def reconstruction_error(x: Tensor, x_rec: Tensor) -> float:
    """Squared error summed over dimensions, averaged over examples."""
    if x.shape != x_rec.shape:
        raise ValueError(f"shape mismatch: x {tuple(x.shape)} vs x_rec {tuple(x_rec.shape)}")
    diff = (x - x_rec).reshape(x.shape[0], -1).to(torch.float64)
    return float(diff.pow(2).sum(dim=1).mean())
