"""Data-parallel training over 2 gloo processes equals one process with the same global
batch and seed; compiled and mixed-precision losses equal fp32 eager within tolerance."""
import json

import pytest
import torch

import dgmdsl
from tests.conftest import ROOT
from tests.runtime.helpers import MIX, run_dgm

# Tolerance: the two runs differ only in the order of floating-point reductions
# (the gradient all-reduce), which changes the last bits of each step.
TOL = 1e-5


def fit_cli(spec, out, *extra):
    proc = run_dgm("fit", spec, "--out", out, "--max-steps", "24", "--device", "cpu", "--quiet",
                   "--metrics-every", "4", *extra, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_gloo_processes_match_one(tmp_path):
    spec = tmp_path / "mix.dgm"
    spec.write_text(MIX)
    single = fit_cli(spec, tmp_path / "one")
    double = fit_cli(spec, tmp_path / "two", "--nproc", "2")
    assert len(single) == len(double) == 6
    assert single == pytest.approx(double, rel=TOL)
    a = dgmdsl.open_run(tmp_path / "one", device="cpu").compiled.state_dict()
    b = dgmdsl.open_run(tmp_path / "two", device="cpu").compiled.state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=TOL, atol=TOL) for k in a)


def test_nuts_refuses_multiple_processes(tmp_path):
    proc = run_dgm("fit", ROOT / "specs" / "bayes_logreg.dgm", "--nproc", "2", "--out", tmp_path / "r",
                   "--max-steps", "4", "--device", "cpu")
    assert proc.returncode != 0
    assert "cannot be split over processes" in proc.stderr


def _first_loss(tmp_path, name, **options):
    model = dgmdsl.loads(MIX)["Mix"]
    run = model.fit(max_steps=1, out=tmp_path / name, quiet=True, device="cpu", **options)
    return run.fit_result["final_loss"]


@pytest.mark.parametrize("precision,tol", [("bf16", 2e-2), ("fp16", 5e-3)])
def test_mixed_precision_loss_matches_fp32(tmp_path, precision, tol):
    # bf16 keeps 8 bits of mantissa (relative error ~4e-3 per op); fp16 keeps 11.
    reference = _first_loss(tmp_path, "fp32")
    assert _first_loss(tmp_path, precision, precision=precision) == pytest.approx(reference, rel=tol)


def test_compiled_loss_matches_eager(tmp_path):
    reference = _first_loss(tmp_path, "eager")
    assert _first_loss(tmp_path, "compiled", compile=True) == pytest.approx(reference, rel=1e-5)
