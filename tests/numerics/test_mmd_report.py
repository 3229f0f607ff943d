"""mmd_report: the V-statistic ratio to the noise floor is about 1 for the data's own law."""
import torch

from dgmdsl.numerics.sample_metrics import mmd2, mmd_report


def draws(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift


def test_floor_ratio_is_near_one_for_the_same_law_and_large_for_a_shifted_one():
    reports = [mmd_report(draws(400, s), draws(400, 100 + s), draws(400, 200 + s)) for s in range(20)]
    model = sum(r["mmd2_biased"] for r in reports) / len(reports)
    floor = sum(r["noise_floor_mmd2_biased"] for r in reports) / len(reports)
    assert 0.85 < model / floor < 1.15  # same expectation: a perfect model sits at the floor
    assert min(r["floor_ratio"] for r in reports) > 0  # V-statistics are positive, unlike U-statistics
    assert min(r["noise_floor_mmd2"] for r in reports) < 0 < max(r["noise_floor_mmd2"] for r in reports)
    shifted = mmd_report(draws(400, 1, shift=0.5), draws(400, 2), draws(400, 3))
    assert shifted["floor_ratio"] > 5
    assert shifted["mmd2_biased"] > shifted["mmd2"]  # V adds the positive diagonal terms


def test_report_values_match_the_estimators_at_the_reported_bandwidth():
    x, a, b = draws(300, 1, 0.2), draws(300, 2), draws(300, 3)
    r = mmd_report(x, a, b)
    h = r["bandwidth"]
    assert abs(r["mmd2"] - float(mmd2(x, a, bandwidth=h))) < 1e-12
    assert abs(r["mmd2_biased"] - float(mmd2(x, a, bandwidth=h, unbiased=False))) < 1e-12
    assert abs(r["noise_floor_mmd2_biased"] - float(mmd2(b, a, bandwidth=h, unbiased=False))) < 1e-12
    assert abs(r["floor_ratio"] - r["mmd2_biased"] / r["noise_floor_mmd2_biased"]) < 1e-9
