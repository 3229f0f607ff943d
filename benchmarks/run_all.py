"""Regenerate benchmarks/README.md: run every benchmark script, collect the `RESULT {...}`
lines they print (see harness.report) and write one table.

    python benchmarks/run_all.py --quick      # minutes on CPU
    python benchmarks/run_all.py              # the full settings (hours; use a GPU)
    python benchmarks/run_all.py --only flows gan
    python benchmarks/run_all.py --collect benchmarks/results/*.log   # table from saved outputs

Every script's output is also saved under benchmarks/results/ (one log per script and mode),
so a table can be rebuilt from runs made by hand (long trainings, other machines) with
--collect; a later row with the same family, model and figure replaces an earlier one.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

# script -> extra arguments in quick mode (every script takes --quick)
SCRIPTS = ["check_speed.py", "query_speed.py", "autoregressive_mnist.py", "flows.py", "vae_mnist.py",
           "ebm.py", "diffusion.py", "gan.py", "nade_sampling.py"]
QUICK_FLAG_FREE = {"check_speed.py", "query_speed.py", "nade_sampling.py"}

HEADER = """# Benchmarks

Regenerate with `python benchmarks/run_all.py --quick` (minutes on CPU) or without
`--quick` for the full settings. Each row is one figure printed by one script, with the
machine it was measured on. Speed ratios are the marginal cost of a training step of the
whole `dgm fit` process against a hand-written PyTorch script doing the same steps
(runs of 2N and N steps, interleaved, start-up reported apart, `OMP_NUM_THREADS=2`
unless the row's details give `threads`: the flows' ~2 ms steps are timed at 1).
Quality figures sit next to the published number or the data's known entropy.

"""


def run_script(name: str, quick: bool) -> tuple[list[dict], str]:
    path = HERE / name
    if not path.exists():
        return [], f"{name}: not present"
    cmd = [sys.executable, str(path)] + (["--quick"] if quick and name not in QUICK_FLAG_FREE else [])
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"})
    elapsed = time.perf_counter() - start
    rows = rows_of(proc.stdout)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{Path(name).stem}-{'quick' if quick else 'full'}.log").write_text(proc.stdout)
    status = f"{name}: {'ok' if proc.returncode == 0 else 'FAILED'} in {elapsed:.0f} s, {len(rows)} result(s)"
    if proc.returncode != 0:
        status += "\n" + proc.stderr[-1500:]
    return rows, status


COLUMNS = {"family", "model", "metric", "value", "target", "machine"}


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def rows_of(text: str) -> list[dict]:
    return [json.loads(line[7:]) for line in text.splitlines() if line.startswith("RESULT ")]


def latest(rows: list[dict]) -> list[dict]:
    """One row per (family, model, figure): the last one seen."""
    keyed = {}
    for r in rows:
        keyed[(r["family"], r["model"], r["metric"])] = r
    return list(keyed.values())


def table(rows: list[dict], mode: str) -> str:
    lines = [HEADER, f"Mode: {mode}.\n", "| family | model | figure | value | target | details | machine |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        value = _short(r["value"])
        details = ", ".join(f"{k} {_short(v)}" for k, v in r.items() if k not in COLUMNS)
        lines.append(f"| {r['family']} | {r['model']} | {r['metric']} | {value} | {r['target']} | {details} | "
                     f"{r['machine']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", help="script stems to run")
    parser.add_argument("--collect", nargs="+", metavar="LOG", help="build the table from saved outputs instead")
    args = parser.parse_args()
    if args.collect:
        rows = latest([r for path in args.collect for r in rows_of(Path(path).read_text())])
        (HERE / "README.md").write_text(table(rows, "collected from " + ", ".join(
            Path(p).name for p in args.collect)))
        print(f"wrote {HERE / 'README.md'} ({len(rows)} rows)")
        return
    names = [s for s in SCRIPTS if not args.only or Path(s).stem in args.only]
    rows = []
    for name in names:
        got, status = run_script(name, args.quick)
        print(status, flush=True)
        rows += got
    (HERE / "README.md").write_text(table(rows, "quick" if args.quick else "full"))
    print(f"wrote {HERE / 'README.md'} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
