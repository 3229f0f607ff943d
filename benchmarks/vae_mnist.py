"""VAEs on statically binarized MNIST: quality and speed.

Quality: `specs/vae.dgm` and `specs/hvae.dgm` trained by `dgm fit` settings, then the
validation IWAE-k NLL (k = 5000, every validation example) next to Tomczak & Welling
(2018)'s static-MNIST test figures: 88.56 nats (VAE, standard Normal prior) and 83.19
(two-level HVAE with a VampPrior; hvae.dgm has a standard Normal top prior, so the
comparison is loose). Target: vae.dgm within 1 nat of 88.56, hvae.dgm below vae.dgm.

Speed: the marginal cost of a training step of `dgm fit specs/vae.dgm` against
benchmarks/reference/vae_ref.py (same nets, loss, optimizer and batch), via the harness.

    python benchmarks/vae_mnist.py --quick     # minutes on CPU: 300 steps, k = 100, 1000 examples
    python benchmarks/vae_mnist.py             # 100 epochs each, k = 5000 (use a GPU)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.harness import (ROOT, dgm_fit_command, machine, marginal_step_costs,  # noqa: E402
                                print_speed, report)

PUBLISHED = {"vae": 88.56, "hvae": 83.19}
DEFAULT_DATA_DIR = os.environ.get("DGM_DATA_DIR") or str(ROOT.parent / "shared" / "data")


def quality(name: str, epochs: int | None, steps: int | None, k: int, limit: int | None, data_dir: str,
            device: str, patience: int | None = None) -> dict:
    import dgmdsl

    model = dgmdsl.load(ROOT / "specs" / f"{name}.dgm").models[0]
    start = time.perf_counter()
    run = model.fit(epochs=epochs, max_steps=steps, data_dir=data_dir, device=device, quiet=True, patience=patience,
                    out=tempfile.mkdtemp(prefix=f"dgm-{name}-"))
    trained = time.perf_counter() - start
    metrics = run.evaluate(split="valid", limit=limit, batch_size=500, k=k)
    metrics.update(train_s=trained, eval_s=time.perf_counter() - start - trained,
                   trained=f"{run.fit_result['epochs']} epochs" + (
                       f", best valid -ELBO at step {run.fit_result['best_step']}" if patience else ""))
    return metrics


def run_quality(args) -> None:
    results = {}
    for name in args.models.split(","):
        m = quality(name, args.epochs, args.train_steps, args.k, args.limit or None, args.data_dir, args.device,
                    args.patience)
        results[name] = m
        print(f"{name}.dgm: validation IWAE-{m['k']} NLL {m['nll_nats']:.2f} ± {m['nll_stderr']:.2f} nats "
              f"(ELBO {m['elbo_nats']:.2f}) on {m['examples']} examples after {m['trained']}; "
              f"published {PUBLISHED[name]} (test, Tomczak & Welling 2018); "
              f"train {m['train_s']:.0f} s, eval {m['eval_s']:.0f} s")
        report("latent", f"{name}.dgm", f"validation IWAE-{m['k']} NLL (nats), {m['trained']}",
               round(m["nll_nats"], 2), f"published {PUBLISHED[name]}" + (" (within 1 nat)" if name == "vae"
                                                                          else " (below vae.dgm)"),
               elbo=round(m["elbo_nats"], 2), examples=m["examples"], train_s=round(m["train_s"]))
    if {"vae", "hvae"} <= set(results):
        gap = results["vae"]["nll_nats"] - results["hvae"]["nll_nats"]
        print(f"hvae.dgm is {gap:.2f} nats {'below' if gap > 0 else 'above'} vae.dgm")


def run_speed(args) -> None:
    spec = str(ROOT / "specs" / "vae.dgm")
    reference = str(ROOT / "benchmarks" / "reference" / "vae_ref.py")
    extra = ["--data-dir", args.data_dir]
    result = marginal_step_costs(
        "vae.dgm",
        lambda n: dgm_fit_command(spec, n, args.batch_size, extra),
        lambda n: [sys.executable, reference, "--steps", str(n), "--batch-size", str(args.batch_size),
                   "--data-dir", args.data_dir],
        args.steps, repeats=args.repeats)
    print_speed(result, family="latent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["quality", "speed"])
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--train-steps", type=int, help="cap on training steps per model")
    parser.add_argument("--k", type=int)
    parser.add_argument("--limit", type=int, help="validation examples (0: all)")
    parser.add_argument("--steps", type=int, help="N of the 2N - N speed runs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", default="vae,hvae", help="quality fits, comma-separated")
    parser.add_argument("--patience", type=int, help="early stopping on the valid -ELBO (epochs without improvement)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    args = parser.parse_args()
    quick = {"train_steps": 300, "k": 100, "limit": 1000, "steps": 10}
    full = {"epochs": 100, "k": 5000, "limit": 0, "steps": 200}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    start = time.perf_counter()
    print(f"machine: {machine()}")
    if args.only in (None, "quality"):
        run_quality(args)
    if args.only in (None, "speed"):
        run_speed(args)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
