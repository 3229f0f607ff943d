"""Score models, SDEs and DDPM: held-out NLL next to the data's entropy and sample MMD next
to its noise floor on the 2-D toy sets, DDPM on MNIST (bits/dim of the bound, a sample
grid), and the marginal training-step cost of `dgm fit` against hand-written PyTorch.

Usage: python benchmarks/diffusion.py [--quick] [--skip-quality] [--skip-mnist] [--skip-speed]
                                      [--threads 2] [--data-dir DIR] [--png PATH]

Quality fits specs/score_sde.dgm, score_sde_ve.dgm, ncsn.dgm and ddpm.dgm on their own data
(--quick caps the steps) and evaluates on held-out examples: the probability-flow ODE NLL
(score_sde, score_sde_ve) or the variational bound (ddpm) against `toy_entropy`; NCSN has no
density, so MMD only. specs/ddpm_mnist.dgm reports bits/dim of the bound (the discrete
decoder over the two pixel values) and writes a sample grid; --quick trains a few steps,
bounds two images and samples by DDIM(20) instead of the spec's 1000 ancestral steps.
Speed times whole `dgm fit` processes on specs/ddpm.dgm and score_sde.dgm against
benchmarks/reference/diffusion_ref.py with benchmarks/harness.py (start-up reported apart).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import dgmdsl  # noqa: E402
from benchmarks.harness import ROOT, machine, report, speed_against_reference  # noqa: E402
from dgmdsl.data import toy_entropy  # noqa: E402

__all__ = ["quality", "mnist", "speed", "main"]

SPECS = ROOT / "specs"
DEFAULT_DATA_DIR = os.environ.get("DGM_DATA_DIR") or str(ROOT.parent / "shared" / "data")
TOY_MODELS = ("score_sde", "score_sde_ve", "ncsn", "ddpm")


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def quality(workdir: Path, max_steps: int | None, limit: int, epochs: int | None = None,
            names=TOY_MODELS, lr_schedule: str | None = None) -> None:
    """Fit each toy spec; print held-out NLL (or its bound) next to the entropy, and MMD."""
    for name in names:
        model = dgmdsl.load(SPECS / f"{name}.dgm").models[0]
        start = time.perf_counter()
        run = model.fit(max_steps=max_steps, epochs=epochs, out=workdir / "runs" / name, quiet=True,
                        device=_device(), overwrite=True, lr_schedule=lr_schedule)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        metrics = run.evaluate(limit=limit, batch_size=1000)
        eval_s = time.perf_counter() - start
        data = run.data_source.name
        entropy, entropy_se = toy_entropy(data)
        line = f"{name:12s} on {data}: "
        nll = metrics.get("nll_nats", metrics.get("nll_bound_nats"))
        if nll is not None:
            what = "NLL" if "nll_nats" in metrics else "NLL bound"
            stderr = metrics.get("nll_stderr", metrics.get("nll_bound_stderr"))
            line += (f"held-out {what} {nll:.4f} +- {stderr:.4f} nats; entropy {entropy:.4f} +- {entropy_se:.4f}; "
                     f"gap {nll - entropy:+.4f}; ")
            report("diffusion", name, f"held-out {what} - entropy of {data} (nats)", round(nll - entropy, 4),
                   "small (>= 0 up to error)", nll=round(nll, 4), entropy=round(entropy, 4),
                   steps=run.fit_result["steps"])
        line += (f"MMD {metrics['mmd']:.4f} (noise floor {metrics['mmd_noise_floor']:.4f}, "
                 f"{metrics['mmd_samples']} samples by {metrics['sampler']}; V-statistic MMD^2 / floor "
                 f"{metrics['mmd2_floor_ratio']:.2f}); "
                 f"{run.fit_result['steps']} steps in {fit_s:.0f} s, eval {eval_s:.0f} s")
        print(line, flush=True)
        report("diffusion", name, f"sample MMD^2 / noise floor on {data} (V-statistics)",
               round(metrics["mmd2_floor_ratio"], 2), "about 1 (<= 2)", mmd=round(metrics["mmd"], 4),
               mmd_noise_floor=round(metrics["mmd_noise_floor"], 4), steps=run.fit_result["steps"])


def mnist(workdir: Path, quick: bool, png: Path, data_dir: str) -> None:
    """ddpm_mnist: bits/dim of the bound on held-out images and a 16-image sample grid."""
    from dgmdsl.runtime.plots import save_samples_png

    model = dgmdsl.load(SPECS / "ddpm_mnist.dgm").models[0]
    start = time.perf_counter()
    run = model.fit(max_steps=20 if quick else None, out=workdir / "runs" / "ddpm_mnist", quiet=True,
                    device=_device(), overwrite=True, data_dir=data_dir)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics = run.evaluate(limit=100, batch_size=100, bound_examples=2 if quick else 100, mmd_samples=0)
    eval_s = time.perf_counter() - start
    if quick:  # the spec's 1000 ancestral steps take minutes on a CPU
        run.compiled.sampler = {"name": "ddim", "steps": 20, "eta": 0.0}
    save_samples_png(run.sample(16, seed=0), png)
    bits_stderr = metrics["nll_bound_stderr"] * metrics["bits_per_dim"] / metrics["nll_bound_nats"]
    print(f"ddpm_mnist: bound {metrics['bits_per_dim']:.4f} bits/dim +- {bits_stderr:.4f} over "
          f"{metrics['bound_examples']} held-out images ({metrics['kind'].split(';')[0]}); {run.fit_result['steps']} steps in {fit_s:.0f} s, "
          f"eval {eval_s:.0f} s; samples ({run.compiled.describe_sampler()}) in {png}", flush=True)
    report("diffusion", "ddpm_mnist", "held-out bits/dim (variational bound)", round(metrics["bits_per_dim"], 4),
           "lower is better (no published DDPM bound on binarized MNIST to compare with)",
           steps=run.fit_result["steps"], images=metrics["bound_examples"])


def speed(n_steps: int, repeats: int, threads: int, batch_size: int = 128) -> None:
    reference = ROOT / "benchmarks" / "reference" / "diffusion_ref.py"
    speed_against_reference("diffusion", ("ddpm", "score_sde"), SPECS, reference, n_steps, repeats, threads, batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="capped steps (minutes on CPU)")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--epochs", type=int, help="override the specs' epochs in the toy fits")
    parser.add_argument("--models", default=",".join(TOY_MODELS), help="toy fits, comma-separated")
    parser.add_argument("--lr-schedule", default=None, help="as `dgm fit --lr-schedule` (default: the specs')")
    parser.add_argument("--skip-mnist", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, in-process and per process")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="where binarized MNIST is")
    parser.add_argument("--png", type=Path, default=Path(tempfile.gettempdir()) / "dgm-ddpm-mnist-samples.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print(f"machine: {machine()}, {args.threads} threads, training on {_device()}")
    with tempfile.TemporaryDirectory(prefix="dgm-diffusion-") as tmp:
        workdir = Path(tmp)
        if not args.skip_quality:
            quality(workdir, 2000 if args.quick else None, 1000 if args.quick else 2000, args.epochs,
                    args.models.split(","), args.lr_schedule)
        if not args.skip_mnist:
            mnist(workdir, args.quick, args.png, args.data_dir)
        if not args.skip_speed:
            speed(500 if args.quick else 2000, 3 if args.quick else 5, args.threads)
    print(f"total time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
