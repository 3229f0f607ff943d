"""GAN benchmarks (issue 10): sample quality of the four reference specs, and the speed
of `dgm fit specs/wgan_gp.dgm` against a hand-written PyTorch WGAN-GP.

Quality: each spec is fitted for a fixed number of generator updates with its own
settings (the family's defaults unless a case says otherwise; every override is printed),
then evaluated on held-out data: MMD next to the noise floor, modes covered and the
high-quality fraction on mixture sets, BiGAN's reconstruction error next to that of a
constant. Targets: wgan_gp 25 of 25 modes and >= 90% high quality; gan 8 of 8 modes;
fgan and bigan report their figures.

Speed: the marginal cost of a training step (one generator update with its 5 critic
updates) of the whole `dgm fit` process against benchmarks/reference/wgan_gp_ref.py,
both as separate processes for N and 2N steps (benchmarks/harness.py); target <= 1.05.

Usage: python benchmarks/gan.py [--quick] [--only quality|speed] [--cases gan,...] [--threads T]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import dgmdsl  # noqa: E402
from benchmarks.harness import ROOT, dgm_fit_command, machine, marginal_step_costs, print_speed, report  # noqa: E402

__all__ = ["Case", "CASES", "quality", "speed", "main"]

SPEED_BATCH = 256
SPEED_TARGET = 1.05
REFERENCE = ROOT / "benchmarks" / "reference" / "wgan_gp_ref.py"


@dataclass(frozen=True)
class Case:
    spec: str
    steps: int            # generator updates, full mode
    quick_steps: int
    target: str
    met: Callable[[dict], bool] | None = None
    fit: dict = field(default_factory=dict)  # overrides of the family's defaults (printed)


# gan and fgan train with 1024-row batches: at the default 256 the non-saturating GAN
# needed twice the updates to reach 8 modes and drifted between 6 and 8 on the way.
# wgan_gp decays its step to 0 by a cosine (`--lr-schedule cosine`): at a constant step
# the generator still jitters around the modes after 10000 updates (21 of 25, 74%).
CASES = [
    Case("wgan_gp", 20000, 300, "25 of 25 modes and >= 90% high-quality samples",
         lambda m: m.get("modes_covered") == 25 and m.get("high_quality_fraction", 0) >= 0.9,
         {"lr_schedule": "cosine"}),
    Case("gan", 3000, 500, "8 of 8 modes", lambda m: m.get("modes_covered") == 8, {"batch_size": 1024}),
    Case("fgan", 3000, 500, "report (8 modes in the data)", fit={"batch_size": 1024}),
    Case("bigan", 4000, 600, "report"),
]


def quality(case: Case, quick: bool, eval_limit: int) -> None:
    steps = case.quick_steps if quick else case.steps
    model = dgmdsl.load(ROOT / "specs" / f"{case.spec}.dgm").models[0]
    with tempfile.TemporaryDirectory(prefix=f"dgm-gan-{case.spec}-") as out:
        start = time.perf_counter()
        run = model.fit(max_steps=steps, out=Path(out) / "run", quiet=True, device="cpu", **case.fit)
        fit_s = time.perf_counter() - start
        metrics = run.evaluate(limit=eval_limit)
    verdict = "" if case.met is None else ("  MET" if case.met(metrics) else "  NOT MET")
    settings = f", overrides {case.fit}" if case.fit else ""
    print(f"{case.spec}: {_figures(metrics)}")
    print(f"    target: {case.target}{verdict}; {steps} generator updates in {fit_s:.0f} s{settings}")
    if "modes_covered" in metrics:
        report("implicit", case.spec, "modes covered / high-quality fraction",
               f"{metrics['modes_covered']}/{metrics['n_modes']}, {metrics['high_quality_fraction']:.3f}",
               case.target, steps=steps, fit_s=round(fit_s))
    report("implicit", case.spec, "sample MMD^2 / noise floor (V-statistics, median bandwidth)",
           round(metrics["mmd2_floor_ratio"], 2), "about 1 (<= 2)", mmd2=metrics["mmd2"],
           mmd2_noise_floor=metrics["mmd2_noise_floor"], steps=steps)


def _figures(m: dict) -> str:
    parts = [f"MMD^2 {m['mmd2']:.2e} (noise floor {m['mmd2_noise_floor']:.2e}, {m['samples']} samples; "
             f"V-statistic ratio to the floor {m['mmd2_floor_ratio']:.2f})"]
    if "modes_covered" in m:
        parts.append(f"{m['modes_covered']}/{m['n_modes']} modes, {100 * m['high_quality_fraction']:.1f}% "
                     f"high quality (data: {100 * m['data_high_quality_fraction']:.1f}%)")
    if "reconstruction_error" in m:
        parts.append(f"reconstruction error {m['reconstruction_error']:.4f} "
                     f"(constant reconstruction: {m['reconstruction_baseline']:.4f})")
    return "; ".join(parts)


def speed(quick: bool, threads: int) -> None:
    # the N-step difference must dwarf start-up jitter (about 0.5 s here)
    steps, repeats = (50, 3) if quick else (300, 5)
    spec = ROOT / "specs" / "wgan_gp.dgm"
    result = marginal_step_costs(
        "wgan_gp",
        lambda n: dgm_fit_command(str(spec), n, SPEED_BATCH),
        lambda n: [sys.executable, str(REFERENCE), "--steps", str(n), "--batch-size", str(SPEED_BATCH)],
        steps, repeats=repeats, threads=threads)
    print_speed(result, family="implicit")
    verdict = "MET" if result.ratio <= SPEED_TARGET else "NOT MET"
    print(f"    target: ratio <= {SPEED_TARGET}  {verdict}; N = {steps} and {2 * steps} steps, batch "
          f"{SPEED_BATCH}, median of {repeats}, {threads} threads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes on CPU; figures are indicative")
    parser.add_argument("--only", choices=["quality", "speed"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-limit", type=int, default=None, help="held-out examples (half are compared)")
    parser.add_argument("--cases", default=",".join(c.spec for c in CASES), help="quality cases, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; {args.threads} threads; {'quick' if args.quick else 'full'} mode")
    start = time.perf_counter()
    if args.only in (None, "quality"):
        limit = args.eval_limit or (2000 if args.quick else 4000)
        for case in CASES:
            if case.spec in args.cases.split(","):
                quality(case, args.quick, limit)
    if args.only in (None, "speed"):
        speed(args.quick, args.threads)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
