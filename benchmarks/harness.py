"""Shared timing harness for the speed benchmarks.

The judged figure is the marginal cost of a training step of the whole `dgm fit`
process against a plain PyTorch script doing the same steps: each side is run as a
separate process for N and for 2N steps, and (t(2N) - t(N)) / N cancels start-up.
Runs are interleaved (dgm, reference, dgm, reference, ...) so machine load drifts
affect both alike; the median over repeats is reported. Both run with
OMP_NUM_THREADS=2 (or --threads).
"""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["ROOT", "SpeedResult", "machine", "time_process", "marginal_step_costs", "dgm_fit_command",
           "print_speed", "report", "speed_against_reference"]

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.node()} ({cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__})"


def time_process(cmd: list[str], threads: int = 2, env: dict | None = None) -> float:
    """Wall time of one whole process (start-up included)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                "PYTHONPATH": str(ROOT), **(env or {})}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-2000:]}")
    return elapsed


@dataclass
class SpeedResult:
    name: str
    dgm_step_s: float
    ref_step_s: float
    dgm_startup_s: float
    ref_startup_s: float
    threads: int = 2  # OMP_NUM_THREADS of both processes

    @property
    def ratio(self) -> float:
        return self.dgm_step_s / self.ref_step_s


def marginal_step_costs(name: str, dgm_cmd, ref_cmd, n_steps: int, repeats: int = 3,
                        threads: int = 2) -> SpeedResult:
    """`dgm_cmd(steps)` and `ref_cmd(steps)` build the two command lines."""
    dgm = {n_steps: [], 2 * n_steps: []}
    ref = {n_steps: [], 2 * n_steps: []}
    for _ in range(repeats):
        for steps in (n_steps, 2 * n_steps):
            dgm[steps].append(time_process(dgm_cmd(steps), threads))
            ref[steps].append(time_process(ref_cmd(steps), threads))
    med = {k: statistics.median(v) for k, v in dgm.items()}
    rmed = {k: statistics.median(v) for k, v in ref.items()}
    dgm_step = (med[2 * n_steps] - med[n_steps]) / n_steps
    ref_step = (rmed[2 * n_steps] - rmed[n_steps]) / n_steps
    return SpeedResult(name, dgm_step, ref_step, med[n_steps] - n_steps * dgm_step,
                       rmed[n_steps] - n_steps * ref_step, threads)


def dgm_fit_command(spec: str, steps: int, batch_size: int, extra: list[str] | None = None) -> list[str]:
    out = tempfile.mkdtemp(prefix="dgm-bench-")
    return [sys.executable, "-m", "dgmdsl", "fit", str(spec), "--max-steps", str(steps), "--batch-size",
            str(batch_size), "--device", "cpu", "--out", out, "--quiet", *(extra or [])]


def report(family: str, model: str, metric: str, value: float, target: str, **extra) -> None:
    """One machine-readable result line; benchmarks/run_all.py collects these into the table."""
    import json

    row = {"family": family, "model": model, "metric": metric, "value": value, "target": target,
           "machine": machine(), **extra}
    print("RESULT " + json.dumps(row, default=str), flush=True)


def print_speed(result: SpeedResult, family: str | None = None) -> None:
    print(f"{result.name}: dgm {1e3 * result.dgm_step_s:.3f} ms/step, hand-written "
          f"{1e3 * result.ref_step_s:.3f} ms/step, ratio {result.ratio:.3f} "
          f"(start-up: dgm {result.dgm_startup_s:.2f} s, hand-written {result.ref_startup_s:.2f} s)")
    if family:
        report(family, result.name, "speed ratio (dgm / hand-written, marginal step)", round(result.ratio, 3),
               "<= 1.05", dgm_ms=round(1e3 * result.dgm_step_s, 3), ref_ms=round(1e3 * result.ref_step_s, 3),
               dgm_startup_s=round(result.dgm_startup_s, 2), threads=result.threads)


def speed_against_reference(family: str, names: tuple[str, ...], specs: Path, reference: Path, n_steps: int,
                            repeats: int, threads: int, batch_size: int) -> None:
    """For each name: `dgm fit specs/<name>.dgm` against `reference --model <name>`, printed and reported."""
    for name in names:
        result = marginal_step_costs(
            name,
            lambda steps, name=name: dgm_fit_command(specs / f"{name}.dgm", steps, batch_size),
            lambda steps, name=name: [sys.executable, str(reference), "--model", name, "--steps", str(steps),
                                      "--batch-size", str(batch_size)],
            n_steps, repeats=repeats, threads=threads)
        print_speed(result, family=family)
